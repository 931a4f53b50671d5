//! Retained copies: the complete cycles a non-sync group's backup keeps
//! as named, read-only snapshot replicas of its secondary volumes (3PAR
//! Recovery Manager's "virtual copy on the backup"), and the rollback of
//! a volume to one of them.
//!
//! A retained copy is an ordinary snapshot replica with a `Retained`
//! mark: it is read, exported and restored as any snapshot replica. It is
//! never a resync base: the group's own snapshots (`base_snap`,
//! `target_snap`, `cycle_snap`) are separate, so a copy never changes
//! while it exists, whatever the group does (the fault simulation checks
//! this).

use super::*;
use crate::core::volumes::Retained;

impl<S: BlockStore> Array<S> {
    /// The group's point just completed on this backup: keep a copy of
    /// every volume, then drop the oldest beyond the policy.
    pub(super) fn retain_point(&mut self, g: &Group, at: Tick, label: Option<String>) -> R<()> {
        let keep = g.policies.retain.min(MAX_RETAIN) as usize;
        for p in &g.pairs {
            if keep > 0 {
                let what = Retained {
                    group: g.name.clone(),
                    at,
                    label: label.clone(),
                };
                match self.vols.retain_copy(&mut self.store, &p.local, at, what) {
                    Ok(_) => {}
                    Err(VolumeError::Exists(name)) => {
                        let text =
                            format!("no retained copy of {}: the name {name} is taken", p.local);
                        self.note(&g.name, text);
                    }
                    Err(e) => return Err(e),
                }
            }
            self.prune_retained(&g.name, &p.local, keep)?;
        }
        self.vols_changed_at = self.generation;
        Ok(())
    }

    /// Drops the oldest retained copies `group` keeps of `vol` beyond
    /// `keep`.
    pub(super) fn prune_retained(&mut self, group: &str, vol: &str, keep: usize) -> R<()> {
        let all = self.vols.retained_of(group, vol);
        for old in &all[..all.len().saturating_sub(keep)] {
            self.vols.return_replica(&mut self.store, old)?;
        }
        Ok(())
    }

    /// A volume may be rolled back to a retained copy when hosts may
    /// write it (a failed-over Primary-Rev, or a volume no group holds
    /// any more) and no started group replicates it. A secondary is
    /// refused: its primary would not know which blocks the rollback
    /// changed. Failing over first makes the backup the source, whose
    /// base snapshot records them, so `recover` resyncs only those.
    pub(super) fn check_rollback(&self, source: &str) -> Result<(), CommandError> {
        let secondary = self
            .holders_of(source)
            .iter()
            .filter_map(|n| self.groups.get(n))
            .find(|g| !g.role.is_source());
        if let Some(g) = secondary {
            return Err(CommandError::WrongSide {
                op: "restore from a retained copy",
                need: "failed over (Primary-Rev)",
                hint: format!(
                    "fail the group over here first (setrcopygroup failover {}), roll back, and let `setrcopygroup recover {}` resync only the differences to {}",
                    g.name, g.name, g.peer
                ),
                array: self.name.clone(),
                role: g.role,
                group: g.name.clone(),
            });
        }
        Ok(())
    }
}
