//! Local replicas at the array level: the commands, the writes they
//! refuse, and the clone copy that runs on every tick (the table itself is
//! in `volumes/replicas.rs`).

use super::*;
use crate::core::volumes::ReplicaMeta;

impl<S: BlockStore> Array<S> {
    pub(super) fn create_replica(
        &mut self,
        name: &str,
        source: &str,
        kind: ReplicaKind,
        into: bool,
    ) -> Result<(), CommandError> {
        let now = self.now;
        if into {
            if kind == ReplicaKind::Snapshot {
                return Err(VolumeError::ReplicaState {
                    vol: name.to_string(),
                    what: "an existing volume",
                    hint: "a snapshot takes no volume of its own; name a new one (ElementName) instead of TargetElement",
                }
                .into());
            }
            if let Some(g) = self.holders_of(name).first() {
                return Err(CommandError::VolumeInGroup {
                    vol: name.to_string(),
                    group: g.clone(),
                });
            }
        }
        match kind {
            ReplicaKind::Snapshot => {
                self.vols
                    .create_snapshot_replica(&mut self.store, name, source, now)?;
            }
            ReplicaKind::Clone => {
                // A new clone is a volume: it takes its full size from the
                // pool.
                let blocks = self
                    .vols
                    .meta(source)
                    .map(|m| m.blocks)
                    .ok_or_else(|| VolumeError::NoSuchVolume(source.to_string()))?;
                let free = self
                    .config
                    .capacity_blocks
                    .saturating_sub(self.vols.used_blocks());
                if !into && blocks > free {
                    return Err(VolumeError::PoolFull {
                        vol: name.to_string(),
                        blocks,
                        free,
                    }
                    .into());
                }
                self.vols
                    .create_clone(&mut self.store, name, source, now, into)?;
            }
        }
        self.vols_changed_at = self.generation;
        Ok(())
    }

    pub(super) fn modify_replica(&mut self, name: &str, op: ReplicaOp) -> Result<(), CommandError> {
        let r: ReplicaMeta = self
            .vols
            .replica(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotAReplica(name.to_string()))?;
        match op {
            ReplicaOp::Restore => {
                if r.kind != ReplicaKind::Snapshot {
                    return Err(VolumeError::ReplicaState {
                        vol: name.to_string(),
                        what: "a clone",
                        hint: "a source is restored from a snapshot only; take a snapshot (SyncType 7) to keep a point to restore",
                    }
                    .into());
                }
                if r.retained.is_some() {
                    self.check_rollback(&r.source)?;
                }
                self.check_restorable(&r.source)?;
                self.vols.restore_from_snapshot(&mut self.store, name)?;
            }
            ReplicaOp::Resync => {
                let now = self.now;
                self.vols.resync_replica(&mut self.store, name, now)?;
            }
            ReplicaOp::Detach { force } => {
                if r.kind == ReplicaKind::Snapshot {
                    return Err(VolumeError::ReplicaState {
                        vol: name.to_string(),
                        what: "a snapshot",
                        hint: "it shares its unchanged blocks with its source, so it cannot stand alone; return it to the pool instead (ModifyReplicaSynchronization 19, removevv), or make a clone",
                    }
                    .into());
                }
                if r.copying() && !force {
                    return Err(VolumeError::ReplicaState {
                        vol: name.to_string(),
                        what: "a clone still copying",
                        hint: "wait for the copy to complete, or detach with Force to keep the partial copy",
                    }
                    .into());
                }
                self.vols.detach_replica(&mut self.store, name)?;
            }
            ReplicaOp::Return => self.vols.return_replica(&mut self.store, name)?,
        }
        self.vols_changed_at = self.generation;
        Ok(())
    }

    /// A source may be rolled back when hosts may write it now and no
    /// started group replicates it (the rollback is not replicated; a
    /// stopped group's base snapshot records the blocks it changes, so the
    /// next start resyncs only those).
    fn check_restorable(&self, source: &str) -> Result<(), CommandError> {
        if let Some(e) = self.write_refusal(source) {
            return Err(e.into());
        }
        if let Some(g) = self
            .holders_of(source)
            .iter()
            .filter_map(|n| self.groups.get(n))
            .find(|g| g.started)
        {
            return Err(CommandError::NotStopped {
                op: "restore from a snapshot",
                group: g.name.clone(),
                source_array: self.name.clone(),
            });
        }
        Ok(())
    }

    /// A snapshot replica is never written; a clone is written only by its
    /// copy until the copy completes.
    pub(super) fn replica_write_refusal(&self, vol: &str) -> Option<WriteError> {
        let r = self.vols.replica(vol)?;
        let why = match r.kind {
            ReplicaKind::Snapshot => "it is a snapshot (a point in time)",
            ReplicaKind::Clone if r.copying() => {
                "it is a clone whose copy is still running; it becomes writable when the copy completes"
            }
            ReplicaKind::Clone => return None,
        };
        Some(WriteError::ReadOnlyReplica {
            vol: vol.to_string(),
            why,
        })
    }

    /// One step of every clone copy (`promote_budget` blocks each).
    pub(super) fn copy_clones(&mut self) -> R<()> {
        if self.vols.replicas().values().any(|r| r.copying()) {
            let budget = self.config.promote_budget as u64;
            self.vols.clone_step(&mut self.store, budget)?;
            self.vols_changed_at = self.generation;
        }
        Ok(())
    }
}
