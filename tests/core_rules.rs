//! Behaviours the seeds state in prose (dr-transitions.md, "Behaviour the
//! seeds state in prose"), each pinned on the sans-IO core.

use replicim::core::{
    Event, Mode, Policies, Role, SyncStatus, WriteError, WriteTicket, BLOCK_SIZE,
};
use replicim::sim::pattern_block;

use crate::util::*;

const SYNC: Mode = Mode::Sync;
const NONE: Policies = Policies {
    auto_recover: false,
    fail_wrt_on_err: false,
    max_lag_ms: 0,
    max_backlog_bytes: 0,
    retain: replicim::core::DEFAULT_RETAIN,
};

fn read(sim: &mut replicim::sim::Sim, side: &str, vol: &str, block: u64) -> [u8; BLOCK_SIZE] {
    let mut buf = [0u8; BLOCK_SIZE];
    sim.array_mut(side).read(vol, block, &mut buf).unwrap();
    buf
}

fn snapshots(sim: &replicim::sim::Sim, side: &str) -> usize {
    sim.array(side).volumes().snapshot_count()
}

/// A host write that spans blocks (as NBD sends them) is one write: it
/// completes once, when the peer acknowledged every block, and a range
/// that runs past the volume's end is refused whole, with nothing written.
#[test]
fn a_write_of_many_blocks_completes_once_after_every_block() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    sim.take_events();
    // Blocks 4 (its second half), 5, 6 and 7 (its first half).
    let data: Vec<u8> = (0..3 * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
    let offset = 4 * BLOCK_SIZE as u64 + BLOCK_SIZE as u64 / 2;
    let before = read(&mut sim, A, "vol0", 4);
    let t = sim.write_bytes(A, "vol0", offset, &data).unwrap();
    let WriteTicket::Pending { id } = t else {
        panic!("sync write completed at once: {t:?}")
    };
    // One message per direction per step: the four acks come one by one,
    // and the write is done only with the last.
    sim.set_throttle(Some(1));
    let mut done = Vec::new();
    let mut steps = 0;
    while done.is_empty() {
        sim.step().unwrap();
        steps += 1;
        assert!(steps < 20, "the write never completed");
        done.extend(
            sim.take_events()
                .into_iter()
                .filter(|(_, e)| matches!(e, Event::WriteDone { id: i, .. } if *i == id)),
        );
    }
    // Data out one per step (steps 1-4), each ack one step behind.
    assert_eq!(steps, 5, "completed before the last block's ack");
    sim.set_throttle(None);
    for _ in 0..3 {
        sim.step().unwrap();
    }
    done.extend(
        sim.take_events()
            .into_iter()
            .filter(|(_, e)| matches!(e, Event::WriteDone { id: i, .. } if *i == id)),
    );
    assert_eq!(
        done.len(),
        1,
        "one completion for the whole write: {done:?}"
    );
    assert!(matches!(
        done[0].1,
        Event::WriteDone {
            replicated: true,
            ..
        }
    ));
    for side in [A, B] {
        let b4 = read(&mut sim, side, "vol0", 4);
        assert_eq!(
            b4[..BLOCK_SIZE / 2],
            before[..BLOCK_SIZE / 2],
            "{side}: the head of block 4 kept"
        );
        assert_eq!(b4[BLOCK_SIZE / 2..], data[..BLOCK_SIZE / 2], "{side}");
        let b6 = read(&mut sim, side, "vol0", 6);
        assert_eq!(
            b6[..],
            data[BLOCK_SIZE * 3 / 2..BLOCK_SIZE * 5 / 2],
            "{side}"
        );
    }
    // Past the end (the volume has 32 blocks): refused, block 31 untouched.
    let was = read(&mut sim, A, "vol0", 31);
    let e = sim
        .write_bytes(
            A,
            "vol0",
            31 * BLOCK_SIZE as u64,
            &vec![0xee; 2 * BLOCK_SIZE],
        )
        .unwrap_err();
    assert!(matches!(e, WriteError::Volume(_)), "{e:?}");
    assert_eq!(
        read(&mut sim, A, "vol0", 31),
        was,
        "a refused write changed a block"
    );
}

/// "A host write completes only after the copy on the backup array completed."
#[test]
fn sync_write_is_acknowledged_only_after_the_peer_applied_it() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    sim.take_events();
    let data = pattern_block(0x77, 1);
    let t = sim.write(A, "vol0", 5, &data).unwrap();
    let WriteTicket::Pending { id } = t else {
        panic!("sync write completed at once: {t:?}")
    };
    assert_ne!(read(&mut sim, B, "vol0", 5), data);
    assert!(sim
        .take_events()
        .iter()
        .all(|(_, e)| !matches!(e, Event::WriteDone { .. })));
    sim.step().unwrap(); // the block reaches B, B applies and acks
    assert_eq!(read(&mut sim, B, "vol0", 5), data);
    assert!(sim
        .take_events()
        .iter()
        .all(|(_, e)| !matches!(e, Event::WriteDone { .. })));
    sim.step().unwrap(); // the ack reaches A
    let evs = sim.take_events();
    assert!(
        evs.iter().any(|(_, e)| *e
            == Event::WriteDone {
                id,
                replicated: true
            }),
        "{evs:?}"
    );
}

/// "No snapshots in normal running; a link failure snapshots every volume
/// that finished its initial sync; one still in its initial sync gets none
/// and fully syncs later. While stopped, no snapshots on the secondary."
#[test]
fn link_failure_snapshots_only_volumes_that_finished_their_initial_sync() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 64);
    start(&mut sim, A);
    assert_eq!(
        snapshots(&sim, A) + snapshots(&sim, B),
        0,
        "snapshots in normal running"
    );
    cmd(&mut sim, A, "stoprcopygroup rcg0").unwrap();
    settle(&mut sim);
    sim.create_volume(A, "vol1", 256).unwrap();
    for b in 0..256 {
        sim.write(A, "vol1", b, &pattern_block(1, b)).unwrap();
    }
    cmd(&mut sim, A, "admitrcopyvv vol1 rcg0 site-b:vol1").unwrap();
    settle(&mut sim);
    sim.set_throttle(Some(2));
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    while status(&sim, A, "vol0") != SyncStatus::Synced {
        sim.step().unwrap();
    }
    assert_eq!(status(&sim, A, "vol1"), SyncStatus::Syncing);
    sim.link_down(A, B).unwrap();
    let g = sim.array(A).group(G).unwrap();
    let p0 = g.pairs.iter().find(|p| p.local == "vol0").unwrap();
    let p1 = g.pairs.iter().find(|p| p.local == "vol1").unwrap();
    assert_eq!(
        (p0.status, p0.base_snap.is_some()),
        (SyncStatus::Stopped, true)
    );
    assert_eq!(
        (p1.status, p1.base_snap.is_some()),
        (SyncStatus::NotSynced, false)
    );
    assert_eq!(
        snapshots(&sim, B),
        0,
        "the secondary took a snapshot while stopped"
    );
    // Restart: vol0 resyncs its delta (nothing), vol1 fully.
    sim.set_throttle(None);
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    let before = sim.array(A).counters().sync_bytes_sent;
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    settle(&mut sim);
    let sent = sim.array(A).counters().sync_bytes_sent - before;
    assert_eq!(
        sent,
        256 * BLOCK_SIZE as u64,
        "vol1 must be sent in full, vol0 not at all"
    );
    assert!(same_data(&mut sim, "vol0") && same_data(&mut sim, "vol1"));
    assert_eq!(
        snapshots(&sim, A) + snapshots(&sim, B),
        0,
        "resync snapshots not deleted"
    );
}

/// "On restart: snapshot the secondary first, send only the differences,
/// the secondary is Syncing meanwhile, then delete the snapshots on both."
#[test]
fn restart_resyncs_only_the_difference_behind_a_secondary_snapshot() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 512);
    start(&mut sim, A);
    sim.link_down(A, B).unwrap();
    for b in [1u64, 2, 3, 100, 101, 300, 301, 302, 303, 511] {
        sim.write(A, "vol0", b, &pattern_block(2, b)).unwrap();
    }
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    let before = sim.array(A).counters().sync_bytes_sent;
    sim.set_throttle(Some(1));
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    sim.step().unwrap();
    assert_eq!(status(&sim, B, "vol0"), SyncStatus::Syncing);
    assert_eq!(
        snapshots(&sim, B),
        1,
        "no pre-resync snapshot on the secondary"
    );
    sim.set_throttle(None);
    settle(&mut sim);
    assert_eq!(
        sim.array(A).counters().sync_bytes_sent - before,
        10 * BLOCK_SIZE as u64
    );
    assert!(same_data(&mut sim, "vol0"));
    assert_eq!(snapshots(&sim, A) + snapshots(&sim, B), 0);
}

/// auto_recover is edge-triggered on link up, and only for groups the link
/// failure stopped; enabling it while the link is up restarts nothing.
#[test]
fn auto_recover_restarts_only_groups_the_link_failure_stopped() {
    let auto = Policies {
        auto_recover: true,
        fail_wrt_on_err: false,
        max_lag_ms: 0,
        max_backlog_bytes: 0,
        retain: replicim::core::DEFAULT_RETAIN,
    };
    let mut sim = pair(SYNC, auto, &["vol0"], 32);
    start(&mut sim, A);
    sim.link_down(A, B).unwrap();
    sim.write(A, "vol0", 3, &pattern_block(3, 3)).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(
        status(&sim, A, "vol0"),
        SyncStatus::Synced,
        "auto_recover did not restart"
    );
    assert!(same_data(&mut sim, "vol0"));

    // Stopped by the operator: a link cycle does not restart it.
    cmd(&mut sim, A, "stoprcopygroup rcg0").unwrap();
    settle(&mut sim);
    sim.link_down(A, B).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Stopped);

    // Without auto_recover the link coming back restarts nothing...
    cmd(&mut sim, A, "setrcopygroup pol no_auto_recover rcg0").unwrap();
    start(&mut sim, A);
    sim.link_down(A, B).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Stopped);
    // ...and enabling it now, with the link already up, restarts nothing...
    cmd(&mut sim, A, "setrcopygroup pol auto_recover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Stopped);
    // ...until the next link-up edge.
    sim.link_down(A, B).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Synced);
}

/// "If the primary fails during that resync ... a failover must bring the
/// secondary back to that consistent point."
#[test]
fn failover_onto_a_secondary_mid_resync_promotes_its_pre_resync_snapshot() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 256);
    for b in 0..64 {
        sim.write(A, "vol0", b, &pattern_block(1, b)).unwrap();
    }
    start(&mut sim, A);
    let consistent = sim.checksum(B, "vol0").unwrap();
    sim.link_down(A, B).unwrap();
    for b in 0..256 {
        sim.write(A, "vol0", b, &pattern_block(2, 1000 + b))
            .unwrap();
    }
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    sim.set_throttle(Some(4));
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    for _ in 0..20 {
        sim.step().unwrap();
    }
    assert_eq!(status(&sim, B, "vol0"), SyncStatus::Syncing);
    assert_ne!(
        sim.checksum(B, "vol0").unwrap(),
        consistent,
        "resync had not started"
    );
    sim.crash(A).unwrap();
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(sim.array(B).group(G).unwrap().role, Role::PrimaryRev);
    assert_eq!(
        sim.checksum(B, "vol0").unwrap(),
        consistent,
        "B was not rolled back"
    );
    assert!(sim.array(B).is_writable("vol0"));
}

/// "recover sends only what differs since the last common point: changed on
/// either side."
#[test]
fn recover_sends_blocks_changed_on_either_side_since_the_common_point() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 1024);
    start(&mut sim, A);
    sim.link_down(A, B).unwrap();
    for b in 10..17 {
        sim.write(A, "vol0", b, &pattern_block(0xa, b)).unwrap(); // 7 on A, never replicated
    }
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    for b in 500..505 {
        sim.write(B, "vol0", b, &pattern_block(0xb, b)).unwrap(); // 5 on B
    }
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(sim.array(A).group(G).unwrap().role, Role::SecondaryRev);
    let before = sim.array(B).counters().sync_bytes_sent;
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(
        sim.array(B).counters().sync_bytes_sent - before,
        12 * BLOCK_SIZE as u64
    );
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Synced);
    assert!(
        same_data(&mut sim, "vol0"),
        "A's own changes were not overwritten"
    );
}

/// "When the evidence is ambiguous, refuse with a clear error that names the
/// explicit full-resync choice. Never guess."
#[test]
fn recover_without_a_common_base_is_refused_and_names_the_full_resync() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 256);
    for b in 0..256 {
        sim.write(A, "vol0", b, &pattern_block(1, b)).unwrap();
    }
    sim.set_throttle(Some(2));
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    for _ in 0..5 {
        sim.step().unwrap();
    }
    sim.link_down(A, B).unwrap(); // initial sync cut: no common base anywhere
    sim.set_throttle(None);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    let before = (
        sim.checksum(A, "vol0").unwrap(),
        sim.checksum(B, "vol0").unwrap(),
    );
    let e = cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap_err();
    assert!(e.contains("recover needs a full resync of vol0"), "{e}");
    assert!(e.contains("setrcopygroup recover -full rcg0"), "{e}");
    settle(&mut sim);
    let after = (
        sim.checksum(A, "vol0").unwrap(),
        sim.checksum(B, "vol0").unwrap(),
    );
    assert_eq!(before, after, "a refused recover changed data");
    cmd(&mut sim, B, "setrcopygroup recover -full rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, A, "vol0"), SyncStatus::Synced);
    assert!(same_data(&mut sim, "vol0"));
}

/// "A command in the wrong state or on the wrong side returns a typed error
/// whose message tells the operator what to do."
#[test]
fn wrong_side_and_wrong_state_are_typed_errors_that_say_what_to_do() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    let e = cmd(&mut sim, B, "startrcopygroup rcg0").unwrap_err();
    assert!(
        e.contains("must be issued on the source") && e.contains("(site-a)"),
        "{e}"
    );
    let e = cmd(&mut sim, A, "syncrcopy rcg0").unwrap_err();
    assert!(e.contains("syncrcopy is for periodic groups"), "{e}");
    let e = cmd(&mut sim, A, "setrcopygroup restore rcg0").unwrap_err();
    assert!(
        e.contains("restore must be issued on the Primary-Rev side"),
        "{e}"
    );
    let e = cmd(&mut sim, A, "startrcopygroup nosuch").unwrap_err();
    assert!(e.contains("nosuch does not exist on site-a"), "{e}");
    sim.crash(A).unwrap();
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    sim.restart(A).unwrap();
    settle(&mut sim);
    let e = cmd(&mut sim, A, "setrcopygroup recover rcg0").unwrap_err();
    assert_eq!(
        e,
        "recover must be issued on the Primary-Rev side (site-b); site-a is Secondary-Rev for group rcg0"
    );
    let err = sim.write(A, "vol0", 0, &pattern_block(1, 1)).unwrap_err();
    assert!(matches!(err, WriteError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("fail over to write here"), "{err}");
}

/// fail_wrt_on_err: host writes fail while the group cannot replicate.
#[test]
fn fail_wrt_on_err_fails_host_writes_while_the_link_is_down() {
    let p = Policies {
        auto_recover: false,
        fail_wrt_on_err: true,
        max_lag_ms: 0,
        max_backlog_bytes: 0,
        retain: replicim::core::DEFAULT_RETAIN,
    };
    let mut sim = pair(SYNC, p, &["vol0"], 32);
    start(&mut sim, A);
    let WriteTicket::Pending { id } = sim.write(A, "vol0", 1, &pattern_block(1, 1)).unwrap() else {
        panic!("not pending")
    };
    sim.link_down(A, B).unwrap(); // the pending write loses its mirror
    let evs = sim.take_events();
    assert!(
        evs.iter()
            .any(|(_, e)| matches!(e, Event::WriteFailed { id: i, .. } if *i == id)),
        "{evs:?}"
    );
    let e = sim.write(A, "vol0", 2, &pattern_block(1, 2)).unwrap_err();
    assert!(matches!(e, WriteError::CannotReplicate { .. }), "{e}");
    // The default policy keeps the application running.
    cmd(&mut sim, A, "setrcopygroup pol no_fail_wrt_on_err rcg0").unwrap();
    let t = sim.write(A, "vol0", 2, &pattern_block(1, 2)).unwrap();
    assert!(
        matches!(
            t,
            WriteTicket::Done {
                replicated: false,
                ..
            }
        ),
        "{t:?}"
    );
    let e = cmd(&mut sim, A, "setrcopygroup mode periodic rcg0");
    assert!(e.is_ok(), "{e:?}");
    let e = cmd(&mut sim, A, "setrcopygroup pol fail_wrt_on_err rcg0").unwrap_err();
    assert!(e.contains("synchronous groups only"), "{e}");
}

/// "A source can have up to eight mirrors"; a synchronous write waits for all.
#[test]
fn a_source_volume_has_at_most_eight_mirrors_and_sync_writes_wait_for_all() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 16);
    for k in 1..8 {
        let g = format!("g{k}");
        cmd(&mut sim, A, &format!("creatercopygroup {g} site-b sync")).unwrap();
        settle(&mut sim);
        cmd(&mut sim, A, &format!("admitrcopyvv vol0 {g} site-b:m{k}")).unwrap();
        settle(&mut sim);
    }
    cmd(&mut sim, A, "creatercopygroup g8 site-b sync").unwrap();
    settle(&mut sim);
    let e = cmd(&mut sim, A, "admitrcopyvv vol0 g8 site-b:m8").unwrap_err();
    assert_eq!(
        e,
        "volume vol0 already has 8 mirrors, the most a source volume can have"
    );
    start(&mut sim, A);
    for k in 1..8 {
        cmd(&mut sim, A, &format!("startrcopygroup g{k}")).unwrap();
    }
    settle(&mut sim);
    sim.take_events();
    let data = pattern_block(0x55, 9);
    let WriteTicket::Pending { id } = sim.write(A, "vol0", 4, &data).unwrap() else {
        panic!()
    };
    settle(&mut sim);
    let evs = sim.take_events();
    let done: Vec<_> = evs
        .iter()
        .filter(|(_, e)| matches!(e, Event::WriteDone { id: i, .. } if *i == id))
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(read(&mut sim, B, "vol0", 4), data);
    for k in 1..8 {
        assert_eq!(read(&mut sim, B, &format!("m{k}"), 4), data, "mirror m{k}");
    }
}

/// Periodic mode: a group-consistent snapshot, only blocks changed since the
/// last cycle (a block overwritten many times is sent once), on schedule.
#[test]
fn periodic_cycles_ship_only_blocks_changed_since_the_last_cycle() {
    let mut sim = pair(
        Mode::Periodic { period_ms: 100 },
        NONE,
        &["vol0", "vol1"],
        128,
    );
    start(&mut sim, A);
    let before = sim.array(A).counters().sync_bytes_sent;
    for i in 0..5 {
        sim.write(A, "vol0", 3, &pattern_block(4, i)).unwrap();
    }
    sim.write(A, "vol1", 7, &pattern_block(5, 1)).unwrap();
    assert!(
        !same_data(&mut sim, "vol0"),
        "periodic mode replicated synchronously"
    );
    sim.take_events();
    sim.advance(150).unwrap();
    settle(&mut sim);
    assert_eq!(
        sim.array(A).counters().sync_bytes_sent - before,
        2 * BLOCK_SIZE as u64
    );
    assert!(same_data(&mut sim, "vol0") && same_data(&mut sim, "vol1"));
    let taken = |evs: &[(String, Event)]| {
        evs.iter()
            .filter(|(_, e)| matches!(e, Event::PointTaken { .. }))
            .count()
    };
    assert!(taken(&sim.take_events()) >= 2, "no cycle ran on schedule");
    sim.advance(300).unwrap();
    assert!(taken(&sim.take_events()) >= 2 * 2, "cycles stopped");
    assert!(sim.array(B).view(G, "vol0").unwrap().when_synced.is_some());
}

/// A crash loses only volatile state: a write in flight is resent.
#[test]
fn a_crash_keeps_writes_that_were_in_flight_for_the_next_resync() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    sim.hold(A, B, true);
    let data = pattern_block(0x31, 31);
    assert!(matches!(
        sim.write(A, "vol0", 9, &data).unwrap(),
        WriteTicket::Pending { .. }
    ));
    sim.crash(A).unwrap();
    sim.hold(A, B, false);
    sim.restart(A).unwrap();
    settle(&mut sim);
    let p = &sim.array(A).group(G).unwrap().pairs[0];
    assert!(p.extra.contains(&9), "the in-flight block was forgotten");
    assert_ne!(read(&mut sim, B, "vol0", 9), data);
    cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(read(&mut sim, B, "vol0", 9), data);
}

/// reverse swaps the natural direction of a stopped, identical group.
#[test]
fn reverse_swaps_the_direction_of_a_stopped_group() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    let e = cmd(&mut sim, B, "setrcopygroup reverse rcg0").unwrap_err();
    assert!(e.contains("is started"), "{e}");
    cmd(&mut sim, A, "stoprcopygroup rcg0").unwrap();
    settle(&mut sim);
    sim.write(A, "vol0", 1, &pattern_block(9, 9)).unwrap();
    let e = cmd(&mut sim, B, "setrcopygroup reverse rcg0");
    settle(&mut sim);
    // A has a change since the stop: the peer refuses, nothing swaps.
    let refused = e.is_err()
        || sim.take_events().iter().any(|(_, ev)| matches!(ev, Event::OperationFailed { reason, .. } if reason.contains("changed since")));
    assert!(refused);
    assert_eq!(sim.array(A).group(G).unwrap().role, Role::Primary);
    start(&mut sim, A);
    cmd(&mut sim, A, "stoprcopygroup rcg0").unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup reverse rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(sim.array(A).group(G).unwrap().role, Role::Secondary);
    assert_eq!(sim.array(B).group(G).unwrap().role, Role::Primary);
    start(&mut sim, B);
    let data = pattern_block(0x66, 66);
    sim.write(B, "vol0", 2, &data).unwrap();
    settle(&mut sim);
    assert_eq!(read(&mut sim, A, "vol0", 2), data);
    assert!(same_data(&mut sim, "vol0"));
}

/// A group made on empty volumes (the usual case for new volumes): the
/// initial sync moves nothing, yet it is a completed sync, so after a
/// failover `recover` resyncs from it.
#[test]
fn an_initial_sync_of_empty_volumes_is_a_common_base() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    settle(&mut sim);
    assert_eq!(status(&sim, B, "vol0"), SyncStatus::Synced);
    sim.crash(A).unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    sim.write(B, "vol0", 3, &pattern_block(0xc1, 1)).unwrap();
    sim.restart(A).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(status(&sim, B, "vol0"), SyncStatus::Synced);
    assert!(same_data(&mut sim, "vol0"));
}

/// Sync runs in batches (`run_batch`, as a real array sends them) move
/// exactly the blocks one-by-one runs move, through a link cut in the
/// middle of the initial sync: both cut it with part of the volume on the
/// target, both then resend the whole volume (no base yet), and both end
/// with the same bytes.
#[test]
fn batched_sync_runs_move_the_same_blocks() {
    let run = |run_batch: u64| {
        let config = replicim::core::ArrayConfig {
            run_batch,
            ..Default::default()
        };
        let mut sim = pair_with(config, SYNC, NONE, &["vol0"], 512);
        for b in 0..300 {
            sim.write(A, "vol0", b, &pattern_block(0x42, b)).unwrap();
        }
        sim.command(A, replicim::core::Command::Start { group: G.into() })
            .unwrap();
        // Step until part of the initial sync reached B, then cut.
        while sim.array(B).counters().bytes_applied < 100 * BLOCK_SIZE as u64 {
            sim.step().unwrap();
        }
        let at_cut = sim.array(B).counters().bytes_applied / BLOCK_SIZE as u64;
        assert!(at_cut < 300, "the sync was cut midway ({at_cut} blocks)");
        assert_eq!(status(&sim, A, "vol0"), SyncStatus::Syncing);
        sim.link_down(A, B).unwrap();
        settle(&mut sim);
        assert_eq!(status(&sim, A, "vol0"), SyncStatus::NotSynced);
        sim.link_up(A, B).unwrap();
        settle(&mut sim);
        let before = sim.array(A).counters().sync_bytes_sent;
        cmd(&mut sim, A, "startrcopygroup rcg0").unwrap();
        settle(&mut sim);
        assert_eq!(status(&sim, A, "vol0"), SyncStatus::Synced);
        assert!(same_data(&mut sim, "vol0"));
        let resent = (sim.array(A).counters().sync_bytes_sent - before) / BLOCK_SIZE as u64;
        (resent, sim.checksum(B, "vol0").unwrap())
    };
    let (one, sum_one) = run(1);
    let (batched, sum_batched) = run(16);
    assert_eq!(one, 512, "a cut initial sync resends the whole volume");
    assert_eq!(batched, one, "batched runs resend the same blocks");
    assert_eq!(sum_batched, sum_one);
}

/// A group belongs to its two arrays: a third array's RemoveGroup (or any
/// message for it) changes nothing. Found reading the core split: removal
/// by a peer did not check which peer asked.
#[test]
fn a_third_array_cannot_remove_a_group_it_does_not_share() {
    let mut sim = pair(Mode::Sync, Policies::default(), &["vol0"], 16);
    start(&mut sim, A);
    sim.add_array("site-c", replicim::core::ArrayConfig::default());
    sim.link_up("site-c", B).unwrap();
    sim.settle(1000).unwrap();
    let refused = sim
        .inject(
            "site-c",
            B,
            replicim::core::Msg::RemoveGroup {
                group: G.into(),
                remove_vv: true,
            },
        )
        .unwrap();
    sim.settle(1000).unwrap();
    assert!(
        sim.array(B).group(G).is_some(),
        "site-c removed site-b's group"
    );
    assert_eq!(status(&sim, B, "vol0"), SyncStatus::Synced);
    println!("site-c's RemoveGroup: {refused:?}; rcg0 still Synced on site-b");
}

/// The read model rebuilt from an older one (sharing what did not change)
/// equals one built afresh after groups are made, changed and removed on
/// both arrays, and its carried pair index finds what a fresh one finds.
#[test]
fn the_read_model_follows_groups_made_changed_and_removed() {
    use replicim::core::Command;
    let mut sim = pair(SYNC, NONE, &["vol0", "vol1", "vol2"], 8);
    let reads = |sim: &replicim::sim::Sim| {
        [A, B].map(|s| {
            let a = sim.array(s);
            let r = a.read_model();
            let _ = r.pairs_of_local("vol0"); // build the index to carry
            (r, a.generation())
        })
    };
    let check =
        |sim: &replicim::sim::Sim, old: &[(replicim::core::ArrayRead, u64); 2], what: &str| {
            for (i, s) in [A, B].into_iter().enumerate() {
                let a = sim.array(s);
                let incr = a.read_model_from(Some((&old[i].0, old[i].1)));
                assert_eq!(incr, a.read_model(), "{s} after {what}");
                assert_eq!(incr.index_mismatch(), None, "{s} after {what}");
            }
        };
    let old = reads(&sim);
    for g in ["rcg1", "rcg2"] {
        sim.command(
            A,
            Command::CreateGroup {
                group: g.into(),
                peer: B.into(),
                mode: SYNC,
                policies: NONE,
            },
        )
        .unwrap();
        settle(&mut sim);
    }
    cmd(&mut sim, A, "admitrcopyvv vol1 rcg1 site-b:vol1").unwrap();
    settle(&mut sim);
    check(&sim, &old, "two groups made, one with a pair");
    let old = reads(&sim);
    cmd(&mut sim, A, "admitrcopyvv vol2 rcg2 site-b:vol2").unwrap();
    settle(&mut sim);
    start(&mut sim, A);
    check(&sim, &old, "a pair admitted, rcg0 started");
    let old = reads(&sim);
    cmd(&mut sim, A, "removercopygroup rcg1").unwrap();
    settle(&mut sim);
    assert!(sim.array(A).group("rcg1").is_none());
    check(&sim, &old, "a group removed");
}

/// Planned failover (link up), issued on the Secondary: refused while the
/// target lacks data; once accepted, the Primary refuses host writes from
/// the start (never both sides writable), a write in flight completes, and
/// the target takes over with every acknowledged write; the Primary is
/// Secondary-Rev, and recover then restore bring the natural roles back.
#[test]
fn a_planned_failover_hands_over_every_acknowledged_write() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    let e = cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap_err();
    assert!(
        e.contains("failover (planned") && e.contains("start it on site-a"),
        "{e}"
    );
    start(&mut sim, A);
    settle(&mut sim);
    let data = pattern_block(7, 1);
    // A write in flight when the failover is asked for.
    let t = sim.write(A, "vol0", 3, &data).unwrap();
    assert!(matches!(t, WriteTicket::Pending { .. }), "{t:?}");
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    let acked = sim
        .take_events()
        .into_iter()
        .any(|(_, e)| matches!(e, Event::WriteDone { .. }));
    assert!(acked, "the write in flight was not acknowledged");
    assert_eq!(sim.array(B).group("rcg0").unwrap().role, Role::PrimaryRev);
    assert_eq!(sim.array(A).group("rcg0").unwrap().role, Role::SecondaryRev);
    assert_eq!(read(&mut sim, B, "vol0", 3), data);
    assert!(sim.array(B).is_writable("vol0"));
    assert!(!sim.array(A).is_writable("vol0"));
    let more = pattern_block(8, 2);
    sim.write(B, "vol0", 9, &more).unwrap();
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup restore rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(sim.array(A).group("rcg0").unwrap().role, Role::Primary);
    assert_eq!(read(&mut sim, A, "vol0", 9), more);
    assert!(same_data(&mut sim, "vol0"));
}

/// While the Primary hands over, it takes no host write; if the link
/// fails before it hears the target take over, it stays so until the link
/// returns and the target says it did not.
#[test]
fn a_hand_over_lost_with_the_link_keeps_the_primary_write_disabled_until_it_knows() {
    let mut sim = pair(SYNC, NONE, &["vol0"], 32);
    start(&mut sim, A);
    settle(&mut sim);
    sim.hold(A, B, true);
    cmd(&mut sim, A, "setrcopygroup failover rcg0").unwrap();
    let e = sim.write(A, "vol0", 1, &pattern_block(1, 1)).unwrap_err();
    assert!(matches!(e, WriteError::Quiesced { .. }), "{e:?}");
    sim.link_down(A, B).unwrap();
    settle(&mut sim);
    assert!(
        !sim.array(A).is_writable("vol0"),
        "writable before it knows"
    );
    assert!(!sim.array(B).is_writable("vol0"));
    sim.hold(A, B, false);
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    assert_eq!(sim.array(A).group("rcg0").unwrap().role, Role::Primary);
    assert!(sim.array(A).is_writable("vol0"));
    assert_eq!(sim.array(B).group("rcg0").unwrap().role, Role::Secondary);
}
