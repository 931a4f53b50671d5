//! Failover: a target takes over its last consistent point (promotion in
//! budgeted steps).

use super::*;

impl<S: BlockStore> Array<S> {
    /// A running failover promotes a budget of blocks per step.
    pub(super) fn failover_timeout(&mut self, g: &mut Group) -> R<()> {
        if g.op == Some(GroupOp::FailingOver) {
            self.failover_step(g)?;
        }
        Ok(())
    }

    pub(super) fn failover_step(&mut self, g: &mut Group) -> R<()> {
        let budget = self.config.promote_budget;
        let mut all_done = true;
        for p in &mut g.pairs {
            if let Some(t) = p.target_snap {
                if self.vols.promote_step(&mut self.store, t, budget)? {
                    p.target_snap = None;
                } else {
                    all_done = false;
                }
            }
        }
        if !all_done {
            return Ok(());
        }
        for p in &mut g.pairs {
            if let Some(b) = p.base_snap.take() {
                self.vols.delete_snap(&mut self.store, b)?;
            }
            p.pending_gen = None;
            p.extra.clear();
            if p.gen > 0 {
                p.base_snap = Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
                p.status = SyncStatus::Stopped;
            } else if p.status != SyncStatus::New {
                p.status = SyncStatus::NotSynced;
            }
        }
        g.op = None;
        self.note(&g.name, "failover complete: volumes writable here".into());
        Ok(())
    }

    pub(super) fn cmd_failover(&mut self, g: &mut Group) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_role(g, "failover", Role::Secondary, || {
            format!("the natural secondary of {}", g.name)
        })?;
        if self.link_up(&peer) {
            return Err(CommandError::LinkUp {
                op: "failover",
                peer,
                hint: "failover is for a lost primary; for a planned swap stop the group and use `setrcopygroup reverse`".into(),
            });
        }
        if g.reverse_pending.is_some() {
            return Err(busy("failover", g));
        }
        if g.pairs.iter().all(|p| p.status == SyncStatus::New) {
            return Err(CommandError::NotStarted {
                op: "failover",
                group: g.name.clone(),
            });
        }
        // Row 2: every pair shows Stopped while the failover runs.
        for p in &mut g.pairs {
            p.status = SyncStatus::Stopped;
        }
        g.role = Role::PrimaryRev;
        g.op = Some(GroupOp::FailingOver);
        g.started = false;
        g.stop_cause = StopCause::FailedOver;
        g.recovered = false;
        g.requested = Some(CopyState::FailedOver);
        self.note(&g.name, "failover issued: now Primary-Rev".into());
        Ok(())
    }
}
