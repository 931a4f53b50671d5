//! Recover: after a failover, resync the old primary from the new one
//! (only the differences, unless full).

use super::*;

impl<S: BlockStore> Array<S> {
    pub(super) fn recover_prepare(&mut self, g: &mut Group, full: bool) -> R<()> {
        if g.role == Role::Primary {
            // The Hello that demotes us may not have been seen yet.
            self.demote(g);
        }
        if g.role != Role::SecondaryRev || g.started || g.op.is_some() {
            let reason = format!(
                "{} is {} for group {} and cannot be recovered into",
                self.name, g.role, g.name
            );
            self.refuse_op(g, "recover", reason);
            return Ok(());
        }
        if !full {
            if let Some(p) = g.pairs.iter().find(|p| point_gen(&self.vols, p).is_none()) {
                let reason = format!(
                    "{} on {} holds no known point; a full resync is needed",
                    p.local, self.name
                );
                self.refuse_op(g, "recover", reason);
                return Ok(());
            }
        }
        let mut changed = Vec::new();
        let mut runs_left = names::MAX_RECOVER_RANGES;
        for p in &mut g.pairs {
            // What this side changed since the point it names in its Hello:
            // since its base snapshot (it was a source), or since its
            // pre-resync snapshot (an interrupted resync wrote here).
            let mut set = match (full, p.base_snap, p.target_snap) {
                (true, _, _) => BTreeSet::new(),
                (false, Some(b), _) | (false, None, Some(b)) => self.vols.changed_since(b),
                (false, None, None) => BTreeSet::new(),
            };
            // `extra` stays until the resync completes: if this message is
            // lost, the next recover must list these blocks again.
            set.extend(p.extra.iter().copied());
            if p.gen > 0 && p.target_snap.is_none() {
                p.target_snap = Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
            }
            p.status = SyncStatus::Syncing;
            // Listed as runs while they fit in one message; beyond that the
            // pair is resent whole (more bytes, never fewer).
            let runs = Changed::runs(set);
            let listed = if runs.len() <= runs_left {
                runs_left -= runs.len();
                Changed::Ranges(runs)
            } else {
                runs_left = 0;
                Changed::All
            };
            changed.push((p.remote.clone(), listed));
        }
        g.started = true;
        self.send(
            &g.peer.clone(),
            Msg::RecoverReady {
                group: g.name.clone(),
                changed,
            },
        );
        self.note(&g.name, "recover: receiving resync".into());
        Ok(())
    }

    pub(super) fn cmd_recover(&mut self, g: &mut Group, full: bool) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_role(g, "recover", Role::PrimaryRev, || failed_over_side(g))?;
        if g.op.is_some() || g.recovering.is_some() {
            return Err(busy("recover", g));
        }
        if g.started {
            return Err(CommandError::Busy {
                op: "recover",
                group: g.name.clone(),
                what: "replication (already recovered)".into(),
            });
        }
        self.need_link(
            g,
            "recover",
            "recover runs once the old primary is reachable again",
        )?;
        let h = self.peer_state(g, "recover")?.clone();
        if !full {
            for p in &g.pairs {
                let ph = h.pairs.iter().find(|x| x.vol == p.local);
                let mine = p
                    .base_snap
                    .and_then(|s| self.vols.snapshot_meta(s))
                    .map(|m| m.gen);
                // Each side names the points its data can be diffed
                // against: its base (or exact point) and a point it
                // proposed that may have been reached. An older base
                // on either side only makes its changed set larger.
                let why = match (mine, ph) {
                    (None, _) => Some(format!(
                        "{} on {} never completed a sync, so there is no common base",
                        p.local, self.name
                    )),
                    (_, None) => Some(format!("{peer} does not know the pair")),
                    (Some(_), Some(x)) if x.point_gen.is_none() => Some(format!(
                        "{peer} holds no known point of {} (it was {} when it stopped)",
                        p.remote, x.status
                    )),
                    (Some(m), Some(x)) => {
                        let here = [Some(m), p.pending_gen];
                        let there = [x.point_gen, x.pending_gen];
                        let common = here.iter().flatten().any(|g| there.contains(&Some(*g)));
                        (!common).then(|| format!(
                            "both sides changed {} since different points (generation {:x} here, {:x} on {peer})",
                            p.local,
                            m,
                            x.point_gen.unwrap_or(0)
                        ))
                    }
                };
                if let Some(why) = why {
                    return Err(CommandError::NeedsFullResync {
                        group: g.name.clone(),
                        vol: p.local.clone(),
                        peer,
                        why,
                    });
                }
            }
        }
        // The pairs show Syncing while the handshake runs (derived
        // from `recovering` in the views, never stored: a crash that
        // drops the handshake leaves them as they were).
        g.recovering = Some(full);
        g.requested = Some(CopyState::Synchronized);
        self.send(
            &peer,
            Msg::RecoverPrepare {
                group: g.name.clone(),
                full,
            },
        );
        self.note(&g.name, format!("recover issued (full: {full})"));
        Ok(())
    }

    pub(super) fn on_recover_ready(
        &mut self,
        g: &mut Group,
        changed: Vec<(String, Changed)>,
    ) -> R<()> {
        let Some(full) = g.recovering.take() else {
            return Ok(());
        };
        for (vol, blocks) in changed {
            if let Some(p) = g.pair_mut(&vol) {
                let size = p.blocks;
                p.extra.extend(blocks.blocks(size));
            }
        }
        if full {
            for p in &mut g.pairs {
                if let Some(b) = p.base_snap.take() {
                    self.vols.delete_snap(&mut self.store, b)?;
                }
                p.extra.clear();
            }
        }
        g.started = true;
        g.recovered = true;
        self.note(&g.name, "recover: resync running".into());
        self.start_runs(g, true)?;

        Ok(())
    }
}
