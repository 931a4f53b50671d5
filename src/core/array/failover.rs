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
        if self.link_up(&peer) {
            return self.cmd_planned_failover(g);
        }
        self.need_role(g, "failover", Role::Secondary, || {
            format!("the natural secondary of {}", g.name)
        })?;
        if g.reverse_pending.is_some() || g.op.is_some() {
            return Err(busy("failover", g));
        }
        if g.pairs.iter().all(|p| p.status == SyncStatus::New) {
            return Err(CommandError::NotStarted {
                op: "failover",
                group: g.name.clone(),
            });
        }
        self.take_over(g);
        self.note(&g.name, "failover issued: now Primary-Rev".into());
        Ok(())
    }

    /// The target becomes Primary-Rev at its last consistent point (the
    /// promotion runs in budgeted steps).
    fn take_over(&mut self, g: &mut Group) {
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
    }

    /// Planned failover, with the link up, on either side: the Primary
    /// stops taking host writes, everything it acknowledged reaches the
    /// target (in sync mode it is already on the way; in periodic mode a
    /// final cycle carries it), then `HandOver` makes the target
    /// Primary-Rev, and its Hello demotes the Primary to Secondary-Rev.
    fn cmd_planned_failover(&mut self, g: &mut Group) -> Result<(), CommandError> {
        self.peer_state(g, "failover")?;
        match g.role {
            Role::Primary => {
                self.hand_over_check(g)
                    .map_err(|why| CommandError::CannotHandOver { why })?;
                Ok(self.begin_hand_over(g)?)
            }
            Role::Secondary => {
                if g.op.is_some() || g.reverse_pending.is_some() {
                    return Err(busy("failover", g));
                }
                self.need_agreement(g, "failover")?;
                // What the target knows itself: the primary checks the rest.
                let why = if !g.started {
                    Some(format!(
                        "group {} is not replicating into {}; start it on {} and let it sync first",
                        g.name, self.name, g.peer
                    ))
                } else {
                    g.pairs
                        .iter()
                        .find(|p| p.status != SyncStatus::Synced)
                        .map(|p| {
                            format!(
                                "{} is {} on {}; wait until every volume is Synced",
                                p.local, p.status, self.name
                            )
                        })
                };
                if let Some(why) = why {
                    return Err(CommandError::CannotHandOver { why });
                }
                g.op = Some(GroupOp::HandingOver);
                g.requested = Some(CopyState::FailedOver);
                self.send(
                    &g.peer.clone(),
                    Msg::HandOverRequest {
                        group: g.name.clone(),
                    },
                );
                self.note(&g.name, "planned failover asked of the primary".into());
                Ok(())
            }
            _ => Err(CommandError::CannotHandOver {
                why: format!(
                    "group {} is {} on {}; a failed-over group goes back with `setrcopygroup recover` then `restore`",
                    g.name, g.role, self.name
                ),
            }),
        }
    }

    /// Why the Primary cannot hand `g` over now, if it cannot: everything
    /// it acknowledged must be able to reach the target first.
    fn hand_over_check(&self, g: &Group) -> Result<(), String> {
        if g.op.is_some() || g.reverse_pending.is_some() || g.restore_after_cycle {
            return Err(format!(
                "group {} is busy with {} on {}; wait for it to finish",
                g.name,
                g.busy().unwrap_or("an operation"),
                self.name
            ));
        }
        if g.pairs.is_empty() {
            return Err(format!("group {} has no volumes", g.name));
        }
        if !g.started {
            return Err(format!(
                "group {} is stopped on {}, so the target lacks what was written since; start it (startrcopygroup {}) and let it sync first",
                g.name, self.name, g.name
            ));
        }
        if g.running() {
            return Err(format!(
                "group {} is syncing on {}; wait until every volume is Synced",
                g.name, self.name
            ));
        }
        if let Some(p) = g.pairs.iter().find(|p| p.status != SyncStatus::Synced) {
            return Err(format!(
                "{} is {} on {}; wait until every volume is Synced",
                p.local, p.status, self.name
            ));
        }
        match &g.peer_hello {
            Some(h) if h.role == Role::Secondary => Ok(()),
            Some(h) => Err(format!("{} reports role {} for {}", g.peer, h.role, g.name)),
            None => Err(format!("{} has not reported its state yet", g.peer)),
        }
    }

    /// Holds host writes off and sends what remains; the hand-over leaves
    /// now (sync mode: acknowledged writes are already ahead of it on the
    /// link) or when the final cycle completes (periodic mode).
    fn begin_hand_over(&mut self, g: &mut Group) -> R<()> {
        g.op = Some(GroupOp::HandingOver);
        g.requested = None;
        self.note(&g.name, "planned failover: host writes held".into());
        if g.mode.is_sync() {
            self.send_hand_over(g);
        } else {
            self.start_runs(g, false)?;
            // No cycle after the final one.
            g.next_cycle = None;
        }
        Ok(())
    }

    /// A planned failover ends on this side without a hand-over: a
    /// Primary takes host writes again (and, started in periodic mode,
    /// its cycles); `why`, when given, is reported as the failure.
    pub(super) fn hand_over_abandoned(&mut self, g: &mut Group, why: Option<String>) {
        g.op = None;
        g.requested = None;
        if g.started && g.role.is_source() {
            g.next_cycle = g.mode.first_cycle(self.now);
        }
        if let Some(reason) = why {
            self.events.push_back(Event::OperationFailed {
                group: g.name.clone(),
                op: "failover",
                reason,
            });
        }
    }

    pub(super) fn send_hand_over(&mut self, g: &Group) {
        self.send(
            &g.peer.clone(),
            Msg::HandOver {
                group: g.name.clone(),
            },
        );
    }

    pub(super) fn on_hand_over_request(&mut self, g: &mut Group) -> R<()> {
        if g.role != Role::Primary {
            let why = format!("{} is {} for {}, not Primary", self.name, g.role, g.name);
            self.refuse_op(g, "failover", why);
            return Ok(());
        }
        match self.hand_over_check(g) {
            Ok(()) => self.begin_hand_over(g)?,
            Err(why) => self.refuse_op(g, "failover", why),
        }
        Ok(())
    }

    /// The Primary handed over: take over as Primary-Rev (its Hello then
    /// demotes the Primary).
    pub(super) fn on_hand_over(&mut self, g: &mut Group) -> R<()> {
        let why = if g.role != Role::Secondary {
            Some(format!("{} is {} for {}", self.name, g.role, g.name))
        } else if g.op.is_some_and(|op| op != GroupOp::HandingOver) {
            Some(format!("group {} is busy on {}", g.name, self.name))
        } else {
            g.pairs
                .iter()
                .find(|p| p.status != SyncStatus::Synced)
                .map(|p| format!("{} is {} on {}", p.local, p.status, self.name))
        };
        if let Some(why) = why {
            g.op = None;
            self.refuse_op(g, "failover", why);
            return Ok(());
        }
        g.op = None;
        self.fail_group(g, StopCause::FailedOver)?;
        self.take_over(g);
        self.note(&g.name, "planned failover: now Primary-Rev".into());
        self.announce(g);
        Ok(())
    }
}
