//! Link up: the Hello that lists every shared group, its reconciliation
//! (roles, epochs, pair membership), and demotion of a stale source.

use super::*;

impl<S: BlockStore> Array<S> {
    pub fn handle_link_up(&mut self, now: Tick, peer: &str) {
        self.input();
        self.advance(now);
        if self.link_up(peer) {
            return;
        }
        self.links.insert(peer.to_string(), true);
        let mut hellos = Vec::new();
        for g in self.groups.values_mut().filter(|g| g.peer == peer) {
            g.peer_hello = None;
            g.peer_missing = false;
            g.auto_recover_armed =
                matches!(g.stop_cause, StopCause::LinkFailure | StopCause::Restart) && !g.started;
            // A group in Error resumes when a probe finds the destination
            // caught up, not at the link-up itself.
            if g.stop_cause == StopCause::Congested && !g.started && g.policies.auto_recover {
                g.probe_at = Some(self.now.plus(congestion::PROBE_MS));
            }
            hellos.push(Self::hello_of(g, &self.vols));
        }
        // The listing goes in parts, so no frame outgrows the link's limit;
        // the last part (possibly empty) says the listing is complete.
        let mut parts: Vec<Vec<GroupHello>> = Vec::new();
        let mut rest = hellos.into_iter().peekable();
        while rest.peek().is_some() {
            parts.push(rest.by_ref().take(names::HELLO_GROUPS).collect());
        }
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        let last = parts.len() - 1;
        for (i, groups) in parts.into_iter().enumerate() {
            let msg = Msg::Hello {
                array: self.name.clone(),
                groups,
                complete: i == last,
            };
            self.send(peer, msg);
        }
    }

    /// Tells the peer this group's state after a role change, so its last
    /// Hello for the group stays true.
    pub(super) fn announce(&mut self, g: &Group) {
        let msg = Msg::Hello {
            array: self.name.clone(),
            groups: vec![Self::hello_of(g, &self.vols)],
            complete: false,
        };
        self.send(&g.peer.clone(), msg);
    }

    pub(super) fn hello_of(g: &Group, vols: &Volumes) -> GroupHello {
        GroupHello {
            group: g.name.clone(),
            role: g.role,
            epoch: g.epoch,
            started: g.started,
            mode: g.mode,
            policies: g.policies,
            pairs: g
                .pairs
                .iter()
                .map(|p| PairHello {
                    vol: p.remote.clone(),
                    status: p.status,
                    point_gen: point_gen(vols, p),
                    pending_gen: p.pending_gen,
                    gen: p.gen,
                })
                .collect(),
        }
    }

    pub(super) fn on_hello(
        &mut self,
        from: &str,
        groups: Vec<GroupHello>,
        complete: bool,
    ) -> R<()> {
        for gh in groups {
            self.with_group(&gh.group.clone(), |a, g| {
                if g.peer == from {
                    a.hello(g, gh)
                } else {
                    Ok(())
                }
            })
            .transpose()?;
        }
        if complete {
            // What the peer did not list since the link came up, it
            // does not have.
            for g in self.groups.values_mut() {
                if g.peer == from && g.peer_hello.is_none() {
                    g.peer_missing = true;
                }
            }
        }
        Ok(())
    }

    pub(super) fn demote(&mut self, g: &mut Group) {
        g.role = Role::SecondaryRev;
        g.stop_cause = StopCause::PeerFailedOver;
        g.started = false;
        g.op = None;
        g.requested = None;
        g.next_cycle = None;
        self.note(
            &g.name,
            format!("{} failed over: now Secondary-Rev", g.peer),
        );
        self.announce(g);
    }

    pub(super) fn hello(&mut self, g: &mut Group, h: GroupHello) -> R<()> {
        // A target follows its source's configuration (a Config message
        // lost with the link would leave the two sides disagreeing on the
        // mode: a periodic target would fail over to its last point and
        // lose writes its sync source acknowledged).
        if h.role.is_source() && !g.role.is_source() && (g.mode, g.policies) != (h.mode, h.policies)
        {
            g.mode = h.mode;
            g.policies = h.policies;
            self.note(
                &g.name,
                format!("configuration from {}: {:?}", g.peer, h.mode),
            );
        }
        if h.epoch > g.epoch && h.role.counterpart() != g.role && !g.role.is_reversed() {
            // A reversal we did not hear about completed on the peer.
            self.apply_reverse(g, h.epoch)?;
        }
        if g.reverse_pending.is_some_and(|e| h.epoch < e) {
            // The peer never got our reverse: nothing changed, resume.
            g.reverse_pending = None;
        }
        match (g.role, h.role) {
            (Role::Primary, Role::PrimaryRev) => {
                if g.started {
                    self.fail_group(g, StopCause::PeerFailedOver)?;
                }
                self.demote(g);
            }
            (Role::SecondaryRev, Role::Secondary) => {
                // The restore commit was lost with the link; it did happen.
                self.complete_restore_as_new_primary(g);
            }
            (Role::Primary, Role::Secondary) if g.op == Some(GroupOp::HandingOver) => {
                // A new session and the peer is still Secondary: the
                // hand-over never took effect there. Writes resume here.
                let why = format!(
                    "{} did not take over before the link failed; {} is Primary again",
                    g.peer, self.name
                );
                self.hand_over_abandoned(g, Some(why));
                self.note(&g.name, "planned failover abandoned".into());
            }
            _ => {}
        }
        self.reconcile_pairs(g, &h)?;
        let armed = std::mem::take(&mut g.auto_recover_armed);
        let agreed = h.role == g.role.counterpart();
        g.peer_hello = Some(h);
        g.peer_missing = false;
        let may_run = g.role == Role::Primary || (g.role == Role::PrimaryRev && g.recovered);
        if armed
            && g.policies.auto_recover
            && agreed
            && may_run
            && !g.started
            && g.op.is_none()
            && !g.pairs.is_empty()
        {
            g.started = true;
            g.requested = Some(CopyState::Synchronized);
            self.note(&g.name, "auto_recover: restarting".into());
            self.start_runs(g, false)?;
        }
        Ok(())
    }

    /// The source's pairs are the group's. An admit or a dismiss lost with
    /// the link leaves the two sides with different pairs; each Hello
    /// repairs that: a source resends the admit of every pair the target
    /// lacks (it goes first, before anything that starts the group), and a
    /// target drops every pair the source does not list (its volume and
    /// data stay; it is just no longer replicated).
    pub(super) fn reconcile_pairs(&mut self, g: &mut Group, h: &GroupHello) -> R<()> {
        let listed = |v: &str| h.pairs.iter().any(|x| x.vol == v);
        if g.role.is_source() && !h.role.is_source() {
            let missing: Vec<Msg> = g
                .pairs
                .iter()
                .filter(|p| !listed(&p.remote))
                .map(|p| Msg::Admit {
                    group: g.name.clone(),
                    vol: p.remote.clone(),
                    source_vol: p.local.clone(),
                    blocks: p.blocks,
                })
                .collect();
            for m in missing {
                self.send(&g.peer.clone(), m);
            }
        } else if !g.role.is_source() && h.role.is_source() {
            let gone: Vec<usize> = (0..g.pairs.len())
                .rev()
                .filter(|&i| !listed(&g.pairs[i].local))
                .collect();
            for i in gone {
                let p = self.drop_pair(g, i)?;
                self.note(
                    &g.name,
                    format!(
                        "{} is no pair of the group on {}: dropped here",
                        p.local, g.peer
                    ),
                );
            }
        }
        Ok(())
    }
}
