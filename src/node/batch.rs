//! The batch policy of an array, sans-IO: which outputs of a batch of
//! inputs may leave before the batch is durable, and which must wait for
//! its commit. The real node ([`super`]) drives it from its thread and
//! channels; the simulation drives it from its virtual clock, and can crash
//! an array between any two of its phases.
//!
//! One batch, in the order a shell must follow:
//!
//! 1. [`Batcher::begin`], then inputs: link events, messages, host writes
//!    and reads, commands. The core's changes collect in the journal.
//! 2. [`Batcher::finish`]: timers due now, the core's events, and the split
//!    of its messages. Returns *early* outputs, which may leave at once:
//!    replies to host writes whose data was committed by an earlier batch
//!    (they completed on acks received now), and synchronous writes to
//!    extents in the committed activity log (everything after the first
//!    message that must wait, waits, to keep the order).
//! 3. [`Batcher::commit`] (when [`Batcher::must_commit`], or when the shell
//!    decides an idle batch has waited long enough).
//! 4. [`Batcher::release`]: the *late* outputs, now durable: the other
//!    messages, answers to commands and reads, replies to writes born in
//!    this batch.
//!
//! So a peer never hears of, and a host or operator is never told of, a
//! change that a crash could take back, except the synchronous writes of
//! step 2, which the activity log makes safe.

use std::collections::BTreeMap;

use super::state::{touched_meta, ActivityLog, AL_EXTENT_BLOCKS};
use crate::core::{
    Array, Block, Command, CommandError, Event, Fault, Msg, Tick, VolumeError, WriteError, WriteId,
    WriteTicket, BLOCK_SIZE,
};
use crate::nbd::each_block;
use crate::store::Journaled;

/// A request number chosen by the shell, echoed in its [`Reply`].
pub type Req = u64;

/// Why a host write did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// The array refused it (a target, a quiesced group, fail_wrt_on_err,
    /// a block beyond the end).
    Refused(WriteError),
    /// Accepted, then failed (its group stopped under fail_wrt_on_err).
    Failed(String),
}

/// An answer for the shell to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `Ok(replicated)`: every synchronous mirror applied it before this
    /// reply.
    Write {
        req: Req,
        result: Result<bool, WriteFailure>,
    },
    Read {
        req: Req,
        result: Result<Vec<u8>, VolumeError>,
    },
    Command {
        req: Req,
        result: Result<(), CommandError>,
    },
}

/// What may leave before the commit.
#[derive(Default)]
pub struct Early {
    pub messages: Vec<(String, Msg)>,
    pub replies: Vec<Reply>,
}

/// What leaves after the commit.
#[derive(Default)]
pub struct Late {
    pub messages: Vec<(String, Msg)>,
    pub replies: Vec<Reply>,
}

/// One array and its batch policy.
pub struct Batcher<S: Journaled> {
    array: Array<S>,
    batch: u64,
    /// Every batch up to this one is durable.
    committed: u64,
    /// This batch sent messages before its commit.
    sent_early: bool,
    /// The shell answers something after this batch's commit.
    held: bool,
    /// Core write id -> the request it answers and the batch that wrote
    /// its data. The core alone tracks the write's progress.
    ids: BTreeMap<WriteId, (Req, u64)>,
    al: ActivityLog,
    /// Something changed since the last commit.
    dirty: bool,
    early_replies: Vec<Reply>,
    late: Late,
    /// Events the shell may want to log or check, in order.
    events: Vec<Event>,
}

impl<S: Journaled> Batcher<S> {
    pub fn new(array: Array<S>) -> Batcher<S> {
        Batcher {
            array,
            batch: 0,
            committed: 0,
            sent_early: false,
            held: false,
            ids: BTreeMap::new(),
            al: ActivityLog::default(),
            dirty: false,
            early_replies: Vec::new(),
            late: Late::default(),
            events: Vec::new(),
        }
    }

    pub fn array(&self) -> &Array<S> {
        &self.array
    }

    /// The array, for reads that change nothing durable (checksums).
    pub fn array_mut(&mut self) -> &mut Array<S> {
        &mut self.array
    }

    /// The store, for a simulated crash.
    pub fn into_store(self) -> S {
        self.array.into_store()
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The core's events since the last call (for logs and checks).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Starts a batch.
    pub fn begin(&mut self) {
        self.batch += 1;
        self.sent_early = false;
        self.held = false;
    }

    /// The shell will answer something it read from the array (its state
    /// for a console) after this batch's commit: the batch must commit now
    /// if anything is uncommitted, so no one is told of a state a crash
    /// could take back. Returns whether the answer must wait.
    pub fn hold_answer(&mut self) -> bool {
        if self.dirty {
            self.held = true;
        }
        self.dirty
    }

    pub fn link_up(&mut self, now: Tick, peer: &str) {
        self.dirty = true;
        self.array.handle_link_up(now, peer);
    }

    pub fn link_down(&mut self, now: Tick, peer: &str) -> Result<(), Fault> {
        self.dirty = true;
        self.array
            .handle_link_down(now, peer)
            .map_err(|e| Fault::from_volume(peer, e))
    }

    /// A message from `peer`. A [`Fault::Peer`] changed nothing: drop the
    /// peer's session and go on.
    pub fn message(&mut self, now: Tick, peer: &str, msg: Msg) -> Result<(), Fault> {
        self.dirty = true;
        self.array.handle_message(now, peer, msg)
    }

    pub fn command(&mut self, now: Tick, req: Req, cmd: Command) {
        self.dirty = true;
        let result = self.array.command(now, cmd);
        self.late.replies.push(Reply::Command { req, result });
    }

    /// A host read; answered after the commit when this batch changed
    /// something (the read may see its uncommitted blocks).
    pub fn read(&mut self, req: Req, vol: &str, offset: u64, len: usize) {
        let mut out = vec![0u8; len];
        let mut block: Block = [0; BLOCK_SIZE];
        let array = &mut self.array;
        let r = each_block(offset, len, |b, within, range| {
            array.read(vol, b, &mut block)?;
            let n = range.len();
            out[range].copy_from_slice(&block[within..within + n]);
            Ok(())
        });
        let result = r.map(|()| out);
        let reply = Reply::Read { req, result };
        if self.dirty {
            self.late.replies.push(reply);
        } else {
            self.early_replies.push(reply);
        }
    }

    /// A host write of `data` at byte `offset` of `vol` (partial blocks
    /// are read, modified and written): one write for the core.
    pub fn write(&mut self, now: Tick, req: Req, vol: &str, offset: u64, data: &[u8]) {
        self.dirty = true;
        let first = offset / BLOCK_SIZE as u64;
        let mut blocks: Vec<Block> = Vec::with_capacity(data.len() / BLOCK_SIZE + 2);
        let array = &mut self.array;
        let filled = each_block(offset, data.len(), |b, within, range| {
            let mut block: Block = [0; BLOCK_SIZE];
            if range.len() < BLOCK_SIZE {
                array.read(vol, b, &mut block)?;
            }
            let n = range.len();
            block[within..within + n].copy_from_slice(&data[range]);
            blocks.push(block);
            Ok(())
        });
        let ticket = filled
            .map_err(WriteError::Volume)
            .and_then(|()| self.array.write_blocks(now, vol, first, &blocks));
        match ticket {
            Ok(WriteTicket::Done { replicated, .. }) => {
                self.answer_write(req, self.batch, Ok(replicated))
            }
            Ok(WriteTicket::Pending { id }) => {
                self.ids.insert(id, (req, self.batch));
            }
            Err(e) => self.answer_write(req, self.batch, Err(WriteFailure::Refused(e))),
        }
    }

    /// Answers a host write that is done: at once if the batch that wrote
    /// its data is committed, else after the next commit.
    fn answer_write(&mut self, req: Req, batch: u64, result: Result<bool, WriteFailure>) {
        let reply = Reply::Write { req, result };
        if batch <= self.committed {
            self.early_replies.push(reply);
        } else {
            self.late.replies.push(reply);
        }
    }

    /// Ends the batch's inputs: fires timers due by `now`, takes the core's
    /// events and splits its messages. Returns what may leave now.
    pub fn finish(&mut self, now: Tick) -> Result<Early, Fault> {
        if self.array.poll_timeout().is_some_and(|t| t <= now) {
            self.array
                .handle_timeout(now)
                .map_err(|e| Fault::from_volume(self.array.name(), e))?;
            self.dirty = true;
        }
        while let Some(ev) = self.array.poll_event() {
            match &ev {
                Event::WriteDone { id, replicated } => {
                    self.write_done(*id, Ok(*replicated));
                }
                Event::WriteFailed { id, reason } => {
                    self.write_done(*id, Err(WriteFailure::Failed(reason.clone())));
                }
                _ => {}
            }
            self.events.push(ev);
        }
        let mut early = Vec::new();
        while let Some((peer, m)) = self.array.poll_transmit() {
            let now_ok = match m.host_write() {
                Some((vol, block)) => {
                    let e = (peer.clone(), vol.to_string(), block / AL_EXTENT_BLOCKS);
                    self.al.touch(e, self.batch) && self.late.messages.is_empty()
                }
                None => false,
            };
            if now_ok {
                early.push((peer, m));
            } else {
                self.late.messages.push((peer, m));
            }
        }
        self.al.trim(self.batch);
        self.sent_early = !early.is_empty();
        Ok(Early {
            messages: early,
            replies: std::mem::take(&mut self.early_replies),
        })
    }

    fn write_done(&mut self, id: WriteId, result: Result<bool, WriteFailure>) {
        if let Some((req, batch)) = self.ids.remove(&id) {
            self.answer_write(req, batch, result);
        }
    }

    /// The batch must be committed now: it has outputs that wait for the
    /// commit, or it sent messages ahead of it (their writes' acks must not
    /// find them uncommitted), or writes wait for acks on its data.
    pub fn must_commit(&self) -> bool {
        !self.late.messages.is_empty()
            || !self.late.replies.is_empty()
            || self.sent_early
            || self.held
            || self.ids.values().any(|(_, batch)| *batch > self.committed)
    }

    /// Makes everything so far durable (one journal record).
    pub fn commit(&mut self) -> Result<(), Fault> {
        let al = self.al.keys();
        let meta = touched_meta(&mut self.array, &al);
        self.array
            .store_mut()
            .commit_changes(meta)
            .map_err(Fault::Store)?;
        self.al.committed = al.into_iter().collect();
        self.dirty = false;
        self.committed = self.batch;
        Ok(())
    }

    /// The outputs that waited for the commit. Call only after
    /// [`Batcher::commit`].
    pub fn release(&mut self) -> Late {
        std::mem::take(&mut self.late)
    }
}
