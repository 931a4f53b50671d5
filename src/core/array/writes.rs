//! Host writes: refusals on targets and during quiesces, acknowledgements
//! (locally durable, and in sync mode applied by the peer), releases.

use super::*;

impl<S: BlockStore> Array<S> {
    /// Marks blocks of the volume that this array sends to `peer` as
    /// `remote` as changed: the next sync of that pair sends them whatever
    /// the snapshots say. A shell calls it at start for blocks whose writes
    /// it may have sent to the peer before they were durable here (its
    /// activity log), so both sides end up with this side's data. Returns
    /// how many pairs it marked.
    pub fn mark_changed(
        &mut self,
        peer: &str,
        remote: &str,
        blocks: impl Iterator<Item = u64> + Clone,
    ) -> usize {
        let mut n = 0;
        for g in self.groups.values_mut() {
            if g.peer != peer || !g.role.is_source() {
                continue;
            }
            for p in g.pairs.iter_mut().filter(|p| p.remote == remote) {
                p.extra.extend(blocks.clone().filter(|b| *b < p.blocks));
                n += 1;
            }
        }
        n
    }

    /// Whether a host may write `vol` now.
    pub fn is_writable(&self, vol: &str) -> bool {
        self.vols.exists(vol) && self.write_refusal(vol).is_none()
    }

    pub(super) fn write_refusal(&self, vol: &str) -> Option<WriteError> {
        if let Some(e) = self.replica_write_refusal(vol) {
            return Some(e);
        }
        let holding: Vec<&Group> = self
            .holders_of(vol)
            .iter()
            .filter_map(|n| self.groups.get(n))
            .collect();
        for g in holding {
            if !g.role.is_source() {
                return Some(WriteError::ReadOnly {
                    vol: vol.to_string(),
                    array: self.name.clone(),
                    group: g.name.clone(),
                    role: g.role,
                });
            }
            match g.op {
                Some(GroupOp::FailingOver | GroupOp::HandingOver) => {
                    return Some(WriteError::Quiesced {
                        vol: vol.to_string(),
                        group: g.name.clone(),
                        what: "is failing over",
                    })
                }
                Some(GroupOp::FailingBack) => {
                    return Some(WriteError::Quiesced {
                        vol: vol.to_string(),
                        group: g.name.clone(),
                        what: "is failing back",
                    })
                }
                None if g.restore_after_cycle => {
                    return Some(WriteError::Quiesced {
                        vol: vol.to_string(),
                        group: g.name.clone(),
                        what: "is failing back",
                    })
                }
                None if g.reverse_pending.is_some() => {
                    return Some(WriteError::Quiesced {
                        vol: vol.to_string(),
                        group: g.name.clone(),
                        what: "is reversing its direction",
                    })
                }
                None => {}
            }
            if g.mode.is_sync()
                && g.policies.fail_wrt_on_err
                && !g.started
                && g.stop_cause.is_failure()
            {
                return Some(WriteError::CannotReplicate {
                    vol: vol.to_string(),
                    group: g.name.clone(),
                    peer: g.peer.clone(),
                });
            }
        }
        None
    }

    pub fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), VolumeError> {
        self.input();
        self.make_volume(vol, blocks)
    }

    /// A new volume, if the pool has room for it.
    pub(super) fn make_volume(&mut self, vol: &str, blocks: u64) -> Result<(), VolumeError> {
        let used = self.vols.used_blocks();
        let free = self.config.capacity_blocks.saturating_sub(used);
        if blocks > free && !self.vols.exists(vol) {
            return Err(VolumeError::PoolFull {
                vol: vol.to_string(),
                blocks,
                free,
            });
        }
        self.vols.create(&mut self.store, vol, blocks)
    }

    pub fn delete_volume(&mut self, vol: &str) -> Result<(), CommandError> {
        self.input();
        if let Some(g) = self
            .holders_of(vol)
            .iter()
            .filter_map(|n| self.groups.get(n))
            .next()
        {
            return Err(CommandError::VolumeInGroup {
                vol: vol.to_string(),
                group: g.name.clone(),
            });
        }
        if self.vols.replica(vol).is_some() {
            return Ok(self.vols.return_replica(&mut self.store, vol)?);
        }
        Ok(self.vols.delete(&mut self.store, vol)?)
    }

    pub fn read(&mut self, vol: &str, block: u64, out: &mut Block) -> Result<(), VolumeError> {
        self.vols.read(&mut self.store, vol, block, out)
    }

    /// A host write of one block.
    pub fn write(
        &mut self,
        now: Tick,
        vol: &str,
        block: u64,
        data: &Block,
    ) -> Result<WriteTicket, WriteError> {
        self.write_blocks(now, vol, block, std::slice::from_ref(data))
    }

    /// A host write of consecutive blocks from `first`: one write, one
    /// id, one completion. It is refused whole (a target, a quiesce, a
    /// block beyond the end) before any block changes. This is the only
    /// record of a pending write's progress: the shell keeps just which
    /// request an id answers.
    pub fn write_blocks(
        &mut self,
        now: Tick,
        vol: &str,
        first: u64,
        data: &[Block],
    ) -> Result<WriteTicket, WriteError> {
        self.advance(now);
        self.input();
        if let Some(e) = self.write_refusal(vol) {
            return Err(e);
        }
        self.vols.check_range(vol, first, data.len() as u64)?;
        let id = WriteId(self.next_write);
        self.next_write += 1;
        // Group -> blocks it has sent and not had acknowledged.
        let mut waiting: BTreeMap<String, u64> = BTreeMap::new();
        // Groups draining for a switch to sync: the write waits for the
        // drain (its blocks go in the resync).
        let mut held: BTreeSet<String> = BTreeSet::new();
        // Only the started groups that hold the volume have anything to do.
        let names: Vec<String> = self
            .holders_of(vol)
            .iter()
            .filter(|n| self.groups.get(*n).is_some_and(|g| g.started))
            .cloned()
            .collect();
        for (block, data) in (first..).zip(data) {
            self.vols.write(&mut self.store, vol, block, data)?;
            for name in &names {
                self.with_group(name, |a, g| {
                    let sync = g.mode.is_sync();
                    let link = a.link_up(&g.peer);
                    if g.draining_since.is_some() {
                        held.insert(g.name.clone());
                    }
                    if !sync && g.role.is_source() {
                        // For the next cycle: an async group's is due now.
                        g.dirty_since.get_or_insert(now);
                        if g.mode == Mode::Async && g.next_cycle.is_none() {
                            g.next_cycle = Some(now);
                        }
                    }
                    for p in g.pairs.iter_mut().filter(|p| p.local == vol) {
                        if let Some(run) = p.run.as_mut().filter(|r| !r.done_sent) {
                            if run.kind == RunKind::Resync {
                                run.queue.insert(block);
                            }
                            continue;
                        }
                        if sync && p.status == SyncStatus::Synced && link {
                            *p.inflight.entry(block).or_insert(0) += 1;
                            a.counters.write_bytes_sent += BLOCK_SIZE as u64;
                            let msg = Msg::Data {
                                group: g.name.clone(),
                                vol: p.remote.clone(),
                                block,
                                data: Box::new(*data),
                                tag: DataTag::Write(id),
                            };
                            a.send(&g.peer, msg);
                            *waiting.entry(g.name.clone()).or_insert(0) += 1;
                        }
                    }
                });
            }
        }
        // An async group whose backlog outgrew its bound stops here, with
        // this write applied locally and tracked for the delta resync.
        for name in &names {
            self.with_group(name, |a, g| a.check_congestion(g))
                .transpose()?;
        }
        if waiting.is_empty() && held.is_empty() {
            return Ok(WriteTicket::Done {
                id,
                replicated: false,
            });
        }
        self.pending.insert(
            id,
            PendingWrite {
                waiting,
                fell_back: false,
                failed: None,
                since: now,
                held,
            },
        );
        Ok(WriteTicket::Pending { id })
    }

    /// A group no longer waits for acks of pending writes (stopped or failed).
    pub(super) fn release_writes(&mut self, group: &str, fail: Option<String>) {
        let ids: Vec<WriteId> = self
            .pending
            .iter()
            .filter(|(_, w)| w.waiting.contains_key(group) || w.held.contains(group))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let w = self.pending.get_mut(&id).expect("listed");
            w.waiting.remove(group);
            w.held.remove(group);
            w.fell_back = true;
            if fail.is_some() && w.failed.is_none() {
                w.failed = fail.clone();
            }
            self.finish_write(id);
        }
    }

    /// A group's drain for a switch to sync is done: the writes it held
    /// are on the peer (their blocks were in the resync it completed).
    pub(super) fn release_held(&mut self, group: &str) {
        let ids: Vec<WriteId> = self
            .pending
            .iter()
            .filter(|(_, w)| w.held.contains(group))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(w) = self.pending.get_mut(&id) {
                w.held.remove(group);
            }
            self.finish_write(id);
        }
    }

    pub(super) fn finish_write(&mut self, id: WriteId) {
        let done = self
            .pending
            .get(&id)
            .map(|w| w.waiting.is_empty() && w.held.is_empty())
            .unwrap_or(false);
        if !done {
            return;
        }
        let w = self.pending.remove(&id).expect("checked");
        self.events.push_back(match w.failed {
            Some(reason) => Event::WriteFailed { id, reason },
            None => Event::WriteDone {
                id,
                replicated: !w.fell_back,
            },
        });
    }
}
