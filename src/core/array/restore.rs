//! Restore: the role swap back after recover (RestorePrepare,
//! RestoreReady, RestoreCommit or RestoreAbort, with a deadline).

use super::*;

impl<S: BlockStore> Array<S> {
    /// A restore whose peer did not confirm the role swap in time fails,
    /// with the roles unchanged.
    pub(super) fn restore_timeout(&mut self, g: &mut Group) {
        if let Some(d) = g.restore_deadline {
            if self.now >= d && (g.op == Some(GroupOp::FailingBack) || g.restore_after_cycle) {
                g.op = None;
                g.restore_deadline = None;
                g.restore_after_cycle = false;
                self.send(
                    &g.peer.clone(),
                    Msg::RestoreAbort {
                        group: g.name.clone(),
                    },
                );
                self.events.push_back(Event::OperationFailed {
                    group: g.name.clone(),
                    op: "restore",
                    reason: format!(
                        "{} did not confirm the role swap in time; roles are unchanged",
                        g.peer
                    ),
                });
                self.note(&g.name, "restore failed: timed out".into());
            }
        }
    }

    pub(super) fn complete_restore_as_new_primary(&mut self, g: &mut Group) {
        // Secondary-Rev -> Primary: the periodic last-complete point becomes
        // the base for the next deltas.
        g.role = Role::Primary;
        g.op = None;
        g.recovered = false;
        for p in &mut g.pairs {
            if let Some(t) = p.target_snap.take() {
                p.base_snap = Some(t);
            }
        }
        g.next_cycle = g.mode.first_cycle(self.now);
        self.note(&g.name, "restore done: Primary again".into());
        self.announce(g);
    }

    pub(super) fn cmd_restore(&mut self, g: &mut Group) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_role(g, "restore", Role::PrimaryRev, || failed_over_side(g))?;
        if !g.recovered {
            // Restore follows recover; start is refused before it too.
            return Err(CommandError::WrongSide {
                op: "restore",
                need: "recovered",
                hint: format!("run `setrcopygroup recover {}` here first", g.name),
                array: self.name.clone(),
                role: g.role,
                group: g.name.clone(),
            });
        }
        if !g.started {
            return Err(CommandError::NotStarted {
                op: "restore",
                group: g.name.clone(),
            });
        }
        if g.op.is_some() || g.running() || g.restore_after_cycle {
            return Err(busy("restore", g));
        }
        if let Some(p) = g.pairs.iter().find(|p| p.status != SyncStatus::Synced) {
            return Err(CommandError::NotSynced {
                op: "restore",
                group: g.name.clone(),
                vol: p.local.clone(),
                status: p.status.to_string(),
                hint: "wait for recover to finish".into(),
            });
        }
        self.need_link(g, "restore", "restore needs both arrays")?;
        g.restore_deadline = Some(self.now.plus(self.config.restore_timeout_ms));
        g.requested = Some(CopyState::Synchronized);
        if g.mode.is_sync() {
            g.op = Some(GroupOp::FailingBack);
            self.send(
                &peer,
                Msg::RestorePrepare {
                    group: g.name.clone(),
                },
            );
        } else {
            // Host writes stop now; a final cycle brings the natural
            // primary fully up to date, then the roles swap.
            g.restore_after_cycle = true;
            self.start_runs(g, false)?;
        }
        self.note(&g.name, "restore issued".into());
        Ok(())
    }

    pub(super) fn on_restore_prepare(&mut self, g: &mut Group, from: &str) -> R<()> {
        let why = if g.role != Role::SecondaryRev {
            Some(format!("{} is {}, not Secondary-Rev", self.name, g.role))
        } else if !g.started {
            Some(format!("group {} is not started on {}", g.name, self.name))
        } else {
            g.pairs
                .iter()
                .find(|p| p.status != SyncStatus::Synced)
                .map(|p| format!("{} is {} on {}", p.local, p.status, self.name))
        };
        match why {
            Some(reason) => self.refuse_op(g, "restore", reason),
            None => {
                g.op = Some(GroupOp::FailingBack);
                self.send(
                    from,
                    Msg::RestoreReady {
                        group: g.name.clone(),
                    },
                );
            }
        }

        Ok(())
    }

    pub(super) fn on_restore_ready(&mut self, g: &mut Group, from: &str) -> R<()> {
        if g.op != Some(GroupOp::FailingBack) || g.role != Role::PrimaryRev {
            return Ok(());
        }
        g.role = Role::Secondary;
        g.op = None;
        g.restore_deadline = None;
        g.recovered = false;
        g.requested = None;
        g.next_cycle = None;
        let periodic = !g.mode.is_sync();
        for p in &mut g.pairs {
            if let Some(b) = p.base_snap.take() {
                if periodic {
                    p.target_snap = Some(b);
                } else {
                    self.vols.delete_snap(&mut self.store, b)?;
                }
            }
        }
        self.send(
            from,
            Msg::RestoreCommit {
                group: g.name.clone(),
            },
        );
        self.note(&g.name, "restore done: Secondary again".into());
        self.announce(g);

        Ok(())
    }

    pub(super) fn on_restore_commit(&mut self, g: &mut Group) -> R<()> {
        if g.role == Role::SecondaryRev {
            self.complete_restore_as_new_primary(g);
        }

        Ok(())
    }

    pub(super) fn on_restore_abort(&mut self, g: &mut Group) -> R<()> {
        if g.op == Some(GroupOp::FailingBack) {
            g.op = None;
        }

        Ok(())
    }
}
