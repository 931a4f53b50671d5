//! The journal's promises, in memory: what the simulation's arrays store
//! their blocks and metadata in, so that a simulated crash loses exactly
//! what a real array's crash may lose.
//!
//! [`Journal`](super::journal::Journal) promises: a change is durable once
//! the `commit` of its batch returned; bulk blocks (sync-run blocks to a
//! volume with no snapshot, which skip the log) are durable once a commit
//! changing a barrier key returned; anything else may be lost by a crash.
//! [`MemJournal`] keeps the current state in a [`MemStore`] plus an undo
//! record of every change since those points, and [`MemJournal::crash`]
//! undoes them: every uncommitted change, and each unsynced bulk block the
//! caller chooses to lose (a power cut may keep some and lose others).

use std::collections::{BTreeMap, BTreeSet};

use super::{Journaled, MemStore, MemVol};
use crate::core::{Block, BlockStore, SnapId, StoreError};

enum Undo {
    /// The block's contents before the change (None: never written).
    Block {
        vol: String,
        block: u64,
        old: Option<Box<Block>>,
    },
    Created(String),
    Deleted(String, MemVol),
    SaveCreated(SnapId),
    SavePut(SnapId),
    SaveDeleted(SnapId, Vec<Box<Block>>),
}

/// A [`MemStore`] that forgets, at a crash, what was not committed.
pub struct MemJournal {
    store: MemStore,
    meta: BTreeMap<String, Vec<u8>>,
    /// Changes since the last commit, oldest first.
    undo: Vec<Undo>,
    /// Bulk writes not yet made durable by a barrier commit, oldest first.
    bulk: Vec<Undo>,
    /// Blocks written through the log in the batch being built: a bulk
    /// write to one of them joins the log (as in the file journal).
    logged: BTreeSet<(String, u64)>,
    barrier: fn(&str) -> bool,
    commits: u64,
}

impl Default for MemJournal {
    fn default() -> Self {
        Self::new()
    }
}

impl MemJournal {
    pub fn new() -> MemJournal {
        MemJournal {
            store: MemStore::new(),
            meta: BTreeMap::new(),
            undo: Vec::new(),
            bulk: Vec::new(),
            logged: BTreeSet::new(),
            barrier: |_| true,
            commits: 0,
        }
    }

    /// Commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Nothing changed since the last commit (bulk blocks aside).
    pub fn is_clean(&self) -> bool {
        self.undo.is_empty()
    }

    /// The process dies: every uncommitted change is undone, and every bulk
    /// block not yet made durable is undone where `lose` says so (called
    /// with the volume and block, newest write first).
    pub fn crash(&mut self, lose: &mut dyn FnMut(&str, u64) -> bool) {
        while let Some(u) = self.undo.pop() {
            self.revert(u);
        }
        while let Some(u) = self.bulk.pop() {
            let gone = match &u {
                Undo::Block { vol, block, .. } => lose(vol, *block),
                _ => true,
            };
            if gone {
                self.revert(u);
            }
        }
        self.logged.clear();
    }

    fn revert(&mut self, u: Undo) {
        let s = &mut self.store;
        match u {
            Undo::Block { vol, block, old } => {
                if let Some(v) = s.vols.get_mut(&vol) {
                    match old {
                        Some(d) => {
                            v.data.insert(block, d);
                        }
                        None => {
                            v.data.remove(&block);
                        }
                    }
                }
            }
            Undo::Created(vol) => {
                s.vols.remove(&vol);
            }
            Undo::Deleted(vol, v) => {
                s.vols.insert(vol, v);
            }
            Undo::SaveCreated(snap) => {
                s.saves.remove(&snap);
            }
            Undo::SavePut(snap) => {
                if let Some(a) = s.saves.get_mut(&snap) {
                    a.pop();
                }
            }
            Undo::SaveDeleted(snap, area) => {
                s.saves.insert(snap, area);
            }
        }
    }

    fn old(&self, vol: &str, block: u64) -> Option<Box<Block>> {
        self.store
            .vols
            .get(vol)
            .and_then(|v| v.data.get(&block))
            .cloned()
    }
}

impl Journaled for MemJournal {
    fn commit(&mut self, meta: Vec<(String, Vec<u8>)>) -> Result<bool, StoreError> {
        let changes = super::full_listing_changes(&self.meta, meta);
        self.commit_changes(changes)
    }
    fn commit_changes(
        &mut self,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<bool, StoreError> {
        let changed = super::real_changes(&self.meta, changes);
        if changed.is_empty() && self.undo.is_empty() {
            return Ok(false);
        }
        if changed.iter().any(|(k, _)| (self.barrier)(k)) {
            self.bulk.clear();
        } else {
            // A block written through the log in this batch is durable with
            // it, whatever happens to an earlier bulk write of it.
            let logged = &self.logged;
            self.bulk.retain(|u| match u {
                Undo::Block { vol, block, .. } => !logged.contains(&(vol.clone(), *block)),
                _ => true,
            });
        }
        for (k, v) in changed {
            match v {
                Some(v) => self.meta.insert(k, v),
                None => self.meta.remove(&k),
            };
        }
        self.undo.clear();
        self.logged.clear();
        self.commits += 1;
        Ok(true)
    }

    fn committed_meta(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.meta
    }

    fn set_barrier(&mut self, barrier: fn(&str) -> bool) {
        self.barrier = barrier;
    }
}

impl BlockStore for MemJournal {
    fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), StoreError> {
        self.store.create_volume(vol, blocks)?;
        self.undo.push(Undo::Created(vol.to_string()));
        Ok(())
    }

    fn delete_volume(&mut self, vol: &str) -> Result<(), StoreError> {
        let v = self
            .store
            .vols
            .remove(vol)
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))?;
        self.undo.push(Undo::Deleted(vol.to_string(), v));
        Ok(())
    }

    fn read_block(&mut self, vol: &str, block: u64, out: &mut Block) -> Result<(), StoreError> {
        self.store.read_block(vol, block, out)
    }

    fn write_block(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError> {
        let old = self.old(vol, block);
        self.store.write_block(vol, block, data)?;
        self.undo.push(Undo::Block {
            vol: vol.to_string(),
            block,
            old,
        });
        self.logged.insert((vol.to_string(), block));
        Ok(())
    }

    fn write_block_bulk(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError> {
        if self.logged.contains(&(vol.to_string(), block)) {
            return self.write_block(vol, block, data);
        }
        let old = self.old(vol, block);
        self.store.write_block(vol, block, data)?;
        self.bulk.push(Undo::Block {
            vol: vol.to_string(),
            block,
            old,
        });
        Ok(())
    }

    fn allocated_blocks(&mut self, vol: &str) -> Result<Vec<u64>, StoreError> {
        self.store.allocated_blocks(vol)
    }

    fn save_create(&mut self, snap: SnapId) -> Result<(), StoreError> {
        self.store.save_create(snap)?;
        self.undo.push(Undo::SaveCreated(snap));
        Ok(())
    }

    fn save_put(&mut self, snap: SnapId, data: &Block) -> Result<u64, StoreError> {
        let slot = self.store.save_put(snap, data)?;
        self.undo.push(Undo::SavePut(snap));
        Ok(slot)
    }

    fn save_get(&mut self, snap: SnapId, slot: u64, out: &mut Block) -> Result<(), StoreError> {
        self.store.save_get(snap, slot, out)
    }

    fn save_delete(&mut self, snap: SnapId) -> Result<(), StoreError> {
        let area = self.store.saves.remove(&snap).unwrap_or_default();
        self.undo.push(Undo::SaveDeleted(snap, area));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8) -> Block {
        [fill; crate::core::BLOCK_SIZE]
    }

    fn read(j: &mut MemJournal, b: u64) -> u8 {
        let mut out = block(9);
        j.read_block("v", b, &mut out).unwrap();
        out[0]
    }

    #[test]
    fn a_crash_loses_what_was_not_committed() {
        let mut j = MemJournal::new();
        j.create_volume("v", 4).unwrap();
        j.write_block("v", 0, &block(1)).unwrap();
        j.commit(vec![("k".into(), vec![1])]).unwrap();
        j.write_block("v", 0, &block(2)).unwrap();
        j.write_block("v", 1, &block(3)).unwrap();
        j.save_create(SnapId(1)).unwrap();
        j.crash(&mut |_, _| true);
        assert_eq!(read(&mut j, 0), 1);
        assert_eq!(read(&mut j, 1), 0);
        assert!(j.save_get(SnapId(1), 0, &mut block(0)).is_err());
        assert_eq!(j.committed_meta().get("k"), Some(&vec![1]));
    }

    #[test]
    fn bulk_blocks_are_durable_at_a_barrier_commit_only() {
        let mut j = MemJournal::new();
        j.set_barrier(|k| k != "head");
        j.create_volume("v", 4).unwrap();
        j.commit(vec![]).unwrap();
        j.write_block_bulk("v", 0, &block(5)).unwrap();
        j.write_block_bulk("v", 1, &block(6)).unwrap();
        j.commit(vec![("head".into(), vec![1])]).unwrap();
        // Not a barrier: the crash may lose them (here: block 1 only).
        j.crash(&mut |_, b| b == 1);
        assert_eq!((read(&mut j, 0), read(&mut j, 1)), (5, 0));
        j.write_block_bulk("v", 1, &block(7)).unwrap();
        j.commit(vec![("group".into(), vec![1])]).unwrap();
        j.crash(&mut |_, _| true);
        assert_eq!(read(&mut j, 1), 7, "made durable by the barrier commit");
        // A bulk write, then a committed logged write of the same block:
        // the logged one is durable whatever happens to the bulk one.
        j.write_block_bulk("v", 2, &block(8)).unwrap();
        j.commit(vec![("head".into(), vec![2])]).unwrap();
        j.write_block("v", 2, &block(9)).unwrap();
        j.commit(vec![("head".into(), vec![3])]).unwrap();
        j.crash(&mut |_, _| true);
        assert_eq!(read(&mut j, 2), 9);
    }
}
