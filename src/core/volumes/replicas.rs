//! Local replicas a console or an admin asks for by name (SMI-S
//! CreateElementReplica SyncType 7 and 8, rcopy `createsv`/`createvvcopy`):
//!
//! * a **snapshot** is a named copy-on-write point of its source volume: a
//!   snapshot of the [`Volumes`] table (O(1) to take), read through it, and
//!   never written;
//! * a **clone** is a new volume of the source's size that receives a full
//!   copy of the source as it was when the clone was asked for. The copy
//!   reads a snapshot of that instant, so the source stays writable, and
//!   runs in steps ([`Volumes::clone_step`]); the clone refuses host writes
//!   until it is complete, then it is an ordinary volume that keeps its
//!   association with the source until it is detached.
//!
//! A replica's name is a volume name: replicas and volumes share one
//! namespace (both are NBD exports and CIM_StorageVolume instances).
//! Replicas are never group members and never resync bases: the groups use
//! snapshots of their own.

use super::*;
use crate::core::types::Tick;

/// What kind of local replica.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaKind {
    Snapshot,
    Clone,
}

/// Metadata of one local replica (durable).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReplicaMeta {
    pub source: String,
    pub kind: ReplicaKind,
    /// Snapshot: its copy-on-write point. Clone: the point being copied
    /// (None once the copy is complete).
    pub snap: Option<SnapId>,
    /// When the point was taken (array time).
    pub taken: Tick,
    /// Clone: blocks copied so far, from block 0 up.
    pub copied: u64,
    /// Clone: the target was all zeroes when the copy began, so zero
    /// blocks need not be written.
    pub fresh: bool,
    /// Unique on this array for ever (the counter volume serials come
    /// from): a snapshot's durable Name, kept through resyncs.
    pub serial: u64,
    /// A retained copy a remote-copy group keeps on its backup (None: a
    /// replica someone asked for).
    pub retained: Option<Retained>,
}

/// What a retained copy is a copy of: one complete cycle of a group, as
/// the backup received it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    pub group: String,
    /// The primary's time of the point (when the cycle froze its volumes).
    pub at: Tick,
    /// The name an application-consistent sync point was given.
    pub label: Option<String>,
}

/// A replica entry as written before retained copies (2026-12-01); field
/// order is the format.
#[derive(serde::Deserialize)]
pub struct LegacyReplicaMeta {
    source: String,
    kind: ReplicaKind,
    snap: Option<SnapId>,
    taken: Tick,
    copied: u64,
    fresh: bool,
    serial: u64,
}

impl From<LegacyReplicaMeta> for ReplicaMeta {
    fn from(l: LegacyReplicaMeta) -> ReplicaMeta {
        ReplicaMeta {
            source: l.source,
            kind: l.kind,
            snap: l.snap,
            taken: l.taken,
            copied: l.copied,
            fresh: l.fresh,
            serial: l.serial,
            retained: None,
        }
    }
}

impl ReplicaMeta {
    /// A clone whose copy is still running.
    pub fn copying(&self) -> bool {
        self.kind == ReplicaKind::Clone && self.snap.is_some()
    }
}

impl Volumes {
    pub fn replica(&self, name: &str) -> Option<&ReplicaMeta> {
        self.replicas.get(name)
    }

    pub fn replicas(&self) -> &BTreeMap<String, ReplicaMeta> {
        &self.replicas
    }

    /// The size of a readable volume: a volume, or a snapshot replica
    /// (its source's size).
    pub fn readable_blocks(&self, name: &str) -> Option<u64> {
        match self.vols.get(name) {
            Some(m) => Some(m.blocks),
            None => {
                let r = self.replicas.get(name)?;
                self.vols.get(&r.source).map(|m| m.blocks)
            }
        }
    }

    /// The replicas made from `vol`, by name.
    pub fn replicas_of<'a>(&'a self, vol: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.replicas
            .iter()
            .filter(move |(_, r)| r.source == vol)
            .map(|(n, _)| n)
    }

    fn check_new_replica(&self, name: &str, source: &str) -> Result<u64, VolumeError> {
        crate::core::names::volume(name)?;
        if self.vols.contains_key(name) || self.replicas.contains_key(name) {
            return Err(VolumeError::Exists(name.to_string()));
        }
        self.check_new_replica_source(source)
    }

    /// `source` may have a new replica: its size.
    fn check_new_replica_source(&self, source: &str) -> Result<u64, VolumeError> {
        let Some(meta) = self.vols.get(source) else {
            return Err(match self.replicas.get(source) {
                Some(_) => VolumeError::NotASource {
                    vol: source.to_string(),
                    why: "it is a snapshot; make a clone of its source instead".into(),
                },
                None => VolumeError::NoSuchVolume(source.to_string()),
            });
        };
        if self.replicas.get(source).is_some_and(ReplicaMeta::copying) {
            return Err(VolumeError::NotASource {
                vol: source.to_string(),
                why: "its own copy is still running; wait for it to complete".into(),
            });
        }
        Ok(meta.blocks)
    }

    /// A named copy-on-write snapshot of `source`, taken now.
    pub fn create_snapshot_replica(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
        source: &str,
        now: Tick,
    ) -> Result<(), VolumeError> {
        self.check_new_replica(name, source)?;
        let snap = self.snapshot(store, source, 0)?;
        let serial = self.next_serial();
        self.insert_snapshot_replica(name, source, snap, now, serial, None);
        Ok(())
    }

    /// Records snapshot replica `name` of `source` at point `snap`.
    fn insert_snapshot_replica(
        &mut self,
        name: &str,
        source: &str,
        snap: SnapId,
        taken: Tick,
        serial: u64,
        retained: Option<Retained>,
    ) {
        self.replicas.insert(
            name.to_string(),
            ReplicaMeta {
                source: source.to_string(),
                kind: ReplicaKind::Snapshot,
                snap: Some(snap),
                taken,
                copied: 0,
                fresh: false,
                serial,
                retained,
            },
        );
        self.listing_changed = true;
    }

    /// Keeps a retained copy of `source` as it is now (a group's point
    /// just completed on it): a snapshot replica with a fresh name, for
    /// example `vol0.rc12` (or `vol0.LABEL` for a named point). Returns
    /// its name.
    pub fn retain_copy(
        &mut self,
        store: &mut dyn BlockStore,
        source: &str,
        now: Tick,
        what: Retained,
    ) -> Result<String, VolumeError> {
        let serial = self.next_serial();
        let fits = |n: &String| {
            crate::core::names::volume(n).is_ok()
                && !self.vols.contains_key(n)
                && !self.replicas.contains_key(n)
        };
        let mut name = match &what.label {
            Some(l) => format!("{source}.{l}"),
            None => format!("{source}.rc{serial}"),
        };
        if !fits(&name) {
            // Too long, or taken: the serial is unique to this array, and
            // the source's name fills what room is left.
            let tail = format!(".rc{serial}");
            let room = crate::core::names::MAX_NAME.saturating_sub(tail.len());
            let head: String = source.chars().take(room).collect();
            name = format!("{head}{tail}");
            if !fits(&name) {
                return Err(VolumeError::Exists(name));
            }
        }
        let snap = self.snapshot(store, source, 0)?;
        self.insert_snapshot_replica(&name, source, snap, now, serial, Some(what));
        Ok(name)
    }

    /// The retained copies `group` keeps of `source`, oldest first.
    pub fn retained_of(&self, group: &str, source: &str) -> Vec<String> {
        let mut v: Vec<(u64, &String)> = self
            .replicas
            .iter()
            .filter(|(_, r)| {
                r.source == source && r.retained.as_ref().is_some_and(|x| x.group == group)
            })
            .map(|(n, r)| (r.serial, n))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// A clone of `source` as it is now: a new volume (`into` false), or
    /// the existing volume `name` of the source's size (`into` true, as
    /// consoles do that make the target first), filled by
    /// [`Volumes::clone_step`]. The caller checked the pool and the groups.
    pub fn create_clone(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
        source: &str,
        now: Tick,
        into: bool,
    ) -> Result<(), VolumeError> {
        let blocks = if into {
            self.check_clone_target(name, source)?
        } else {
            let blocks = self.check_new_replica(name, source)?;
            self.create(store, name, blocks)?;
            blocks
        };
        debug_assert_eq!(self.vols.get(name).map(|m| m.blocks), Some(blocks));
        let snap = match self.snapshot(store, source, 0) {
            Ok(s) => s,
            Err(e) => {
                if !into {
                    self.delete(store, name)?;
                }
                return Err(e);
            }
        };
        let serial = self.vols[name].serial;
        self.replicas.insert(
            name.to_string(),
            ReplicaMeta {
                source: source.to_string(),
                kind: ReplicaKind::Clone,
                snap: Some(snap),
                taken: now,
                copied: 0,
                fresh: !into,
                serial,
                retained: None,
            },
        );
        Ok(())
    }

    /// An existing volume may receive a clone of `source`: same size, not
    /// a replica already, not the source itself, no point of its own.
    fn check_clone_target(&self, name: &str, source: &str) -> Result<u64, VolumeError> {
        let src = self.check_new_replica_source(source)?;
        let Some(meta) = self.vols.get(name) else {
            return Err(VolumeError::NoSuchVolume(name.to_string()));
        };
        let refuse = |what| {
            Err(VolumeError::ReplicaState {
                vol: name.to_string(),
                what,
                hint: "choose another target volume, or let the array make one (no TargetElement)",
            })
        };
        if name == source {
            return refuse("the source itself");
        }
        if meta.blocks != src {
            return refuse("not the size of the source");
        }
        if self.replicas.contains_key(name) {
            return refuse("a replica already");
        }
        if !meta.snaps.is_empty() || self.replicas_of(name).next().is_some() {
            return refuse("the source of snapshots or replicas");
        }
        Ok(src)
    }

    /// Clones still copying, by name.
    pub fn copying(&self) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.copying())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Copies at most `budget` blocks into each clone still copying.
    /// Returns whether any copy remains. Idempotent across crashes: a
    /// block is durable before the count that says it was copied (the
    /// `replica/` key's commit is a barrier for bulk blocks).
    pub fn clone_step(
        &mut self,
        store: &mut dyn BlockStore,
        budget: u64,
    ) -> Result<bool, VolumeError> {
        let mut more = false;
        for name in self.copying() {
            let r = self.replicas[&name].clone();
            let snap = r.snap.expect("copying");
            let blocks = self.vols.get(&name).map(|m| m.blocks).unwrap_or(0);
            let end = r.copied.saturating_add(budget).min(blocks);
            let mut buf = [0u8; BLOCK_SIZE];
            for b in r.copied..end {
                self.read_snap(store, snap, b, &mut buf)?;
                if !(r.fresh && buf.iter().all(|x| *x == 0)) {
                    // As a sync run's block: straight to the volume file
                    // when nothing needs its old data; the count below is
                    // a barrier key, so these blocks are durable first.
                    self.write_run(store, &name, b, &buf)?;
                }
            }
            let done = end >= blocks;
            if done {
                self.delete_snap(store, snap)?;
            } else {
                more = true;
            }
            let m = self.replicas.get_mut(&name).expect("listed");
            m.copied = end;
            if done {
                m.snap = None;
            }
        }
        Ok(more)
    }

    /// Rolls the source of snapshot replica `name` back to the snapshot.
    /// The snapshot stays (it now equals the source). O(blocks changed).
    pub fn restore_from_snapshot(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
    ) -> Result<(), VolumeError> {
        let r = self.replicas[name].clone();
        let snap = r.snap.expect("a snapshot replica has its point");
        let saved: Vec<(u64, u64)> = self.snaps[&snap]
            .saved
            .iter()
            .map(|(b, s)| (*b, *s))
            .collect();
        let mut buf = [0u8; BLOCK_SIZE];
        for (block, slot) in saved {
            store.save_get(snap, slot, &mut buf)?;
            self.write_except(store, &r.source, block, &buf, Some(snap))?;
            self.snaps
                .get_mut(&snap)
                .expect("exists")
                .saved
                .remove(&block);
        }
        Ok(())
    }

    /// A new point for a snapshot (taken now), or a new full copy for a
    /// clone (its copy starts again from block 0).
    pub fn resync_replica(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
        now: Tick,
    ) -> Result<(), VolumeError> {
        let r = self.replicas[name].clone();
        if let Some(old) = r.snap {
            self.delete_snap(store, old)?;
        }
        let snap = self.snapshot(store, &r.source, 0)?;
        let m = self.replicas.get_mut(name).expect("exists");
        m.snap = Some(snap);
        m.taken = now;
        m.copied = 0;
        m.fresh = false;
        Ok(())
    }

    /// Forgets the association: a clone stays as an ordinary volume (a
    /// copy still running stops where it is).
    pub fn detach_replica(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
    ) -> Result<(), VolumeError> {
        if let Some(r) = self.replicas.remove(name) {
            if let Some(s) = r.snap {
                self.delete_snap(store, s)?;
            }
            self.listing_changed = true;
        }
        Ok(())
    }

    /// Deletes a replica and frees its space: a snapshot's saved blocks, a
    /// clone's volume.
    pub fn return_replica(
        &mut self,
        store: &mut dyn BlockStore,
        name: &str,
    ) -> Result<(), VolumeError> {
        let kind = self.replicas.get(name).map(|r| r.kind);
        self.detach_replica(store, name)?;
        if kind == Some(ReplicaKind::Clone) {
            self.delete(store, name)?;
        }
        Ok(())
    }
}
