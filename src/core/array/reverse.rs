//! Reverse: swap the natural roles of a stopped, identical group.

use super::*;

impl<S: BlockStore> Array<S> {
    pub(super) fn reverse_check(&self, g: &Group) -> Result<(), String> {
        if g.role.is_reversed() {
            return Err(format!(
                "group {} is failed over ({} on {}); use `setrcopygroup recover` then `restore` to go back",
                g.name, g.role, self.name
            ));
        }
        if g.started {
            return Err(format!(
                "group {} is started on {}; stop it first",
                g.name, self.name
            ));
        }
        if g.op.is_some() {
            return Err(format!("group {} is busy on {}", g.name, self.name));
        }
        for p in &g.pairs {
            if p.status != SyncStatus::Stopped {
                return Err(format!(
                    "{} is {} on {}; both sides must hold the same data (Stopped after a complete sync)",
                    p.local, p.status, self.name
                ));
            }
            let snap = if g.role.is_source() {
                p.base_snap
            } else {
                p.target_snap
            };
            let changed = snap.map(|s| self.vols.changed_count(s)).unwrap_or(0) + p.extra.len();
            if g.role.is_source() && snap.is_none() {
                return Err(format!("{} on {} has no base snapshot", p.local, self.name));
            }
            if changed > 0 {
                return Err(format!(
                    "{} on {} has {changed} blocks changed since the group stopped; start the group and let it sync first",
                    p.local, self.name
                ));
            }
        }
        Ok(())
    }

    pub(super) fn apply_reverse(&mut self, g: &mut Group, epoch: u64) -> R<()> {
        let becomes_source = !g.role.is_source();
        g.role = if becomes_source {
            Role::Primary
        } else {
            Role::Secondary
        };
        g.epoch = epoch;
        g.stop_cause = StopCause::Reversed;
        g.requested = None;
        g.recovered = false;
        g.reverse_pending = None;
        let periodic = !g.mode.is_sync();
        for p in &mut g.pairs {
            if becomes_source {
                p.base_snap = match p.target_snap.take() {
                    Some(t) => Some(t),
                    None => Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?),
                };
            } else if let Some(b) = p.base_snap.take() {
                if periodic {
                    p.target_snap = Some(b);
                } else {
                    self.vols.delete_snap(&mut self.store, b)?;
                }
            }
        }
        self.note(&g.name, format!("reversed: now {}", g.role));
        self.announce(g);
        Ok(())
    }

    pub(super) fn cmd_reverse(&mut self, g: &mut Group) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_link(g, "reverse", "both arrays must agree on the new direction")?;
        self.peer_state(g, "reverse")?;
        if g.reverse_pending.is_some() {
            return Err(busy("reverse", g));
        }
        self.reverse_check(g)
            .map_err(|why| CommandError::CannotReverse { why })?;
        let epoch = g
            .epoch
            .max(g.peer_hello.as_ref().map(|h| h.epoch).unwrap_or(0))
            + 1;
        g.reverse_pending = Some(epoch);
        self.send(
            &peer,
            Msg::Reverse {
                group: g.name.clone(),
                epoch,
            },
        );
        Ok(())
    }

    pub(super) fn on_reverse(&mut self, g: &mut Group, from: &str, epoch: u64) -> R<()> {
        match self.reverse_check(g) {
            Ok(()) => {
                self.apply_reverse(g, epoch)?;
                self.send(
                    from,
                    Msg::ReverseDone {
                        group: g.name.clone(),
                        epoch,
                    },
                );
            }
            Err(reason) => self.refuse_op(g, "reverse", reason),
        }
        Ok(())
    }

    pub(super) fn on_reverse_done(&mut self, g: &mut Group, epoch: u64) -> R<()> {
        if g.reverse_pending == Some(epoch) {
            self.apply_reverse(g, epoch)?;
        }

        Ok(())
    }
}
