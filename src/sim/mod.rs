//! An in-process harness for the sans-IO core: several [`Array`]s on
//! [`MemStore`]s, joined by simulated links, driven by one virtual clock.
//!
//! Key type: [`Sim`]. A link is a pair of FIFO queues behind a switch. The
//! switch can be cut (`link_down`, everything in flight is lost), a direction
//! can be held (messages queue up undelivered, like turmoil's `hold`), and
//! delivery can be throttled to N messages per direction per step. An array
//! can crash (volatile state lost, store kept) and restart.
//!
//! Design decision: one `step` delivers, in a fixed order, every message that
//! was queued when the step began (up to the throttle), then advances the
//! clock by one tick and fires due timers. Nothing depends on hash order or
//! wall time, so a run is a pure function of its inputs and seed.

use std::collections::{BTreeMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::core::{
    Array, ArrayConfig, Block, Command, CommandError, Event, Msg, Tick, VolumeError, WriteError,
    WriteTicket, BLOCK_SIZE,
};
use crate::store::MemStore;

/// Milliseconds of virtual time per step.
pub const TICK_MS: u64 = 1;

struct Node {
    array: Array<MemStore>,
    alive: bool,
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
}

fn key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
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
        self.nodes.insert(
            name.to_string(),
            Node {
                array: Array::new(name, MemStore::new(), config),
                alive: true,
            },
        );
    }

    pub fn array(&self, name: &str) -> &Array<MemStore> {
        &self.nodes[name].array
    }

    /// The array, if the simulation has one of that name.
    pub fn get_array(&self, name: &str) -> Option<&Array<MemStore>> {
        self.nodes.get(name).map(|n| &n.array)
    }

    pub fn array_mut(&mut self, name: &str) -> &mut Array<MemStore> {
        &mut self.nodes.get_mut(name).expect("known array").array
    }

    pub fn alive(&self, name: &str) -> bool {
        self.nodes[name].alive
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Events collected so far, with the array that emitted them.
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

    /// Moves outputs of `name` into link queues and the event list.
    fn drain(&mut self, name: &str) {
        loop {
            let node = self.nodes.get_mut(name).expect("known array");
            let Some((peer, msg)) = node.array.poll_transmit() else {
                break;
            };
            if self.effective(name, &peer) {
                self.dirs
                    .entry((name.to_string(), peer))
                    .or_default()
                    .queue
                    .push_back(msg);
            }
        }
        let node = self.nodes.get_mut(name).expect("known array");
        while let Some(e) = node.array.poll_event() {
            self.events.push((name.to_string(), e));
        }
    }

    fn set_effective(&mut self, a: &str, b: &str, before: bool) -> Result<(), VolumeError> {
        let after = self.effective(a, b);
        if before == after {
            return Ok(());
        }
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            self.dirs.remove(&(x.to_string(), y.to_string()));
        }
        for (x, y) in [(a, b), (b, a)] {
            if !self.nodes[x].alive {
                continue;
            }
            if after {
                self.array_mut(x).handle_link_up(now, y);
            } else {
                self.array_mut(x).handle_link_down(now, y)?;
            }
            self.drain(x);
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

    /// The array process dies.
    pub fn crash(&mut self, name: &str) -> Result<(), VolumeError> {
        let peers: Vec<String> = self.nodes.keys().filter(|n| *n != name).cloned().collect();
        let befores: Vec<bool> = peers.iter().map(|p| self.effective(name, p)).collect();
        let node = self.nodes.get_mut(name).expect("known array");
        node.array.crash();
        node.alive = false;
        for (p, before) in peers.iter().zip(befores) {
            self.set_effective(name, p, before)?;
        }
        Ok(())
    }

    /// The array process starts again from its kept state.
    pub fn restart(&mut self, name: &str) -> Result<(), VolumeError> {
        let now = self.now;
        let node = self.nodes.get_mut(name).expect("known array");
        node.alive = true;
        node.array.restart(now)?;
        self.drain(name);
        let peers: Vec<String> = self.nodes.keys().filter(|n| *n != name).cloned().collect();
        for p in peers {
            self.set_effective(name, &p, false)?;
        }
        Ok(())
    }

    pub fn command(&mut self, name: &str, cmd: Command) -> Result<(), CommandError> {
        let now = self.now;
        let r = self.array_mut(name).command(now, cmd);
        self.drain(name);
        r
    }

    pub fn write(
        &mut self,
        name: &str,
        vol: &str,
        block: u64,
        data: &Block,
    ) -> Result<WriteTicket, WriteError> {
        let now = self.now;
        let r = self.array_mut(name).write(now, vol, block, data);
        self.drain(name);
        r
    }

    pub fn create_volume(&mut self, name: &str, vol: &str, blocks: u64) -> Result<(), VolumeError> {
        self.array_mut(name).create_volume(vol, blocks)
    }

    /// Delivers one round of messages, then advances the clock one tick and
    /// fires due timers. Returns how many messages moved.
    pub fn step(&mut self) -> Result<usize, VolumeError> {
        let mut moved = 0;
        let keys: Vec<(String, String)> = self.dirs.keys().cloned().collect();
        let mut batch = Vec::new();
        for k in keys {
            let d = self.dirs.get_mut(&k).expect("listed");
            if d.held {
                continue;
            }
            let n = self.throttle.unwrap_or(usize::MAX).min(d.queue.len());
            for msg in d.queue.drain(..n) {
                batch.push((k.0.clone(), k.1.clone(), msg));
            }
        }
        let now = self.now;
        for (from, to, msg) in batch {
            if !self.effective(&from, &to) {
                continue;
            }
            self.array_mut(&to).handle_message(now, &from, msg)?;
            self.drain(&to);
            moved += 1;
            self.delivered += 1;
        }
        self.now = self.now.plus(TICK_MS);
        let now = self.now;
        for name in self.names() {
            if !self.nodes[&name].alive {
                continue;
            }
            if self.array(&name).poll_timeout().is_some_and(|t| t <= now) {
                self.array_mut(&name).handle_timeout(now)?;
                self.drain(&name);
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
            .any(|n| n.array.poll_timeout().is_some_and(|t| t <= now))
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
    /// Idle stretches are skipped: the clock jumps to the next due timer.
    pub fn advance(&mut self, ms: u64) -> Result<(), VolumeError> {
        let end = self.now.plus(ms);
        while self.now < end {
            if self.queued() == 0 && !self.timer_due() {
                let next = self
                    .nodes
                    .values()
                    .filter(|n| n.alive)
                    .filter_map(|n| n.array.poll_timeout())
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
