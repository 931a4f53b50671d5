//! Local replicas on the sans-IO core (issue 12): snapshots are
//! points in time that never change, clones are full copies made in steps
//! while the source stays writable, and both survive a crash.

use replicim::core::{
    ArrayConfig, Command, CommandError, Mode, Policies, ReplicaKind, ReplicaOp, VolumeError,
    WriteError, BLOCK_SIZE,
};
use replicim::sim::pattern_block;

use crate::util::*;

const NONE: Policies = Policies {
    auto_recover: false,
    fail_wrt_on_err: false,
    max_lag_ms: 0,
    max_backlog_bytes: 0,
    retain: replicim::core::DEFAULT_RETAIN,
};

fn read(sim: &mut replicim::sim::Sim, vol: &str, block: u64) -> [u8; BLOCK_SIZE] {
    let mut buf = [0u8; BLOCK_SIZE];
    sim.array_mut(A).read(vol, block, &mut buf).unwrap();
    buf
}

fn create(sim: &mut replicim::sim::Sim, name: &str, source: &str, kind: ReplicaKind, into: bool) {
    sim.command(
        A,
        Command::CreateReplica {
            name: name.into(),
            source: source.into(),
            kind,
            into,
        },
    )
    .unwrap();
}

fn modify(sim: &mut replicim::sim::Sim, name: &str, op: ReplicaOp) -> Result<(), CommandError> {
    sim.command(
        A,
        Command::ModifyReplica {
            name: name.into(),
            op,
        },
    )
}

fn write(sim: &mut replicim::sim::Sim, vol: &str, block: u64, fill: u8) -> Result<(), WriteError> {
    sim.write(A, vol, block, &pattern_block(fill, block))
        .map(|_| ())
}

/// A snapshot replica reads as its source did when it was taken, however
/// the source is written after; it refuses writes; Restore rolls the
/// source back to it and keeps it; Resync takes a new point; Return frees
/// it, and then the source can go.
#[test]
fn a_snapshot_replica_is_a_fixed_point_that_restores_its_source() {
    let mut sim = pair(Mode::Sync, NONE, &["vol0"], 16);
    for b in 0..16 {
        write(&mut sim, "vol0", b, 1).unwrap();
    }
    create(&mut sim, "sv0", "vol0", ReplicaKind::Snapshot, false);
    for b in 0..8 {
        write(&mut sim, "vol0", b, 2).unwrap();
    }
    for b in 0..16 {
        assert_eq!(read(&mut sim, "sv0", b), pattern_block(1, b), "block {b}");
    }
    assert!(matches!(
        write(&mut sim, "sv0", 0, 9),
        Err(WriteError::ReadOnlyReplica { .. })
    ));
    let r = sim.array(A).read_model();
    let sv = r.replica("sv0").expect("listed");
    assert_eq!(
        (sv.kind, sv.blocks, sv.saved, sv.copying),
        (ReplicaKind::Snapshot, 16, 8, false)
    );
    assert_eq!(r.volume("sv0"), Some(16), "readable as a volume");
    // A snapshot cannot stand alone.
    let e = modify(&mut sim, "sv0", ReplicaOp::Detach { force: true }).unwrap_err();
    assert!(e.to_string().contains("return it to the pool"), "{e}");
    // The source of a snapshot cannot be deleted before it.
    sim.create_volume(A, "solo", 4).unwrap();
    create(&mut sim, "svs", "solo", ReplicaKind::Snapshot, false);
    let e = sim
        .command(A, Command::DeleteVolume { vol: "solo".into() })
        .unwrap_err();
    assert!(e.to_string().contains("replica svs"), "{e}");
    sim.command(A, Command::DeleteVolume { vol: "svs".into() })
        .unwrap();
    sim.command(A, Command::DeleteVolume { vol: "solo".into() })
        .unwrap();
    // Restore is refused while a started group replicates the source.
    start(&mut sim, A);
    let e = modify(&mut sim, "sv0", ReplicaOp::Restore).unwrap_err();
    assert!(matches!(e, CommandError::NotStopped { .. }), "{e}");
    sim.command(A, Command::Stop { group: G.into() }).unwrap();
    settle(&mut sim);
    modify(&mut sim, "sv0", ReplicaOp::Restore).unwrap();
    for b in 0..16 {
        assert_eq!(
            read(&mut sim, "vol0", b),
            pattern_block(1, b),
            "restored block {b}"
        );
    }
    assert!(sim.array(A).read_model().replica("sv0").is_some(), "kept");
    // The stopped group's base recorded the rollback: a restart resyncs
    // it, and B ends equal to A.
    start(&mut sim, A);
    assert!(same_data(&mut sim, "vol0"));
    // Resync: a new point of the source as it is now, under the same
    // durable identity.
    let id = sim.array(A).read_model().volume_read("sv0").unwrap().id;
    write(&mut sim, "vol0", 3, 5).unwrap();
    modify(&mut sim, "sv0", ReplicaOp::Resync).unwrap();
    assert_eq!(read(&mut sim, "sv0", 3), pattern_block(5, 3));
    assert_eq!(sim.array(A).read_model().volume_read("sv0").unwrap().id, id);
    modify(&mut sim, "sv0", ReplicaOp::Return).unwrap();
    assert!(sim.array(A).read_model().replica("sv0").is_none());
    assert_eq!(sim.array(A).read_model().volume("sv0"), None);
}

/// A clone copies in steps from the point it was asked for: writes to the
/// source during the copy do not reach it, it refuses host writes until
/// complete, and a crash in the middle resumes the copy where the journal
/// left it.
#[test]
fn a_clone_copies_the_point_in_steps_and_resumes_after_a_crash() {
    let config = ArrayConfig {
        promote_budget: 4,
        ..ArrayConfig::default()
    };
    let mut sim = pair_with(config, Mode::Sync, NONE, &["vol0"], 32);
    for b in 0..32 {
        write(&mut sim, "vol0", b, 1).unwrap();
    }
    create(&mut sim, "cp0", "vol0", ReplicaKind::Clone, false);
    write(&mut sim, "vol0", 31, 7).unwrap();
    assert!(matches!(
        write(&mut sim, "cp0", 0, 9),
        Err(WriteError::ReadOnlyReplica { .. })
    ));
    // Two steps of four blocks, then a crash.
    sim.step().unwrap();
    sim.step().unwrap();
    let copied = sim.array(A).read_model().replica("cp0").unwrap().copied;
    assert!(copied > 0 && copied < 32, "copied {copied}");
    sim.crash(A).unwrap();
    sim.restart(A).unwrap();
    let after = sim.array(A).read_model();
    let cp = after.replica("cp0").expect("survives the crash");
    assert!(cp.copying && cp.copied >= 4, "{cp:?}");
    sim.settle(10_000).unwrap();
    let cp = sim.array(A).read_model().replica("cp0").unwrap().clone();
    assert!(!cp.copying && cp.copied == 32, "{cp:?}");
    for b in 0..32 {
        assert_eq!(read(&mut sim, "cp0", b), pattern_block(1, b), "block {b}");
    }
    assert_eq!(
        sim.array(A).volumes().snapshot_count(),
        0,
        "the copy's point is gone"
    );
    // Complete: writable, and detached it is an ordinary volume.
    write(&mut sim, "cp0", 0, 9).unwrap();
    modify(&mut sim, "cp0", ReplicaOp::Detach { force: false }).unwrap();
    assert!(sim.array(A).read_model().replica("cp0").is_none());
    assert_eq!(read(&mut sim, "cp0", 0), pattern_block(9, 0));
}

/// A clone into an existing volume needs the source's size and a volume
/// no group holds; a clone still copying detaches only with Force; a
/// clone is refused when the pool cannot hold it; names are shared with
/// volumes.
#[test]
fn replicas_are_refused_with_reasons() {
    let config = ArrayConfig {
        promote_budget: 1,
        capacity_blocks: 80,
        ..ArrayConfig::default()
    };
    let mut sim = pair_with(config, Mode::Sync, NONE, &["vol0"], 32);
    sim.create_volume(A, "small", 8).unwrap();
    let refuse = |sim: &mut replicim::sim::Sim, name: &str, source: &str, kind, into| {
        sim.command(
            A,
            Command::CreateReplica {
                name: name.into(),
                source: source.into(),
                kind,
                into,
            },
        )
        .unwrap_err()
        .to_string()
    };
    let e = refuse(&mut sim, "small", "vol0", ReplicaKind::Clone, true);
    assert!(e.contains("not the size of the source"), "{e}");
    let e = refuse(&mut sim, "vol0", "small", ReplicaKind::Clone, true);
    assert!(e.contains("rcg0"), "a target in a group: {e}");
    let e = refuse(&mut sim, "small", "vol0", ReplicaKind::Snapshot, false);
    assert!(e.contains("already exists"), "{e}");
    let e = refuse(&mut sim, "x", "nope", ReplicaKind::Snapshot, false);
    assert!(e.contains("does not exist"), "{e}");
    // 80 blocks: vol0 (32) and small (8) leave 40; one clone fits.
    create(&mut sim, "cp0", "vol0", ReplicaKind::Clone, false);
    let e = refuse(&mut sim, "cp1", "vol0", ReplicaKind::Clone, false);
    assert!(e.contains("do not fit in the pool"), "{e}");
    let e = refuse(&mut sim, "sv1", "cp0", ReplicaKind::Snapshot, false);
    assert!(e.contains("still running"), "{e}");
    let e = modify(&mut sim, "cp0", ReplicaOp::Detach { force: false }).unwrap_err();
    assert!(e.to_string().contains("Force"), "{e}");
    let e = modify(&mut sim, "cp0", ReplicaOp::Restore).unwrap_err();
    assert!(e.to_string().contains("snapshot"), "{e}");
    let e = sim
        .command(
            A,
            Command::Admit {
                group: G.into(),
                vol: "cp0".into(),
                remote_vol: "cp0".into(),
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("detach"), "{e}");
    modify(&mut sim, "cp0", ReplicaOp::Detach { force: true }).unwrap();
    // Deleting the (now ordinary) volume frees its space for another.
    sim.command(A, Command::DeleteVolume { vol: "cp0".into() })
        .unwrap();
    create(&mut sim, "cp1", "vol0", ReplicaKind::Clone, false);
    let e = modify(&mut sim, "vol0", ReplicaOp::Return).unwrap_err();
    assert!(
        matches!(e, CommandError::Volume(VolumeError::NotAReplica(_))),
        "{e}"
    );
}
