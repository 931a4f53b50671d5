//! Seeded fuzzing of what a peer can send, on the stable toolchain (no
//! cargo-fuzz here): two targets, each a pure function of its seed, run
//! for millions of executions by `benches/fuzz.rs` and briefly in CI.
//!
//! * [`decoder`]: byte strings (random, and encoded frames damaged,
//!   cut and spliced) pushed in random chunks through the link's
//!   [`Decoder`] and through an accepting [`Session`]. No input may panic;
//!   a session that goes down stays down.
//! * [`messages`]: arbitrary [`Msg`] values (every variant, with names,
//!   numbers and lengths drawn from valid, edge and invalid pools, and
//!   real messages of the pair with one field changed) delivered to
//!   site-b as if site-a sent them, between ordinary writes, steps and
//!   commands. No message may panic or fail the store; a refused one
//!   drops the session (the link comes back); every state either array
//!   reports stays in the tables; and afterwards time still passes without
//!   a fault and both arrays answer commands.
//!
//! An execution is one input: one byte string, or one message delivered.

use std::collections::BTreeSet;

use super::{pattern_block, Rng, Sim};
use crate::core::{
    ArrayConfig, Changed, Command, DataTag, GroupHello, Mode, Msg, PairHello, Policies, Role,
    RunBlock, SyncStatus, WriteId, BLOCK_SIZE,
};
use crate::link::{encode, Decoder, Frame, Session, Timing};

const A: &str = "site-a";
const B: &str = "site-b";
const G: &str = "rcg0";
const BLOCKS: u64 = 64;

/// Counts of one fuzz run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub executions: u64,
    /// Inputs the receiver refused (decode errors, dropped sessions).
    pub refused: u64,
}

fn pick<'a, T>(rng: &mut Rng, from: &'a [T]) -> &'a T {
    &from[rng.below(from.len() as u64) as usize]
}

fn name(rng: &mut Rng, valid: &[&str]) -> String {
    match rng.below(24) {
        0 => String::new(),
        1 => "x".repeat(32),
        2 => "bad/name".into(),
        3 => "..".into(),
        4 => "é".into(),
        5 => "y".repeat(1 + rng.below(3000) as usize),
        _ => pick(rng, valid).to_string(),
    }
}

fn number(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => BLOCKS - 1,
        2 => BLOCKS,
        3 => u64::MAX,
        4 => 1 << 40,
        5 => rng.next_u64(),
        _ => rng.below(BLOCKS),
    }
}

fn block() -> Box<[u8; BLOCK_SIZE]> {
    Box::new(pattern_block(0xf0, 0xf00d))
}

fn role(rng: &mut Rng) -> Role {
    *pick(
        rng,
        &[
            Role::Primary,
            Role::Secondary,
            Role::PrimaryRev,
            Role::SecondaryRev,
        ],
    )
}

fn status(rng: &mut Rng) -> SyncStatus {
    *pick(
        rng,
        &[
            SyncStatus::New,
            SyncStatus::Syncing,
            SyncStatus::Synced,
            SyncStatus::NotSynced,
            SyncStatus::Stopped,
            SyncStatus::Stale,
        ],
    )
}

/// An arbitrary message about the pair's names (mostly), or about others.
pub fn arbitrary_msg(rng: &mut Rng, gens: &[u64]) -> Msg {
    let groups = [G, G, G, "rcg9"];
    let vols = ["vol0", "vol1", "vol0", "vol9"];
    let g = |rng: &mut Rng| name(rng, &groups);
    let v = |rng: &mut Rng| name(rng, &vols);
    let gen = |rng: &mut Rng| {
        if !gens.is_empty() && rng.chance(60) {
            *pick(rng, gens)
        } else {
            number(rng)
        }
    };
    let mode = |rng: &mut Rng| match rng.below(3) {
        0 => Mode::Sync,
        1 => Mode::Async,
        _ => Mode::Periodic {
            period_ms: number(rng),
        },
    };
    let policies = |rng: &mut Rng| Policies {
        auto_recover: rng.chance(50),
        fail_wrt_on_err: rng.chance(50),
        max_lag_ms: if rng.chance(50) { 0 } else { number(rng) },
        max_backlog_bytes: if rng.chance(50) { 0 } else { number(rng) },
        retain: number(rng) as u32,
    };
    let n = |rng: &mut Rng, max: u64| rng.below(max + 1) as usize;
    match rng.below(29) {
        0 => Msg::Hello {
            array: if rng.chance(80) {
                A.into()
            } else {
                name(rng, &[B])
            },
            groups: (0..n(rng, 10))
                .map(|_| GroupHello {
                    group: g(rng),
                    role: role(rng),
                    epoch: number(rng),
                    started: rng.chance(50),
                    mode: mode(rng),
                    policies: policies(rng),
                    pairs: (0..n(rng, 3))
                        .map(|_| PairHello {
                            vol: v(rng),
                            status: status(rng),
                            point_gen: rng.chance(50).then(|| gen(rng)),
                            pending_gen: rng.chance(50).then(|| gen(rng)),
                            gen: gen(rng),
                        })
                        .collect(),
                })
                .collect(),
            complete: rng.chance(50),
        },
        1 => Msg::CreateGroup {
            group: g(rng),
            mode: mode(rng),
            policies: policies(rng),
        },
        2 => Msg::RemoveGroup {
            group: g(rng),
            remove_vv: rng.chance(50),
        },
        3 => Msg::Config {
            group: g(rng),
            mode: mode(rng),
            policies: policies(rng),
        },
        4 => Msg::Admit {
            group: g(rng),
            vol: v(rng),
            source_vol: v(rng),
            blocks: number(rng),
        },
        5 => Msg::AdmitResult {
            group: g(rng),
            vol: v(rng),
            fresh: rng.chance(50),
            error: rng.chance(50).then(|| "x".repeat(n(rng, 2000))),
        },
        6 => Msg::Dismiss {
            group: g(rng),
            vol: v(rng),
        },
        7 => Msg::Start {
            group: g(rng),
            pairs: (0..n(rng, 4)).map(|_| (v(rng), rng.chance(50))).collect(),
        },
        8 => Msg::Stop { group: g(rng) },
        9 => Msg::Data {
            group: g(rng),
            vol: v(rng),
            block: number(rng),
            data: block(),
            tag: if rng.chance(50) {
                DataTag::Sync
            } else {
                DataTag::Write(WriteId(number(rng)))
            },
        },
        10 => Msg::DataAck {
            group: g(rng),
            vol: v(rng),
            block: number(rng),
            tag: if rng.chance(50) {
                DataTag::Sync
            } else {
                DataTag::Write(WriteId(number(rng)))
            },
        },
        11 => Msg::SyncBlocks {
            group: g(rng),
            vol: v(rng),
            blocks: (0..n(rng, 140))
                .map(|_| RunBlock {
                    block: number(rng),
                    data: block(),
                })
                .collect(),
        },
        12 => Msg::SyncBlocksAck {
            group: g(rng),
            vol: v(rng),
            count: number(rng),
        },
        13 => Msg::Refused {
            group: g(rng),
            reason: "r".repeat(n(rng, 2000)),
        },
        14 => Msg::OpRefused {
            group: g(rng),
            op: pick(
                rng,
                &[
                    "recover",
                    "restore",
                    "reverse",
                    "failover",
                    "creatercopygroup",
                    "??",
                ],
            )
            .to_string(),
            reason: "r".repeat(n(rng, 2000)),
        },
        15 => Msg::SyncDone {
            group: g(rng),
            vol: v(rng),
            gen: gen(rng),
            at: crate::core::Tick(rng.below(1 << 40)),
            label: rng.chance(30).then(|| name(rng, &["pt"])),
        },
        16 => Msg::SyncDoneAck {
            group: g(rng),
            vol: v(rng),
            gen: gen(rng),
        },
        17 => Msg::RecoverPrepare {
            group: g(rng),
            full: rng.chance(50),
        },
        18 => Msg::RecoverReady {
            group: g(rng),
            changed: (0..n(rng, 3))
                .map(|_| {
                    let c = if rng.chance(20) {
                        Changed::All
                    } else {
                        Changed::Ranges(
                            (0..n(rng, 5)).map(|_| (number(rng), number(rng))).collect(),
                        )
                    };
                    (v(rng), c)
                })
                .collect(),
        },
        19 => Msg::RestorePrepare { group: g(rng) },
        20 => Msg::RestoreReady { group: g(rng) },
        21 => Msg::RestoreCommit { group: g(rng) },
        22 => Msg::RestoreAbort { group: g(rng) },
        23 => Msg::HandOverRequest { group: g(rng) },
        24 => Msg::HandOver { group: g(rng) },
        25 => Msg::Probe {
            group: g(rng),
            sent: number(rng),
        },
        26 => Msg::ProbeAck {
            group: g(rng),
            sent: number(rng),
        },
        27 if rng.chance(50) => Msg::VerifyBlocks {
            group: g(rng),
            vol: v(rng),
            first: number(rng),
            digests: (0..n(rng, 1100)).map(|i| [i as u8; 16]).collect(),
        },
        27 => Msg::VerifyDiff {
            group: g(rng),
            vol: v(rng),
            first: number(rng),
            count: number(rng),
            differing: (0..n(rng, 8)).map(|_| number(rng)).collect(),
        },
        _ => {
            if rng.chance(50) {
                Msg::Reverse {
                    group: g(rng),
                    epoch: number(rng),
                }
            } else {
                Msg::ReverseDone {
                    group: g(rng),
                    epoch: number(rng),
                }
            }
        }
    }
}

/// One input for the decoder: random bytes, or frames damaged.
fn bytes(rng: &mut Rng, gens: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    match rng.below(4) {
        0 => out.extend((0..rng.below(300)).map(|_| rng.next_u64() as u8)),
        _ => {
            for _ in 0..1 + rng.below(4) {
                let f = match rng.below(6) {
                    0 => Frame::Hello {
                        magic: "replicim-link".into(),
                        version: crate::link::VERSION,
                        from: if rng.chance(70) {
                            A.into()
                        } else {
                            name(rng, &[A])
                        },
                        to: B.into(),
                    },
                    1 => Frame::Heartbeat,
                    2 => Frame::Refuse {
                        reason: "no".into(),
                    },
                    _ => Frame::Message(arbitrary_msg(rng, gens)),
                };
                let _ = encode(&f, &mut out);
            }
            // Damage: flip bytes, cut, or splice random bytes in.
            for _ in 0..rng.below(4) {
                if out.is_empty() {
                    break;
                }
                let at = rng.below(out.len() as u64) as usize;
                match rng.below(3) {
                    0 => out[at] ^= 1 << rng.below(8),
                    1 => out.truncate(at),
                    _ => {
                        let junk: Vec<u8> =
                            (0..rng.below(16)).map(|_| rng.next_u64() as u8).collect();
                        out.splice(at..at, junk);
                    }
                }
            }
        }
    }
    out
}

/// The decoder target: `iterations` inputs from `seed`.
pub fn decoder(seed: u64, iterations: u64) -> Counts {
    let mut rng = Rng::new(seed);
    let mut c = Counts::default();
    for _ in 0..iterations {
        let input = bytes(&mut rng, &[]);
        let mut d = Decoder::default();
        let mut s = Session::accept(B, &[A.to_string()], Timing::default(), Default::default());
        let mut at = 0;
        let mut refused = false;
        while at < input.len() {
            let n = (1 + rng.below(64) as usize).min(input.len() - at);
            let chunk = &input[at..at + n];
            at += n;
            d.push(chunk);
            loop {
                match d.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        refused = true;
                        break;
                    }
                }
            }
            let evs = s.handle_input(chunk, Default::default());
            if evs.iter().any(|e| matches!(e, crate::link::Event::Down(_))) {
                refused = true;
            }
        }
        let _ = s.take_output();
        c.executions += 1;
        c.refused += u64::from(refused);
    }
    c
}

/// The allowed (role, status, CopyState, SyncState, ProgressStatus) tuples.
fn allowed() -> BTreeSet<(String, String, u16, u16, u16)> {
    let mut set = BTreeSet::new();
    for (i, text) in crate::conformance::TABLES.iter().enumerate() {
        let t = crate::conformance::Table::parse(text).expect("the tables parse");
        for r in t.rows {
            if i == 0 {
                for role in ["Primary", "Secondary"] {
                    set.insert((
                        role.into(),
                        r.status.clone(),
                        r.copy_state,
                        r.sync_state,
                        r.progress,
                    ));
                }
            } else {
                set.insert((r.role, r.status, r.copy_state, r.sync_state, r.progress));
            }
        }
    }
    set
}

/// The messages target: `iterations` messages from `seed`, in sequences of
/// up to 1000 on a fresh synced pair each. Returns the counts, or what broke
/// with the seed that replays it.
pub fn messages(seed: u64, iterations: u64) -> Result<Counts, String> {
    let tables = allowed();
    let mut c = Counts::default();
    let mut s = seed;
    while c.executions < iterations {
        let n = (iterations - c.executions).min(1000);
        let r = std::panic::catch_unwind(|| sequence(s, n, &tables));
        match r {
            Ok(Ok(refused)) => {
                c.executions += n;
                c.refused += refused;
            }
            Ok(Err(e)) => return Err(format!("messages seed {s}: {e}")),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(format!("messages seed {s}: panic: {what}"));
            }
        }
        s += 1;
    }
    Ok(c)
}

fn pair(config: ArrayConfig, mode: Mode) -> Result<Sim, String> {
    let mut sim = Sim::new();
    sim.add_array(A, config);
    sim.add_array(B, config);
    let e = |e: crate::core::VolumeError| e.to_string();
    sim.link_up(A, B).map_err(e)?;
    sim.settle(1000).map_err(e)?;
    for v in ["vol0", "vol1"] {
        sim.create_volume(A, v, BLOCKS).map_err(e)?;
    }
    let c = |e: crate::core::CommandError| e.to_string();
    sim.command(
        A,
        Command::CreateGroup {
            group: G.into(),
            peer: B.into(),
            mode,
            policies: Policies::default(),
        },
    )
    .map_err(c)?;
    sim.settle(1000).map_err(e)?;
    for v in ["vol0", "vol1"] {
        sim.command(
            A,
            Command::Admit {
                group: G.into(),
                vol: v.into(),
                remote_vol: v.into(),
            },
        )
        .map_err(c)?;
        sim.settle(1000).map_err(e)?;
    }
    sim.command(A, Command::Start { group: G.into() })
        .map_err(c)?;
    sim.settle(100_000).map_err(e)?;
    Ok(sim)
}

/// One sequence of `n` messages; returns how many were refused.
fn sequence(
    seed: u64,
    n: u64,
    tables: &BTreeSet<(String, String, u16, u16, u16)>,
) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mode = if rng.chance(70) {
        Mode::Sync
    } else {
        Mode::Periodic { period_ms: 0 }
    };
    let config = ArrayConfig {
        window: 1 + rng.below(8),
        run_batch: 1 + rng.below(8),
        promote_budget: 1 + rng.below(8) as usize,
        restore_timeout_ms: 200,
        ..ArrayConfig::default()
    };
    let mut sim = pair(config, mode)?;
    let e = |e: crate::core::VolumeError| e.to_string();
    let mut refused = 0;
    let mut tag = 0;
    for _ in 0..n {
        // Ordinary life around the messages.
        match rng.below(6) {
            0 => {
                tag += 1;
                let side = if rng.chance(70) { A } else { B };
                let vol = if rng.chance(50) { "vol0" } else { "vol1" };
                let _ = sim.write(side, vol, rng.below(BLOCKS), &pattern_block(7, tag));
            }
            1 => {
                for _ in 0..1 + rng.below(4) {
                    sim.step().map_err(e)?;
                }
            }
            2 => {
                let line = *pick(
                    &mut rng,
                    &[
                        "startrcopygroup rcg0",
                        "stoprcopygroup rcg0",
                        "setrcopygroup recover rcg0",
                        "setrcopygroup restore rcg0",
                        "syncrcopy rcg0",
                    ],
                );
                let side = if rng.chance(50) { A } else { B };
                let cmd = crate::rcopy::parse(&line.split_whitespace().collect::<Vec<_>>())?;
                let _ = sim.command(side, cmd);
            }
            _ => {}
        }
        let gens: Vec<u64> = [A, B]
            .iter()
            .flat_map(|s| {
                sim.array(s)
                    .groups()
                    .flat_map(|g| g.pairs.iter().map(|p| p.gen))
                    .collect::<Vec<_>>()
            })
            .collect();
        let msg = arbitrary_msg(&mut rng, &gens);
        let shown = format!("{msg:?}");
        if sim
            .inject(A, B, msg)
            .map_err(|e| format!("{e} after {}", cut(&shown)))?
            .is_some()
        {
            refused += 1;
        }
        for side in [A, B] {
            for (_, vol, v) in sim.array(side).views() {
                let key = (
                    v.role.to_string(),
                    v.status.to_string(),
                    v.copy_state.number(),
                    v.sync_state.number(),
                    v.progress.number(),
                );
                if !tables.contains(&key) {
                    return Err(format!(
                        "{side} {vol} reports {key:?} after {}",
                        cut(&shown)
                    ));
                }
            }
        }
    }
    // Still alive: time passes without a store fault (a peer may have set
    // a periodic group to cycle continuously, so "nothing left to do" is
    // not required), and both arrays answer commands and reads.
    sim.advance(2000).map_err(e)?;
    for side in [A, B] {
        let _ = sim.command(side, Command::Start { group: G.into() });
        let _ = sim.array_mut(side).read("vol0", 0, &mut [0u8; BLOCK_SIZE]);
    }
    Ok(refused)
}

fn cut(s: &str) -> String {
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_string()
    }
}
