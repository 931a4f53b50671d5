//! Start, stop and manual sync; sync runs (source side: `pump`), the
//! target side of data and run completion, and periodic cycles.

use super::*;

impl<S: BlockStore> Array<S> {
    /// A periodic group's next cycle is due.
    pub(super) fn cycle_timeout(&mut self, g: &mut Group) -> R<()> {
        if g.started && g.role.is_source() && !g.running() && g.op.is_none() && !Self::verifying(g)
        {
            if let Some(c) = g.next_cycle {
                if self.now >= c && self.link_up(&g.peer) {
                    self.start_runs(g, false)?;
                }
            }
        }
        Ok(())
    }

    /// Starts a sync run of every pair. `announce_full` lists pairs as full
    /// in the Start message when they have no base.
    pub(super) fn start_runs(&mut self, g: &mut Group, skip_start_msg: bool) -> R<()> {
        let periodic = !g.mode.is_sync();
        let mut announced = Vec::new();
        // One point for the whole group: a periodic cycle freezes every
        // volume at this same instant, so the target is group-consistent.
        self.point_counter += 1;
        let point = self.point_counter;
        let label = g.next_label.take();
        for i in 0..g.pairs.len() {
            let p = &mut g.pairs[i];
            let (mut queue, full) = match p.base_snap {
                Some(base) => (self.vols.changed_since(base), false),
                None if p.fresh_target => (
                    self.store.allocated_blocks(&p.local)?.into_iter().collect(),
                    true,
                ),
                None => ((0..p.blocks).collect::<BTreeSet<u64>>(), true),
            };
            queue.extend(p.extra.iter().copied());
            p.fresh_target = false;
            // Periodic mode ships a frozen point (also for a first or full
            // sync); sync mode resyncs from the live base.
            let kind = if periodic {
                let c = self.vols.snapshot(&mut self.store, &p.local, 0)?;
                p.cycle_snap = Some(c);
                RunKind::Cycle
            } else {
                RunKind::Resync
            };
            if kind == RunKind::Cycle {
                self.events.push_back(Event::PointTaken {
                    group: g.name.clone(),
                    vol: p.local.clone(),
                    point,
                });
            }
            let total = queue.len() as u64;
            p.run = Some(Run {
                kind,
                queue,
                unacked: 0,
                total,
                done_sent: false,
                sent_gen: None,
                point,
                at: self.now,
                label: label.clone(),
            });
            p.status = SyncStatus::Syncing;
            announced.push((p.remote.clone(), full));
        }
        if periodic {
            // A periodic group's next cycle is a period away; an async
            // group's is due when a host write makes one (`write_blocks`).
            g.next_cycle = match g.mode {
                Mode::Periodic { .. } => g.mode.first_cycle(self.now),
                _ => None,
            };
            let moving = g.pairs.iter().any(|p| p.progress().0 > 0);
            g.cycle_oldest = g.dirty_since.take().or_else(|| moving.then_some(self.now));
        }
        g.error = None;
        g.probe_at = None;
        if !skip_start_msg {
            self.send(
                &g.peer.clone(),
                Msg::Start {
                    group: g.name.clone(),
                    pairs: announced,
                },
            );
        }
        self.pump(g)
    }

    /// Sends queued blocks up to the window and completes drained pairs.
    pub(super) fn pump(&mut self, g: &mut Group) -> R<()> {
        if !g.started || !self.link_up(&g.peer) {
            return Ok(());
        }
        for i in 0..g.pairs.len() {
            loop {
                let p = &mut g.pairs[i];
                let Some(run) = p.run.as_mut() else { break };
                if run.unacked >= self.config.window {
                    break;
                }
                let room = (self.config.window - run.unacked).min(self.config.run_batch.max(1));
                let picked: Vec<u64> = std::iter::from_fn(|| run.queue.pop_first())
                    .take(room as usize)
                    .collect();
                if picked.is_empty() {
                    break;
                }
                run.unacked += picked.len() as u64;
                let kind = run.kind;
                let mut blocks = Vec::with_capacity(picked.len());
                for block in picked {
                    let mut data = Box::new([0u8; BLOCK_SIZE]);
                    match (kind, p.cycle_snap) {
                        (RunKind::Cycle, Some(c)) => {
                            self.vols.read_snap(&mut self.store, c, block, &mut data)?
                        }
                        _ => self
                            .vols
                            .read(&mut self.store, &p.local, block, &mut data)?,
                    }
                    self.counters.sync_bytes_sent += BLOCK_SIZE as u64;
                    blocks.push(RunBlock { block, data });
                }
                let msg = if blocks.len() == 1 {
                    let RunBlock { block, data } = blocks.pop().expect("one");
                    Msg::Data {
                        group: g.name.clone(),
                        vol: p.remote.clone(),
                        block,
                        data,
                        tag: DataTag::Sync,
                    }
                } else {
                    Msg::SyncBlocks {
                        group: g.name.clone(),
                        vol: p.remote.clone(),
                        blocks,
                    }
                };
                self.send(&g.peer.clone(), msg);
            }
            let p = &mut g.pairs[i];
            let drained =
                matches!(&p.run, Some(r) if r.queue.is_empty() && r.unacked == 0 && !r.done_sent);
            if drained {
                let gen = self.new_gen();
                let p = &mut g.pairs[i];
                let run = p.run.as_mut().expect("drained");
                run.done_sent = true;
                run.sent_gen = Some(gen);
                let point = run.point;
                let kind = run.kind;
                let (at, label) = (run.at, run.label.clone());
                if let Some(c) = p.cycle_snap {
                    self.vols.set_gen(c, gen);
                }
                if kind == RunKind::Resync {
                    self.events.push_back(Event::PointTaken {
                        group: g.name.clone(),
                        vol: p.local.clone(),
                        point,
                    });
                }
                p.pending_gen = Some(gen);
                p.status = SyncStatus::Synced;
                let msg = Msg::SyncDone {
                    group: g.name.clone(),
                    vol: p.remote.clone(),
                    gen,
                    at,
                    label,
                };
                self.send(&g.peer.clone(), msg);
            }
        }
        Ok(())
    }

    /// The target holds pair `i`'s proposed point: record it, keep it as
    /// the last complete point (periodic mode), and confirm to the source.
    pub(super) fn complete_target_pair(&mut self, g: &mut Group, i: usize, from: &str) -> R<()> {
        let periodic = !g.mode.is_sync();
        let now = self.now;
        let p = &mut g.pairs[i];
        let Some(gen) = p.done_gen.take() else {
            return Ok(());
        };
        p.gen = gen;
        p.status = SyncStatus::Synced;
        p.last_sync = Some(now);
        p.extra.clear();
        let old: Vec<SnapId> = [p.target_snap.take(), p.base_snap.take()]
            .into_iter()
            .flatten()
            .collect();
        let local = p.local.clone();
        let remote = p.remote.clone();
        for s in old {
            self.vols.delete_snap(&mut self.store, s)?;
        }
        if periodic {
            let t = self.vols.snapshot(&mut self.store, &local, gen)?;
            g.pairs[i].target_snap = Some(t);
        }
        self.send(
            from,
            Msg::SyncDoneAck {
                group: g.name.clone(),
                vol: remote,
                gen,
            },
        );
        Ok(())
    }

    pub(super) fn sync_done_ack(&mut self, g: &mut Group, vol: &str, gen: u64) -> R<()> {
        let periodic = !g.mode.is_sync();
        let now = self.now;
        let Some(p) = g.pair_mut(vol) else {
            return Ok(());
        };
        if p.run.as_ref().and_then(|r| r.sent_gen) != Some(gen) {
            return Ok(());
        }
        let point = p.run.as_ref().map(|r| r.point);
        p.gen = gen;
        p.pending_gen = None;
        p.run = None;
        p.extra.clear();
        p.last_sync = Some(now);
        let old_base = p.base_snap.take();
        if periodic {
            p.base_snap = p.cycle_snap.take();
        }
        let local = p.local.clone();
        if let Some(b) = old_base {
            self.vols.delete_snap(&mut self.store, b)?;
        }
        if let Some(point) = point {
            self.events.push_back(Event::PointReached {
                group: g.name.clone(),
                vol: local,
                point,
            });
        }
        if !g.running() {
            g.cycle_oldest = None;
            g.caught_up = true;
            if let Some((since, _)) = g.draining_since.take() {
                self.release_held(&g.name.clone());
                let ms = self.now.0.saturating_sub(since.0);
                self.note(&g.name, format!("switch to sync drained in {ms} ms"));
            }
            if g.requested == Some(CopyState::Synchronized) {
                g.requested = None;
            }
            if g.op == Some(GroupOp::HandingOver) {
                // The final cycle of a planned failover is complete.
                self.send_hand_over(g);
            } else if g.restore_after_cycle {
                g.restore_after_cycle = false;
                g.op = Some(GroupOp::FailingBack);
                self.send(
                    &g.peer.clone(),
                    Msg::RestorePrepare {
                        group: g.name.clone(),
                    },
                );
            } else if let Some(c) = g.next_cycle {
                if self.now >= c {
                    self.start_runs(g, false)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn cmd_start(&mut self, g: &mut Group) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_source(g, "startrcopygroup")?;
        if g.role == Role::PrimaryRev && !g.recovered {
            return Err(CommandError::WrongSide {
                op: "startrcopygroup",
                need: "recovered",
                hint: format!("run `setrcopygroup recover {}` here first", g.name),
                array: self.name.clone(),
                role: g.role,
                group: g.name.clone(),
            });
        }
        if g.started {
            return Err(CommandError::Busy {
                op: "startrcopygroup",
                group: g.name.clone(),
                what: "the group (already started)".into(),
            });
        }
        if g.op.is_some() {
            return Err(busy("startrcopygroup", g));
        }
        if g.pairs.is_empty() {
            return Err(CommandError::Empty {
                op: "startrcopygroup",
                group: g.name.clone(),
                peer,
            });
        }
        self.need_link(
            g,
            "startrcopygroup",
            "replication resumes when the link is back",
        )?;
        self.need_agreement(g, "startrcopygroup")?;
        g.started = true;
        g.requested = Some(CopyState::Synchronized);
        self.start_runs(g, false)?;
        Ok(())
    }

    pub(super) fn cmd_stop(&mut self, g: &mut Group) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_source(g, "stoprcopygroup")?;
        if !g.started {
            return Err(CommandError::NotStarted {
                op: "stoprcopygroup",
                group: g.name.clone(),
            });
        }
        if g.op.is_some() {
            return Err(busy("stoprcopygroup", g));
        }
        self.send(
            &peer,
            Msg::Stop {
                group: g.name.clone(),
            },
        );
        self.fail_group(g, StopCause::Operator)?;
        g.requested = Some(CopyState::Inactive);
        Ok(())
    }

    pub(super) fn cmd_sync(
        &mut self,
        g: &mut Group,
        label: Option<String>,
    ) -> Result<(), CommandError> {
        self.need_source(g, "syncrcopy")?;
        if g.mode.is_sync() {
            return Err(CommandError::Busy {
                op: "syncrcopy",
                group: g.name.clone(),
                what: "synchronous replication (syncrcopy is for periodic groups)".into(),
            });
        }
        if !g.started {
            return Err(CommandError::NotStarted {
                op: "syncrcopy",
                group: g.name.clone(),
            });
        }
        if g.running() || g.op.is_some() || Self::verifying(g) {
            return Err(CommandError::Busy {
                op: "syncrcopy",
                group: g.name.clone(),
                what: "a sync".into(),
            });
        }
        // The point is taken here, at once, on every volume of the group:
        // no host write needs holding for it to be consistent across them.
        g.next_label = label;
        self.start_runs(g, false)?;
        Ok(())
    }

    pub(super) fn on_data(
        &mut self,
        g: &mut Group,
        from: &str,
        vol: String,
        block: u64,
        data: Box<Block>,
        tag: DataTag,
    ) -> R<()> {
        if let Some(reason) = self.not_receiving(g, &vol) {
            self.refuse(g, reason);
            return Ok(());
        }
        match tag {
            DataTag::Sync => self.vols.write_run(&mut self.store, &vol, block, &data)?,
            DataTag::Write(_) => self.vols.write(&mut self.store, &vol, block, &data)?,
        }
        self.counters.bytes_applied += BLOCK_SIZE as u64;
        let remote = remote_of(g, &vol);
        self.send(
            from,
            Msg::DataAck {
                group: g.name.clone(),
                vol: remote,
                block,
                tag,
            },
        );

        Ok(())
    }

    pub(super) fn on_sync_blocks(
        &mut self,
        g: &mut Group,
        from: &str,
        vol: String,
        blocks: Vec<RunBlock>,
    ) -> R<()> {
        if let Some(reason) = self.not_receiving(g, &vol) {
            self.refuse(g, reason);
            return Ok(());
        }
        let count = blocks.len() as u64;
        for b in blocks {
            self.vols
                .write_run(&mut self.store, &vol, b.block, &b.data)?;
            self.counters.bytes_applied += BLOCK_SIZE as u64;
        }
        let remote = remote_of(g, &vol);
        self.send(
            from,
            Msg::SyncBlocksAck {
                group: g.name.clone(),
                vol: remote,
                count,
            },
        );

        Ok(())
    }

    pub(super) fn on_sync_blocks_ack(&mut self, g: &mut Group, vol: String, count: u64) -> R<()> {
        let Some(p) = g.pair_mut(&vol) else {
            return Ok(());
        };
        if let Some(run) = p.run.as_mut() {
            run.unacked = run.unacked.saturating_sub(count);
        }
        self.pump(g)?;

        Ok(())
    }

    pub(super) fn on_data_ack(
        &mut self,
        g: &mut Group,
        vol: String,
        block: u64,
        tag: DataTag,
    ) -> R<()> {
        let Some(p) = g.pair_mut(&vol) else {
            return Ok(());
        };
        match tag {
            DataTag::Write(id) => {
                if let Some(c) = p.inflight.get_mut(&block) {
                    *c -= 1;
                    if *c == 0 {
                        p.inflight.remove(&block);
                    }
                }
                if let Some(w) = self.pending.get_mut(&id) {
                    if let Some(n) = w.waiting.get_mut(&g.name) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            w.waiting.remove(&g.name);
                        }
                    }
                    self.finish_write(id);
                }
            }
            DataTag::Sync => {
                if let Some(run) = p.run.as_mut() {
                    run.unacked = run.unacked.saturating_sub(1);
                }
                self.pump(g)?;
            }
        }

        Ok(())
    }

    pub(super) fn on_start(&mut self, g: &mut Group, pairs: Vec<(String, bool)>) -> R<()> {
        if g.role.is_source() {
            let reason = format!(
                "{} is {} for group {}; it does not receive",
                self.name, g.role, g.name
            );
            self.refuse(g, reason);
            return Ok(());
        }
        g.started = true;
        for (vol, _full) in pairs {
            let Some(p) = g.pair_mut(&vol) else { continue };
            p.done_gen = None;
            if p.gen > 0 && p.target_snap.is_none() {
                p.target_snap = Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
            }
            p.status = SyncStatus::Syncing;
        }

        Ok(())
    }

    pub(super) fn on_sync_done(
        &mut self,
        g: &mut Group,
        from: &str,
        vol: String,
        gen: u64,
        point: (Tick, Option<String>),
    ) -> R<()> {
        if g.role.is_source() || !g.started {
            return Ok(());
        }
        let Some(p) = g.pair_mut(&vol) else {
            return Ok(());
        };
        p.done_gen = Some(gen);
        g.receiving_point = Some(point);
        // Sync mode: each pair on its own. Periodic mode: the cycle
        // is one group point, taken when its last pair is done, so
        // the target never holds volumes of two different cycles
        // (and acks nothing the source could build on before).
        let ready: Vec<usize> = if g.mode.is_sync() {
            g.pairs
                .iter()
                .position(|p| p.local == vol)
                .into_iter()
                .collect()
        } else if g.pairs.iter().all(|p| p.done_gen.is_some()) {
            (0..g.pairs.len()).collect()
        } else {
            Vec::new()
        };
        let whole = !g.mode.is_sync() && !ready.is_empty();
        for i in ready {
            self.complete_target_pair(g, i, from)?;
        }
        if whole {
            // The group's point is complete here: the backup keeps it.
            let (at, label) = g.receiving_point.take().expect("set above");
            self.retain_point(g, at, label)?;
        }

        Ok(())
    }

    pub(super) fn on_stop(&mut self, g: &mut Group) -> R<()> {
        if !g.role.is_source() {
            self.fail_group(g, StopCause::Operator)?;
        }

        Ok(())
    }
}
