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

mod check;
mod config;
mod congestion;
mod failover;
mod failure;
mod guard;
mod hello;
mod index;
mod legacy;
mod membership;
mod recover;
mod replicas;
mod restore;
mod retain;
mod reverse;
mod state;
mod sync;
mod verify;
mod writes;

use super::error::{CommandError, Fault, WriteError};
use super::msg::{Changed, DataTag, GroupHello, Msg, PairHello, RunBlock};
use super::names;
use super::read::{next_generation, ArrayRead, GroupRead, PairRead, ReplicaRead, VolumeRead};
use super::store::BlockStore;
use super::tracked::TrackedMap;
use super::types::*;
use super::view::{derive, CopyState, PairFacts, PairView};
use super::volumes::{ReplicaKind, VolumeError, Volumes};
pub use config::SWITCH_DRAIN_MS;
use guard::{busy, failed_over_side};
pub use legacy::{LegacyGroup, LegacyGroupV2};
pub use state::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
pub use verify::{block_digest, VerifyReport, MAX_DIFF_LISTED, VERIFY_BATCH};

/// A source volume can have at most this many mirrors (as ETERNUS REC).
pub const MAX_MIRRORS: usize = 8;

type R<T> = Result<T, VolumeError>;

/// An array's durable state, borrowed: the head, the volume table, the
/// snapshots, the local replicas and the groups.
pub type DurableParts<'a> = (
    Head,
    &'a BTreeMap<String, super::volumes::VolMeta>,
    &'a BTreeMap<SnapId, super::volumes::SnapMeta>,
    &'a BTreeMap<String, super::volumes::ReplicaMeta>,
    &'a BTreeMap<String, Group>,
);

/// The durable entries a step handed out for change: volumes, snapshots,
/// replicas and groups.
pub type Touched = (
    BTreeSet<String>,
    BTreeSet<SnapId>,
    BTreeSet<String>,
    BTreeSet<String>,
);

/// One array.
pub struct Array<S: BlockStore> {
    name: String,
    config: ArrayConfig,
    store: S,
    vols: Volumes,
    groups: TrackedMap<String, Group>,
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
    /// Counts the inputs that may have changed what a reader sees.
    generation: u64,
    /// Volume -> the groups holding it as a local volume, in name order
    /// (kept by `hold`/`unhold` where pairs are added and removed).
    holders: BTreeMap<String, Vec<String>>,
    /// Groups that may have a deadline (`has_timer`), as of the last scan
    /// of the groups handed out for change; `poll_timeout` looks at these
    /// and at the ones not scanned yet, never at every group.
    timed: BTreeSet<String>,
    /// (generation, group) of each input that handed a group out for
    /// change (made, changed or removed; stamped when the next input
    /// starts), newest last, for `read_model_from`. Bounded: a reader
    /// whose model is older than the log rebuilds it whole.
    changes: VecDeque<(u64, String)>,
    /// The newest generation dropped from `changes`.
    changes_trimmed: u64,
    /// The generation of the last input that changed the volume table.
    vols_changed_at: u64,
}

impl<S: BlockStore> Array<S> {
    pub fn new(name: &str, store: S, config: ArrayConfig) -> Self {
        Array {
            name: name.to_string(),
            config,
            store,
            vols: Volumes::default(),
            groups: TrackedMap::default().scanned(),
            next_write: 1,
            gen_counter: 0,
            point_counter: 0,
            counters: Counters::default(),
            now: Tick(0),
            links: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            generation: next_generation(),
            holders: BTreeMap::new(),
            timed: BTreeSet::new(),
            changes: VecDeque::new(),
            changes_trimmed: 0,
            vols_changed_at: 0,
        }
    }

    /// The durable state, borrowed: the head (small, copied), every
    /// snapshot and every group. A shell persists these after each batch of
    /// inputs, before it releases the batch's outputs.
    pub fn durable(&self) -> DurableParts<'_> {
        let (vols, next_snap, snaps, replicas) = self.vols.parts();
        let head = Head {
            name: self.name.clone(),
            next_snap,
            next_write: self.next_write,
            gen_counter: self.gen_counter,
            point_counter: self.point_counter,
            counters: self.counters,
            now: self.now,
        };
        (head, vols, snaps, replicas, &self.groups)
    }

    /// The durable entries handed out for change since the last call: the
    /// volumes, the snapshots and the groups (one no longer present was
    /// removed). With the head, which every step may change, these are all
    /// a commit needs to encode: `durable` has the values.
    pub fn take_touched(&mut self) -> Touched {
        let (vols, snaps, replicas) = self.vols.take_touched();
        (vols, snaps, replicas, self.groups.take_touched())
    }

    /// An array rebuilt from its durable state over the store that holds its
    /// blocks, as it is after [`Array::crash`]: call [`Array::restart`] next.
    pub fn from_durable(store: S, config: ArrayConfig, d: Durable) -> Self {
        let mut a = Array::new(&d.head.name, store, config);
        a.vols = Volumes::from_parts(d.vols, d.head.next_snap, d.snaps, d.replicas);
        a.groups = TrackedMap::from_map(d.groups).scanned();
        a.holders = a.holders_now();
        a.next_write = d.head.next_write;
        a.gen_counter = d.head.gen_counter;
        a.point_counter = d.head.point_counter;
        a.counters = d.head.counters;
        a.now = d.head.now;
        a.crash();
        a
    }

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
        self.input();
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

    /// Changes whenever an input may have changed the read model: a reader
    /// holding an [`ArrayRead`] of the same generation holds the current
    /// one.
    pub fn generation(&self) -> u64 {
        self.generation
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

    pub fn poll_transmit(&mut self) -> Option<(String, Msg)> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time `handle_timeout` has work, if any.
    pub fn poll_timeout(&self) -> Option<Tick> {
        // A clone still copying copies on every tick.
        match self.vols.replicas().values().any(|r| r.copying()) {
            true => Some(self.now),
            false => self.group_deadline(),
        }
    }

    /// The earliest deadline of the groups, from the index.
    fn group_deadline(&self) -> Option<Tick> {
        let names: BTreeSet<&String> = self.timed.iter().chain(self.groups.unscanned()).collect();
        self.earliest(names.into_iter().filter_map(|n| self.groups.get(n)))
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

    pub fn handle_timeout(&mut self, now: Tick) -> R<()> {
        self.input();
        self.advance(now);
        // Only groups with a deadline that has come (the others' timeouts
        // do nothing): a tick costs what is due, not the array's size, and
        // leaves the other groups untouched for the journal and readers.
        let due: Vec<String> = self
            .timed
            .iter()
            .filter(|n| {
                let g = self.groups.get(*n);
                self.earliest(g.into_iter()).is_some_and(|t| t <= self.now)
            })
            .cloned()
            .collect();
        for name in due {
            self.with_group(&name, |a, g| a.group_timeout(g))
                .transpose()?;
        }
        self.copy_clones()
    }

    /// Each operation's own deadlines.
    fn group_timeout(&mut self, g: &mut Group) -> R<()> {
        self.failover_timeout(g)?;
        self.restore_timeout(g);
        self.probe_timeout(g);
        self.drain_timeout(g)?;
        self.check_congestion(g)?;
        self.cycle_timeout(g)
    }

    /// A message from `from`. It is checked against this array's state
    /// before anything changes: one that cannot be right (a block beyond a
    /// volume's end, a bad name, a count out of bounds) is refused as a
    /// [`Fault::Peer`], and nothing changed; the shell drops the session
    /// and keeps running. Only a failing store is a [`Fault::Store`].
    pub fn handle_message(&mut self, now: Tick, from: &str, msg: Msg) -> Result<(), Fault> {
        self.input();
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

    fn message(&mut self, from: &str, msg: Msg) -> R<()> {
        match msg {
            Msg::Hello {
                groups, complete, ..
            } => self.on_hello(from, groups, complete),
            Msg::CreateGroup {
                group,
                mode,
                policies,
            } => {
                self.on_create_group(from, group, mode, policies);
                Ok(())
            }
            Msg::RemoveGroup { group, remove_vv } => self.on_remove_group(from, group, remove_vv),
            other => {
                let Some(name) = other.group().map(str::to_string) else {
                    return Ok(());
                };
                if !self.groups.contains_key(&name) {
                    self.no_such_group(from, &other, name);
                    return Ok(());
                }
                self.with_group(&name, |a, g| a.group_message(g, from, other))
                    .transpose()?;
                Ok(())
            }
        }
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
            } => self.on_data(g, from, vol, block, data, tag)?,
            Msg::SyncBlocks { vol, blocks, .. } => self.on_sync_blocks(g, from, vol, blocks)?,
            Msg::SyncBlocksAck { vol, count, .. } => self.on_sync_blocks_ack(g, vol, count)?,
            Msg::DataAck {
                vol, block, tag, ..
            } => self.on_data_ack(g, vol, block, tag)?,
            Msg::Start { pairs, .. } => self.on_start(g, pairs)?,
            Msg::SyncDone {
                vol,
                gen,
                at,
                label,
                ..
            } => self.on_sync_done(g, from, vol, gen, (at, label))?,
            Msg::SyncDoneAck { vol, gen, .. } => self.sync_done_ack(g, &vol, gen)?,
            Msg::Stop { .. } => self.on_stop(g)?,
            Msg::Refused { reason, .. } => self.on_refused(g, reason)?,
            Msg::OpRefused { op, reason, .. } => self.on_op_refused(g, op, reason)?,
            Msg::Config { mode, policies, .. } => self.on_config(g, mode, policies)?,
            Msg::Admit {
                vol,
                source_vol,
                blocks,
                ..
            } => self.on_admit(g, from, vol, source_vol, blocks)?,
            Msg::AdmitResult {
                vol, fresh, error, ..
            } => self.on_admit_result(g, vol, fresh, error)?,
            Msg::Dismiss { vol, .. } => self.on_dismiss(g, vol)?,
            Msg::RecoverPrepare { full, .. } => self.recover_prepare(g, full)?,
            Msg::RecoverReady { changed, .. } => self.on_recover_ready(g, changed)?,
            Msg::RestorePrepare { .. } => self.on_restore_prepare(g, from)?,
            Msg::RestoreReady { .. } => self.on_restore_ready(g, from)?,
            Msg::RestoreCommit { .. } => self.on_restore_commit(g)?,
            Msg::RestoreAbort { .. } => self.on_restore_abort(g)?,
            Msg::Reverse { epoch, .. } => self.on_reverse(g, from, epoch)?,
            Msg::ReverseDone { epoch, .. } => self.on_reverse_done(g, epoch)?,
            Msg::HandOverRequest { .. } => self.on_hand_over_request(g)?,
            Msg::HandOver { .. } => self.on_hand_over(g)?,
            Msg::Probe { sent, .. } => self.on_probe(g, from, sent),
            Msg::ProbeAck { sent, .. } => self.on_probe_ack(g, sent)?,
            Msg::VerifyBlocks {
                vol,
                first,
                digests,
                ..
            } => self.on_verify_blocks(g, from, vol, first, digests)?,
            Msg::VerifyDiff {
                vol,
                count,
                differing,
                ..
            } => self.on_verify_diff(g, vol, count, differing)?,
            Msg::Hello { .. } | Msg::CreateGroup { .. } | Msg::RemoveGroup { .. } => {}
        }
        Ok(())
    }

    /// Runs an operator command. On `Err`, nothing changed.
    pub fn command(&mut self, now: Tick, cmd: Command) -> Result<(), CommandError> {
        self.input();
        self.advance(now);
        cmd.check_names()?;
        match cmd {
            Command::CreateGroup {
                group,
                peer,
                mode,
                policies,
            } => self.create_group(group, peer, mode, policies),
            Command::RemoveGroup {
                group,
                force,
                remove_vv,
            } => self.remove_group(group, force, remove_vv),
            Command::CreateVolume { vol, blocks } => Ok(self.make_volume(&vol, blocks)?),
            Command::DeleteVolume { vol } => self.delete_volume(&vol),
            Command::CreateReplica {
                name,
                source,
                kind,
                into,
            } => self.create_replica(&name, &source, kind, into),
            Command::ModifyReplica { name, op } => self.modify_replica(&name, op),
            other => {
                let name = other.group().expect("a group command").to_string();
                self.need_group(&name)?;
                self.with_group(&name, |a, g| a.group_command(g, other))
                    .expect("checked")
            }
        }
    }

    fn group_command(&mut self, g: &mut Group, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::Admit {
                vol, remote_vol, ..
            } => self.cmd_admit(g, vol, remote_vol),
            Command::Dismiss { vol, .. } => self.cmd_dismiss(g, vol),
            Command::Start { .. } => self.cmd_start(g),
            Command::Stop { .. } => self.cmd_stop(g),
            Command::Sync { label, .. } => self.cmd_sync(g, label),
            Command::Verify { repair, .. } => self.cmd_verify(g, repair),
            Command::Failover { .. } => self.cmd_failover(g),
            Command::Recover { full, .. } => self.cmd_recover(g, full),
            Command::Restore { .. } => self.cmd_restore(g),
            Command::Reverse { .. } => self.cmd_reverse(g),
            Command::SetMode { mode, .. } => self.cmd_set_mode(g, mode),
            Command::SetPolicy { change, .. } => self.cmd_set_policy(g, change),
            Command::SetPeriod { period_ms, .. } => {
                if g.mode.is_sync() {
                    return Err(CommandError::NotPeriodic {
                        group: g.name.clone(),
                    });
                }
                self.cmd_set_mode(g, Mode::Periodic { period_ms })
            }
            Command::CreateGroup { .. }
            | Command::RemoveGroup { .. }
            | Command::CreateVolume { .. }
            | Command::DeleteVolume { .. }
            | Command::CreateReplica { .. }
            | Command::ModifyReplica { .. } => {
                unreachable!("handled in command()")
            }
        }
    }
}
