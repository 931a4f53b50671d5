//! Both block stores honour the `BlockStore` contract, and snapshots built on
//! them have the properties the core relies on.

use replicim::core::{BlockStore, SnapId, Volumes, BLOCK_SIZE};
use replicim::sim::pattern_block;
use replicim::store::{FileStore, MemStore};

fn contract(store: &mut dyn BlockStore) {
    store.create_volume("v", 8).unwrap();
    assert!(
        store.create_volume("v", 8).is_err(),
        "duplicate volume accepted"
    );
    let mut buf = [1u8; BLOCK_SIZE];
    store.read_block("v", 3, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "unwritten block is not zero");
    store.write_block("v", 3, &pattern_block(0xaa, 7)).unwrap();
    store.read_block("v", 3, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(0xaa, 7));
    let e = store.write_block("v", 8, &buf).unwrap_err();
    assert!(e.to_string().contains("beyond the end"), "{e}");
    assert!(store.read_block("nope", 0, &mut buf).is_err());
    assert_eq!(store.allocated_blocks("v").unwrap(), vec![3]);

    store.save_create(SnapId(9)).unwrap();
    assert_eq!(store.save_put(SnapId(9), &pattern_block(1, 1)).unwrap(), 0);
    assert_eq!(store.save_put(SnapId(9), &pattern_block(2, 2)).unwrap(), 1);
    store.save_get(SnapId(9), 1, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(2, 2));
    assert!(store.save_get(SnapId(9), 5, &mut buf).is_err());
    store.save_delete(SnapId(9)).unwrap();
    assert!(store.save_get(SnapId(9), 0, &mut buf).is_err());
    store.flush().unwrap();
    store.delete_volume("v").unwrap();
    assert!(store.read_block("v", 0, &mut buf).is_err());
}

#[test]
fn mem_store_honours_the_contract() {
    contract(&mut MemStore::new());
}

#[test]
fn file_store_honours_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&mut FileStore::open(dir.path()).unwrap());
}

#[test]
fn file_store_volumes_are_sparse_files_that_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = FileStore::open(dir.path()).unwrap();
        s.create_volume("vol0", 16384).unwrap(); // 64 MiB
        s.write_block("vol0", 1000, &pattern_block(0x42, 1))
            .unwrap();
        s.save_create(SnapId(3)).unwrap();
        s.save_put(SnapId(3), &pattern_block(0x43, 2)).unwrap();
        s.flush().unwrap();
    }
    let img = dir.path().join("volumes/vol0.img");
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "image is not sparse: {} bytes used",
        meta.blocks() * 512
    );
    let mut s = FileStore::open(dir.path()).unwrap();
    let mut buf = [0u8; BLOCK_SIZE];
    s.read_block("vol0", 1000, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(0x42, 1));
    s.save_get(SnapId(3), 0, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(0x43, 2));
}

#[test]
fn file_store_refuses_names_that_escape_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FileStore::open(dir.path()).unwrap();
    for bad in ["../x", "a/b", "", ".hidden"] {
        let e = s.create_volume(bad, 1).unwrap_err();
        assert!(e.to_string().contains("volume names are"), "{bad}: {e}");
    }
}

fn snapshot_properties(store: &mut dyn BlockStore) {
    let mut v = Volumes::default();
    v.create(store, "vol", 64).unwrap();
    for b in 0..64 {
        v.write(store, "vol", b, &pattern_block(1, b)).unwrap();
    }
    // O(1): taking a snapshot copies nothing.
    let s = v.snapshot(store, "vol", 5).unwrap();
    assert_eq!(v.changed_count(s), 0);
    // Readable while the base changes; changed set is exactly what was written.
    for b in [3u64, 7, 7, 40] {
        v.write(store, "vol", b, &pattern_block(2, 100 + b))
            .unwrap();
    }
    let mut buf = [0u8; BLOCK_SIZE];
    v.read_snap(store, s, 7, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(1, 7), "snapshot shows the new data");
    v.read_snap(store, s, 8, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(1, 8));
    assert_eq!(
        v.changed_since(s).into_iter().collect::<Vec<_>>(),
        vec![3, 7, 40]
    );
    // A second snapshot sees the second state and tracks its own changes.
    let s2 = v.snapshot(store, "vol", 6).unwrap();
    v.write(store, "vol", 9, &pattern_block(3, 9)).unwrap();
    assert_eq!(v.changed_since(s2).into_iter().collect::<Vec<_>>(), vec![9]);
    assert_eq!(
        v.changed_since(s).into_iter().collect::<Vec<_>>(),
        vec![3, 7, 9, 40]
    );
    // Promoting the first rolls the base back to it; the second stays valid.
    v.promote(store, s).unwrap();
    for b in 0..64 {
        v.read(store, "vol", b, &mut buf).unwrap();
        assert_eq!(buf, pattern_block(1, b), "block {b} not rolled back");
    }
    v.read_snap(store, s2, 7, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(2, 107));
    v.read_snap(store, s2, 9, &mut buf).unwrap();
    assert_eq!(buf, pattern_block(1, 9));
    assert!(
        v.snapshot_meta(s).is_none(),
        "promoted snapshot still listed"
    );
    assert!(
        v.delete(store, "vol").is_err(),
        "volume with a snapshot deleted"
    );
    v.delete_snap(store, s2).unwrap();
    v.delete(store, "vol").unwrap();
}

#[test]
fn snapshots_on_memory() {
    snapshot_properties(&mut MemStore::new());
}

#[test]
fn snapshots_on_files() {
    let dir = tempfile::tempdir().unwrap();
    snapshot_properties(&mut FileStore::open(dir.path()).unwrap());
}

/// "Blocks changed since S" costs time in the changed blocks, not the volume:
/// on a 1 GiB (sparse, in-memory) volume with 3 changes, it returns at once.
#[test]
fn changed_since_does_not_scan_unchanged_blocks() {
    let mut store = MemStore::new();
    let mut v = Volumes::default();
    v.create(&mut store, "big", 262_144).unwrap();
    let s = v.snapshot(&mut store, "big", 1).unwrap();
    for b in [5u64, 100_000, 262_143] {
        v.write(&mut store, "big", b, &pattern_block(9, b)).unwrap();
    }
    assert_eq!(v.changed_since(s).len(), 3);
    assert_eq!(v.snapshot_meta(s).unwrap().saved.len(), 3);
}

/// The core on two file stores: real bytes land in real files on both sides.
#[test]
fn the_core_replicates_between_two_file_stores() {
    use replicim::core::{Array, ArrayConfig, Command, Mode, Policies, Tick};
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Array::new(
        "site-a",
        FileStore::open(da.path()).unwrap(),
        ArrayConfig::default(),
    );
    let mut b = Array::new(
        "site-b",
        FileStore::open(db.path()).unwrap(),
        ArrayConfig::default(),
    );
    let mut now = Tick(0);
    fn pump(a: &mut Array<FileStore>, b: &mut Array<FileStore>, now: Tick) {
        loop {
            let mut moved = false;
            while let Some((_, m)) = a.poll_transmit() {
                b.handle_message(now, "site-a", m).unwrap();
                moved = true;
            }
            while let Some((_, m)) = b.poll_transmit() {
                a.handle_message(now, "site-b", m).unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
    a.handle_link_up(now, "site-b");
    b.handle_link_up(now, "site-a");
    pump(&mut a, &mut b, now);
    a.create_volume("vol0", 1024).unwrap();
    for blk in (0..1024).step_by(7) {
        a.write(now, "vol0", blk, &pattern_block(0x3c, blk))
            .unwrap();
    }
    a.command(
        now,
        Command::CreateGroup {
            group: "rcg0".into(),
            peer: "site-b".into(),
            mode: Mode::Sync,
            policies: Policies::default(),
        },
    )
    .unwrap();
    pump(&mut a, &mut b, now);
    a.command(
        now,
        Command::Admit {
            group: "rcg0".into(),
            vol: "vol0".into(),
            remote_vol: "vol0".into(),
        },
    )
    .unwrap();
    pump(&mut a, &mut b, now);
    a.command(
        now,
        Command::Start {
            group: "rcg0".into(),
        },
    )
    .unwrap();
    pump(&mut a, &mut b, now);
    now = now.plus(1);
    a.write(now, "vol0", 3, &pattern_block(0x4d, 3)).unwrap();
    pump(&mut a, &mut b, now);
    a.store_mut().flush().unwrap();
    b.store_mut().flush().unwrap();
    let fa = std::fs::read(da.path().join("volumes/vol0.img")).unwrap();
    let fb = std::fs::read(db.path().join("volumes/vol0.img")).unwrap();
    assert_eq!(fa.len(), 4 << 20);
    assert!(fa == fb, "volume files differ after replication");
    assert_eq!(&fb[3 * 4096..3 * 4096 + 8], &3u64.to_le_bytes());
}
