//! Switching a started group's mode (issue 13, first part): sync and
//! periodic, back and forth, with no acknowledged write lost and only the
//! changed blocks resent.

use replicim::core::{Mode, Policies, SyncStatus, BLOCK_SIZE};
use replicim::sim::pattern_block;

use crate::util::*;

const NONE: Policies = Policies {
    auto_recover: false,
    fail_wrt_on_err: false,
    max_lag_ms: 0,
    max_backlog_bytes: 0,
    retain: replicim::core::DEFAULT_RETAIN,
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

fn lag(sim: &replicim::sim::Sim, side: &str) -> replicim::core::Lag {
    sim.array(side).read_model().group(G).unwrap().lag
}

/// Async streaming: a write completes once it is durable here, ships in
/// the next cycle, and the target holds whole group points only: a link
/// cut in the middle of a cycle leaves, after failover, every volume at
/// the same earlier point.
#[test]
fn async_streaming_acks_locally_and_fails_over_to_a_group_point() {
    let mut sim = pair(Mode::Async, NONE, &["vol0", "vol1"], 64);
    start(&mut sim, A);
    for b in 0..32 {
        for v in ["vol0", "vol1"] {
            let t = sim.write(A, v, b, &pattern_block(1, b)).unwrap();
            assert!(
                matches!(
                    t,
                    replicim::core::WriteTicket::Done {
                        replicated: false,
                        ..
                    }
                ),
                "an async write completes at once: {t:?}"
            );
        }
    }
    assert_eq!(
        lag(&sim, A).bytes,
        64 * BLOCK_SIZE as u64,
        "64 blocks behind"
    );
    assert!(lag(&sim, A).oldest.is_some());
    settle(&mut sim);
    assert_eq!(lag(&sim, A), replicim::core::Lag::default(), "caught up");
    for v in ["vol0", "vol1"] {
        assert!(same_data(&mut sim, v));
        assert_eq!(status(&sim, A, v), SyncStatus::Synced);
    }
    // The next writes, vol0 and vol1 in turn; the link is cut after a
    // few steps, with a cycle half shipped.
    let order: Vec<(&str, u64)> = (0..32).flat_map(|b| [("vol0", b), ("vol1", b)]).collect();
    for &(v, b) in &order {
        sim.write(A, v, b, &pattern_block(2, b)).unwrap();
    }
    sim.step().unwrap();
    sim.step().unwrap();
    sim.step().unwrap();
    assert!(sim.array(A).group(G).unwrap().syncing(), "mid-cycle");
    sim.link_down(A, B).unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    // B holds a prefix of the write history: every write up to some
    // instant, none after it, on both volumes at once.
    let applied: Vec<bool> = order
        .iter()
        .map(|&(v, b)| {
            let mut buf = [0u8; BLOCK_SIZE];
            sim.array_mut(B).read(v, b, &mut buf).unwrap();
            let (old, new) = (pattern_block(1, b), pattern_block(2, b));
            assert!(
                buf == old || buf == new,
                "{v} block {b} holds neither write"
            );
            buf == new
        })
        .collect();
    let k = applied.iter().take_while(|a| **a).count();
    assert!(
        applied[k..].iter().all(|a| !a),
        "B holds writes after a write it lacks: {applied:?}"
    );
    assert!(k < order.len(), "the cut cycle was not applied whole");
}

fn bounded(max_lag_ms: u64, max_backlog_bytes: u64, auto_recover: bool) -> Policies {
    Policies {
        auto_recover,
        fail_wrt_on_err: false,
        max_lag_ms,
        max_backlog_bytes,
        retain: replicim::core::DEFAULT_RETAIN,
    }
}

/// Sync mode with `max_lag`: a peer that stops answering trips the group
/// into Error after the bound, the waiting write completes (unreplicated),
/// later writes do not wait, and with `auto_recover` a probe resumes the
/// group once the peer answers again, resending only what changed.
#[test]
fn a_slow_sync_peer_trips_the_group_into_error_and_it_resumes_by_itself() {
    let mut sim = pair(Mode::Sync, bounded(20, 0, true), &["vol0"], 64);
    start(&mut sim, A);
    sim.hold(B, A, true);
    let t = sim.write(A, "vol0", 1, &pattern_block(1, 1)).unwrap();
    let replicim::core::WriteTicket::Pending { id } = t else {
        panic!("a sync write waits: {t:?}")
    };
    sim.advance(10).unwrap();
    assert!(sim.array(A).group(G).unwrap().started, "within the bound");
    sim.advance(15).unwrap();
    let done = sim.take_events().into_iter().any(|(_, e)| {
        matches!(e, replicim::core::Event::WriteDone { id: i, replicated: false } if i == id)
    });
    assert!(done, "the waiting write completed, unreplicated");
    let g = sim.array(A).read_model().group(G).unwrap().clone();
    assert!(!g.started);
    let why = g.error.clone().expect("an Error reason");
    assert!(
        why.contains("waited") && why.contains("max_lag 20 ms"),
        "{why}"
    );
    let v = g.pairs[0].view;
    assert_eq!(
        (
            v.copy_state.number(),
            v.sync_state.number(),
            v.progress.number()
        ),
        (5, 12, 2),
        "Broken / Broken / Completed"
    );
    // Host writes no longer wait for the slow peer.
    for b in 2..6 {
        let t = sim.write(A, "vol0", b, &pattern_block(2, b)).unwrap();
        assert!(
            matches!(t, replicim::core::WriteTicket::Done { .. }),
            "{t:?}"
        );
    }
    // Still slow: the probe finds it so and the group stays in Error.
    sim.advance(700).unwrap();
    assert!(!sim.array(A).group(G).unwrap().started, "not caught up yet");
    let before = sent(&sim);
    sim.hold(B, A, false);
    sim.advance(1200).unwrap();
    settle(&mut sim);
    let g = sim.array(A).read_model().group(G).unwrap().clone();
    assert!(g.started, "auto_recover resumed the group");
    assert_eq!(g.error, None);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Synced);
    assert!(same_data(&mut sim, "vol0"));
    assert!(
        sent(&sim) - before <= 6,
        "a delta resync: {} blocks",
        sent(&sim) - before
    );
}

/// Async mode with `max_backlog`: a target that stops applying trips the
/// group once the backlog passes the bound; without auto_recover it stays
/// in Error until `startrcopygroup`, which resyncs the differences.
#[test]
fn an_async_backlog_past_its_bound_stops_the_group_until_started() {
    let mut sim = pair(
        Mode::Async,
        bounded(0, 8 * BLOCK_SIZE as u64, false),
        &["vol0"],
        64,
    );
    start(&mut sim, A);
    for b in 0..4 {
        sim.write(A, "vol0", b, &pattern_block(1, b)).unwrap();
    }
    settle(&mut sim);
    assert!(sim.array(A).group(G).unwrap().started, "caught up, no trip");
    sim.hold(A, B, true);
    for b in 0..8 {
        sim.write(A, "vol0", b, &pattern_block(2, b)).unwrap();
        assert!(sim.array(A).group(G).unwrap().started, "within the bound");
    }
    for b in 8..12 {
        let t = sim.write(A, "vol0", b, &pattern_block(2, b)).unwrap();
        assert!(
            matches!(t, replicim::core::WriteTicket::Done { .. }),
            "{t:?}"
        );
    }
    let g = sim.array(A).read_model().group(G).unwrap().clone();
    assert!(!g.started, "tripped");
    assert!(g.error.unwrap().contains("max_backlog"));
    sim.hold(A, B, false);
    sim.advance(2000).unwrap();
    settle(&mut sim);
    assert!(
        !sim.array(A).group(G).unwrap().started,
        "no auto_recover: stays"
    );
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    settle(&mut sim);
    let g = sim.array(A).read_model().group(G).unwrap().clone();
    assert!(g.started && g.error.is_none());
    assert!(same_data(&mut sim, "vol0"));
}

/// Async → sync live: host writes made while the backlog drains wait for
/// the drain, then complete as replicated (RPO 0 from the switch on).
/// A drain that cannot finish within the bound is refused after the
/// fact: the held write completes unreplicated and the group goes back
/// to async.
#[test]
fn a_switch_to_sync_holds_writes_while_it_drains_and_is_bounded() {
    use replicim::core::{Event, WriteTicket, SWITCH_DRAIN_MS};
    let mut sim = pair(Mode::Async, NONE, &["vol0"], 64);
    start(&mut sim, A);
    sim.hold(A, B, true);
    for b in 0..16 {
        sim.write(A, "vol0", b, &pattern_block(1, b)).unwrap();
    }
    sim.hold(A, B, false);
    cmd(&mut sim, A, "setrcopygroup mode sync rcg0").unwrap();
    let t = sim.write(A, "vol0", 40, &pattern_block(2, 40)).unwrap();
    let WriteTicket::Pending { id } = t else {
        panic!("a write during the drain waits: {t:?}")
    };
    settle(&mut sim);
    let done = sim
        .take_events()
        .into_iter()
        .any(|(_, e)| matches!(e, Event::WriteDone { id: i, replicated: true } if i == id));
    assert!(done, "the held write completed as replicated");
    assert!(same_data(&mut sim, "vol0"));
    assert_eq!(sim.array(A).group(G).unwrap().mode, Mode::Sync);

    // Now a drain that cannot finish: the target takes nothing.
    cmd(&mut sim, A, "setrcopygroup mode async rcg0").unwrap();
    settle(&mut sim);
    sim.hold(A, B, true);
    for b in 0..16 {
        sim.write(A, "vol0", b, &pattern_block(3, b)).unwrap();
    }
    cmd(&mut sim, A, "setrcopygroup mode sync rcg0").unwrap();
    let t = sim.write(A, "vol0", 41, &pattern_block(4, 41)).unwrap();
    let WriteTicket::Pending { id } = t else {
        panic!("a write during the drain waits: {t:?}")
    };
    sim.advance(SWITCH_DRAIN_MS + 10).unwrap();
    let events = sim.take_events();
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::WriteDone { id: i, replicated: false } if *i == id)),
        "the held write completed, unreplicated"
    );
    assert!(
        events.iter().any(|(_, e)| matches!(e, Event::OperationFailed { reason, .. } if reason.contains("refused"))),
        "the switch was refused: {events:?}"
    );
    let g = sim.array(A).group(G).unwrap();
    assert_eq!(g.mode, Mode::Async, "back to async");
    assert!(g.started);
    sim.hold(A, B, false);
    settle(&mut sim);
    assert!(same_data(&mut sim, "vol0"));
}

/// The cut that matters for group consistency: one pair of a cycle is
/// done (its SyncDone reached the target) while the other is still
/// shipping. The target must not have taken the done pair's new point
/// alone: after a failover both volumes hold the previous point.
#[test]
fn an_async_cycle_cut_between_its_pairs_leaves_no_mix() {
    let config = replicim::core::ArrayConfig {
        window: 2,
        run_batch: 1,
        ..replicim::core::ArrayConfig::default()
    };
    let mut sim = pair_with(config, Mode::Async, NONE, &["vol0", "vol1"], 64);
    start(&mut sim, A);
    // One cycle: vol1's 48 blocks and vol0's one, written while the
    // link holds, so they are one point.
    sim.hold(A, B, true);
    for b in 0..48 {
        sim.write(A, "vol1", b, &pattern_block(5, b)).unwrap();
    }
    sim.write(A, "vol0", 0, &pattern_block(5, 0)).unwrap();
    let cycles = |sim: &replicim::sim::Sim| {
        let g = sim.array(A).group(G).unwrap();
        g.pairs
            .iter()
            .map(|p| (p.pending_gen.is_some(), p.progress().0))
            .collect::<Vec<_>>()
    };
    sim.hold(A, B, false);
    let mut cut = false;
    for _ in 0..2000 {
        sim.step().unwrap();
        let c = cycles(&sim);
        // vol0 proposed its point (SyncDone sent), vol1 still has blocks
        // to send: deliver that SyncDone, then cut.
        if c[0].0 && c[1].1 > 4 {
            sim.step().unwrap();
            sim.step().unwrap();
            sim.link_down(A, B).unwrap();
            cut = true;
            break;
        }
    }
    assert!(cut, "the cut between the pairs never came");
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    // B holds a prefix of the writes (vol1's, then vol0's), never vol0's
    // new block without every vol1 block written before it.
    let order: Vec<(&str, u64)> = (0..48).map(|b| ("vol1", b)).chain([("vol0", 0)]).collect();
    let applied: Vec<bool> = order
        .iter()
        .map(|&(v, b)| {
            let mut buf = [0u8; BLOCK_SIZE];
            sim.array_mut(B).read(v, b, &mut buf).unwrap();
            buf == pattern_block(5, b)
        })
        .collect();
    let k = applied.iter().take_while(|a| **a).count();
    assert!(
        applied[k..].iter().all(|a| !a),
        "B holds a mix of two points: {applied:?}"
    );
    assert!(k < order.len(), "the cut cycle was not applied whole");
}
