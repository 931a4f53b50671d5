//! Delta accounting: after changing 1% of the blocks of a 64 MiB volume,
//! a resync moves at most 1.1 times the changed bytes (asserted from the
//! core's byte counters), in each mode that resyncs.

use replicim::core::{Mode, Policies, BLOCK_SIZE};
use replicim::sim::{pattern_block, Rng, Sim};

use crate::util::*;

const BLOCKS: u64 = 16_384; // 64 MiB of 4 KiB blocks
const NONE: Policies = Policies {
    auto_recover: false,
    fail_wrt_on_err: false,
    max_lag_ms: 0,
    max_backlog_bytes: 0,
    retain: replicim::core::DEFAULT_RETAIN,
};

fn filled(mode: Mode) -> Sim {
    let mut sim = pair(mode, NONE, &["vol0"], BLOCKS);
    for b in 0..BLOCKS {
        sim.write(A, "vol0", b, &pattern_block((b % 200) as u8, b))
            .unwrap();
    }
    start(&mut sim, A);
    assert!(same_data(&mut sim, "vol0"), "initial full sync incomplete");
    sim
}

/// Writes 1% of the blocks (distinct ones; a third of them twice) on `side`.
fn change_one_percent(sim: &mut Sim, side: &str, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < (BLOCKS / 100) as usize {
        chosen.insert(rng.below(BLOCKS));
    }
    for (i, b) in chosen.iter().enumerate() {
        sim.write(side, "vol0", *b, &pattern_block(0xee, 1_000_000 + *b))
            .unwrap();
        if i % 3 == 0 {
            sim.write(side, "vol0", *b, &pattern_block(0xef, 2_000_000 + *b))
                .unwrap();
        }
    }
    chosen.len() as u64 * BLOCK_SIZE as u64
}

fn check(what: &str, sent: u64, changed: u64) {
    println!(
        "{what}: changed {changed} bytes, sent {sent} bytes ({:.3}x)",
        sent as f64 / changed as f64
    );
    assert!(
        sent >= changed,
        "{what}: sent {sent} < changed {changed}: some change was not sent"
    );
    assert!(
        sent as f64 <= 1.1 * changed as f64,
        "{what}: sent {sent} > 1.1 x {changed}"
    );
}

#[test]
fn sync_mode_restart_after_link_failure_moves_only_the_changed_blocks() {
    let mut sim = filled(Mode::Sync);
    sim.link_down(A, B).unwrap();
    let changed = change_one_percent(&mut sim, A, 1);
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    let before = sim.array(A).counters().sync_bytes_sent;
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    settle(&mut sim);
    check(
        "sync restart",
        sim.array(A).counters().sync_bytes_sent - before,
        changed,
    );
    assert!(same_data(&mut sim, "vol0"));
}

#[test]
fn periodic_cycle_moves_only_the_changed_blocks() {
    let mut sim = filled(Mode::Periodic { period_ms: 0 });
    let changed = change_one_percent(&mut sim, A, 2);
    let before = sim.array(A).counters().sync_bytes_sent;
    cmd(&mut sim, A, "syncrcopy rcg0").unwrap();
    settle(&mut sim);
    check(
        "periodic cycle",
        sim.array(A).counters().sync_bytes_sent - before,
        changed,
    );
    assert!(same_data(&mut sim, "vol0"));
}

#[test]
fn recover_after_failover_moves_only_the_changed_blocks() {
    let mut sim = filled(Mode::Sync);
    sim.crash(A).unwrap();
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    let changed = change_one_percent(&mut sim, B, 3);
    sim.restart(A).unwrap();
    settle(&mut sim);
    let before = sim.array(B).counters().sync_bytes_sent;
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    check(
        "recover",
        sim.array(B).counters().sync_bytes_sent - before,
        changed,
    );
    assert!(same_data(&mut sim, "vol0"));
}
