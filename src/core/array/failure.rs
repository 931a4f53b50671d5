//! Failures: link down, a group stopped by a failure, refusals from the
//! peer, crash and restart.

use super::*;

impl<S: BlockStore> Array<S> {
    pub fn handle_link_down(&mut self, now: Tick, peer: &str) -> R<()> {
        self.input();
        self.advance(now);
        if !self.link_up(peer) {
            return Ok(());
        }
        self.links.insert(peer.to_string(), false);
        self.outbox.retain(|(p, _)| p != peer);
        let names: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.peer == peer)
            .map(|g| g.name.clone())
            .collect();
        for name in names {
            self.with_group(&name, |a, g| {
                g.peer_hello = None;
                g.auto_recover_armed = false;
                g.probe_at = None;
                a.fail_group(g, StopCause::LinkFailure)
            })
            .transpose()?;
        }
        Ok(())
    }

    /// Stops a group because something failed (or an operator stopped it).
    pub(super) fn fail_group(&mut self, g: &mut Group, cause: StopCause) -> R<()> {
        self.abort_verify(g, cause);
        if g.op == Some(GroupOp::FailingBack) || g.restore_after_cycle {
            g.op = None;
            g.restore_deadline = None;
            g.restore_after_cycle = false;
            self.events.push_back(Event::OperationFailed {
                group: g.name.clone(),
                op: "restore",
                reason: format!(
                    "the link to {} failed while the roles were being swapped",
                    g.peer
                ),
            });
        }
        if g.op == Some(GroupOp::HandingOver) && !g.role.is_source() {
            // The hand-over this side asked for cannot come now (the
            // Primary refuses a stopped group, and learns at the next Hello
            // that this side did not take over).
            let why = format!("group {} stopped ({cause:?}) before the hand-over", g.name);
            self.hand_over_abandoned(g, Some(why));
        }
        if g.recovering.take().is_some() {
            self.events.push_back(Event::OperationFailed {
                group: g.name.clone(),
                op: "recover",
                reason: format!("{} did not answer before the link failed", g.peer),
            });
        }
        let was_running = g.started;
        if !g.started {
            return Ok(());
        }
        g.started = false;
        g.stop_cause = cause;
        g.caught_up = false;
        g.draining_since = None;
        // The restart's first cycle holds every write not applied yet.
        g.dirty_since = earlier(g.cycle_oldest.take(), g.dirty_since);
        for i in 0..g.pairs.len() {
            if g.role.is_source() {
                self.source_stop(g, i)?;
            } else {
                self.target_stop(g, i)?;
            }
        }
        let fail = if cause.is_failure() && g.mode.is_sync() && g.policies.fail_wrt_on_err {
            Some(format!(
                "group {} stopped ({:?}) and has fail_wrt_on_err",
                g.name, cause
            ))
        } else {
            None
        };
        self.release_writes(&g.name.clone(), fail);
        if was_running {
            self.note(&g.name, format!("{} stopped ({cause:?})", g.role));
        }
        Ok(())
    }

    pub(super) fn source_stop(&mut self, g: &mut Group, i: usize) -> R<()> {
        let sync = g.mode.is_sync();
        let p = &mut g.pairs[i];
        p.run = None;
        let inflight: Vec<u64> = p.inflight.keys().copied().collect();
        p.inflight.clear();
        p.extra.extend(inflight);
        if let Some(c) = p.cycle_snap.take() {
            self.vols.delete_snap(&mut self.store, c)?;
        }
        match p.status {
            SyncStatus::Synced => {
                if sync && p.base_snap.is_none() {
                    p.base_snap = Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
                }
                p.status = SyncStatus::Stopped;
            }
            SyncStatus::Syncing => {
                if p.base_snap.is_some() {
                    p.status = SyncStatus::Stopped;
                } else {
                    p.status = SyncStatus::NotSynced;
                    p.extra.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn target_stop(&mut self, g: &mut Group, i: usize) -> R<()> {
        let periodic = !g.mode.is_sync();
        let p = &mut g.pairs[i];
        p.run = None;
        p.done_gen = None;
        match p.status {
            SyncStatus::Synced => p.status = SyncStatus::Stopped,
            SyncStatus::Syncing => match p.target_snap {
                Some(t) if periodic => {
                    // Roll back to the last complete point and keep it.
                    let gen = self.vols.snapshot_meta(t).map(|m| m.gen).unwrap_or(p.gen);
                    self.vols.promote(&mut self.store, t)?;
                    p.target_snap = Some(self.vols.snapshot(&mut self.store, &p.local, gen)?);
                    p.status = SyncStatus::Stale;
                }
                Some(_) => p.status = SyncStatus::Stopped,
                None => p.status = SyncStatus::NotSynced,
            },
            _ => {}
        }
        Ok(())
    }

    /// The array process dies: volatile state is lost, metadata and the
    /// block store are kept. Pending host writes are never acknowledged.
    pub fn crash(&mut self) {
        self.input();
        for l in self.links.values_mut() {
            *l = false;
        }
        self.outbox.clear();
        self.events.clear();
        self.pending.clear();
        for g in self.groups.values_mut() {
            g.reset_volatile();
            // A Primary handing over stays write-disabled until it hears
            // how the hand-over ended; anything else starts again.
            let forget = match g.op {
                Some(GroupOp::FailingBack) => true,
                Some(GroupOp::HandingOver) => !g.role.is_source(),
                _ => false,
            };
            if forget {
                g.op = None;
            }
        }
    }

    /// The array comes back up after [`Array::crash`]: every group that was
    /// running is stopped as by a failure (snapshots taken now, writes that
    /// were in flight recorded), a failover that was running resumes.
    pub fn restart(&mut self, now: Tick) -> R<()> {
        self.input();
        self.advance(now);
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.with_group(&name, |a, g| a.fail_group(g, StopCause::Restart))
                .transpose()?;
        }
        Ok(())
    }

    /// A message for a group this array does not have: refused, unless it
    /// is itself a refusal (no refusal answers a refusal).
    pub(super) fn no_such_group(&mut self, from: &str, msg: &Msg, name: String) {
        if !matches!(msg, Msg::Refused { .. } | Msg::OpRefused { .. }) {
            let reason = format!("group {name} does not exist on {}", self.name);
            self.send(
                from,
                Msg::Refused {
                    group: name,
                    reason,
                },
            );
        }
    }

    pub(super) fn refuse_op(&mut self, g: &Group, op: &str, reason: String) {
        let msg = Msg::OpRefused {
            group: g.name.clone(),
            op: op.to_string(),
            reason,
        };
        self.send(&g.peer.clone(), msg);
    }

    pub(super) fn refuse(&mut self, g: &Group, reason: String) {
        self.send(
            &g.peer.clone(),
            Msg::Refused {
                group: g.name.clone(),
                reason,
            },
        );
    }

    pub(super) fn on_refused(&mut self, g: &mut Group, reason: String) -> R<()> {
        self.events.push_back(Event::OperationFailed {
            group: g.name.clone(),
            op: "replication",
            reason: format!("{} refused: {reason}", g.peer),
        });
        if g.recovering.take().is_some() {
            g.requested = None;
        }
        g.reverse_pending = None;
        if g.op == Some(GroupOp::FailingBack) {
            g.op = None;
            g.restore_deadline = None;
            g.restore_after_cycle = false;
        }
        if g.started {
            self.fail_group(g, StopCause::LinkFailure)?;
        }

        Ok(())
    }

    pub(super) fn on_op_refused(&mut self, g: &mut Group, op: String, reason: String) -> R<()> {
        let op = match op.as_str() {
            "recover" => {
                if g.recovering.take().is_some() {
                    g.requested = None;
                }
                "recover"
            }
            "restore" => {
                if g.op == Some(GroupOp::FailingBack) || g.restore_after_cycle {
                    g.op = None;
                    g.restore_deadline = None;
                    g.restore_after_cycle = false;
                }
                "restore"
            }
            "reverse" => {
                g.reverse_pending = None;
                "reverse"
            }
            "failover" => {
                if g.op == Some(GroupOp::HandingOver) {
                    // The failure is reported below, with the peer's words.
                    self.hand_over_abandoned(g, None);
                }
                "failover"
            }
            _ => "creatercopygroup",
        };
        self.events.push_back(Event::OperationFailed {
            group: g.name.clone(),
            op,
            reason: format!("{} refused: {reason}", g.peer),
        });

        Ok(())
    }
}
