//! Volumes and copy-on-write snapshots.
//!
//! A snapshot is a map `block -> save slot` of the blocks overwritten in the
//! base since the snapshot was taken, holding their old contents. So:
//!
//! * taking a snapshot is O(1): an empty map;
//! * reading block `b` of snapshot `S` is `S.saved[b]` if present, else the
//!   base's block (unchanged since `S`);
//! * "blocks changed since `S`" is the key set of `S.saved`: no scan of
//!   unchanged blocks;
//! * promoting `S` writes its saved blocks back into the base (rolling the
//!   base back to `S`) and then drops `S`.
//!
//! The maps are metadata (they survive a crash in the model); the block
//! contents live in the [`BlockStore`].

use std::collections::{BTreeMap, BTreeSet};

mod replicas;
pub use replicas::{LegacyReplicaMeta, ReplicaKind, ReplicaMeta, Retained};

use super::store::{BlockStore, StoreError};
use super::tracked::TrackedMap;
use super::types::{Block, SnapId, BLOCK_SIZE};

/// Metadata of one snapshot.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapMeta {
    pub vol: String,
    /// The replication generation this snapshot stands for (the common point
    /// it records). 0 means "no generation".
    pub gen: u64,
    /// Blocks overwritten since the snapshot, and where their old data is.
    pub saved: BTreeMap<u64, u64>,
}

/// Metadata of one volume.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VolMeta {
    pub blocks: u64,
    pub snaps: Vec<SnapId>,
    /// Unique on this array for ever (from the counter snapshots are
    /// numbered from), for the volume's durable Name. Added 2026-12-01:
    /// `LegacyVolMeta` reads the entries written before.
    pub serial: u64,
}

/// A volume's metadata as written before 2026-12-01 (no serial).
#[derive(serde::Deserialize)]
pub struct LegacyVolMeta {
    pub blocks: u64,
    pub snaps: Vec<SnapId>,
}

impl From<LegacyVolMeta> for VolMeta {
    fn from(v: LegacyVolMeta) -> VolMeta {
        VolMeta {
            blocks: v.blocks,
            snaps: v.snaps,
            serial: 0,
        }
    }
}

/// The durable parts of [`Volumes`]: the volume table, the snapshot
/// counter, the snapshots and the replicas.
pub type VolumeParts<'a> = (
    &'a BTreeMap<String, VolMeta>,
    u64,
    &'a BTreeMap<SnapId, SnapMeta>,
    &'a BTreeMap<String, ReplicaMeta>,
);

/// All volumes and snapshots of one array.
#[derive(Clone, Debug)]
pub struct Volumes {
    vols: TrackedMap<String, VolMeta>,
    snaps: TrackedMap<SnapId, SnapMeta>,
    /// Local replicas by name (`replicas.rs`).
    replicas: TrackedMap<String, ReplicaMeta>,
    next_snap: u64,
    /// A volume was made or deleted since `take_table_changed` (a
    /// snapshot taken or dropped changes a volume's entry, not the list of
    /// volumes and sizes readers see).
    listing_changed: bool,
}

/// Why a volume-level request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0} does not exist")]
    NoSuchVolume(String),
    #[error("volume {0} already exists")]
    Exists(String),
    #[error("block {block} is beyond the end of volume {vol} ({blocks} blocks of 4 KiB)")]
    OutOfRange {
        vol: String,
        block: u64,
        blocks: u64,
    },
    #[error("volume {0} still has snapshots; delete them first")]
    HasSnapshots(String),
    #[error("volume {vol} has replica {replica}, which still depends on its blocks; return the replica first (removevv {replica}, or ModifyReplicaSynchronization 19)")]
    HasReplica { vol: String, replica: String },
    #[error("{0} is not a local replica (snapshot or clone) of this array")]
    NotAReplica(String),
    #[error("volume {vol} cannot be the source of a replica: {why}")]
    NotASource { vol: String, why: String },
    #[error("{vol} is {what}; {hint}")]
    ReplicaState {
        vol: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error(transparent)]
    BadName(#[from] super::names::NameError),
    #[error("volume {vol}: {blocks} blocks is not a size this array supports (1 to {max} blocks of 4 KiB)")]
    BadSize { vol: String, blocks: u64, max: u64 },
    #[error("volume {vol}: {} do not fit in the pool ({} free); delete volumes (removevv) or give the array more capacity ([array] capacity_gib)", size_text(*blocks), size_text(*free))]
    PoolFull { vol: String, blocks: u64, free: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A size in blocks as an operator reads it (MiB or GiB, rounded down).
fn size_text(blocks: u64) -> String {
    let mib = (blocks * super::BLOCK_SIZE as u64) >> 20;
    if mib >= 10 * 1024 {
        format!("{} GiB", mib >> 10)
    } else {
        format!("{mib} MiB")
    }
}

impl Default for Volumes {
    fn default() -> Self {
        Volumes {
            vols: TrackedMap::default(),
            snaps: TrackedMap::default(),
            replicas: TrackedMap::default(),
            next_snap: 0,
            listing_changed: true,
        }
    }
}

impl Volumes {
    /// The volume table and snapshot counter, the snapshots and the
    /// replicas, apart: a shell persists each entry under its own key.
    pub fn parts(&self) -> VolumeParts<'_> {
        (&self.vols, self.next_snap, &self.snaps, &self.replicas)
    }

    /// The volumes, snapshots and replicas whose metadata may have changed
    /// since the last call (one no longer listed was deleted).
    pub fn take_touched(&mut self) -> (BTreeSet<String>, BTreeSet<SnapId>, BTreeSet<String>) {
        (
            self.vols.take_touched(),
            self.snaps.take_touched(),
            self.replicas.take_touched(),
        )
    }

    /// Whether a volume was made or deleted since the last call, for the
    /// read model's list of volumes.
    pub fn take_table_changed(&mut self) -> bool {
        std::mem::take(&mut self.listing_changed)
    }

    /// Whether a volume was made or deleted since `take_table_changed`.
    pub fn table_changing(&self) -> bool {
        self.listing_changed
    }

    /// Rebuilds the table from [`Volumes::parts`].
    pub fn from_parts(
        vols: BTreeMap<String, VolMeta>,
        next_snap: u64,
        snaps: BTreeMap<SnapId, SnapMeta>,
        replicas: BTreeMap<String, ReplicaMeta>,
    ) -> Volumes {
        let mut v = Volumes {
            vols: TrackedMap::from_map(vols),
            snaps: TrackedMap::from_map(snaps),
            replicas: TrackedMap::from_map(replicas),
            next_snap,
            listing_changed: true,
        };
        // Volumes written before serials existed get theirs now, in name
        // order (the next commit records them; until then a restart gives
        // the same ones).
        let unnumbered: Vec<String> = v
            .vols
            .iter()
            .filter(|(_, m)| m.serial == 0)
            .map(|(n, _)| n.clone())
            .collect();
        for name in unnumbered {
            let serial = v.next_serial();
            v.vols.get_mut(&name).expect("listed").serial = serial;
        }
        v
    }

    /// A number never given before on this array (shared with snapshot
    /// ids; never 0).
    pub(super) fn next_serial(&mut self) -> u64 {
        self.next_snap += 1;
        self.next_snap
    }

    pub fn exists(&self, vol: &str) -> bool {
        self.vols.contains_key(vol)
    }

    /// Blocks the volumes take at their full size, and the blocks snapshot
    /// replicas hold apart from their sources (O(volumes + replicas)).
    pub fn used_blocks(&self) -> u64 {
        let saved: usize = self
            .replicas
            .values()
            .filter(|r| r.kind == ReplicaKind::Snapshot)
            .filter_map(|r| r.snap)
            .map(|s| self.changed_count(s))
            .sum();
        self.vols.values().map(|m| m.blocks).sum::<u64>() + saved as u64
    }

    pub fn meta(&self, vol: &str) -> Option<&VolMeta> {
        self.vols.get(vol)
    }

    pub fn names(&self) -> impl Iterator<Item = (&String, &VolMeta)> {
        self.vols.iter()
    }

    pub fn snapshot_meta(&self, snap: SnapId) -> Option<&SnapMeta> {
        self.snaps.get(&snap)
    }

    pub fn snapshot_count(&self) -> usize {
        self.snaps.len()
    }

    pub fn create(
        &mut self,
        store: &mut dyn BlockStore,
        vol: &str,
        blocks: u64,
    ) -> Result<(), VolumeError> {
        super::names::volume(vol)?;
        if blocks == 0 || blocks > super::names::MAX_VOLUME_BLOCKS {
            return Err(VolumeError::BadSize {
                vol: vol.to_string(),
                blocks,
                max: super::names::MAX_VOLUME_BLOCKS,
            });
        }
        if self.vols.contains_key(vol) || self.replicas.contains_key(vol) {
            return Err(VolumeError::Exists(vol.to_string()));
        }
        store.create_volume(vol, blocks)?;
        let serial = self.next_serial();
        self.vols.insert(
            vol.to_string(),
            VolMeta {
                blocks,
                snaps: Vec::new(),
                serial,
            },
        );
        self.listing_changed = true;
        Ok(())
    }

    pub fn delete(&mut self, store: &mut dyn BlockStore, vol: &str) -> Result<(), VolumeError> {
        let meta = self
            .vols
            .get(vol)
            .ok_or_else(|| VolumeError::NoSuchVolume(vol.to_string()))?;
        if let Some(replica) = self
            .replicas_of(vol)
            .find(|r| self.replicas[*r].snap.is_some())
        {
            return Err(VolumeError::HasReplica {
                vol: vol.to_string(),
                replica: replica.clone(),
            });
        }
        if !meta.snaps.is_empty() {
            return Err(VolumeError::HasSnapshots(vol.to_string()));
        }
        // Complete clones are independent copies: they lose only their
        // association with the source.
        let clones: Vec<String> = self.replicas_of(vol).cloned().collect();
        for c in clones {
            self.replicas.remove(&c);
        }
        if let Some(r) = self.replicas.remove(vol) {
            debug_assert!(r.snap.is_none(), "a clone still copying has its point");
        }
        store.delete_volume(vol)?;
        self.vols.remove(vol);
        self.listing_changed = true;
        Ok(())
    }

    /// Blocks `first .. first + n` are all in `vol`: the whole range, or
    /// nothing, may then be written.
    pub fn check_range(&self, vol: &str, first: u64, n: u64) -> Result<(), VolumeError> {
        let meta = self
            .vols
            .get(vol)
            .ok_or_else(|| VolumeError::NoSuchVolume(vol.to_string()))?;
        match first.checked_add(n) {
            Some(end) if end <= meta.blocks => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                vol: vol.to_string(),
                block: first.max(meta.blocks),
                blocks: meta.blocks,
            }),
        }
    }

    fn check(&self, vol: &str, block: u64) -> Result<&VolMeta, VolumeError> {
        let meta = self
            .vols
            .get(vol)
            .ok_or_else(|| VolumeError::NoSuchVolume(vol.to_string()))?;
        if block >= meta.blocks {
            return Err(VolumeError::OutOfRange {
                vol: vol.to_string(),
                block,
                blocks: meta.blocks,
            });
        }
        Ok(meta)
    }

    pub fn read(
        &self,
        store: &mut dyn BlockStore,
        vol: &str,
        block: u64,
        out: &mut Block,
    ) -> Result<(), VolumeError> {
        if !self.vols.contains_key(vol) {
            if let Some(snap) = self.replicas.get(vol).and_then(|r| r.snap) {
                return self.read_snap(store, snap, block, out);
            }
        }
        self.check(vol, block)?;
        store.read_block(vol, block, out)?;
        Ok(())
    }

    /// Writes the base, first preserving the old contents for every snapshot
    /// of the volume that has not preserved this block yet.
    pub fn write(
        &mut self,
        store: &mut dyn BlockStore,
        vol: &str,
        block: u64,
        data: &Block,
    ) -> Result<(), VolumeError> {
        self.write_except(store, vol, block, data, None)
    }

    fn write_except(
        &mut self,
        store: &mut dyn BlockStore,
        vol: &str,
        block: u64,
        data: &Block,
        skip: Option<SnapId>,
    ) -> Result<(), VolumeError> {
        let meta = self.check(vol, block)?;
        let needing: Vec<SnapId> = meta
            .snaps
            .iter()
            .copied()
            .filter(|s| Some(*s) != skip && !self.snaps[s].saved.contains_key(&block))
            .collect();
        if !needing.is_empty() {
            let mut old = [0u8; BLOCK_SIZE];
            store.read_block(vol, block, &mut old)?;
            for s in needing {
                let slot = store.save_put(s, &old)?;
                self.snaps
                    .get_mut(&s)
                    .expect("snapshot listed on its volume")
                    .saved
                    .insert(block, slot);
            }
        }
        store.write_block(vol, block, data)?;
        Ok(())
    }

    /// A block of a sync run applied on the target: through the store's
    /// bulk path when no snapshot of the volume needs its old data.
    pub fn write_run(
        &mut self,
        store: &mut dyn BlockStore,
        vol: &str,
        block: u64,
        data: &Block,
    ) -> Result<(), VolumeError> {
        if self.check(vol, block)?.snaps.is_empty() {
            Ok(store.write_block_bulk(vol, block, data)?)
        } else {
            self.write(store, vol, block, data)
        }
    }

    /// Takes a snapshot of `vol`. O(1): no data is copied.
    pub fn snapshot(
        &mut self,
        store: &mut dyn BlockStore,
        vol: &str,
        gen: u64,
    ) -> Result<SnapId, VolumeError> {
        if !self.vols.contains_key(vol) {
            return Err(VolumeError::NoSuchVolume(vol.to_string()));
        }
        let id = SnapId(self.next_snap);
        self.next_snap += 1;
        store.save_create(id)?;
        self.snaps.insert(
            id,
            SnapMeta {
                vol: vol.to_string(),
                gen,
                saved: BTreeMap::new(),
            },
        );
        self.vols.get_mut(vol).expect("checked").snaps.push(id);
        Ok(id)
    }

    /// Records the generation a snapshot stands for once it is known.
    pub fn set_gen(&mut self, snap: SnapId, gen: u64) {
        if let Some(m) = self.snaps.get_mut(&snap) {
            m.gen = gen;
        }
    }

    /// Reads block `block` as it was when `snap` was taken.
    pub fn read_snap(
        &self,
        store: &mut dyn BlockStore,
        snap: SnapId,
        block: u64,
        out: &mut Block,
    ) -> Result<(), VolumeError> {
        let meta = self
            .snaps
            .get(&snap)
            .ok_or_else(|| VolumeError::NoSuchVolume(format!("snapshot {}", snap.0)))?;
        self.check(&meta.vol, block)?;
        match meta.saved.get(&block) {
            Some(slot) => store.save_get(snap, *slot, out)?,
            None => store.read_block(&meta.vol, block, out)?,
        }
        Ok(())
    }

    /// Blocks written in the base since `snap` was taken.
    pub fn changed_since(&self, snap: SnapId) -> BTreeSet<u64> {
        self.snaps
            .get(&snap)
            .map(|m| m.saved.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Number of blocks changed since `snap`.
    pub fn changed_count(&self, snap: SnapId) -> usize {
        self.snaps.get(&snap).map(|m| m.saved.len()).unwrap_or(0)
    }

    /// Rolls the base back towards `snap`, at most `budget` blocks at a time.
    /// Returns true when the base equals the snapshot; the snapshot is then
    /// deleted. Idempotent across crashes: each restored block leaves the map
    /// before the next one is written.
    pub fn promote_step(
        &mut self,
        store: &mut dyn BlockStore,
        snap: SnapId,
        budget: usize,
    ) -> Result<bool, VolumeError> {
        let vol = match self.snaps.get(&snap) {
            Some(m) => m.vol.clone(),
            None => return Ok(true),
        };
        let mut buf = [0u8; BLOCK_SIZE];
        for _ in 0..budget {
            let next = self
                .snaps
                .get(&snap)
                .and_then(|m| m.saved.first_key_value());
            let Some((&block, &slot)) = next else { break };
            store.save_get(snap, slot, &mut buf)?;
            self.write_except(store, &vol, block, &buf, Some(snap))?;
            self.snaps
                .get_mut(&snap)
                .expect("exists")
                .saved
                .remove(&block);
        }
        if self
            .snaps
            .get(&snap)
            .map(|m| m.saved.is_empty())
            .unwrap_or(true)
        {
            self.delete_snap(store, snap)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Rolls the base all the way back to `snap` and deletes it.
    pub fn promote(&mut self, store: &mut dyn BlockStore, snap: SnapId) -> Result<(), VolumeError> {
        while !self.promote_step(store, snap, usize::MAX)? {}
        Ok(())
    }

    pub fn delete_snap(
        &mut self,
        store: &mut dyn BlockStore,
        snap: SnapId,
    ) -> Result<(), VolumeError> {
        if let Some(meta) = self.snaps.remove(&snap) {
            if let Some(v) = self.vols.get_mut(&meta.vol) {
                v.snaps.retain(|s| *s != snap);
            }
            store.save_delete(snap)?;
        }
        Ok(())
    }
}
