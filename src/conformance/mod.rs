//! The state tables as data, and one runner that replays them.
//!
//! Key types: [`Table`] and [`Row`] (loaded from `conformance/*.toml`),
//! [`Step`] (one line of a row's scenario), the [`Driver`] trait (what a
//! level must provide: run a step, observe a pair) and [`run`].
//!
//! Design decision: a row is "scenario → expected columns", interpreted by
//! one runner for every level. The core level drives the sans-IO core in
//! process ([`core_driver::CoreDriver`]); the CIM and lab levels reuse the
//! same files with other drivers, so a row means the same thing everywhere.

pub mod cim_driver;
pub mod core_driver;
pub mod lab_driver;

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::core::{CopyState, ProgressStatus, SyncState};

/// The two arrays of every scenario: A is the natural primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn parse(s: &str) -> Result<Side, String> {
        match s {
            "A" => Ok(Side::A),
            "B" => Ok(Side::B),
            _ => Err(format!("array `{s}`: use A or B")),
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One line of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create rcg0 (mode) on A with vol0 and vol1 mirrored to B; with
    /// `start`, start it and wait for Synced.
    Setup { mode: String, start: bool },
    /// Host writes of `fill` to blocks `from..to` of `vol` on `side`.
    Write {
        side: Side,
        vol: String,
        from: u64,
        to: u64,
        fill: u8,
    },
    /// The array process is killed.
    Kill(Side),
    /// The array process starts again from its kept state.
    Start(Side),
    /// The replication link between A and B.
    Link(bool),
    /// Hold or release messages in one direction.
    Hold { from: Side, held: bool },
    /// At most N messages per direction per step; None = unlimited.
    Throttle(Option<usize>),
    /// An rcopy command that must succeed.
    Rcopy { side: Side, args: Vec<String> },
    /// An rcopy command that must be refused, with text in the message.
    ExpectError {
        side: Side,
        args: Vec<String>,
        contains: String,
    },
    /// Run until nothing moves.
    Settle,
    /// Run N steps.
    Steps(usize),
    /// Run until a pair shows a SyncStatus (bounded).
    RunUntil {
        side: Side,
        vol: String,
        status: String,
    },
    /// Let virtual time pass.
    Advance(u64),
    /// Whole-volume checksums equal on both arrays, for every pair.
    CheckSynced,
    /// Every write acknowledged as replicated is on this array.
    CheckAcked(Side),
    /// Remember this array's volume checksums.
    Remember(Side),
    /// This array's volumes equal what was remembered.
    CheckRemembered(Side),
    /// This array shows rcg0 in the Error state, its reason containing
    /// the text.
    CheckError { side: Side, contains: String },
}

/// Whether a group's Error reason (as an array reports it) is the one a
/// `check-error` step wants.
pub fn check_error(side: Side, error: Option<&str>, contains: &str) -> Result<(), String> {
    match error {
        Some(e) if e.contains(contains) => Ok(()),
        Some(e) => Err(format!("{side:?} is in Error for another reason: {e}")),
        None => Err(format!(
            "{side:?} shows no Error (wanted one naming {contains})"
        )),
    }
}

fn parse_block_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("block range `{s}`: use FROM..TO"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad block `{a}`"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad block `{b}`"))?;
    if b <= a {
        return Err(format!("empty block range `{s}`"));
    }
    Ok((a, b))
}

impl Step {
    pub fn parse(line: &str) -> Result<Step, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| {
            w.get(i)
                .copied()
                .ok_or_else(|| format!("`{line}`: missing argument"))
        };
        Ok(match w.first().copied().unwrap_or("") {
            "setup" => Step::Setup {
                mode: arg(1)?.to_string(),
                start: true,
            },
            "create" => Step::Setup {
                mode: arg(1)?.to_string(),
                start: false,
            },
            "write" => {
                let (from, to) = parse_block_range(arg(3)?)?;
                let fill = arg(4)?;
                let fill = u8::from_str_radix(fill.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("bad fill `{fill}`"))?;
                Step::Write {
                    side: Side::parse(arg(1)?)?,
                    vol: arg(2)?.to_string(),
                    from,
                    to,
                    fill,
                }
            }
            "kill" => Step::Kill(Side::parse(arg(1)?)?),
            "start" => Step::Start(Side::parse(arg(1)?)?),
            "link" => match arg(1)? {
                "up" => Step::Link(true),
                "down" => Step::Link(false),
                o => return Err(format!("link `{o}`: use up or down")),
            },
            "hold" | "release" => {
                let dir = arg(1)?;
                let (from, _) = dir
                    .split_once("->")
                    .ok_or_else(|| format!("direction `{dir}`: use A->B or B->A"))?;
                Step::Hold {
                    from: Side::parse(from)?,
                    held: w[0] == "hold",
                }
            }
            "throttle" => match arg(1)? {
                "off" => Step::Throttle(None),
                n => Step::Throttle(Some(n.parse().map_err(|_| format!("throttle `{n}`"))?)),
            },
            "rcopy" => Step::Rcopy {
                side: Side::parse(arg(1)?)?,
                args: w[2..].iter().map(|s| s.to_string()).collect(),
            },
            "expect-error" => {
                let rest = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("");
                let (cmd, contains) = rest.split_once(" contains ").ok_or_else(|| {
                    format!("`{line}`: use expect-error SIDE COMMAND contains TEXT")
                })?;
                Step::ExpectError {
                    side: Side::parse(arg(1)?)?,
                    args: cmd.split_whitespace().map(str::to_string).collect(),
                    contains: contains.trim().to_string(),
                }
            }
            "settle" => Step::Settle,
            "steps" => Step::Steps(
                arg(1)?
                    .parse()
                    .map_err(|_| format!("`{line}`: bad count"))?,
            ),
            "run-until" => Step::RunUntil {
                side: Side::parse(arg(1)?)?,
                vol: arg(2)?.to_string(),
                status: arg(3)?.to_string(),
            },
            "advance" => Step::Advance(
                arg(1)?
                    .parse()
                    .map_err(|_| format!("`{line}`: bad milliseconds"))?,
            ),
            "check-synced" => Step::CheckSynced,
            "check-acked" => Step::CheckAcked(Side::parse(arg(1)?)?),
            "remember" => Step::Remember(Side::parse(arg(1)?)?),
            "check-remembered" => Step::CheckRemembered(Side::parse(arg(1)?)?),
            "check-error" => Step::CheckError {
                side: Side::parse(arg(1)?)?,
                contains: arg(2)?.to_string(),
            },
            other => return Err(format!("unknown scenario step `{other}` in `{line}`")),
        })
    }
}

/// One row of a table: how to reach it and what one array must report.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    pub id: String,
    pub event: String,
    pub array: String,
    pub role: String,
    pub status: String,
    pub copy_state: u16,
    pub sync_state: u16,
    pub progress: u16,
    pub scenario: Vec<String>,
    /// Why a level cannot reach this row, if it cannot.
    #[serde(default)]
    pub unreachable: Option<String>,
}

/// A table file.
#[derive(Clone, Debug, Deserialize)]
pub struct Table {
    pub name: String,
    #[serde(rename = "row")]
    pub rows: Vec<Row>,
}

impl Table {
    pub fn load(path: &Path) -> Result<Table, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Table, String> {
        let t: Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &t.rows {
            for s in &r.scenario {
                Step::parse(s).map_err(|e| format!("row {}: {e}", r.id))?;
            }
            Side::parse(&r.array).map_err(|e| format!("row {}: {e}", r.id))?;
        }
        Ok(t)
    }
}

/// The tables shipped with the binary.
pub const NORMAL_TABLE: &str = include_str!("../../conformance/normal.toml");
pub const DR_TABLE: &str = include_str!("../../conformance/dr.toml");
/// Rows the reference does not print, decided where the tables are silent.
pub const DECIDED_TABLE: &str = include_str!("../../conformance/decided.toml");
/// Planned failover (link up), decided by the project.
pub const PLANNED_TABLE: &str = include_str!("../../conformance/planned.toml");
/// Asynchronous streaming mode and the Error state, decided by the project.
pub const ASYNC_TABLE: &str = include_str!("../../conformance/async.toml");
/// Every table, in the order the runner replays them.
pub const TABLES: [&str; 5] = [
    NORMAL_TABLE,
    DR_TABLE,
    DECIDED_TABLE,
    PLANNED_TABLE,
    ASYNC_TABLE,
];

/// What an array reports for one pair, in the vocabulary of the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub vol: String,
    pub role: String,
    pub status: String,
    pub copy_state: u16,
    pub sync_state: u16,
    pub progress: u16,
    pub role_reversed: bool,
}

/// A level of the replay: runs steps and observes pairs.
pub trait Driver {
    /// A fresh pair of arrays for the next row.
    fn reset(&mut self) -> Result<(), String>;
    /// An operator command (an `rcopy` step), issued the way this level
    /// issues commands.
    fn command(&mut self, side: Side, cmd: crate::core::Command) -> Result<(), String>;
    /// Every other step: faults, host I/O, time, data checks, setup.
    fn act(&mut self, step: &Step) -> Result<(), String>;
    /// One step; `rcopy` and `expect-error` go through [`Driver::command`].
    fn step(&mut self, step: &Step) -> Result<(), String> {
        let rcopy = |d: &mut Self, side: Side, args: &[String]| {
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let cmd = crate::rcopy::parse(&words)?;
            d.command(side, cmd)
        };
        match step {
            Step::Rcopy { side, args } => rcopy(self, *side, args),
            Step::ExpectError {
                side,
                args,
                contains,
            } => expect_refusal(rcopy(self, *side, args), args, contains),
            other => self.act(other),
        }
    }
    /// Every pair of group rcg0 as `side` reports it.
    fn observe(&mut self, side: Side) -> Result<Vec<Observed>, String>;
    /// Why this level cannot reach a row, if it cannot.
    fn unreachable(&self, _row: &Row) -> Option<String> {
        None
    }
    /// The row just run failed: keep what explains it (a lab's logs and
    /// journals) and say where, if this level has anything to keep.
    fn keep(&mut self) -> Option<String> {
        None
    }
}

/// The outcome of one row.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub table: String,
    pub id: String,
    pub line: String,
    pub passed: bool,
    pub skipped: bool,
}

fn name_of<T: std::fmt::Display>(n: u16, f: fn(u16) -> Option<T>) -> String {
    match f(n) {
        Some(v) => format!("{v}({n})"),
        None => format!("?({n})"),
    }
}

/// An `expect-error` step's verdict on what the command returned.
pub fn expect_refusal(
    r: Result<(), String>,
    args: &[String],
    contains: &str,
) -> Result<(), String> {
    match r {
        Ok(()) => Err(format!(
            "`{}` succeeded but must be refused",
            args.join(" ")
        )),
        Err(e) if e.contains(contains) => Ok(()),
        Err(e) => Err(format!(
            "refused with `{e}`, which does not mention `{contains}`"
        )),
    }
}

/// Replays one row.
pub fn run_row(driver: &mut dyn Driver, table: &str, row: &Row) -> RowResult {
    let expected = format!(
        "{}/{} CopyState={} SyncState={} ProgressStatus={}",
        row.role,
        row.status,
        name_of(row.copy_state, CopyState::from_number),
        name_of(row.sync_state, SyncState::from_number),
        name_of(row.progress, ProgressStatus::from_number),
    );
    let head = format!(
        "{table:<6} row {:<3} {}  {:<62}",
        row.id, row.array, expected
    );
    if let Some(why) = row.unreachable.clone().or_else(|| driver.unreachable(row)) {
        return RowResult {
            table: table.into(),
            id: row.id.clone(),
            line: format!("skip  {head} {why}"),
            passed: false,
            skipped: true,
        };
    }
    let outcome = (|| -> Result<(), String> {
        driver.reset()?;
        for s in &row.scenario {
            let step = Step::parse(s)?;
            driver.step(&step).map_err(|e| format!("step `{s}`: {e}"))?;
        }
        let side = Side::parse(&row.array)?;
        let seen = driver.observe(side)?;
        if seen.is_empty() {
            return Err("no pairs reported".into());
        }
        let reversed = row.role.ends_with("-Rev");
        let mut diffs = String::new();
        for o in &seen {
            let got = (
                o.role.as_str(),
                o.status.as_str(),
                o.copy_state,
                o.sync_state,
                o.progress,
                o.role_reversed,
            );
            let want = (
                row.role.as_str(),
                row.status.as_str(),
                row.copy_state,
                row.sync_state,
                row.progress,
                reversed,
            );
            if got != want {
                let _ = write!(
                    diffs,
                    "{}: got {}/{} CopyState={} SyncState={} ProgressStatus={} RoleReversed={}; ",
                    o.vol,
                    o.role,
                    o.status,
                    name_of(o.copy_state, CopyState::from_number),
                    name_of(o.sync_state, SyncState::from_number),
                    name_of(o.progress, ProgressStatus::from_number),
                    o.role_reversed
                );
            }
        }
        if !diffs.is_empty() {
            return Err(diffs);
        }
        // Every Synced point must hold the same bytes on both arrays.
        if row.status == "Synced" {
            driver.step(&Step::CheckSynced)?;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => RowResult {
            table: table.into(),
            id: row.id.clone(),
            line: format!("ok    {head} {}", row.event),
            passed: true,
            skipped: false,
        },
        Err(e) => RowResult {
            table: table.into(),
            id: row.id.clone(),
            line: match driver.keep() {
                Some(kept) => format!("FAIL  {head} {e} (kept: {kept})"),
                None => format!("FAIL  {head} {e}"),
            },
            passed: false,
            skipped: false,
        },
    }
}

/// Replays every row of the shipped tables, printing one line per row, and
/// returns (passed, failed).
pub fn run(
    driver: &mut dyn Driver,
    out: &mut dyn std::io::Write,
) -> Result<(usize, usize), String> {
    run_rows(driver, out, None)
}

/// [`run`], limited to the rows whose id is `only` when given (`Stale`,
/// `3a`, ...); an id that names no row is an error.
pub fn run_rows(
    driver: &mut dyn Driver,
    out: &mut dyn std::io::Write,
    only: Option<&str>,
) -> Result<(usize, usize), String> {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut matched = false;
    for text in TABLES {
        let table = Table::parse(text)?;
        for row in &table.rows {
            if only.is_some_and(|id| !id.eq_ignore_ascii_case(&row.id)) {
                continue;
            }
            matched = true;
            let r = run_row(driver, &table.name, row);
            writeln!(out, "{}", r.line).map_err(|e| e.to_string())?;
            match (r.skipped, r.passed) {
                (true, _) => skipped += 1,
                (false, true) => passed += 1,
                (false, false) => failed += 1,
            }
        }
    }
    if let (Some(id), false) = (only, matched) {
        return Err(format!("no row has the id {id}"));
    }
    if skipped > 0 {
        writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped")
            .map_err(|e| e.to_string())?;
    } else {
        writeln!(out, "{passed} passed, {failed} failed").map_err(|e| e.to_string())?;
    }
    Ok((passed, failed))
}
