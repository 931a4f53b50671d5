//! The lab level: every row on two real array processes (`replicim serve`)
//! joined through the lab's fault switch. Operator steps and observations go
//! over CIM-XML; host writes and reads are qemu-io over NBD; `kill` is
//! SIGKILL, `start` restarts the process from its data directory, `link` is
//! the switch black-holing traffic (the arrays notice through heartbeats),
//! `throttle` limits the switch's bandwidth.
//!
//! Time is real here: `settle` waits until both arrays report the same
//! thing for longer than the link timeout, `steps N` lets N × 100 ms pass.
//! Rows that need a one-way hold of messages on a link that stays up are
//! named unreachable (see [`LabDriver::unreachable`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cim_driver::observe_group;
use super::core_driver::{GROUP, PREPARED, VOLUMES};
use super::{Driver, Observed, Row, Side, Step};
use crate::core::BLOCK_SIZE;
use crate::lab::{qemu, Lab, Options, Ports, Site};
use crate::rcopy::{self, console::Wait};

/// Link timing of the lab arrays in conformance runs.
const HEARTBEAT_MS: u64 = 100;
const TIMEOUT_MS: u64 = 600;
/// Bytes per second per message of the tables' `throttle N`.
const THROTTLE_UNIT: u64 = 16 * 1024;
/// Longest wait of `settle` and `run-until`.
const LIMIT: Duration = Duration::from_secs(60);

fn site(side: Side) -> Site {
    match side {
        Side::A => Site::A,
        Side::B => Site::B,
    }
}

/// What each running array reports (or why it did not answer).
type Picture = Vec<(String, Result<Vec<Observed>, String>)>;

/// Drives scenarios on a lab of two processes.
pub struct LabDriver {
    root: PathBuf,
    exe: PathBuf,
    runs: usize,
    lab: Option<Lab>,
    /// Last acknowledged fill of every written block, and whether the write
    /// was acknowledged as replicated: made in a synchronous group whose
    /// pair both arrays showed Synced, with the link up, before and after
    /// the write (a NBD host is not told; the arrays' own reports are).
    acked: BTreeMap<(String, u64), (u8, bool)>,
    remembered: [Option<Vec<[u8; 32]>>; 2],
    /// Directories of failed rows, left on disk.
    kept: Vec<PathBuf>,
}

impl LabDriver {
    /// Labs are made under `root`, one directory per row, running `exe`.
    pub fn new(root: PathBuf, exe: PathBuf) -> LabDriver {
        LabDriver {
            root,
            exe,
            runs: 0,
            lab: None,
            acked: BTreeMap::new(),
            remembered: [None, None],
            kept: Vec::new(),
        }
    }

    /// How many failed rows' lab directories were left on disk.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn lab(&self) -> Result<&Lab, String> {
        self.lab
            .as_ref()
            .ok_or_else(|| "no lab (reset first)".into())
    }

    fn host(&self, s: Site) -> Result<String, String> {
        Ok(format!("127.0.0.1:{}", self.lab()?.opts.ports.of(s).http))
    }

    fn setup(&mut self, mode: &str, start: bool) -> Result<(), String> {
        for (vol, from, to, fill) in PREPARED {
            self.write(Side::A, vol, from, to, fill)?;
        }
        let lab = self.lab()?;
        lab.wait_link(Site::A, true, LIMIT)?;
        let mut c = lab.console(Site::A)?;
        let mut lines = vec![format!("creatercopygroup {GROUP} site-b {mode}")];
        for v in VOLUMES {
            lines.push(format!("admitrcopyvv {v} {GROUP} site-b:{v}"));
        }
        if start {
            lines.push(format!("startrcopygroup {GROUP}"));
        }
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let cmd = rcopy::parse(&words)?;
            c.run(&cmd, Wait::Yes, &mut |_, _| {})
                .map_err(|e| format!("{line}: {e}"))?;
        }
        if start {
            lab.wait_synced(Site::A, LIMIT)?;
        }
        Ok(())
    }

    fn observe_site(&self, s: Site) -> Result<Vec<Observed>, String> {
        let lab = self.lab()?;
        let mut c = lab.console(s)?;
        observe_group(&mut c, s.name(), &self.host(s)?)
    }

    /// What every running array reports, for settling. An array that does
    /// not answer is part of the picture (as its error), not left out.
    fn picture(&self) -> Result<Picture, String> {
        let lab = self.lab()?;
        let mut out = Vec::new();
        for s in [Site::A, Site::B] {
            if lab.running(s) {
                out.push((s.name().to_string(), self.observe_site(s)));
            }
        }
        Ok(out)
    }

    /// Waits until every running array answers, no pair is syncing and the
    /// picture has not changed for longer than the link timeout.
    fn settle(&self) -> Result<(), String> {
        let t0 = Instant::now();
        let quiet = Duration::from_millis(TIMEOUT_MS + 500);
        let mut last = self.picture()?;
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.picture()?;
            let failing: Vec<String> = now
                .iter()
                .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}")))
                .collect();
            if !failing.is_empty() {
                if t0.elapsed() > LIMIT {
                    return Err(format!(
                        "the arrays did not settle within {LIMIT:?}: {}",
                        failing.join("; ")
                    ));
                }
                last = now;
                since = Instant::now();
                continue;
            }
            let syncing = now.iter().any(|(_, v)| {
                v.as_ref()
                    .is_ok_and(|v| v.iter().any(|o| o.status == "Syncing"))
            });
            if now != last || syncing {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            if t0.elapsed() > LIMIT {
                return Err(format!("the arrays did not settle within {LIMIT:?}"));
            }
        }
    }

    fn url(&self, s: Site, vol: &str) -> Result<String, String> {
        Ok(self.lab()?.nbd_url(s, vol))
    }

    /// Whether a write to `vol` on `s` now is acknowledged only once the
    /// peer applied it: a synchronous group, Synced on both arrays, each
    /// reporting its link up.
    fn replicates_now(&self, s: Site, vol: &str) -> Result<bool, String> {
        let lab = self.lab()?;
        let sync = lab
            .console(s)?
            .show()?
            .iter()
            .any(|g| g.name == GROUP && g.mode == "Sync");
        if !sync || !lab.running(s.other()) {
            return Ok(false);
        }
        for x in [s, s.other()] {
            let synced = self
                .observe_site(x)?
                .into_iter()
                .find(|o| o.vol == vol)
                .is_some_and(|o| o.status == "Synced");
            if !synced || !lab.link_reported(x)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn write(&mut self, side: Side, vol: &str, from: u64, to: u64, fill: u8) -> Result<(), String> {
        let s = site(side);
        let before = self.replicates_now(s, vol)?;
        let bs = BLOCK_SIZE as u64;
        qemu::io(
            &self.url(s, vol)?,
            &[format!(
                "write -P {fill} {} {}",
                from * bs,
                (to - from) * bs
            )],
        )?;
        // Replicated only if nothing changed around the write either.
        let replicated = before && self.replicates_now(s, vol)?;
        for b in from..to {
            self.acked.insert((vol.to_string(), b), (fill, replicated));
        }
        Ok(())
    }

    /// Every write acknowledged as replicated reads back on `side`. A row
    /// that made no such write checks nothing, which is an error.
    fn check_acked(&self, side: Side) -> Result<(), String> {
        let s = site(side);
        let bs = BLOCK_SIZE as u64;
        if !self.acked.values().any(|(_, rep)| *rep) {
            return Err(format!(
                "check-acked {}: no write of this row was acknowledged as replicated, so there is nothing to check",
                s.name()
            ));
        }
        for vol in VOLUMES {
            // Contiguous runs of the same fill, one qemu-io read each.
            let mut cmds = Vec::new();
            let mut run: Option<(u64, u64, u8)> = None;
            for ((v, b), (fill, rep)) in &self.acked {
                if v != vol || !rep {
                    continue;
                }
                run = match run {
                    Some((from, to, f)) if to == *b && f == *fill => Some((from, b + 1, f)),
                    Some((from, to, f)) => {
                        cmds.push(format!("read -P {f} {} {}", from * bs, (to - from) * bs));
                        Some((*b, b + 1, *fill))
                    }
                    None => Some((*b, b + 1, *fill)),
                };
            }
            if let Some((from, to, f)) = run {
                cmds.push(format!("read -P {f} {} {}", from * bs, (to - from) * bs));
            }
            if !cmds.is_empty() {
                qemu::io(&self.url(s, vol)?, &cmds).map_err(|e| {
                    format!("an acknowledged write is missing on {}: {e}", s.name())
                })?;
            }
        }
        Ok(())
    }

    fn sums(&self, s: Site) -> Result<Vec<[u8; 32]>, String> {
        let scratch = self.lab()?.opts.dir.join("scratch.img");
        VOLUMES
            .iter()
            .map(|v| qemu::sha256(&self.url(s, v)?, &scratch))
            .collect()
    }
}

impl Driver for LabDriver {
    fn reset(&mut self) -> Result<(), String> {
        if let Some(old) = self.lab.take() {
            let dir = old.opts.dir.clone();
            drop(old);
            if !self.kept.contains(&dir) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        self.runs += 1;
        let dir = self.root.join(format!("row-{}", self.runs));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = Options::new(&dir, &self.exe);
        opts.ports = Ports::free();
        opts.password = Some("conformance".into());
        opts.heartbeat_ms = HEARTBEAT_MS;
        opts.timeout_ms = TIMEOUT_MS;
        self.lab = Some(Lab::start(opts)?);
        self.acked.clear();
        self.remembered = [None, None];
        Ok(())
    }

    fn keep(&mut self) -> Option<String> {
        let dir = self.lab.as_ref()?.opts.dir.clone();
        let shown = dir.display().to_string();
        self.kept.push(dir);
        Some(shown)
    }

    fn command(&mut self, side: Side, cmd: crate::core::Command) -> Result<(), String> {
        self.lab()?
            .console(site(side))?
            .run(&cmd, Wait::No, &mut |_, _| {})
    }

    fn act(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Setup { mode, start } => self.setup(mode, *start),
            Step::Write {
                side,
                vol,
                from,
                to,
                fill,
            } => self.write(*side, vol, *from, *to, *fill),
            Step::Kill(side) => self.lab()?.kill(site(*side)),
            Step::Start(side) => self.lab()?.start_site(site(*side)),
            Step::Link(up) => {
                let lab = self.lab()?;
                lab.link(*up);
                for s in [Site::A, Site::B] {
                    if lab.running(s) {
                        lab.wait_link(s, *up, LIMIT)?;
                    }
                }
                Ok(())
            }
            Step::Throttle(n) => {
                self.lab()?.throttle(n.map(|n| n as u64 * THROTTLE_UNIT));
                Ok(())
            }
            Step::Rcopy { .. } | Step::ExpectError { .. } => self.step(step),
            Step::Settle => self.settle(),
            Step::Steps(n) => {
                std::thread::sleep(Duration::from_millis(100 * *n as u64));
                Ok(())
            }
            Step::RunUntil { side, vol, status } => {
                let t0 = Instant::now();
                let mut shown = Vec::<String>::new();
                loop {
                    let seen = self.observe_site(site(*side))?;
                    if seen.iter().any(|o| o.vol == *vol && o.status == *status) {
                        return Ok(());
                    }
                    for o in seen.iter().filter(|o| o.vol == *vol) {
                        let now = format!(
                            "{}/{} at {:.2} s",
                            o.role,
                            o.status,
                            t0.elapsed().as_secs_f64()
                        );
                        if shown.last().map(|l| l.split(" at ").next())
                            != Some(now.split(" at ").next())
                        {
                            shown.push(now);
                        }
                    }
                    if t0.elapsed() > LIMIT {
                        return Err(format!(
                            "{vol} on {side:?} never showed {status} (it showed {})",
                            shown.join(", then ")
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::Advance(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                Ok(())
            }
            Step::CheckSynced => {
                for v in VOLUMES {
                    if !qemu::same(&self.url(Site::A, v)?, &self.url(Site::B, v)?)? {
                        return Err(format!("{v} differs between site-a and site-b"));
                    }
                }
                Ok(())
            }
            Step::CheckAcked(side) => self.check_acked(*side),
            Step::Remember(side) => {
                self.remembered[*side as usize] = Some(self.sums(site(*side))?);
                Ok(())
            }
            Step::CheckError { side, contains } => {
                let rows = self.lab()?.console(site(*side))?.show()?;
                let error = rows
                    .iter()
                    .find(|g| g.name == GROUP)
                    .and_then(|g| g.error.clone());
                super::check_error(*side, error.as_deref(), contains)
            }
            Step::CheckRemembered(side) => {
                let now = self.sums(site(*side))?;
                match &self.remembered[*side as usize] {
                    Some(r) if *r == now => Ok(()),
                    Some(_) => Err(format!(
                        "{}'s volumes changed since they were remembered",
                        site(*side).name()
                    )),
                    None => Err("check-remembered before remember".into()),
                }
            }
            Step::Hold { .. } => Err(
                "a one-way hold needs the link to stay up; the lab switch cannot make one".into(),
            ),
        }
    }

    fn observe(&mut self, side: Side) -> Result<Vec<Observed>, String> {
        self.observe_site(site(side))
    }

    fn unreachable(&self, row: &Row) -> Option<String> {
        if row.scenario.iter().any(|s| s.starts_with("hold ")) {
            return Some(
                "unreachable in the lab: the row holds messages one way while the link stays \
                 up; through a real switch the receiver's heartbeat timeout turns that into a \
                 link failure (covered by the core and cim levels)"
                    .into(),
            );
        }
        if row.progress == crate::core::ProgressStatus::FailingOver as u16
            && row.role == "Primary-Rev"
        {
            return Some(
                "unreachable in the lab: a real failover promotes the failure snapshot inside \
                 the command's own batch, so no observer can see it running (covered by the \
                 core and cim levels, whose simulation steps through it)"
                    .into(),
            );
        }
        None
    }
}

impl Drop for LabDriver {
    fn drop(&mut self) {
        if let Some(old) = self.lab.take() {
            let dir = old.opts.dir.clone();
            drop(old);
            if !self.kept.contains(&dir) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
