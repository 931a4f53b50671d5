//! Membership: create and remove groups, admit and dismiss pairs, on both
//! sides.

use super::*;

impl<S: BlockStore> Array<S> {
    pub(super) fn on_create_group(
        &mut self,
        from: &str,
        group: String,
        mode: Mode,
        policies: Policies,
    ) {
        if self.groups.contains_key(&group) {
            let reason = format!("group {group} already exists on {}", self.name);
            self.send(
                from,
                Msg::OpRefused {
                    group,
                    op: "creatercopygroup".into(),
                    reason,
                },
            );
        } else {
            let g = new_group(&group, from, Role::Secondary, mode, policies);
            self.announce(&g);
            self.groups.insert(group.clone(), g);
            self.note(&group, format!("created as Secondary of {from}"));
        }
    }

    pub(super) fn on_remove_group(&mut self, from: &str, group: String, remove_vv: bool) -> R<()> {
        // A group this array does not have, or shares with another array:
        // nothing to remove, nothing to say.
        if self.groups.get(&group).is_none_or(|g| g.peer != from) {
            return Ok(());
        }
        let g = self.groups.remove(&group).expect("checked");
        self.unhold_group(&g);
        self.drop_group_snaps(&g)?;
        self.note(&group, "removed by peer".into());
        if remove_vv && !g.role.is_source() {
            self.remove_group_volumes(&g)?;
        }
        Ok(())
    }

    /// `removercopygroup -removevv` on the target: its volumes of the
    /// group go, with the copies the group retained of them. A volume
    /// that is still in use (another group holds it, or it has other
    /// snapshots, or snapshot replicas or a clone still copying: what the
    /// volume table refuses to delete) is kept, and a note says why.
    fn remove_group_volumes(&mut self, g: &Group) -> R<()> {
        for p in &g.pairs {
            self.prune_retained(&g.name, &p.local, 0)?;
            let kept = match self.holders_of(&p.local).first() {
                Some(other) => Some(format!("group {other} holds it")),
                // The volume table's own rules say what else keeps it.
                None => match self.vols.delete(&mut self.store, &p.local) {
                    Ok(()) => None,
                    Err(e @ (VolumeError::HasReplica { .. } | VolumeError::HasSnapshots(_))) => {
                        Some(e.to_string())
                    }
                    Err(e) => return Err(e),
                },
            };
            let text = match kept {
                Some(why) => format!("-removevv: kept {} ({why})", p.local),
                None => format!("-removevv: deleted {}", p.local),
            };
            self.note(&g.name, text);
        }
        self.vols_changed_at = self.generation;
        Ok(())
    }

    pub(super) fn drop_group_snaps(&mut self, g: &Group) -> R<()> {
        for p in &g.pairs {
            for s in [p.base_snap, p.target_snap, p.cycle_snap]
                .into_iter()
                .flatten()
            {
                self.vols.delete_snap(&mut self.store, s)?;
            }
        }
        Ok(())
    }

    pub(super) fn cmd_admit(
        &mut self,
        g: &mut Group,
        vol: String,
        remote_vol: String,
    ) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_role(g, "admitrcopyvv", Role::Primary, || {
            if g.role == Role::Secondary {
                g.peer.clone()
            } else {
                "restore the natural direction first".into()
            }
        })?;
        if g.op == Some(GroupOp::HandingOver) {
            return Err(busy("admitrcopyvv", g));
        }
        if g.started {
            return Err(CommandError::NotStopped {
                op: "admitrcopyvv",
                group: g.name.clone(),
                source_array: self.name.clone(),
            });
        }
        let blocks = self
            .vols
            .meta(&vol)
            .map(|m| m.blocks)
            .ok_or_else(|| VolumeError::NoSuchVolume(vol.clone()))?;
        if self.vols.replica(&vol).is_some() {
            return Err(VolumeError::ReplicaState {
                vol,
                what: "a local clone",
                hint: "detach it from its source first (ModifyReplicaSynchronization 8)",
            }
            .into());
        }
        if g.pairs
            .iter()
            .any(|p| p.local == vol || p.remote == remote_vol)
        {
            return Err(CommandError::AlreadyAdmitted {
                vol,
                group: g.name.clone(),
            });
        }
        if g.pairs.len() >= names::MAX_PAIRS {
            return Err(CommandError::TooManyPairs {
                group: g.name.clone(),
                limit: names::MAX_PAIRS,
            });
        }
        // The other groups holding the volume (this one is out of the map).
        let others: Vec<&Group> = self
            .holders_of(&vol)
            .iter()
            .filter_map(|n| self.groups.get(n))
            .collect();
        if let Some(t) = others.iter().find(|o| !o.role.is_source()) {
            return Err(CommandError::VolumeIsTarget {
                vol,
                group: t.name.clone(),
                array: self.name.clone(),
            });
        }
        let mirrors = others
            .iter()
            .flat_map(|o| &o.pairs)
            .filter(|p| p.local == vol)
            .count();
        if mirrors >= MAX_MIRRORS {
            return Err(CommandError::TooManyMirrors {
                vol,
                limit: MAX_MIRRORS,
            });
        }
        if !self.link_up(&peer) {
            return Err(CommandError::LinkDown {
                op: "admitrcopyvv",
                peer,
                hint: "the target volume is set up on the peer; bring the link up first".into(),
            });
        }
        g.pairs.push(Pair::new(&vol, &remote_vol, blocks, self.now));
        self.hold(g, &vol);
        self.send(
            &peer,
            Msg::Admit {
                group: g.name.clone(),
                vol: remote_vol,
                source_vol: vol,
                blocks,
            },
        );
        Ok(())
    }

    pub(super) fn cmd_dismiss(&mut self, g: &mut Group, vol: String) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        // The source's pairs are the group's: a target dismisses
        // only while it can tell the source (else the next Hello
        // would bring the pair back).
        if !g.role.is_source() {
            self.need_link(
                g,
                "dismissrcopyvv",
                "on the target side the source must hear of it; dismiss on the source side, or bring the link up",
            )?;
        }
        if g.op == Some(GroupOp::HandingOver) {
            return Err(busy("dismissrcopyvv", g));
        }
        if g.started {
            return Err(CommandError::NotStopped {
                op: "dismissrcopyvv",
                group: g.name.clone(),
                source_array: self.source_name(g),
            });
        }
        let i = g.pairs.iter().position(|p| p.local == vol).ok_or_else(|| {
            CommandError::NotInGroup {
                vol: vol.clone(),
                group: g.name.clone(),
            }
        })?;
        let p = self.drop_pair(g, i)?;
        self.send(
            &peer,
            Msg::Dismiss {
                group: g.name.clone(),
                vol: p.remote,
            },
        );
        Ok(())
    }

    pub(super) fn on_admit(
        &mut self,
        g: &mut Group,
        from: &str,
        vol: String,
        source_vol: String,
        blocks: u64,
    ) -> R<()> {
        // Only a target takes new pairs. The same pair again is a
        // success (a source resends an admit whose answer it lost).
        let same = g
            .pairs
            .iter()
            .any(|p| p.local == vol && p.remote == source_vol && p.blocks == blocks);
        let error = if g.role.is_source() {
            Some(format!(
                "{} is {} for group {}; only a target takes new pairs",
                self.name, g.role, g.name
            ))
        } else if !same && (g.started || g.op.is_some()) {
            Some(format!(
                "group {} is {} on {}; pairs are admitted to a stopped group",
                g.name,
                if g.started { "started" } else { "busy" },
                self.name
            ))
        } else if same {
            None
        } else if g.pairs.iter().any(|p| p.local == vol) {
            Some(format!(
                "{vol} is already in group {} on {}",
                g.name, self.name
            ))
        } else if g.pairs.len() >= names::MAX_PAIRS {
            Some(format!(
                "group {} already has {} pairs on {}",
                g.name,
                names::MAX_PAIRS,
                self.name
            ))
        } else if let Some(other) = self
            .groups
            .values()
            .find(|o| o.role.is_source() && o.pairs.iter().any(|p| p.local == vol))
        {
            Some(format!(
                "{vol} is a source in group {} on {}",
                other.name, self.name
            ))
        } else {
            match self.vols.meta(&vol) {
                Some(m) if m.blocks != blocks => Some(format!(
                    "{vol} on {} has {} blocks but {source_vol} has {blocks}; sizes must match",
                    self.name, m.blocks
                )),
                _ => None,
            }
        };
        let mut fresh = false;
        let error = match error {
            Some(e) => Some(e),
            None if !self.vols.exists(&vol) => match self.make_volume(&vol, blocks) {
                Ok(()) => {
                    fresh = true;
                    None
                }
                Err(e) => Some(e.to_string()),
            },
            None => None,
        };
        if error.is_none() && !same {
            g.pairs.push(Pair::new(&vol, &source_vol, blocks, self.now));
            self.hold(g, &vol);
        }
        let reply = Msg::AdmitResult {
            group: g.name.clone(),
            vol: source_vol,
            fresh,
            error,
        };
        self.send(from, reply);

        Ok(())
    }

    pub(super) fn on_admit_result(
        &mut self,
        g: &mut Group,
        vol: String,
        fresh: bool,
        error: Option<String>,
    ) -> R<()> {
        match error {
            Some(reason) => {
                if let Some(i) = g.pairs.iter().position(|p| p.local == vol) {
                    let p = g.pairs.remove(i);
                    self.unhold(g, &p.local);
                }
                self.events.push_back(Event::OperationFailed {
                    group: g.name.clone(),
                    op: "admitrcopyvv",
                    reason,
                });
            }
            None => {
                if let Some(p) = g.pair_mut(&vol) {
                    p.fresh_target = fresh;
                }
            }
        }
        Ok(())
    }

    pub(super) fn on_dismiss(&mut self, g: &mut Group, vol: String) -> R<()> {
        if let Some(i) = g.pairs.iter().position(|p| p.local == vol) {
            let p = self.drop_pair(g, i)?;
            // A target's dismiss is a request; the source answers
            // with its own, so that an admit it sent meanwhile (a
            // Hello's reconcile crossing the dismiss) is undone on
            // the target in session order. A target never echoes.
            if g.role.is_source() {
                let peer = g.peer.clone();
                self.send(
                    &peer,
                    Msg::Dismiss {
                        group: g.name.clone(),
                        vol: p.remote,
                    },
                );
            }
        }

        Ok(())
    }

    pub(super) fn create_group(
        &mut self,
        group: String,
        peer: String,
        mode: Mode,
        policies: Policies,
    ) -> Result<(), CommandError> {
        if self.groups.contains_key(&group) {
            return Err(CommandError::GroupExists {
                group: group.clone(),
                array: self.name.clone(),
            });
        }
        if policies.fail_wrt_on_err && !mode.is_sync() {
            return Err(CommandError::PolicyNeedsSync {
                policy: "fail_wrt_on_err",
                group: group.clone(),
            });
        }
        if !self.link_up(&peer) {
            return Err(CommandError::LinkDown {
                op: "creatercopygroup",
                peer: peer.clone(),
                hint: "the group is created on both arrays; bring the link up first".into(),
            });
        }
        self.groups.insert(
            group.clone(),
            new_group(&group, &peer, Role::Primary, mode, policies),
        );
        self.send(
            &peer,
            Msg::CreateGroup {
                group: group.clone(),
                mode,
                policies,
            },
        );
        // Until its Hello arrives, the peer is what we asked it to be:
        // the group's Secondary. A refusal (OpRefused) or a real Hello
        // replaces this.
        let g = self.groups.get_mut(&group).expect("inserted");
        g.peer_hello = Some(GroupHello {
            group: group.clone(),
            role: Role::Secondary,
            epoch: 0,
            started: false,
            mode,
            policies,
            pairs: Vec::new(),
        });
        let g = g.clone();
        self.announce(&g);
        Ok(())
    }

    pub(super) fn remove_group(
        &mut self,
        name: String,
        force: bool,
        remove_vv: bool,
    ) -> Result<(), CommandError> {
        self.need_group(&name)?;
        let g = &self.groups[&name];
        // Forced, a started group is stopped here first, on its source
        // side (which alone may stop it).
        if g.started && !(force && g.role.is_source()) {
            return Err(CommandError::NotStopped {
                op: if force {
                    "removercopygroup -f (on the target side)"
                } else {
                    "removercopygroup (without -f)"
                },
                group: name,
                source_array: self.source_name(g),
            });
        }
        if g.op.is_some() {
            return Err(busy("removercopygroup", g));
        }
        if remove_vv && !self.link_up(&g.peer) {
            return Err(CommandError::LinkDown {
                op: "removercopygroup -removevv",
                peer: g.peer.clone(),
                hint: "the target deletes its volumes when it hears of the removal; bring the link up, or remove without -removevv and delete them there".into(),
            });
        }
        if g.started {
            self.with_group(&name, |a, g| a.cmd_stop(g))
                .expect("checked")?;
        }
        let g = self.groups.remove(&name).expect("checked");
        self.unhold_group(&g);
        self.drop_group_snaps(&g)?;
        self.send(
            &g.peer,
            Msg::RemoveGroup {
                group: name,
                remove_vv,
            },
        );
        Ok(())
    }
}
