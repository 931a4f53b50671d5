//! Retained copies on the backup (issue 14): a non-sync group's target
//! keeps its last N complete cycles as named snapshot replicas, stamped
//! with the primary's point time; the oldest beyond the policy goes; a
//! failed-over backup rolls back to one, and `recover` then resends only
//! the blocks that differ; a secondary is refused; copies survive a crash.

use replicim::core::{Mode, Policies, ReplicaKind, ReplicaRead, BLOCK_SIZE};
use replicim::sim::{pattern_block, Sim};

use crate::util::*;

fn retaining(n: u32) -> Policies {
    Policies {
        retain: n,
        ..Policies::default()
    }
}

fn retained(sim: &Sim, side: &str) -> Vec<ReplicaRead> {
    let mut v: Vec<ReplicaRead> = sim
        .array(side)
        .read_model()
        .replicas
        .iter()
        .filter(|r| r.retained.is_some())
        .cloned()
        .collect();
    v.sort_by_key(|r| r.retained.as_ref().unwrap().at);
    v
}

/// A started periodic group (manual cycles) of vol0 and vol1, 32 blocks
/// each, whose backup keeps `retain` cycles.
fn periodic(retain: u32) -> Sim {
    let mut sim = pair(
        Mode::Periodic { period_ms: 0 },
        retaining(retain),
        &["vol0", "vol1"],
        32,
    );
    start(&mut sim, A);
    sim
}

/// The name of the newest copy site-b retains of `vol`.
fn newest_copy(sim: &Sim, vol: &str) -> String {
    retained(sim, B)
        .into_iter()
        .rev()
        .find(|r| r.source == vol)
        .expect("a retained copy")
        .name
}

fn tag(sim: &mut Sim, side: &str, vol: &str, block: u64) -> [u8; BLOCK_SIZE] {
    let mut buf = [0u8; BLOCK_SIZE];
    sim.array_mut(side).read(vol, block, &mut buf).unwrap();
    buf
}

fn sent(sim: &Sim, side: &str) -> u64 {
    let c = sim.array(side).counters();
    (c.sync_bytes_sent + c.write_bytes_sent) / BLOCK_SIZE as u64
}

/// Cycle `n`: blocks 0..8 of both volumes get pattern `n`, then one
/// manual cycle runs to completion. Returns the primary's time of the
/// point.
fn cycle(sim: &mut Sim, n: u8) -> u64 {
    for v in ["vol0", "vol1"] {
        for b in 0..8 {
            sim.write(A, v, b, &pattern_block(n, b)).unwrap();
        }
    }
    sim.advance(5).unwrap();
    let at = sim.now().0;
    cmd(sim, A, "syncrcopy rcg0").unwrap();
    settle(sim);
    at
}

#[test]
fn the_backup_keeps_the_last_n_cycles_with_the_primarys_point_time() {
    let mut sim = periodic(2);
    // The first full sync is a complete cycle too.
    assert_eq!(retained(&sim, B).len(), 2, "one copy per volume");
    let mut points = Vec::new();
    for n in 1..=3 {
        points.push(cycle(&mut sim, n));
    }
    assert!(retained(&sim, A).is_empty(), "the primary keeps none");
    let kept = retained(&sim, B);
    assert_eq!(kept.len(), 4, "2 cycles x 2 volumes: {kept:?}");
    for (i, n) in [(0, 2u8), (2, 3)] {
        for r in &kept[i..i + 2] {
            let x = r.retained.as_ref().unwrap();
            assert_eq!(x.group, G);
            assert_eq!(x.at.0, points[n as usize - 1], "{} point time", r.name);
            assert_eq!(r.taken, x.at);
            assert_eq!(r.kind, ReplicaKind::Snapshot);
            assert!(
                r.name.starts_with(&format!("{}.rc", r.source)),
                "{}",
                r.name
            );
            for b in 0..8 {
                assert_eq!(tag(&mut sim, B, &r.name, b), pattern_block(n, b));
            }
        }
    }
    // The copy of cycle 2 costs the 8 blocks cycle 3 overwrote.
    assert_eq!(kept[0].saved, 8, "{:?}", kept[0]);
    // A copy is read-only.
    assert!(sim.write(B, &kept[0].name, 0, &[1; BLOCK_SIZE]).is_err());
    // Fewer copies: the next cycle drops the oldest down to the policy;
    // none: every copy goes.
    cmd(&mut sim, A, "setrcopygroup pol retain=1 rcg0").unwrap();
    cycle(&mut sim, 4);
    assert_eq!(retained(&sim, B).len(), 2);
    cmd(&mut sim, A, "setrcopygroup pol retain=0 rcg0").unwrap();
    cycle(&mut sim, 5);
    assert!(retained(&sim, B).is_empty());
    assert!(cmd(&mut sim, A, "setrcopygroup pol retain=65 rcg0").is_err());
}

#[test]
fn async_points_are_retained_too_and_survive_a_crash_of_the_backup() {
    let mut sim = pair(Mode::Async, retaining(3), &["vol0", "vol1"], 32);
    start(&mut sim, A);
    for n in 1..=5 {
        for b in 0..4 {
            sim.write(A, "vol0", b, &pattern_block(n, b)).unwrap();
        }
        settle(&mut sim);
    }
    let before = retained(&sim, B);
    assert_eq!(before.len(), 6, "3 points x 2 volumes");
    sim.crash(B).unwrap();
    sim.restart(B).unwrap();
    settle(&mut sim);
    let after = retained(&sim, B);
    for r in &before {
        let again = after.iter().find(|x| x.name == r.name).expect("kept");
        assert_eq!(again.retained, r.retained);
    }
    // The newest copy of vol0 holds the last write.
    let newest = newest_copy(&sim, "vol0");
    assert_eq!(tag(&mut sim, B, &newest, 3), pattern_block(5, 3));
}

/// The rollback: the primary wrote damage that replicated; the
/// backup fails over, rolls back to a retained copy from before it, and
/// `recover` makes the old primary follow while resending only the blocks
/// that differ. A secondary is refused.
#[test]
fn a_failed_over_backup_rolls_back_to_a_retained_copy_and_recover_resends_only_the_difference() {
    let mut sim = periodic(3);
    cycle(&mut sim, 1);
    let good = newest_copy(&sim, "vol0");
    // The damage: 3 blocks of vol0, replicated by the next cycle.
    for b in [1, 5, 20] {
        sim.write(A, "vol0", b, &[0xde; BLOCK_SIZE]).unwrap();
    }
    cmd(&mut sim, A, "syncrcopy rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(tag(&mut sim, B, "vol0", 5), [0xde; BLOCK_SIZE]);
    // Refused on a secondary: the primary would not know what changed.
    cmd(&mut sim, A, "stoprcopygroup rcg0").unwrap();
    settle(&mut sim);
    let e = cmd(&mut sim, B, &format!("promotesv {good}")).unwrap_err();
    assert!(e.contains("setrcopygroup failover rcg0"), "{e}");
    // Fail over, roll back, run, recover.
    sim.link_down(A, B).unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, &format!("promotesv {good}")).unwrap();
    for b in [1, 5, 20] {
        assert_eq!(tag(&mut sim, B, "vol0", b), tag(&mut sim, B, &good, b));
    }
    assert_eq!(tag(&mut sim, B, "vol0", 5), pattern_block(1, 5));
    sim.write(B, "vol1", 30, &pattern_block(9, 30)).unwrap();
    sim.link_up(A, B).unwrap();
    settle(&mut sim);
    let before = sent(&sim, B);
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(
        sent(&sim, B) - before,
        4,
        "the 3 rolled-back blocks and the one written since"
    );
    for v in ["vol0", "vol1"] {
        assert!(same_data(&mut sim, v), "{v}");
    }
}

/// Force delete (issue 14): `removercopygroup` refuses a started group and
/// says `-f`; `-f` stops it first on the source side (refused on the
/// target); the secondary volumes stay as ordinary writable volumes with
/// their data, or with `-removevv` go with the copies the group kept.
#[test]
fn removercopygroup_f_stops_first_and_removevv_chooses_the_volumes_fate() {
    for remove_vv in [false, true] {
        let mut sim = periodic(2);
        cycle(&mut sim, 1);
        assert_eq!(retained(&sim, B).len(), 4);
        let e = cmd(&mut sim, A, "removercopygroup rcg0").unwrap_err();
        assert!(e.contains("without -f") && e.contains("started"), "{e}");
        let e = cmd(&mut sim, B, "removercopygroup -f rcg0").unwrap_err();
        assert!(e.contains("site-a"), "{e}");
        if remove_vv {
            sim.link_down(A, B).unwrap();
            let e = cmd(&mut sim, A, "removercopygroup -f -removevv rcg0").unwrap_err();
            assert!(e.contains("bring the link up"), "{e}");
            sim.link_up(A, B).unwrap();
            settle(&mut sim);
        }
        let line = if remove_vv {
            "removercopygroup -f -removevv rcg0"
        } else {
            "removercopygroup -f rcg0"
        };
        cmd(&mut sim, A, line).unwrap();
        settle(&mut sim);
        for side in [A, B] {
            assert!(sim.array(side).group(G).is_none(), "{side} still has rcg0");
        }
        // The source keeps its volumes either way.
        assert_eq!(tag(&mut sim, A, "vol0", 3), pattern_block(1, 3));
        let b_vols: Vec<String> = sim
            .array(B)
            .read_model()
            .volumes
            .iter()
            .map(|v| v.name.clone())
            .collect();
        if remove_vv {
            assert!(
                !b_vols.iter().any(|v| v.starts_with("vol")),
                "B's volumes and copies are gone: {b_vols:?}"
            );
        } else {
            // Kept, with the data, writable, and the copies kept too.
            assert_eq!(tag(&mut sim, B, "vol1", 3), pattern_block(1, 3));
            sim.write(B, "vol1", 3, &pattern_block(7, 3)).unwrap();
            assert_eq!(tag(&mut sim, B, "vol1", 3), pattern_block(7, 3));
            assert_eq!(retained(&sim, B).len(), 4);
        }
    }
}

/// Online verify (issue 14): a block changed in the target's store behind
/// the array's back is found by digest, without the data crossing the
/// link, and `-repair` resends that block only; in sync mode under host
/// writes made during the verify, and in periodic mode against the last
/// point (with writes since, which are not differences).
#[test]
fn verifyrcopy_finds_a_block_corrupted_behind_the_arrays_back_and_repairs_only_it() {
    use replicim::core::BlockStore;
    for mode in [Mode::Sync, Mode::Periodic { period_ms: 0 }] {
        let mut sim = pair(mode, Policies::default(), &["vol0", "vol1"], 3000);
        start(&mut sim, A);
        for b in 0..64 {
            sim.write(A, "vol1", b * 40, &pattern_block(3, b)).unwrap();
        }
        if !mode.is_sync() {
            cmd(&mut sim, A, "syncrcopy rcg0").unwrap();
        }
        settle(&mut sim);
        // A clean verify: nothing differs.
        cmd(&mut sim, A, "verifyrcopy rcg0").unwrap();
        settle(&mut sim);
        let r = sim
            .array(A)
            .read_model()
            .group(G)
            .unwrap()
            .verify
            .clone()
            .unwrap();
        assert!(!r.running && r.failed.is_none(), "{r:?}");
        assert_eq!((r.compared_blocks, r.differing_count), (6000, 0), "{r:?}");
        // Behind the array's back: one block of B's vol1.
        sim.array_mut(B)
            .store_mut()
            .write_block("vol1", 1234, &[0xee; BLOCK_SIZE])
            .unwrap();
        let c0 = sim.array(A).counters();
        cmd(&mut sim, A, "verifyrcopy rcg0").unwrap();
        // Host writes while it runs (sync: replicated in order with the
        // digests; periodic: after the point, so not differences).
        for b in 0..8 {
            sim.write(A, "vol0", 2000 + b, &pattern_block(4, b))
                .unwrap();
        }
        settle(&mut sim);
        let r = sim
            .array(A)
            .read_model()
            .group(G)
            .unwrap()
            .verify
            .clone()
            .unwrap();
        assert_eq!(
            r.differing,
            vec![("vol1".to_string(), 1234)],
            "{mode:?} {r:?}"
        );
        let c1 = sim.array(A).counters();
        assert_eq!(
            c1.sync_bytes_sent, c0.sync_bytes_sent,
            "no block data was sent by the verify"
        );
        // Repair: exactly that block crosses the link.
        cmd(&mut sim, A, "verifyrcopy -repair rcg0").unwrap();
        settle(&mut sim);
        let c2 = sim.array(A).counters();
        let resent = (c2.sync_bytes_sent - c1.sync_bytes_sent) / BLOCK_SIZE as u64;
        let pending = if mode.is_sync() { 0 } else { 8 };
        assert_eq!(
            resent,
            1 + pending,
            "{mode:?}: the corrupted block (and, periodic, the 8 written since the point)"
        );
        assert_eq!(
            tag(&mut sim, B, "vol1", 1234),
            tag(&mut sim, A, "vol1", 1234)
        );
        for v in ["vol0", "vol1"] {
            assert!(same_data(&mut sim, v), "{mode:?} {v}");
        }
        // A verify after the repair finds nothing.
        cmd(&mut sim, A, "verifyrcopy rcg0").unwrap();
        settle(&mut sim);
        let r = sim
            .array(A)
            .read_model()
            .group(G)
            .unwrap()
            .verify
            .clone()
            .unwrap();
        assert_eq!(r.differing_count, 0, "{mode:?} {r:?}");
    }
}

/// The README's sequence: a planned failover (link up), then the rollback
/// on the new Primary-Rev, then `recover` resends only what differs.
#[test]
fn a_planned_failover_then_a_rollback_then_recover_resends_only_the_difference() {
    let mut sim = periodic(3);
    cycle(&mut sim, 1);
    let good = newest_copy(&sim, "vol0");
    for b in [2, 5] {
        sim.write(A, "vol0", b, &[0xde; BLOCK_SIZE]).unwrap();
    }
    cmd(&mut sim, A, "syncrcopy rcg0").unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, "setrcopygroup failover rcg0").unwrap();
    settle(&mut sim);
    cmd(&mut sim, B, &format!("promotesv {good}")).unwrap();
    assert_eq!(tag(&mut sim, B, "vol0", 5), pattern_block(1, 5));
    let before = sent(&sim, B);
    cmd(&mut sim, B, "setrcopygroup recover rcg0").unwrap();
    settle(&mut sim);
    assert_eq!(sent(&sim, B) - before, 2, "the 2 rolled-back blocks");
    for v in ["vol0", "vol1"] {
        assert!(same_data(&mut sim, v), "{v}");
    }
}
