//! Switching a started group's mode (issue 13, first part): sync and
//! periodic, back and forth, with no acknowledged write lost and only the
//! changed blocks resent.

use replicim::core::{Mode, Policies, SyncStatus, BLOCK_SIZE};
use replicim::sim::pattern_block;

use crate::util::*;

const NONE: Policies = Policies {
    auto_recover: false,
    fail_wrt_on_err: false,
};

fn sent(sim: &replicim::sim::Sim) -> u64 {
    let c = sim.array(A).counters();
    (c.sync_bytes_sent + c.write_bytes_sent) / BLOCK_SIZE as u64
}

/// Sync → periodic → sync on a started group: each switch resends only
/// the blocks written since the last common point, the group ends Synced
/// with equal data, and a period change of a started periodic group takes
/// effect without a stop.
#[test]
fn a_started_group_switches_between_sync_and_periodic_live() {
    let mut sim = pair(Mode::Sync, NONE, &["vol0", "vol1"], 256);
    start(&mut sim, A);
    for b in 0..64 {
        sim.write(A, "vol0", b, &pattern_block(1, b)).unwrap();
    }
    settle(&mut sim);
    let before = sent(&sim);
    cmd(&mut sim, A, "setrcopygroup mode periodic:50 rcg0").unwrap();
    settle(&mut sim);
    assert!(sim.array(A).group(G).unwrap().started, "still started");
    assert!(
        sent(&sim) - before <= 4,
        "the switch resent {} blocks",
        sent(&sim) - before
    );
    // Periodic now: writes are not sent until a cycle.
    for b in 0..8 {
        sim.write(A, "vol1", b, &pattern_block(2, b)).unwrap();
    }
    let mid = sent(&sim);
    sim.advance(60).unwrap();
    settle(&mut sim);
    assert_eq!(sent(&sim) - mid, 8, "one cycle ships the 8 changed blocks");
    assert!(same_data(&mut sim, "vol1"));
    // A new period applies at once, without a stop (setrcopygroup period
    // is the same for a periodic group).
    cmd(&mut sim, A, "setrcopygroup mode periodic:500 rcg0").unwrap();
    assert!(sim.array(A).group(G).unwrap().started);
    cmd(&mut sim, A, "setrcopygroup period 1 rcg0").unwrap();
    assert_eq!(
        sim.array(A).group(G).unwrap().mode,
        Mode::Periodic { period_ms: 1000 }
    );
    // Back to sync: the writes since the last cycle are resynced, then
    // writes are synchronous again.
    for b in 8..16 {
        sim.write(A, "vol1", b, &pattern_block(3, b)).unwrap();
    }
    let mid = sent(&sim);
    cmd(&mut sim, A, "setrcopygroup mode sync rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(
        sent(&sim) - mid,
        8,
        "only the 8 blocks written since the cycle"
    );
    for v in ["vol0", "vol1"] {
        assert_eq!(status(&sim, A, v), SyncStatus::Synced);
        assert!(same_data(&mut sim, v));
    }
    let t = sim.write(A, "vol0", 100, &pattern_block(4, 100)).unwrap();
    assert!(
        matches!(t, replicim::core::WriteTicket::Pending { .. }),
        "a sync write waits for the peer again: {t:?}"
    );
    settle(&mut sim);
    assert!(same_data(&mut sim, "vol0"));
}

/// A switch is refused while an operation runs, and from the target side.
#[test]
fn a_live_switch_is_refused_where_it_cannot_run() {
    let mut sim = pair(Mode::Sync, NONE, &["vol0"], 16);
    start(&mut sim, A);
    let e = cmd(&mut sim, B, "setrcopygroup mode periodic rcg0").unwrap_err();
    assert!(e.contains("source"), "{e}");
    let e = cmd(&mut sim, A, "setrcopygroup period 60 rcg0").unwrap_err();
    assert!(e.contains("is synchronous"), "{e}");
    sim.link_down(A, B).unwrap();
    settle(&mut sim);
    // Stopped by the failure: the mode changes as on any stopped group.
    cmd(&mut sim, A, "setrcopygroup mode periodic rcg0").unwrap();
    assert!(!sim.array(A).group(G).unwrap().started);
}
