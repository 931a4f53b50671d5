//! The plain data of an array: configuration, commands, events, pairs,
//! groups, and what survives a crash.

use super::*;

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
    /// The space volumes may take, in blocks: the array's one storage
    /// pool. Volumes are counted at their full size (thick accounting),
    /// mirror targets included.
    pub capacity_blocks: u64,
}

/// The default capacity: 1 TiB (volume files are sparse).
pub const DEFAULT_CAPACITY_BLOCKS: u64 = (1 << 40) / crate::core::BLOCK_SIZE as u64;

impl Default for ArrayConfig {
    fn default() -> Self {
        ArrayConfig {
            window: 64,
            run_batch: 1,
            promote_budget: 4096,
            restore_timeout_ms: 30_000,
            capacity_blocks: DEFAULT_CAPACITY_BLOCKS,
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
    /// Online verify (`verifyrcopy [-repair] G`): compare block digests
    /// with the target over the link; with `repair`, resend the blocks
    /// that differ.
    Verify {
        group: String,
        repair: bool,
    },
    /// A cycle now (non-sync groups). `label` names the point: the backup
    /// retains it under that name (`syncrcopy -n NAME`).
    Sync {
        group: String,
        label: Option<String>,
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
    /// The period of a periodic group (refused for a sync group).
    SetPeriod {
        group: String,
        period_ms: u64,
    },
    /// Removes a group on both arrays. `force`: a started group is
    /// stopped first (on its source side). `remove_vv`: the target deletes
    /// its secondary volumes (and the copies the group retained of them);
    /// otherwise they stay as ordinary writable volumes.
    RemoveGroup {
        group: String,
        force: bool,
        remove_vv: bool,
    },
    /// A new volume of `blocks` zero blocks in the array's pool.
    CreateVolume {
        vol: String,
        blocks: u64,
    },
    /// Returns a volume to the pool; refused while a group holds it. A
    /// local replica goes as with [`ReplicaOp::Return`].
    DeleteVolume {
        vol: String,
    },
    /// A local replica `name` of volume `source`: a snapshot or a clone.
    /// `into`: a clone goes into the existing volume `name`.
    CreateReplica {
        name: String,
        source: String,
        kind: ReplicaKind,
        into: bool,
    },
    /// An operation on local replica `name`.
    ModifyReplica {
        name: String,
        op: ReplicaOp,
    },
}

/// What an operator may do with a local replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaOp {
    /// Roll the source back to the snapshot (snapshots only).
    Restore,
    /// A new point (snapshot) or a new full copy (clone).
    Resync,
    /// Forget the association; a clone stays as an ordinary volume. `force`
    /// detaches a clone whose copy is still running.
    Detach { force: bool },
    /// Delete the replica and free its space.
    Return,
}

impl Command {
    /// Every name the command carries follows the naming rule
    /// (`core::names`).
    pub fn check_names(&self) -> Result<(), names::NameError> {
        if let Some(g) = self.group() {
            names::group(g)?;
        }
        match self {
            Command::CreateVolume { vol, .. } | Command::DeleteVolume { vol } => names::volume(vol),
            Command::CreateReplica { name, source, .. } => {
                names::volume(name).and_then(|()| names::volume(source))
            }
            Command::ModifyReplica { name, .. } => names::volume(name),
            Command::CreateGroup { peer, .. } => names::array(peer),
            Command::Admit {
                vol, remote_vol, ..
            } => names::volume(vol).and_then(|()| names::volume(remote_vol)),
            Command::Dismiss { vol, .. } => names::volume(vol),
            Command::Sync { label: Some(l), .. } => names::volume(l),
            _ => Ok(()),
        }
    }

    /// The group the command is about (None: an array-wide command).
    pub fn group(&self) -> Option<&str> {
        Some(match self {
            Command::CreateGroup { group, .. }
            | Command::Admit { group, .. }
            | Command::Dismiss { group, .. }
            | Command::Start { group }
            | Command::Stop { group }
            | Command::Sync { group, .. }
            | Command::Verify { group, .. }
            | Command::Failover { group }
            | Command::Recover { group, .. }
            | Command::Restore { group }
            | Command::Reverse { group }
            | Command::SetMode { group, .. }
            | Command::SetPolicy { group, .. }
            | Command::SetPeriod { group, .. }
            | Command::RemoveGroup { group, .. } => group,
            Command::CreateVolume { .. }
            | Command::DeleteVolume { .. }
            | Command::CreateReplica { .. }
            | Command::ModifyReplica { .. } => return None,
        })
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
pub(super) enum RunKind {
    /// Read the live base; host writes re-queue blocks.
    Resync,
    /// Read the frozen point `cycle_snap`; host writes are for the next cycle.
    Cycle,
}

/// A running sync of one pair. Volatile.
#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) kind: RunKind,
    pub(super) queue: BTreeSet<u64>,
    pub(super) unacked: u64,
    pub(super) total: u64,
    pub(super) done_sent: bool,
    /// The generation this run proposed in its SyncDone; only an ack for it
    /// completes the run (an ack from an earlier, stopped run is stale).
    pub(super) sent_gen: Option<u64>,
    pub(super) point: u64,
    /// When the point was taken (a cycle's freeze), and its name if an
    /// operator named it.
    pub(super) at: Tick,
    pub(super) label: Option<String>,
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
    pub(super) run: Option<Run>,
    /// Target side: the generation a SyncDone proposed, not yet taken
    /// (periodic mode waits for every pair of the cycle).
    #[serde(skip)]
    pub(super) done_gen: Option<u64>,
}

impl Pair {
    pub(super) fn new(local: &str, remote: &str, blocks: u64, now: Tick) -> Pair {
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
    pub(super) reverse_pending: Option<u64>,
    /// Why the group is in the Error state (stopped because the
    /// destination could not keep up); cleared by the next start.
    pub error: Option<String>,
    // Volatile (dropped by a crash).
    /// Non-sync source: when the first host write not yet in a cycle
    /// was made.
    #[serde(skip)]
    pub(super) dirty_since: Option<Tick>,
    /// Non-sync source: the oldest write of the cycle being shipped.
    #[serde(skip)]
    pub(super) cycle_oldest: Option<Tick>,
    /// In Error with `auto_recover`: when to probe the peer next (its
    /// answer tells whether the destination has caught up).
    #[serde(skip)]
    pub(super) probe_at: Option<Tick>,
    /// Non-sync source: a cycle completed since the group last started.
    /// The catch-up after a start is behind by nature (its oldest write
    /// may be old): the bounds apply from here.
    #[serde(skip)]
    pub(super) caught_up: bool,
    /// A live switch to sync mode is draining what the target lacks:
    /// since when. Host writes are held until it is done (or the bound
    /// passes, and the group goes back to async).
    #[serde(skip)]
    pub(super) draining_since: Option<(Tick, Mode)>,
    /// The peer's last Hello for this group since the link came up.
    #[serde(skip)]
    pub(super) peer_hello: Option<GroupHello>,
    /// The peer's complete Hello since the link came up did not list this
    /// group: the peer does not have it.
    #[serde(skip)]
    pub(super) peer_missing: bool,
    /// The link came up after a failure stop: the next Hello may restart.
    #[serde(skip)]
    pub(super) auto_recover_armed: bool,
    /// A recover handshake is under way (`Some(full)`).
    #[serde(skip)]
    pub(super) recovering: Option<bool>,
    #[serde(skip)]
    pub(super) restore_deadline: Option<Tick>,
    /// Periodic restore: host writes are quiesced while a final cycle runs.
    #[serde(skip)]
    pub(super) restore_after_cycle: bool,
    /// Source: the name the next cycle's point gets (`syncrcopy -n`).
    #[serde(skip)]
    pub(super) next_label: Option<String>,
    /// Source: the running or last online verify.
    #[serde(skip)]
    pub(super) verify: Option<super::verify::Verify>,
    /// Target: the point the cycle being received stands for (the
    /// source's time and name), kept when its last pair is done.
    #[serde(skip)]
    pub(super) receiving_point: Option<(Tick, Option<String>)>,
}

impl Group {
    /// The operation this side is in the middle of, if any: a failover, a
    /// restore (with its final cycle), a recover handshake, a reverse.
    pub fn busy(&self) -> Option<&'static str> {
        match self.op {
            Some(GroupOp::FailingOver | GroupOp::HandingOver) => Some("failover"),
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

    pub(super) fn pair_mut(&mut self, local: &str) -> Option<&mut Pair> {
        self.pairs.iter_mut().find(|p| p.local == local)
    }

    pub(super) fn running(&self) -> bool {
        self.pairs.iter().any(|p| p.run.is_some())
    }

    pub(super) fn reset_volatile(&mut self) {
        self.peer_hello = None;
        self.peer_missing = false;
        self.auto_recover_armed = false;
        self.recovering = None;
        self.restore_deadline = None;
        self.restore_after_cycle = false;
        self.dirty_since = None;
        self.cycle_oldest = None;
        self.probe_at = None;
        self.caught_up = false;
        self.draining_since = None;
        for p in &mut self.pairs {
            p.run = None;
            p.done_gen = None;
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct PendingWrite {
    /// Group -> the write's blocks it sent and the peer has not acked.
    pub(super) waiting: BTreeMap<String, u64>,
    pub(super) fell_back: bool,
    pub(super) failed: Option<String>,
    /// When the host made it.
    pub(super) since: Tick,
    /// Groups draining for a switch to sync that hold this write until
    /// the drain is done.
    pub(super) held: BTreeSet<String>,
}

/// The peer's name of a local volume of `g` (which must be a member).
pub(super) fn remote_of(g: &Group, vol: &str) -> String {
    g.pairs
        .iter()
        .find(|p| p.local == vol)
        .map(|p| p.remote.clone())
        .expect("a member of the group")
}

/// The scalars of an array's durable state; with the volume table, the
/// snapshots and the groups it is everything [`Array::crash`] keeps.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub name: String,
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
    pub vols: BTreeMap<String, crate::core::volumes::VolMeta>,
    pub snaps: BTreeMap<SnapId, crate::core::volumes::SnapMeta>,
    pub replicas: BTreeMap<String, crate::core::volumes::ReplicaMeta>,
    pub groups: BTreeMap<String, Group>,
}

/// The generation of the point this pair's data can be diffed against:
/// its base snapshot's, or, with none, the last sync it completed (a target
/// holds exactly that point, or it plus blocks of an interrupted resync that
/// its pre-resync snapshot records).
pub(super) fn point_gen(vols: &Volumes, p: &Pair) -> Option<u64> {
    match p.base_snap {
        Some(s) => vols.snapshot_meta(s).map(|m| m.gen),
        None if p.gen > 0 => Some(p.gen),
        None => None,
    }
}

pub(super) fn new_group(
    name: &str,
    peer: &str,
    role: Role,
    mode: Mode,
    policies: Policies,
) -> Group {
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
        error: None,
        dirty_since: None,
        cycle_oldest: None,
        probe_at: None,
        caught_up: false,
        draining_since: None,
        next_label: None,
        verify: None,
        receiving_point: None,
    }
}
