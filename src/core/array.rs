//! One array: volumes, snapshots and remote-copy groups, as a deterministic
//! state machine.
//!
//! # Driving an `Array`
//!
//! Methods come in four kinds (the shape of quinn-proto's `Connection`):
//!
//! * inputs: [`Array::write`] (host I/O), [`Array::handle_message`],
//!   [`Array::handle_link_up`], [`Array::handle_link_down`],
//!   [`Array::handle_timeout`], [`Array::command`], [`Array::crash`] and
//!   [`Array::restart`]; each takes `now`, which must never go backwards;
//! * outputs: [`Array::poll_transmit`] (messages for a peer, in order) and
//!   [`Array::poll_event`] (write completions, refusals, points in time);
//! * [`Array::poll_timeout`]: the next `now` at which `handle_timeout` has
//!   work (a periodic cycle, a restore deadline, a running failover);
//! * getters: [`Array::views`], [`Array::group`], [`Array::read`], ...
//!
//! After every input, drain `poll_transmit` and `poll_event`, then call
//! `handle_timeout` no later than `poll_timeout`.
//!
//! # State that survives a crash
//!
//! Everything except the fields marked *volatile* (link states, outbox,
//! events, pending host writes, running sync queues, handshakes in progress).
//! [`Array::crash`] drops exactly those; the block store is kept, as a disk is.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::error::{CommandError, Fault, WriteError};
use super::msg::{Changed, DataTag, GroupHello, Msg, PairHello, RunBlock};
use super::names;
use super::store::BlockStore;
use super::types::*;
use super::view::{derive, CopyState, PairFacts, PairView};
use super::volumes::{VolumeError, Volumes};

/// A source volume can have at most this many mirrors (as ETERNUS REC).
pub const MAX_MIRRORS: usize = 8;

/// Tunables. The defaults suit both the simulation and real links.
#[derive(Clone, Copy, Debug)]
pub struct ArrayConfig {
    /// Sync blocks in flight per pair before waiting for acks.
    pub window: u64,
    /// Most sync blocks per message (1: one `Data` per block, as the
    /// simulation and the tables step through; a real link sends 64).
    pub run_batch: u64,
    /// Blocks restored per `handle_timeout` while promoting a snapshot.
    pub promote_budget: usize,
    /// How long a restore waits for the peer before giving up.
    pub restore_timeout_ms: u64,
}

impl Default for ArrayConfig {
    fn default() -> Self {
        ArrayConfig {
            window: 64,
            run_batch: 1,
            promote_budget: 4096,
            restore_timeout_ms: 30_000,
        }
    }
}

/// An operator command (3PAR `*rcopy*` vocabulary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateGroup {
        group: String,
        peer: String,
        mode: Mode,
        policies: Policies,
    },
    Admit {
        group: String,
        vol: String,
        remote_vol: String,
    },
    Dismiss {
        group: String,
        vol: String,
    },
    Start {
        group: String,
    },
    Stop {
        group: String,
    },
    Sync {
        group: String,
    },
    Failover {
        group: String,
    },
    Recover {
        group: String,
        full: bool,
    },
    Restore {
        group: String,
    },
    Reverse {
        group: String,
    },
    SetMode {
        group: String,
        mode: Mode,
    },
    SetPolicy {
        group: String,
        change: PolicyChange,
    },
    RemoveGroup {
        group: String,
    },
}

impl Command {
    /// Every name the command carries follows the naming rule
    /// (`core::names`).
    pub fn check_names(&self) -> Result<(), names::NameError> {
        names::group(self.group())?;
        match self {
            Command::CreateGroup { peer, .. } => names::array(peer),
            Command::Admit {
                vol, remote_vol, ..
            } => names::volume(vol).and_then(|()| names::volume(remote_vol)),
            Command::Dismiss { vol, .. } => names::volume(vol),
            _ => Ok(()),
        }
    }

    pub fn group(&self) -> &str {
        match self {
            Command::CreateGroup { group, .. }
            | Command::Admit { group, .. }
            | Command::Dismiss { group, .. }
            | Command::Start { group }
            | Command::Stop { group }
            | Command::Sync { group }
            | Command::Failover { group }
            | Command::Recover { group, .. }
            | Command::Restore { group }
            | Command::Reverse { group }
            | Command::SetMode { group, .. }
            | Command::SetPolicy { group, .. }
            | Command::RemoveGroup { group } => group,
        }
    }
}

/// Something the shell must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A host write completed. `replicated`: every synchronous mirror of the
    /// volume applied it before this ack (RPO 0 for this write).
    WriteDone { id: WriteId, replicated: bool },
    /// A host write failed (fail_wrt_on_err).
    WriteFailed { id: WriteId, reason: String },
    /// An operation accepted earlier failed on the way.
    OperationFailed {
        group: String,
        op: &'static str,
        reason: String,
    },
    /// The source fixed a consistent point of `vol`: its base now is what
    /// the target will hold once `point` is reached.
    PointTaken {
        group: String,
        vol: String,
        point: u64,
    },
    /// The target holds `point` of `vol`.
    PointReached {
        group: String,
        vol: String,
        point: u64,
    },
    /// A state transition worth a log line.
    Transition { group: String, text: String },
}

/// What a host write turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteTicket {
    /// Completed at once (no synchronous mirror to wait for).
    Done { id: WriteId, replicated: bool },
    /// Completes with an [`Event::WriteDone`] or [`Event::WriteFailed`].
    Pending { id: WriteId },
}

/// Byte counters (payload bytes of blocks sent on the link).
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Blocks of synchronous host writes.
    pub write_bytes_sent: u64,
    /// Blocks of sync runs (initial, resync, periodic cycles, recover).
    pub sync_bytes_sent: u64,
    /// Blocks received and applied as a target.
    pub bytes_applied: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunKind {
    /// Read the live base; host writes re-queue blocks.
    Resync,
    /// Read the frozen point `cycle_snap`; host writes are for the next cycle.
    Cycle,
}

/// A running sync of one pair. Volatile.
#[derive(Clone, Debug)]
struct Run {
    kind: RunKind,
    queue: BTreeSet<u64>,
    unacked: u64,
    total: u64,
    done_sent: bool,
    /// The generation this run proposed in its SyncDone; only an ack for it
    /// completes the run (an ack from an earlier, stopped run is stale).
    sent_gen: Option<u64>,
    point: u64,
}

/// One volume pair of a group, seen from this array.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Pair {
    pub local: String,
    pub remote: String,
    pub blocks: u64,
    pub status: SyncStatus,
    /// Generation of the last completed sync (0: never synced).
    pub gen: u64,
    /// Generation proposed in a SyncDone that the target has not confirmed.
    pub pending_gen: Option<u64>,
    /// Source side: the common base to resync from (failure/stop snapshot,
    /// periodic previous point, failover snapshot).
    pub base_snap: Option<SnapId>,
    /// Target side: pre-resync snapshot (sync) or last complete point
    /// (periodic).
    pub target_snap: Option<SnapId>,
    /// Source side: the point being shipped.
    pub cycle_snap: Option<SnapId>,
    /// Blocks to send beyond the snapshot difference (writes in flight at a
    /// failure, blocks the peer changed since the common base).
    pub extra: BTreeSet<u64>,
    /// Synchronous writes sent and not yet acknowledged (block -> count).
    pub inflight: BTreeMap<u64, u32>,
    /// The target was created empty and has never been written.
    pub fresh_target: bool,
    pub last_sync: Option<Tick>,
    /// When the pair was admitted.
    pub established: Tick,
    #[serde(skip)]
    run: Option<Run>,
    /// Target side: the generation a SyncDone proposed, not yet taken
    /// (periodic mode waits for every pair of the cycle).
    #[serde(skip)]
    done_gen: Option<u64>,
}

impl Pair {
    fn new(local: &str, remote: &str, blocks: u64, now: Tick) -> Pair {
        Pair {
            local: local.to_string(),
            remote: remote.to_string(),
            blocks,
            status: SyncStatus::New,
            gen: 0,
            pending_gen: None,
            base_snap: None,
            target_snap: None,
            cycle_snap: None,
            extra: BTreeSet::new(),
            inflight: BTreeMap::new(),
            fresh_target: false,
            last_sync: None,
            established: now,
            run: None,
            done_gen: None,
        }
    }

    /// Blocks still to send or confirm in the running sync, and its total.
    pub fn progress(&self) -> (u64, u64) {
        match &self.run {
            Some(r) => (r.queue.len() as u64 + r.unacked, r.total),
            None => (0, 0),
        }
    }
}

/// One remote-copy group, seen from this array.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Group {
    pub name: String,
    pub peer: String,
    pub role: Role,
    pub mode: Mode,
    pub policies: Policies,
    pub epoch: u64,
    pub started: bool,
    pub stop_cause: StopCause,
    pub op: Option<GroupOp>,
    pub requested: Option<CopyState>,
    /// Primary-Rev only: the recover handshake is done, the group may run.
    pub recovered: bool,
    pub pairs: Vec<Pair>,
    /// Periodic mode: when the next cycle is due.
    pub next_cycle: Option<Tick>,
    /// A reverse this side asked for, by epoch. Kept across crashes: writes
    /// stay quiesced until the peer's epoch tells whether it happened.
    reverse_pending: Option<u64>,
    // Volatile (dropped by a crash).
    /// The peer's last Hello for this group since the link came up.
    #[serde(skip)]
    peer_hello: Option<GroupHello>,
    /// The peer's complete Hello since the link came up did not list this
    /// group: the peer does not have it.
    #[serde(skip)]
    peer_missing: bool,
    /// The link came up after a failure stop: the next Hello may restart.
    #[serde(skip)]
    auto_recover_armed: bool,
    /// A recover handshake is under way (`Some(full)`).
    #[serde(skip)]
    recovering: Option<bool>,
    #[serde(skip)]
    restore_deadline: Option<Tick>,
    /// Periodic restore: host writes are quiesced while a final cycle runs.
    #[serde(skip)]
    restore_after_cycle: bool,
}

impl Group {
    /// The operation this side is in the middle of, if any: a failover, a
    /// restore (with its final cycle), a recover handshake, a reverse.
    pub fn busy(&self) -> Option<&'static str> {
        match self.op {
            Some(GroupOp::FailingOver) => Some("failover"),
            Some(GroupOp::FailingBack) => Some("restore"),
            None if self.restore_after_cycle => Some("restore"),
            None if self.recovering.is_some() => Some("recover"),
            None if self.reverse_pending.is_some() => Some("reverse"),
            None => None,
        }
    }

    /// A sync run is in progress on some pair.
    pub fn syncing(&self) -> bool {
        self.running()
    }

    fn pair_mut(&mut self, local: &str) -> Option<&mut Pair> {
        self.pairs.iter_mut().find(|p| p.local == local)
    }

    fn running(&self) -> bool {
        self.pairs.iter().any(|p| p.run.is_some())
    }

    fn reset_volatile(&mut self) {
        self.peer_hello = None;
        self.peer_missing = false;
        self.auto_recover_armed = false;
        self.recovering = None;
        self.restore_deadline = None;
        self.restore_after_cycle = false;
        for p in &mut self.pairs {
            p.run = None;
            p.done_gen = None;
        }
    }
}

#[derive(Clone, Debug)]
struct PendingWrite {
    waiting: BTreeSet<String>,
    fell_back: bool,
    failed: Option<String>,
}

/// One array.
pub struct Array<S: BlockStore> {
    name: String,
    config: ArrayConfig,
    store: S,
    vols: Volumes,
    groups: BTreeMap<String, Group>,
    next_write: u64,
    gen_counter: u64,
    point_counter: u64,
    counters: Counters,
    now: Tick,
    // Volatile.
    links: BTreeMap<String, bool>,
    outbox: VecDeque<(String, Msg)>,
    events: VecDeque<Event>,
    pending: BTreeMap<WriteId, PendingWrite>,
}

type R<T> = Result<T, VolumeError>;

/// The peer's name of a local volume of `g` (which must be a member).
fn remote_of(g: &Group, vol: &str) -> String {
    g.pairs
        .iter()
        .find(|p| p.local == vol)
        .map(|p| p.remote.clone())
        .expect("a member of the group")
}

/// The scalars and the volume table of an array's durable state; with the
/// snapshots and the groups it is everything [`Array::crash`] keeps.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub name: String,
    pub vols: BTreeMap<String, super::volumes::VolMeta>,
    pub next_snap: u64,
    pub next_write: u64,
    pub gen_counter: u64,
    pub point_counter: u64,
    pub counters: Counters,
    pub now: Tick,
}

/// An array's durable state, owned (what a shell loads at start).
#[derive(Clone, Debug)]
pub struct Durable {
    pub head: Head,
    pub snaps: BTreeMap<SnapId, super::volumes::SnapMeta>,
    pub groups: BTreeMap<String, Group>,
}

impl<S: BlockStore> Array<S> {
    pub fn new(name: &str, store: S, config: ArrayConfig) -> Self {
        Array {
            name: name.to_string(),
            config,
            store,
            vols: Volumes::default(),
            groups: BTreeMap::new(),
            next_write: 1,
            gen_counter: 0,
            point_counter: 0,
            counters: Counters::default(),
            now: Tick(0),
            links: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The durable state, borrowed: the head (small, copied), every
    /// snapshot and every group. A shell persists these after each batch of
    /// inputs, before it releases the batch's outputs.
    pub fn durable(
        &self,
    ) -> (
        Head,
        &BTreeMap<SnapId, super::volumes::SnapMeta>,
        &BTreeMap<String, Group>,
    ) {
        let (vols, next_snap, snaps) = self.vols.parts();
        let head = Head {
            name: self.name.clone(),
            vols: vols.clone(),
            next_snap,
            next_write: self.next_write,
            gen_counter: self.gen_counter,
            point_counter: self.point_counter,
            counters: self.counters,
            now: self.now,
        };
        (head, snaps, &self.groups)
    }

    /// An array rebuilt from its durable state over the store that holds its
    /// blocks, as it is after [`Array::crash`]: call [`Array::restart`] next.
    pub fn from_durable(store: S, config: ArrayConfig, d: Durable) -> Self {
        let mut a = Array::new(&d.head.name, store, config);
        a.vols = Volumes::from_parts(d.head.vols, d.head.next_snap, d.snaps);
        a.groups = d.groups;
        a.next_write = d.head.next_write;
        a.gen_counter = d.head.gen_counter;
        a.point_counter = d.head.point_counter;
        a.counters = d.head.counters;
        a.now = d.head.now;
        a.crash();
        a
    }

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

    // ----- getters -------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The latest time any input carried.
    pub fn now(&self) -> Tick {
        self.now
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn volumes(&self) -> &Volumes {
        &self.vols
    }

    /// The block store, giving up the array (a simulated crash keeps the
    /// disk and drops everything else).
    pub fn into_store(self) -> S {
        self.store
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Every peer a link has been reported for, and whether it is up.
    pub fn links(&self) -> impl Iterator<Item = (&str, bool)> {
        self.links.iter().map(|(p, up)| (p.as_str(), *up))
    }

    pub fn link_up(&self, peer: &str) -> bool {
        self.links.get(peer).copied().unwrap_or(false)
    }

    /// This array's view of every pair: (group, local volume, view).
    pub fn views(&self) -> Vec<(String, String, PairView)> {
        let mut out = Vec::new();
        for g in self.groups.values() {
            for p in &g.pairs {
                out.push((g.name.clone(), p.local.clone(), self.pair_view(g, p)));
            }
        }
        out
    }

    /// The view of one pair, by group and local volume.
    pub fn view(&self, group: &str, vol: &str) -> Option<PairView> {
        let g = self.groups.get(group)?;
        let p = g.pairs.iter().find(|p| p.local == vol)?;
        Some(self.pair_view(g, p))
    }

    fn pair_view(&self, g: &Group, p: &Pair) -> PairView {
        let (remaining, total) = p.progress();
        // Syncing while a recover handshake is under way (the resync is
        // about to run) and while a run waits for the target to confirm
        // its last block: a pair shows Synced only once the next operation
        // on it will be accepted (the write path replicates synchronously
        // from the moment the run drained, on `p.status`).
        let status = if p.run.is_some() || g.recovering.is_some() {
            SyncStatus::Syncing
        } else {
            p.status
        };
        derive(&PairFacts {
            role: g.role,
            status,
            mode: g.mode,
            started: g.started,
            stop_cause: g.stop_cause,
            link_up: self.link_up(&g.peer),
            op: g.op,
            remaining_blocks: remaining,
            total_blocks: total,
            last_sync: p.last_sync,
            requested: g.requested,
        })
    }

    /// Whether a host may write `vol` now.
    pub fn is_writable(&self, vol: &str) -> bool {
        self.vols.exists(vol) && self.write_refusal(vol).is_none()
    }

    fn write_refusal(&self, vol: &str) -> Option<WriteError> {
        for g in self.groups.values() {
            if !g.pairs.iter().any(|p| p.local == vol) {
                continue;
            }
            if !g.role.is_source() {
                return Some(WriteError::ReadOnly {
                    vol: vol.to_string(),
                    array: self.name.clone(),
                    group: g.name.clone(),
                    role: g.role,
                });
            }
            match g.op {
                Some(GroupOp::FailingOver) => {
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

    // ----- outputs -------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<(String, Msg)> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time `handle_timeout` has work, if any.
    pub fn poll_timeout(&self) -> Option<Tick> {
        let mut next: Option<Tick> = None;
        let mut at = |t: Tick| next = Some(next.map_or(t, |n| n.min(t)));
        for g in self.groups.values() {
            if g.op == Some(GroupOp::FailingOver) {
                at(self.now);
            }
            if let Some(d) = g.restore_deadline {
                at(d);
            }
            if g.started && g.role.is_source() && !g.running() {
                if let Some(c) = g.next_cycle {
                    at(c);
                }
            }
        }
        next
    }

    fn send(&mut self, peer: &str, msg: Msg) {
        if self.link_up(peer) {
            self.outbox.push_back((peer.to_string(), msg));
        }
    }

    fn note(&mut self, group: &str, text: String) {
        self.events.push_back(Event::Transition {
            group: group.to_string(),
            text,
        });
    }

    fn advance(&mut self, now: Tick) {
        if now > self.now {
            self.now = now;
        }
    }

    fn new_gen(&mut self) -> u64 {
        // Unique across arrays: the array name's hash in the high bits.
        self.gen_counter += 1;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        (h << 32) | (self.gen_counter & 0xffff_ffff)
    }

    /// Takes the group out of the map for the duration of `f`.
    fn with_group<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self, &mut Group) -> T,
    ) -> Option<T> {
        let mut g = self.groups.remove(name)?;
        let out = f(self, &mut g);
        self.groups.insert(name.to_string(), g);
        Some(out)
    }

    // ----- volumes and host I/O ------------------------------------------

    pub fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), VolumeError> {
        self.vols.create(&mut self.store, vol, blocks)
    }

    pub fn delete_volume(&mut self, vol: &str) -> Result<(), CommandError> {
        if let Some(g) = self
            .groups
            .values()
            .find(|g| g.pairs.iter().any(|p| p.local == vol))
        {
            return Err(CommandError::AlreadyAdmitted {
                vol: vol.to_string(),
                group: g.name.clone(),
            });
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
        self.advance(now);
        if let Some(e) = self.write_refusal(vol) {
            return Err(e);
        }
        self.vols.write(&mut self.store, vol, block, data)?;
        let id = WriteId(self.next_write);
        self.next_write += 1;
        let mut waiting = BTreeSet::new();
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.with_group(&name, |a, g| {
                if !g.started {
                    return;
                }
                let sync = g.mode.is_sync();
                let link = a.link_up(&g.peer);
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
                        waiting.insert(g.name.clone());
                    }
                }
            });
        }
        if waiting.is_empty() {
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
            },
        );
        Ok(WriteTicket::Pending { id })
    }

    /// A group no longer waits for acks of pending writes (stopped or failed).
    fn release_writes(&mut self, group: &str, fail: Option<String>) {
        let ids: Vec<WriteId> = self
            .pending
            .iter()
            .filter(|(_, w)| w.waiting.contains(group))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let w = self.pending.get_mut(&id).expect("listed");
            w.waiting.remove(group);
            w.fell_back = true;
            if fail.is_some() && w.failed.is_none() {
                w.failed = fail.clone();
            }
            self.finish_write(id);
        }
    }

    fn finish_write(&mut self, id: WriteId) {
        let done = self
            .pending
            .get(&id)
            .map(|w| w.waiting.is_empty())
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

    // ----- links ---------------------------------------------------------

    pub fn handle_link_up(&mut self, now: Tick, peer: &str) {
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
    fn announce(&mut self, g: &Group) {
        let msg = Msg::Hello {
            array: self.name.clone(),
            groups: vec![Self::hello_of(g, &self.vols)],
            complete: false,
        };
        self.send(&g.peer.clone(), msg);
    }

    fn hello_of(g: &Group, vols: &Volumes) -> GroupHello {
        GroupHello {
            group: g.name.clone(),
            role: g.role,
            epoch: g.epoch,
            started: g.started,
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

    pub fn handle_link_down(&mut self, now: Tick, peer: &str) -> R<()> {
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
                a.fail_group(g, StopCause::LinkFailure)
            })
            .transpose()?;
        }
        Ok(())
    }

    /// Stops a group because something failed (or an operator stopped it).
    fn fail_group(&mut self, g: &mut Group, cause: StopCause) -> R<()> {
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

    fn source_stop(&mut self, g: &mut Group, i: usize) -> R<()> {
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

    fn target_stop(&mut self, g: &mut Group, i: usize) -> R<()> {
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

    // ----- crash and restart ---------------------------------------------

    /// The array process dies: volatile state is lost, metadata and the
    /// block store are kept. Pending host writes are never acknowledged.
    pub fn crash(&mut self) {
        for l in self.links.values_mut() {
            *l = false;
        }
        self.outbox.clear();
        self.events.clear();
        self.pending.clear();
        for g in self.groups.values_mut() {
            g.reset_volatile();
            if g.op == Some(GroupOp::FailingBack) {
                g.op = None;
            }
        }
    }

    /// The array comes back up after [`Array::crash`]: every group that was
    /// running is stopped as by a failure (snapshots taken now, writes that
    /// were in flight recorded), a failover that was running resumes.
    pub fn restart(&mut self, now: Tick) -> R<()> {
        self.advance(now);
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.with_group(&name, |a, g| a.fail_group(g, StopCause::Restart))
                .transpose()?;
        }
        Ok(())
    }

    // ----- timers ----------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Tick) -> R<()> {
        self.advance(now);
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.with_group(&name, |a, g| a.group_timeout(g))
                .transpose()?;
        }
        Ok(())
    }

    fn group_timeout(&mut self, g: &mut Group) -> R<()> {
        if g.op == Some(GroupOp::FailingOver) {
            self.failover_step(g)?;
        }
        if let Some(d) = g.restore_deadline {
            if self.now >= d && (g.op == Some(GroupOp::FailingBack) || g.restore_after_cycle) {
                g.op = None;
                g.restore_deadline = None;
                g.restore_after_cycle = false;
                self.send(
                    &g.peer.clone(),
                    Msg::RestoreAbort {
                        group: g.name.clone(),
                    },
                );
                self.events.push_back(Event::OperationFailed {
                    group: g.name.clone(),
                    op: "restore",
                    reason: format!(
                        "{} did not confirm the role swap in time; roles are unchanged",
                        g.peer
                    ),
                });
                self.note(&g.name, "restore failed: timed out".into());
            }
        }
        if g.started && g.role.is_source() && !g.running() && g.op.is_none() {
            if let Some(c) = g.next_cycle {
                if self.now >= c && self.link_up(&g.peer) {
                    self.start_runs(g, false)?;
                }
            }
        }
        Ok(())
    }

    // ----- sync runs (source side) --------------------------------------

    /// Starts a sync run of every pair. `announce_full` lists pairs as full
    /// in the Start message when they have no base.
    fn start_runs(&mut self, g: &mut Group, skip_start_msg: bool) -> R<()> {
        let periodic = !g.mode.is_sync();
        let mut announced = Vec::new();
        // One point for the whole group: a periodic cycle freezes every
        // volume at this same instant, so the target is group-consistent.
        self.point_counter += 1;
        let point = self.point_counter;
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
            });
            p.status = SyncStatus::Syncing;
            announced.push((p.remote.clone(), full));
        }
        if periodic {
            if let Mode::Periodic { period_ms } = g.mode {
                g.next_cycle = (period_ms > 0).then(|| self.now.plus(period_ms));
            }
        }
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
    fn pump(&mut self, g: &mut Group) -> R<()> {
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
                };
                self.send(&g.peer.clone(), msg);
            }
        }
        Ok(())
    }

    /// The target holds pair `i`'s proposed point: record it, keep it as
    /// the last complete point (periodic mode), and confirm to the source.
    fn complete_target_pair(&mut self, g: &mut Group, i: usize, from: &str) -> R<()> {
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

    fn sync_done_ack(&mut self, g: &mut Group, vol: &str, gen: u64) -> R<()> {
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
            if g.requested == Some(CopyState::Synchronized) {
                g.requested = None;
            }
            if g.restore_after_cycle {
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

    // ----- failover ---------------------------------------------------------

    fn failover_step(&mut self, g: &mut Group) -> R<()> {
        let budget = self.config.promote_budget;
        let mut all_done = true;
        for p in &mut g.pairs {
            if let Some(t) = p.target_snap {
                if self.vols.promote_step(&mut self.store, t, budget)? {
                    p.target_snap = None;
                } else {
                    all_done = false;
                }
            }
        }
        if !all_done {
            return Ok(());
        }
        for p in &mut g.pairs {
            if let Some(b) = p.base_snap.take() {
                self.vols.delete_snap(&mut self.store, b)?;
            }
            p.pending_gen = None;
            p.extra.clear();
            if p.gen > 0 {
                p.base_snap = Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
                p.status = SyncStatus::Stopped;
            } else if p.status != SyncStatus::New {
                p.status = SyncStatus::NotSynced;
            }
        }
        g.op = None;
        self.note(&g.name, "failover complete: volumes writable here".into());
        Ok(())
    }

    // ----- restore (both sides) --------------------------------------------

    fn complete_restore_as_new_primary(&mut self, g: &mut Group) {
        // Secondary-Rev -> Primary: the periodic last-complete point becomes
        // the base for the next deltas.
        g.role = Role::Primary;
        g.op = None;
        g.recovered = false;
        for p in &mut g.pairs {
            if let Some(t) = p.target_snap.take() {
                p.base_snap = Some(t);
            }
        }
        if let Mode::Periodic { period_ms } = g.mode {
            g.next_cycle = (period_ms > 0).then(|| self.now.plus(period_ms));
        }
        self.note(&g.name, "restore done: Primary again".into());
        self.announce(g);
    }

    // ----- reverse -------------------------------------------------------

    fn reverse_check(&self, g: &Group) -> Result<(), String> {
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

    fn apply_reverse(&mut self, g: &mut Group, epoch: u64) -> R<()> {
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

    // ----- messages -------------------------------------------------------

    /// A message from `from`. It is checked against this array's state
    /// before anything changes: one that cannot be right (a block beyond a
    /// volume's end, a bad name, a count out of bounds) is refused as a
    /// [`Fault::Peer`], and nothing changed; the shell drops the session
    /// and keeps running. Only a failing store is a [`Fault::Store`].
    pub fn handle_message(&mut self, now: Tick, from: &str, msg: Msg) -> Result<(), Fault> {
        self.advance(now);
        if !self.link_up(from) {
            return Ok(());
        }
        self.check_message(from, &msg)
            .map_err(|reason| Fault::Peer {
                peer: from.to_string(),
                reason,
            })?;
        self.message(from, msg)
            .map_err(|e| Fault::from_volume(from, e))
    }

    /// Whether `msg` from `from` is one this array can act on: every name
    /// follows the naming rule, every count is within its bound, and every
    /// block lies inside the volume it names (when this array has the pair).
    fn check_message(&self, from: &str, msg: &Msg) -> Result<(), String> {
        let name = |n: &str| names::group(n).map_err(|e| e.to_string());
        let vol = |n: &str| names::volume(n).map_err(|e| e.to_string());
        let text = |t: &str, what: &str| {
            if t.len() > names::MAX_REASON * 2 {
                Err(format!("{what} of {} bytes", t.len()))
            } else {
                Ok(())
            }
        };
        if let Some(g) = msg.group() {
            name(g)?;
        }
        // The pair a block message is about, when this array has it.
        let size = |group: &str, v: &str| -> Option<u64> {
            let g = self.groups.get(group).filter(|g| g.peer == from)?;
            g.pairs.iter().find(|p| p.local == v).map(|p| p.blocks)
        };
        let inside = |group: &str, v: &str, block: u64| match size(group, v) {
            Some(n) if block >= n => Err(format!(
                "block {block} is beyond the end of {v} ({n} blocks) in group {group}"
            )),
            _ => Ok(()),
        };
        match msg {
            Msg::Hello {
                array, groups: gs, ..
            } => {
                if array != from {
                    return Err(format!("a Hello from {from} names {array:?}"));
                }
                if gs.len() > names::HELLO_GROUPS {
                    return Err(format!("a Hello listing {} groups", gs.len()));
                }
                for gh in gs {
                    name(&gh.group)?;
                    if gh.pairs.len() > names::MAX_PAIRS {
                        return Err(format!("group {} with {} pairs", gh.group, gh.pairs.len()));
                    }
                    for ph in &gh.pairs {
                        vol(&ph.vol)?;
                    }
                }
            }
            Msg::Admit {
                vol: v,
                source_vol,
                blocks,
                ..
            } => {
                vol(v)?;
                vol(source_vol)?;
                if *blocks == 0 || *blocks > names::MAX_VOLUME_BLOCKS {
                    return Err(format!("a volume of {blocks} blocks"));
                }
            }
            Msg::AdmitResult { vol: v, error, .. } => {
                vol(v)?;
                if let Some(e) = error {
                    text(e, "an admit error")?;
                }
            }
            Msg::Start { pairs, .. } => {
                if pairs.len() > names::MAX_PAIRS {
                    return Err(format!("a Start of {} pairs", pairs.len()));
                }
                for (v, _) in pairs {
                    vol(v)?;
                }
            }
            Msg::Data {
                group,
                vol: v,
                block,
                ..
            } => {
                vol(v)?;
                inside(group, v, *block)?;
            }
            Msg::SyncBlocks {
                group,
                vol: v,
                blocks,
            } => {
                vol(v)?;
                if blocks.is_empty() || blocks.len() as u64 > names::MAX_RUN_BATCH {
                    return Err(format!("a SyncBlocks of {} blocks", blocks.len()));
                }
                for b in blocks {
                    inside(group, v, b.block)?;
                }
            }
            Msg::SyncBlocksAck { vol: v, count, .. } => {
                vol(v)?;
                if *count == 0 || *count > names::MAX_RUN_BATCH {
                    return Err(format!("an ack of {count} blocks"));
                }
            }
            Msg::Refused { reason, .. } => text(reason, "a refusal")?,
            Msg::OpRefused { op, reason, .. } => {
                text(reason, "a refusal")?;
                if op.len() > names::MAX_NAME {
                    return Err(format!("an operation name of {} bytes", op.len()));
                }
            }
            Msg::RecoverReady { group, changed } => {
                if changed.len() > names::MAX_PAIRS {
                    return Err(format!("a RecoverReady of {} pairs", changed.len()));
                }
                let mut runs = 0;
                for (v, c) in changed {
                    vol(v)?;
                    if let Changed::Ranges(r) = c {
                        runs += r.len();
                        let n = size(group, v).unwrap_or(u64::MAX);
                        let mut next = 0;
                        for &(first, count) in r {
                            let end = first.checked_add(count).filter(|e| *e <= n);
                            if count == 0 || first < next || end.is_none() {
                                return Err(format!(
                                    "changed blocks {first}+{count} of {v} are out of order or beyond its end"
                                ));
                            }
                            next = first + count;
                        }
                    }
                }
                if runs > names::MAX_RECOVER_RANGES {
                    return Err(format!("a RecoverReady of {runs} ranges"));
                }
            }
            Msg::DataAck { vol: v, .. }
            | Msg::Dismiss { vol: v, .. }
            | Msg::SyncDone { vol: v, .. }
            | Msg::SyncDoneAck { vol: v, .. } => vol(v)?,
            Msg::CreateGroup { .. }
            | Msg::RemoveGroup { .. }
            | Msg::Config { .. }
            | Msg::Stop { .. }
            | Msg::RecoverPrepare { .. }
            | Msg::RestorePrepare { .. }
            | Msg::RestoreReady { .. }
            | Msg::RestoreCommit { .. }
            | Msg::RestoreAbort { .. }
            | Msg::Reverse { .. }
            | Msg::ReverseDone { .. } => {}
        }
        Ok(())
    }

    fn message(&mut self, from: &str, msg: Msg) -> R<()> {
        if let Msg::Hello {
            groups, complete, ..
        } = msg
        {
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
            return Ok(());
        }
        let Some(name) = msg.group().map(str::to_string) else {
            return Ok(());
        };
        if let Msg::CreateGroup {
            group,
            mode,
            policies,
        } = &msg
        {
            if self.groups.contains_key(group) {
                let reason = format!("group {group} already exists on {}", self.name);
                self.send(
                    from,
                    Msg::OpRefused {
                        group: group.clone(),
                        op: "creatercopygroup".into(),
                        reason,
                    },
                );
            } else {
                let g = new_group(group, from, Role::Secondary, *mode, *policies);
                self.announce(&g);
                self.groups.insert(group.clone(), g);
                self.note(group, format!("created as Secondary of {from}"));
            }
            return Ok(());
        }
        if !self.groups.contains_key(&name) {
            if !matches!(
                msg,
                Msg::Refused { .. } | Msg::OpRefused { .. } | Msg::RemoveGroup { .. }
            ) {
                let reason = format!("group {name} does not exist on {}", self.name);
                self.send(
                    from,
                    Msg::Refused {
                        group: name,
                        reason,
                    },
                );
            }
            return Ok(());
        }
        if let Msg::RemoveGroup { group } = &msg {
            let g = self.groups.remove(group).expect("checked");
            self.drop_group_snaps(&g)?;
            self.note(group, "removed by peer".into());
            return Ok(());
        }
        self.with_group(&name, |a, g| a.group_message(g, from, msg))
            .transpose()?;
        Ok(())
    }

    fn drop_group_snaps(&mut self, g: &Group) -> R<()> {
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

    /// Why this side does not take blocks of `vol` for `g`, if it does not.
    fn not_receiving(&self, g: &Group, vol: &str) -> Option<String> {
        (g.role.is_source() || !g.started || g.pairs.iter().all(|p| p.local != vol)).then(|| {
            format!(
                "{} is {} and not receiving for group {}",
                self.name, g.role, g.name
            )
        })
    }

    fn refuse_op(&mut self, g: &Group, op: &str, reason: String) {
        let msg = Msg::OpRefused {
            group: g.name.clone(),
            op: op.to_string(),
            reason,
        };
        self.send(&g.peer.clone(), msg);
    }

    fn refuse(&mut self, g: &Group, reason: String) {
        self.send(
            &g.peer.clone(),
            Msg::Refused {
                group: g.name.clone(),
                reason,
            },
        );
    }

    fn group_message(&mut self, g: &mut Group, from: &str, msg: Msg) -> R<()> {
        if g.peer != from {
            return Ok(());
        }
        match msg {
            Msg::Data {
                vol,
                block,
                data,
                tag,
                ..
            } => {
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
            }
            Msg::SyncBlocks { vol, blocks, .. } => {
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
            }
            Msg::SyncBlocksAck { vol, count, .. } => {
                let Some(p) = g.pair_mut(&vol) else {
                    return Ok(());
                };
                if let Some(run) = p.run.as_mut() {
                    run.unacked = run.unacked.saturating_sub(count);
                }
                self.pump(g)?;
            }
            Msg::DataAck {
                vol, block, tag, ..
            } => {
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
                            w.waiting.remove(&g.name);
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
            }
            Msg::Start { pairs, .. } => {
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
                        p.target_snap =
                            Some(self.vols.snapshot(&mut self.store, &p.local, p.gen)?);
                    }
                    p.status = SyncStatus::Syncing;
                }
            }
            Msg::SyncDone { vol, gen, .. } => {
                if g.role.is_source() || !g.started {
                    return Ok(());
                }
                let Some(p) = g.pair_mut(&vol) else {
                    return Ok(());
                };
                p.done_gen = Some(gen);
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
                for i in ready {
                    self.complete_target_pair(g, i, from)?;
                }
            }
            Msg::SyncDoneAck { vol, gen, .. } => self.sync_done_ack(g, &vol, gen)?,
            Msg::Stop { .. } => {
                if !g.role.is_source() {
                    self.fail_group(g, StopCause::Operator)?;
                }
            }
            Msg::Refused { reason, .. } => {
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
            }
            Msg::OpRefused { op, reason, .. } => {
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
                    _ => "creatercopygroup",
                };
                self.events.push_back(Event::OperationFailed {
                    group: g.name.clone(),
                    op,
                    reason: format!("{} refused: {reason}", g.peer),
                });
            }
            Msg::Config { mode, policies, .. } => {
                if !g.role.is_source() {
                    g.mode = mode;
                    g.policies = policies;
                }
            }
            Msg::Admit {
                vol,
                source_vol,
                blocks,
                ..
            } => {
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
                    None if !self.vols.exists(&vol) => {
                        match self.vols.create(&mut self.store, &vol, blocks) {
                            Ok(()) => {
                                fresh = true;
                                None
                            }
                            Err(e) => Some(e.to_string()),
                        }
                    }
                    None => None,
                };
                if error.is_none() && !same {
                    g.pairs.push(Pair::new(&vol, &source_vol, blocks, self.now));
                }
                let reply = Msg::AdmitResult {
                    group: g.name.clone(),
                    vol: source_vol,
                    fresh,
                    error,
                };
                self.send(from, reply);
            }
            Msg::AdmitResult {
                vol, fresh, error, ..
            } => match error {
                Some(reason) => {
                    if let Some(i) = g.pairs.iter().position(|p| p.local == vol) {
                        g.pairs.remove(i);
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
            },
            Msg::Dismiss { vol, .. } => {
                if let Some(i) = g.pairs.iter().position(|p| p.local == vol) {
                    let p = g.pairs.remove(i);
                    for s in [p.base_snap, p.target_snap, p.cycle_snap]
                        .into_iter()
                        .flatten()
                    {
                        self.vols.delete_snap(&mut self.store, s)?;
                    }
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
            }
            Msg::RecoverPrepare { full, .. } => self.recover_prepare(g, full)?,
            Msg::RecoverReady { changed, .. } => {
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
            }
            Msg::RestorePrepare { .. } => {
                let why = if g.role != Role::SecondaryRev {
                    Some(format!("{} is {}, not Secondary-Rev", self.name, g.role))
                } else if !g.started {
                    Some(format!("group {} is not started on {}", g.name, self.name))
                } else {
                    g.pairs
                        .iter()
                        .find(|p| p.status != SyncStatus::Synced)
                        .map(|p| format!("{} is {} on {}", p.local, p.status, self.name))
                };
                match why {
                    Some(reason) => self.refuse_op(g, "restore", reason),
                    None => {
                        g.op = Some(GroupOp::FailingBack);
                        self.send(
                            from,
                            Msg::RestoreReady {
                                group: g.name.clone(),
                            },
                        );
                    }
                }
            }
            Msg::RestoreReady { .. } => {
                if g.op != Some(GroupOp::FailingBack) || g.role != Role::PrimaryRev {
                    return Ok(());
                }
                g.role = Role::Secondary;
                g.op = None;
                g.restore_deadline = None;
                g.recovered = false;
                g.requested = None;
                g.next_cycle = None;
                let periodic = !g.mode.is_sync();
                for p in &mut g.pairs {
                    if let Some(b) = p.base_snap.take() {
                        if periodic {
                            p.target_snap = Some(b);
                        } else {
                            self.vols.delete_snap(&mut self.store, b)?;
                        }
                    }
                }
                self.send(
                    from,
                    Msg::RestoreCommit {
                        group: g.name.clone(),
                    },
                );
                self.note(&g.name, "restore done: Secondary again".into());
                self.announce(g);
            }
            Msg::RestoreCommit { .. } => {
                if g.role == Role::SecondaryRev {
                    self.complete_restore_as_new_primary(g);
                }
            }
            Msg::RestoreAbort { .. } => {
                if g.op == Some(GroupOp::FailingBack) {
                    g.op = None;
                }
            }
            Msg::Reverse { epoch, .. } => match self.reverse_check(g) {
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
            },
            Msg::ReverseDone { epoch, .. } => {
                if g.reverse_pending == Some(epoch) {
                    self.apply_reverse(g, epoch)?;
                }
            }
            Msg::Hello { .. } | Msg::CreateGroup { .. } | Msg::RemoveGroup { .. } => {}
        }
        Ok(())
    }

    fn recover_prepare(&mut self, g: &mut Group, full: bool) -> R<()> {
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

    fn demote(&mut self, g: &mut Group) {
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

    fn hello(&mut self, g: &mut Group, h: GroupHello) -> R<()> {
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
    fn reconcile_pairs(&mut self, g: &mut Group, h: &GroupHello) -> R<()> {
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
                let p = g.pairs.remove(i);
                for snap in [p.base_snap, p.target_snap, p.cycle_snap]
                    .into_iter()
                    .flatten()
                {
                    self.vols.delete_snap(&mut self.store, snap)?;
                }
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

    // ----- commands -------------------------------------------------------

    /// Runs an operator command. On `Err`, nothing changed.
    pub fn command(&mut self, now: Tick, cmd: Command) -> Result<(), CommandError> {
        self.advance(now);
        cmd.check_names()?;
        if let Command::CreateGroup {
            group,
            peer,
            mode,
            policies,
        } = &cmd
        {
            if self.groups.contains_key(group) {
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
            if !self.link_up(peer) {
                return Err(CommandError::LinkDown {
                    op: "creatercopygroup",
                    peer: peer.clone(),
                    hint: "the group is created on both arrays; bring the link up first".into(),
                });
            }
            self.groups.insert(
                group.clone(),
                new_group(group, peer, Role::Primary, *mode, *policies),
            );
            self.send(
                peer,
                Msg::CreateGroup {
                    group: group.clone(),
                    mode: *mode,
                    policies: *policies,
                },
            );
            // Until its Hello arrives, the peer is what we asked it to be:
            // the group's Secondary. A refusal (OpRefused) or a real Hello
            // replaces this.
            let g = self.groups.get_mut(group).expect("inserted");
            g.peer_hello = Some(GroupHello {
                group: group.clone(),
                role: Role::Secondary,
                epoch: 0,
                started: false,
                pairs: Vec::new(),
            });
            let g = g.clone();
            self.announce(&g);
            return Ok(());
        }
        let name = cmd.group().to_string();
        if !self.groups.contains_key(&name) {
            return Err(CommandError::NoSuchGroup {
                group: name,
                array: self.name.clone(),
            });
        }
        if let Command::RemoveGroup { .. } = cmd {
            let g = &self.groups[&name];
            if g.started {
                return Err(CommandError::NotStopped {
                    op: "removercopygroup",
                    group: name,
                    source_array: self.source_name(g),
                });
            }
            if g.op.is_some() {
                return Err(busy("removercopygroup", g));
            }
            let g = self.groups.remove(&name).expect("checked");
            self.drop_group_snaps(&g)?;
            self.send(&g.peer, Msg::RemoveGroup { group: name });
            return Ok(());
        }
        self.with_group(&name, |a, g| a.group_command(g, cmd))
            .expect("checked")
    }

    fn source_name(&self, g: &Group) -> String {
        if g.role.is_source() {
            self.name.clone()
        } else {
            g.peer.clone()
        }
    }

    fn need_source(&self, g: &Group, op: &'static str) -> Result<(), CommandError> {
        if g.role.is_source() {
            return Ok(());
        }
        Err(CommandError::WrongSide {
            op,
            need: "source (Primary or Primary-Rev)",
            hint: g.peer.clone(),
            array: self.name.clone(),
            role: g.role,
            group: g.name.clone(),
        })
    }

    fn group_command(&mut self, g: &mut Group, cmd: Command) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        match cmd {
            Command::Admit {
                vol, remote_vol, ..
            } => {
                if g.role != Role::Primary {
                    return Err(CommandError::WrongSide {
                        op: "admitrcopyvv",
                        need: "Primary",
                        hint: if g.role == Role::Secondary {
                            peer
                        } else {
                            "restore the natural direction first".into()
                        },
                        array: self.name.clone(),
                        role: g.role,
                        group: g.name.clone(),
                    });
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
                if let Some(t) = self
                    .groups
                    .values()
                    .find(|o| !o.role.is_source() && o.pairs.iter().any(|p| p.local == vol))
                {
                    return Err(CommandError::VolumeIsTarget {
                        vol,
                        group: t.name.clone(),
                        array: self.name.clone(),
                    });
                }
                let mirrors = self
                    .groups
                    .values()
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
                        hint: "the target volume is set up on the peer; bring the link up first"
                            .into(),
                    });
                }
                g.pairs.push(Pair::new(&vol, &remote_vol, blocks, self.now));
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
            Command::Dismiss { vol, .. } => {
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
                let p = g.pairs.remove(i);
                for s in [p.base_snap, p.target_snap, p.cycle_snap]
                    .into_iter()
                    .flatten()
                {
                    self.vols.delete_snap(&mut self.store, s)?;
                }
                self.send(
                    &peer,
                    Msg::Dismiss {
                        group: g.name.clone(),
                        vol: p.remote,
                    },
                );
                Ok(())
            }
            Command::Start { .. } => {
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
            Command::Stop { .. } => {
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
            Command::Sync { .. } => {
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
                if g.running() || g.op.is_some() {
                    return Err(CommandError::Busy {
                        op: "syncrcopy",
                        group: g.name.clone(),
                        what: "a sync".into(),
                    });
                }
                self.start_runs(g, false)?;
                Ok(())
            }
            Command::Failover { .. } => {
                if g.role != Role::Secondary {
                    return Err(CommandError::WrongSide {
                        op: "failover",
                        need: "Secondary",
                        hint: format!("the natural secondary of {}", g.name),
                        array: self.name.clone(),
                        role: g.role,
                        group: g.name.clone(),
                    });
                }
                if self.link_up(&peer) {
                    return Err(CommandError::LinkUp {
                        op: "failover",
                        peer,
                        hint: "failover is for a lost primary; for a planned swap stop the group and use `setrcopygroup reverse`".into(),
                    });
                }
                if g.reverse_pending.is_some() {
                    return Err(busy("failover", g));
                }
                if g.pairs.iter().all(|p| p.status == SyncStatus::New) {
                    return Err(CommandError::NotStarted {
                        op: "failover",
                        group: g.name.clone(),
                    });
                }
                // Row 2: every pair shows Stopped while the failover runs.
                for p in &mut g.pairs {
                    p.status = SyncStatus::Stopped;
                }
                g.role = Role::PrimaryRev;
                g.op = Some(GroupOp::FailingOver);
                g.started = false;
                g.stop_cause = StopCause::FailedOver;
                g.recovered = false;
                g.requested = Some(CopyState::FailedOver);
                self.note(&g.name, "failover issued: now Primary-Rev".into());
                Ok(())
            }
            Command::Recover { full, .. } => {
                if g.role != Role::PrimaryRev {
                    return Err(CommandError::WrongSide {
                        op: "recover",
                        need: "Primary-Rev",
                        hint: if g.role == Role::SecondaryRev {
                            peer
                        } else {
                            "the side that failed over".into()
                        },
                        array: self.name.clone(),
                        role: g.role,
                        group: g.name.clone(),
                    });
                }
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
                                let common =
                                    here.iter().flatten().any(|g| there.contains(&Some(*g)));
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
            Command::Restore { .. } => {
                if g.role != Role::PrimaryRev {
                    return Err(CommandError::WrongSide {
                        op: "restore",
                        need: "Primary-Rev",
                        hint: if g.role == Role::SecondaryRev {
                            peer
                        } else {
                            "the side that failed over".into()
                        },
                        array: self.name.clone(),
                        role: g.role,
                        group: g.name.clone(),
                    });
                }
                if !g.started {
                    return Err(CommandError::NotStarted {
                        op: "restore",
                        group: g.name.clone(),
                    });
                }
                if g.op.is_some() || g.running() || g.restore_after_cycle {
                    return Err(busy("restore", g));
                }
                if let Some(p) = g.pairs.iter().find(|p| p.status != SyncStatus::Synced) {
                    return Err(CommandError::NotSynced {
                        op: "restore",
                        group: g.name.clone(),
                        vol: p.local.clone(),
                        status: p.status.to_string(),
                        hint: "wait for recover to finish".into(),
                    });
                }
                self.need_link(g, "restore", "restore needs both arrays")?;
                g.restore_deadline = Some(self.now.plus(self.config.restore_timeout_ms));
                g.requested = Some(CopyState::Synchronized);
                if g.mode.is_sync() {
                    g.op = Some(GroupOp::FailingBack);
                    self.send(
                        &peer,
                        Msg::RestorePrepare {
                            group: g.name.clone(),
                        },
                    );
                } else {
                    // Host writes stop now; a final cycle brings the natural
                    // primary fully up to date, then the roles swap.
                    g.restore_after_cycle = true;
                    self.start_runs(g, false)?;
                }
                self.note(&g.name, "restore issued".into());
                Ok(())
            }
            Command::Reverse { .. } => {
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
            Command::SetMode { mode, .. } => {
                self.need_source(g, "setrcopygroup mode")?;
                if g.started {
                    return Err(CommandError::NotStopped {
                        op: "setrcopygroup mode",
                        group: g.name.clone(),
                        source_array: self.name.clone(),
                    });
                }
                if !mode.is_sync() && g.policies.fail_wrt_on_err {
                    return Err(CommandError::PolicyNeedsSync {
                        policy: "fail_wrt_on_err",
                        group: g.name.clone(),
                    });
                }
                g.mode = mode;
                g.next_cycle = None;
                self.send(
                    &peer,
                    Msg::Config {
                        group: g.name.clone(),
                        mode,
                        policies: g.policies,
                    },
                );
                Ok(())
            }
            Command::SetPolicy { change, .. } => {
                self.need_source(g, "setrcopygroup pol")?;
                let mut policies = g.policies;
                match change {
                    PolicyChange::AutoRecover(on) => policies.auto_recover = on,
                    PolicyChange::FailWrtOnErr(on) => policies.fail_wrt_on_err = on,
                }
                if policies.fail_wrt_on_err && !g.mode.is_sync() {
                    return Err(CommandError::PolicyNeedsSync {
                        policy: "fail_wrt_on_err",
                        group: g.name.clone(),
                    });
                }
                // Enabling auto_recover never restarts a group by itself: it
                // only acts on the next link-up.
                g.policies = policies;
                self.send(
                    &peer,
                    Msg::Config {
                        group: g.name.clone(),
                        mode: g.mode,
                        policies,
                    },
                );
                Ok(())
            }
            Command::CreateGroup { .. } | Command::RemoveGroup { .. } => {
                unreachable!("handled in command()")
            }
        }
    }

    fn need_link(&self, g: &Group, op: &'static str, hint: &str) -> Result<(), CommandError> {
        if self.link_up(&g.peer) {
            Ok(())
        } else {
            Err(CommandError::LinkDown {
                op,
                peer: g.peer.clone(),
                hint: hint.to_string(),
            })
        }
    }

    /// The peer's last Hello must show the counterpart role.
    fn need_agreement(&self, g: &Group, op: &'static str) -> Result<(), CommandError> {
        match self.peer_state(g, op)? {
            h if h.role != g.role.counterpart() => Err(CommandError::WrongSide {
                op,
                need: "source with the peer as target",
                hint: format!(
                    "{} reports role {}; resolve the roles first",
                    g.peer, h.role
                ),
                array: self.name.clone(),
                role: g.role,
                group: g.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// What the peer last said about `g` since the link came up: refused
    /// while its Hello is on the way, or when its complete Hello showed it
    /// does not have the group.
    fn peer_state<'g>(
        &self,
        g: &'g Group,
        op: &'static str,
    ) -> Result<&'g GroupHello, CommandError> {
        if g.peer_missing {
            return Err(CommandError::PeerLacksGroup {
                op,
                peer: g.peer.clone(),
                group: g.name.clone(),
            });
        }
        g.peer_hello
            .as_ref()
            .ok_or_else(|| CommandError::PeerUnknown {
                op,
                peer: g.peer.clone(),
                group: g.name.clone(),
            })
    }
}

/// The generation of the point this pair's data can be diffed against:
/// its base snapshot's, or, with none, the last sync it completed (a target
/// holds exactly that point, or it plus blocks of an interrupted resync that
/// its pre-resync snapshot records).
fn point_gen(vols: &Volumes, p: &Pair) -> Option<u64> {
    match p.base_snap {
        Some(s) => vols.snapshot_meta(s).map(|m| m.gen),
        None if p.gen > 0 => Some(p.gen),
        None => None,
    }
}

fn busy(op: &'static str, g: &Group) -> CommandError {
    CommandError::Busy {
        op,
        group: g.name.clone(),
        what: g.busy().unwrap_or("a sync").into(),
    }
}

fn new_group(name: &str, peer: &str, role: Role, mode: Mode, policies: Policies) -> Group {
    Group {
        name: name.to_string(),
        peer: peer.to_string(),
        role,
        mode,
        policies,
        epoch: 0,
        started: false,
        stop_cause: StopCause::NotStarted,
        op: None,
        requested: None,
        recovered: false,
        pairs: Vec::new(),
        next_cycle: None,
        peer_hello: None,
        peer_missing: false,
        auto_recover_armed: false,
        recovering: None,
        restore_deadline: None,
        restore_after_cycle: false,
        reverse_pending: None,
    }
}
