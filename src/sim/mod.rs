//! An in-process harness for the sans-IO core: several arrays, each the
//! core behind the real node's batch policy ([`Batcher`]) over a
//! [`MemJournal`], joined by simulated links, driven by one virtual clock.
//!
//! Key type: [`Sim`]. A link is a pair of FIFO queues behind a switch. The
//! switch can be cut (`link_down`, everything in flight is lost), a direction
//! can be held (messages queue up undelivered, like turmoil's `hold`), and
//! delivery can be throttled to N messages per direction per step.
//!
//! An array can crash, between batches ([`Sim::crash`]) or inside one
//! ([`Sim::crash_during_next_batch`]: after the outputs allowed before the
//! commit have left, or after the commit and before the rest): what its
//! journal had not committed is lost, the in-memory state is rebuilt from
//! the committed metadata the way a real array rebuilds it
//! (`node::state::rebuild`), and [`Sim::restart`] boots it again
//! (`node::state::boot`).
//!
//! Design decision: one `step` delivers, in a fixed order, every message that
//! was queued when the step began (up to the throttle), each destination
//! array taking its messages as one batch; then it advances the clock by
//! one tick and fires due timers (one batch per array). Nothing depends on
//! hash order or wall time, so a run is a pure function of its inputs and
//! seed.

pub mod backend;
pub mod fuzz;

use std::collections::{BTreeMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::core::{
    Array, ArrayConfig, Block, Command, CommandError, Event, Fault, Msg, StoreError, Tick,
    VolumeError, WriteError, WriteId, WriteTicket, BLOCK_SIZE,
};
use crate::node::batch::{Batcher, Reply, WriteFailure};
use crate::node::state;
use crate::store::{Journaled, MemJournal};

/// Milliseconds of virtual time per step.
pub const TICK_MS: u64 = 1;

/// How long a batch with nothing to release may stay uncommitted (as the
/// node's `IDLE_COMMIT`).
pub const IDLE_COMMIT_MS: u64 = 200;

/// Where, inside an array's next batch, a planned crash lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the outputs that may leave before the commit (synchronous
    /// writes to logged extents, replies to writes committed earlier), and
    /// before the commit.
    BeforeCommit,
    /// After the commit, before the outputs that waited for it.
    AfterCommit,
}

struct Node {
    b: Batcher<MemJournal>,
    config: ArrayConfig,
    alive: bool,
    crash_at: Option<CrashPoint>,
    last_commit: Tick,
}

#[derive(Default)]
struct Direction {
    queue: VecDeque<Msg>,
    held: bool,
}

/// Several arrays and the links between them.
pub struct Sim {
    nodes: BTreeMap<String, Node>,
    /// Switch state per unordered pair (a, b) with a < b.
    switch: BTreeMap<(String, String), bool>,
    dirs: BTreeMap<(String, String), Direction>,
    throttle: Option<usize>,
    now: Tick,
    events: Vec<(String, Event)>,
    delivered: u64,
    next_req: u64,
    /// Replies to commands and writes, by request, once released.
    replies: BTreeMap<u64, Reply>,
    /// Requests that are host writes still in flight: request -> array.
    writing: BTreeMap<u64, String>,
    /// After every commit, compare the journal with the array's whole
    /// durable state (on by default; O(state) per commit, so benchmarks
    /// that time commits turn it off).
    pub check_commits: bool,
}

fn key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

fn store_fault(e: Fault) -> VolumeError {
    match e {
        Fault::Store(s) => VolumeError::Store(s),
        // Simulated peers are genuine: a refused message is a core bug.
        Fault::Peer { peer, reason } => VolumeError::Store(StoreError::new(
            format!("message from {peer}"),
            format!("refused as invalid: {reason}"),
        )),
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            nodes: BTreeMap::new(),
            switch: BTreeMap::new(),
            dirs: BTreeMap::new(),
            throttle: None,
            now: Tick(0),
            events: Vec::new(),
            delivered: 0,
            next_req: 1,
            replies: BTreeMap::new(),
            writing: BTreeMap::new(),
            check_commits: true,
        }
    }

    pub fn now(&self) -> Tick {
        self.now
    }

    /// Messages delivered since the start.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn add_array(&mut self, name: &str, config: ArrayConfig) {
        let mut store = MemJournal::new();
        store.set_barrier(state::is_barrier);
        let (mut array, fresh) =
            state::rebuild(store, name, config).expect("a new memory journal loads");
        state::boot(&mut array, self.now, fresh).expect("a new memory journal commits");
        self.nodes.insert(
            name.to_string(),
            Node {
                b: Batcher::new(array),
                config,
                alive: true,
                crash_at: None,
                last_commit: self.now,
            },
        );
    }

    pub fn array(&self, name: &str) -> &Array<MemJournal> {
        self.nodes[name].b.array()
    }

    /// The array, if the simulation has one of that name.
    pub fn get_array(&self, name: &str) -> Option<&Array<MemJournal>> {
        self.nodes.get(name).map(|n| n.b.array())
    }

    /// The array, for reads (checksums, data checks). Changes made through
    /// it bypass the batch policy and are not committed.
    pub fn array_mut(&mut self, name: &str) -> &mut Array<MemJournal> {
        self.nodes.get_mut(name).expect("known array").b.array_mut()
    }

    pub fn alive(&self, name: &str) -> bool {
        self.nodes[name].alive
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Commits the array's journal has made so far.
    pub fn commits(&self, name: &str) -> u64 {
        self.array(name).store().commits()
    }

    /// Events collected so far, with the array that emitted them. Host
    /// writes complete with `WriteDone`/`WriteFailed` naming the id their
    /// [`WriteTicket`] gave, once the reply is released to the host.
    pub fn take_events(&mut self) -> Vec<(String, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Limits delivery to `n` messages per direction per step.
    pub fn set_throttle(&mut self, n: Option<usize>) {
        self.throttle = n;
    }

    fn effective(&self, a: &str, b: &str) -> bool {
        self.switch.get(&key(a, b)).copied().unwrap_or(false)
            && self.nodes[a].alive
            && self.nodes[b].alive
    }

    /// Runs one batch of `name`: the inputs `feed` gives, then the batch's
    /// outputs in the node's order, crashing at a planned point.
    fn batch(
        &mut self,
        name: &str,
        feed: impl FnOnce(&mut Batcher<MemJournal>, Tick) -> Result<(), Fault>,
    ) -> Result<(), VolumeError> {
        let now = self.now;
        let node = self.nodes.get_mut(name).expect("known array");
        if !node.alive {
            return Ok(());
        }
        node.b.begin();
        feed(&mut node.b, now).map_err(store_fault)?;
        let early = node.b.finish(now).map_err(store_fault)?;
        for ev in node.b.take_events() {
            if !matches!(ev, Event::WriteDone { .. } | Event::WriteFailed { .. }) {
                self.events.push((name.to_string(), ev));
            }
        }
        self.transmit(name, early.messages);
        self.deliver_replies(name, early.replies);
        let node = self.nodes.get_mut(name).expect("known array");
        if node.crash_at == Some(CrashPoint::BeforeCommit) {
            return self.crash(name);
        }
        let idle = node.b.is_dirty() && now.0 >= node.last_commit.0 + IDLE_COMMIT_MS;
        if !node.b.must_commit() && !idle {
            return Ok(());
        }
        node.b.commit().map_err(store_fault)?;
        node.last_commit = now;
        // A commit encodes only what the batch touched: the journal must
        // still hold exactly the array's whole durable state.
        let arr = node.b.array();
        if self.check_commits {
            if let Some(key) = state::committed_mismatch(arr, arr.store().committed_meta()) {
                panic!("{name}: after a commit the journal's {key} differs from the array's state");
            }
            if let Some(diff) = arr.timed_mismatch() {
                panic!("{name}: {diff}");
            }
            if let Some(diff) = arr.holders_mismatch() {
                panic!("{name}: the index of groups by volume is stale: {diff}");
            }
        }
        if node.crash_at == Some(CrashPoint::AfterCommit) {
            return self.crash(name);
        }
        let late = node.b.release();
        self.transmit(name, late.messages);
        self.deliver_replies(name, late.replies);
        Ok(())
    }

    fn transmit(&mut self, name: &str, msgs: Vec<(String, Msg)>) {
        for (peer, msg) in msgs {
            if self.effective(name, &peer) {
                self.dirs
                    .entry((name.to_string(), peer))
                    .or_default()
                    .queue
                    .push_back(msg);
            }
        }
    }

    fn deliver_replies(&mut self, name: &str, replies: Vec<Reply>) {
        for r in replies {
            if let Reply::Write { req, result } = &r {
                if self.writing.remove(req).is_some() {
                    let id = WriteId(*req);
                    let ev = match result {
                        Ok(replicated) => Event::WriteDone {
                            id,
                            replicated: *replicated,
                        },
                        Err(WriteFailure::Failed(reason)) => Event::WriteFailed {
                            id,
                            reason: reason.clone(),
                        },
                        Err(WriteFailure::Refused(_)) => {
                            // Answered to `write` itself, as an error.
                            self.replies.insert(*req, r);
                            continue;
                        }
                    };
                    self.events.push((name.to_string(), ev));
                    continue;
                }
            }
            let req = match &r {
                Reply::Write { req, .. } | Reply::Read { req, .. } | Reply::Command { req, .. } => {
                    *req
                }
            };
            self.replies.insert(req, r);
        }
    }

    fn set_effective(&mut self, a: &str, b: &str, before: bool) -> Result<(), VolumeError> {
        let after = self.effective(a, b);
        if before == after {
            return Ok(());
        }
        // What was in flight is lost; a held direction stays held.
        for (x, y) in [(a, b), (b, a)] {
            if let Some(d) = self.dirs.get_mut(&(x.to_string(), y.to_string())) {
                d.queue.clear();
            }
        }
        for (x, y) in [(a, b), (b, a)] {
            if !self.nodes[x].alive {
                continue;
            }
            if self.effective(a, b) != after {
                // A crash inside the first side's batch changed the link
                // again; that nested change told the other side already.
                break;
            }
            let peer = y.to_string();
            self.batch(x, |b, now| {
                if after {
                    b.link_up(now, &peer);
                    Ok(())
                } else {
                    b.link_down(now, &peer)
                }
            })?;
        }
        Ok(())
    }

    /// Connects (or reconnects) the switch between `a` and `b`.
    pub fn link_up(&mut self, a: &str, b: &str) -> Result<(), VolumeError> {
        let before = self.effective(a, b);
        self.switch.insert(key(a, b), true);
        self.set_effective(a, b, before)
    }

    /// Cuts the switch between `a` and `b`; messages in flight are lost.
    pub fn link_down(&mut self, a: &str, b: &str) -> Result<(), VolumeError> {
        let before = self.effective(a, b);
        self.switch.insert(key(a, b), false);
        self.set_effective(a, b, before)
    }

    /// Holds (`true`) or releases messages from `from` to `to`.
    pub fn hold(&mut self, from: &str, to: &str, held: bool) {
        self.dirs
            .entry((from.to_string(), to.to_string()))
            .or_default()
            .held = held;
    }

    /// Whether messages from `from` to `to` are held.
    pub fn held(&self, from: &str, to: &str) -> bool {
        self.dirs
            .get(&(from.to_string(), to.to_string()))
            .is_some_and(|d| d.held)
    }

    /// Delivers `msg` to `to` as if `from` had sent it (a fuzzer's input).
    /// A message `to` refuses drops the session, as a real array does: the
    /// link goes down and comes back. Returns the refusal's reason.
    pub fn inject(
        &mut self,
        from: &str,
        to: &str,
        msg: Msg,
    ) -> Result<Option<String>, VolumeError> {
        if !self.effective(from, to) {
            return Ok(None);
        }
        let mut refused = None;
        self.batch(to, |b, now| match b.message(now, from, msg) {
            Err(Fault::Peer { reason, .. }) => {
                refused = Some(reason);
                Ok(())
            }
            r => r,
        })?;
        if refused.is_some() {
            self.link_down(from, to)?;
            self.link_up(from, to)?;
        }
        Ok(refused)
    }

    /// Plans a crash of `name` inside its next batch, at `at`.
    pub fn crash_during_next_batch(&mut self, name: &str, at: CrashPoint) {
        self.nodes.get_mut(name).expect("known array").crash_at = Some(at);
    }

    /// Cancels every planned crash.
    pub fn cancel_planned_crashes(&mut self) {
        for n in self.nodes.values_mut() {
            n.crash_at = None;
        }
    }

    /// The array process dies: what its journal had not committed is lost,
    /// with every bulk block not yet made durable.
    pub fn crash(&mut self, name: &str) -> Result<(), VolumeError> {
        self.crash_with(name, &mut |_, _| true)
    }

    /// [`Sim::crash`], losing only the unsynced bulk blocks `lose` names
    /// (a power cut keeps some writes of the page cache and not others).
    pub fn crash_with(
        &mut self,
        name: &str,
        lose: &mut dyn FnMut(&str, u64) -> bool,
    ) -> Result<(), VolumeError> {
        let peers: Vec<String> = self.nodes.keys().filter(|n| *n != name).cloned().collect();
        let befores: Vec<bool> = peers.iter().map(|p| self.effective(name, p)).collect();
        let node = self.nodes.remove(name).expect("known array");
        let config = node.config;
        let mut store = node.b.into_store();
        store.crash(lose);
        let (array, _) = state::rebuild(store, name, config).map_err(|e| {
            VolumeError::Store(StoreError::new(name, format!("recovery failed: {e}")))
        })?;
        self.writing.retain(|_, a| a != name);
        self.nodes.insert(
            name.to_string(),
            Node {
                b: Batcher::new(array),
                config,
                alive: false,
                crash_at: None,
                last_commit: self.now,
            },
        );
        for (p, before) in peers.iter().zip(befores) {
            self.set_effective(name, p, before)?;
        }
        Ok(())
    }

    /// The array process starts again from what its journal committed.
    pub fn restart(&mut self, name: &str) -> Result<(), VolumeError> {
        let now = self.now;
        let node = self.nodes.get_mut(name).expect("known array");
        state::boot(node.b.array_mut(), now, false)
            .map_err(|e| VolumeError::Store(StoreError::new(name, e)))?;
        node.alive = true;
        node.last_commit = now;
        let peers: Vec<String> = self.nodes.keys().filter(|n| *n != name).cloned().collect();
        for p in peers {
            self.set_effective(name, &p, false)?;
        }
        Ok(())
    }

    fn take_req(&mut self) -> u64 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    /// An operator command, answered once its batch is committed. A crash
    /// planned for that batch answers that the array went down.
    pub fn command(&mut self, name: &str, cmd: Command) -> Result<(), CommandError> {
        let req = self.take_req();
        self.batch(name, |b, now| {
            b.command(now, req, cmd);
            Ok(())
        })
        .map_err(CommandError::Volume)?;
        match self.replies.remove(&req) {
            Some(Reply::Command { result, .. }) => result,
            _ => Err(CommandError::LinkDown {
                op: "command",
                peer: name.to_string(),
                hint: "the array went down before it answered".into(),
            }),
        }
    }

    /// A host write of one block. `Done` when its reply came in its own
    /// batch; `Pending` when it waits (for the peer in sync mode): an
    /// `Event::WriteDone` or `WriteFailed` with the same id follows when
    /// the host is answered. A refusal is an `Err`.
    pub fn write(
        &mut self,
        name: &str,
        vol: &str,
        block: u64,
        data: &Block,
    ) -> Result<WriteTicket, WriteError> {
        self.write_bytes(name, vol, block * BLOCK_SIZE as u64, data)
    }

    /// A host write of any byte range, as an NBD client sends it: one
    /// write for the core however many blocks it spans.
    pub fn write_bytes(
        &mut self,
        name: &str,
        vol: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<WriteTicket, WriteError> {
        let req = self.take_req();
        self.writing.insert(req, name.to_string());
        let before = self.events.len();
        if let Err(e) = self.batch(name, |b, now| {
            b.write(now, req, vol, offset, data);
            Ok(())
        }) {
            self.writing.remove(&req);
            return Err(WriteError::Volume(e));
        }
        let id = WriteId(req);
        if let Some(Reply::Write {
            result: Err(WriteFailure::Refused(e)),
            ..
        }) = self.replies.remove(&req)
        {
            return Err(e);
        }
        // Answered in its own batch: the event is taken back as the ticket.
        let mine = self.events[before..].iter().position(|(_, e)| {
            matches!(e, Event::WriteDone { id: i, .. } | Event::WriteFailed { id: i, .. } if *i == id)
        });
        match mine.map(|i| self.events.remove(before + i).1) {
            Some(Event::WriteDone { replicated, .. }) => Ok(WriteTicket::Done { id, replicated }),
            Some(ev) => {
                // Failed in its own batch: leave the event for the caller.
                self.events.push((name.to_string(), ev));
                Ok(WriteTicket::Pending { id })
            }
            None => Ok(WriteTicket::Pending { id }),
        }
    }

    /// Creates a volume and commits it (as a configured volume is made).
    pub fn create_volume(&mut self, name: &str, vol: &str, blocks: u64) -> Result<(), VolumeError> {
        let node = self.nodes.get_mut(name).expect("known array");
        node.b.array_mut().create_volume(vol, blocks)?;
        node.b.commit().map_err(store_fault)?;
        node.last_commit = self.now;
        Ok(())
    }

    /// Delivers one round of messages, then advances the clock one tick and
    /// fires due timers. Returns how many messages moved.
    pub fn step(&mut self) -> Result<usize, VolumeError> {
        let keys: Vec<(String, String)> = self.dirs.keys().cloned().collect();
        // Per destination, its messages in a fixed order.
        let mut inputs: BTreeMap<String, Vec<(String, Msg)>> = BTreeMap::new();
        let mut moved = 0;
        for k in keys {
            let d = self.dirs.get_mut(&k).expect("listed");
            if d.held {
                continue;
            }
            let n = self.throttle.unwrap_or(usize::MAX).min(d.queue.len());
            for msg in d.queue.drain(..n) {
                inputs
                    .entry(k.1.clone())
                    .or_default()
                    .push((k.0.clone(), msg));
            }
        }
        for (to, batch) in inputs {
            let ok: Vec<(String, Msg)> = batch
                .into_iter()
                .filter(|(from, _)| self.effective(from, &to))
                .collect();
            if ok.is_empty() {
                continue;
            }
            moved += ok.len();
            self.delivered += ok.len() as u64;
            self.batch(&to, |b, now| {
                for (from, msg) in ok {
                    b.message(now, &from, msg)?;
                }
                Ok(())
            })?;
        }
        self.now = self.now.plus(TICK_MS);
        let now = self.now;
        for name in self.names() {
            let node = &self.nodes[&name];
            if !node.alive {
                continue;
            }
            let timer = node.b.array().poll_timeout().is_some_and(|t| t <= now);
            let idle = node.b.is_dirty() && now.0 >= node.last_commit.0 + IDLE_COMMIT_MS;
            if timer || idle {
                self.batch(&name, |_, _| Ok(()))?;
            }
        }
        Ok(moved)
    }

    /// Messages queued in every direction, held ones included.
    pub fn in_flight(&self) -> usize {
        self.dirs.values().map(|d| d.queue.len()).sum()
    }

    fn queued(&self) -> usize {
        self.dirs
            .values()
            .filter(|d| !d.held)
            .map(|d| d.queue.len())
            .sum()
    }

    fn timer_due(&self) -> bool {
        let now = self.now;
        self.nodes
            .values()
            .filter(|n| n.alive)
            .any(|n| n.b.array().poll_timeout().is_some_and(|t| t <= now))
    }

    /// Steps until no message is in flight (outside held directions) and no
    /// timer is due; at most `max_steps`. Returns the steps taken.
    pub fn settle(&mut self, max_steps: usize) -> Result<usize, VolumeError> {
        for i in 0..max_steps {
            if self.queued() == 0 && !self.timer_due() {
                return Ok(i);
            }
            self.step()?;
        }
        Ok(max_steps)
    }

    /// Lets `ms` of virtual time pass, stepping all the way.
    /// Idle stretches are skipped: the clock jumps to the next due timer
    /// (an idle commit counts as one).
    pub fn advance(&mut self, ms: u64) -> Result<(), VolumeError> {
        let end = self.now.plus(ms);
        while self.now < end {
            if self.queued() == 0 && !self.timer_due() {
                let next = self
                    .nodes
                    .values()
                    .filter(|n| n.alive)
                    .flat_map(|n| {
                        let idle = n.b.is_dirty().then(|| n.last_commit.plus(IDLE_COMMIT_MS));
                        n.b.array().poll_timeout().into_iter().chain(idle)
                    })
                    .min()
                    .unwrap_or(end);
                let target = next.min(end);
                if target > self.now {
                    // Land one tick early: `step` moves the clock one tick
                    // before it fires timers.
                    self.now = Tick(target.0.saturating_sub(TICK_MS).max(self.now.0));
                }
                if self.now.plus(TICK_MS) > end {
                    self.now = end;
                    break;
                }
            }
            self.step()?;
        }
        Ok(())
    }

    /// SHA-256 of a whole volume.
    pub fn checksum(&mut self, name: &str, vol: &str) -> Result<[u8; 32], VolumeError> {
        let blocks = self
            .array(name)
            .volumes()
            .meta(vol)
            .map(|m| m.blocks)
            .ok_or_else(|| VolumeError::NoSuchVolume(vol.to_string()))?;
        let mut h = Sha256::new();
        let mut buf = [0u8; BLOCK_SIZE];
        let a = self.array_mut(name);
        for b in 0..blocks {
            a.read(vol, b, &mut buf)?;
            h.update(buf);
        }
        Ok(h.finalize().into())
    }
}

/// SplitMix64: a tiny, seedable, portable generator for fault schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A block filled with one byte pattern and stamped with `(tag)` in its first
/// eight bytes, so every write is distinguishable.
pub fn pattern_block(fill: u8, tag: u64) -> Block {
    let mut b = [fill; BLOCK_SIZE];
    b[..8].copy_from_slice(&tag.to_le_bytes());
    b
}
