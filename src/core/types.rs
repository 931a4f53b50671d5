//! Plain value types shared by the whole core: identifiers, roles, sync
//! statuses, modes, policies and the virtual clock.

use std::fmt;

/// Size of one block, the unit of change tracking and of replication.
pub const BLOCK_SIZE: usize = 4096;

/// One block of data.
pub type Block = [u8; BLOCK_SIZE];

/// Virtual time in milliseconds. The core never reads a clock: every input
/// that depends on time carries a `Tick`, and inputs must be monotonic.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
pub struct Tick(pub u64);

impl Tick {
    pub fn plus(self, ms: u64) -> Tick {
        Tick(self.0.saturating_add(ms))
    }
}

/// Snapshot identifier, unique within one array for its whole life.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct SnapId(pub u64);

/// Identifier of a host write, returned to the caller and echoed in the
/// acknowledgement event.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct WriteId(pub u64);

/// Role of one side of a remote-copy group (3PAR vocabulary).
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
    strum::IntoStaticStr,
)]
pub enum Role {
    /// Natural source.
    #[strum(serialize = "Primary")]
    Primary,
    /// Natural target.
    #[strum(serialize = "Secondary")]
    Secondary,
    /// Natural target acting as source after `failover`.
    #[strum(serialize = "Primary-Rev")]
    PrimaryRev,
    /// Natural source acting as target after the peer failed over.
    #[strum(serialize = "Secondary-Rev")]
    SecondaryRev,
}

impl Role {
    /// True when this side is (currently) the source of data.
    pub fn is_source(self) -> bool {
        matches!(self, Role::Primary | Role::PrimaryRev)
    }
    /// True when the role is reversed from its configured one.
    pub fn is_reversed(self) -> bool {
        matches!(self, Role::PrimaryRev | Role::SecondaryRev)
    }
    /// The role the other side must have when both agree on direction.
    pub fn counterpart(self) -> Role {
        match self {
            Role::Primary => Role::Secondary,
            Role::Secondary => Role::Primary,
            Role::PrimaryRev => Role::SecondaryRev,
            Role::SecondaryRev => Role::PrimaryRev,
        }
    }
}

/// Per-volume synchronisation status as `showrcopy` prints it.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
pub enum SyncStatus {
    /// Remote copy for the volume has not started.
    New,
    /// The target is being synchronised (initial, resync or periodic cycle).
    Syncing,
    /// In sync (periodic: as of the last complete cycle).
    Synced,
    /// Not in sync and no valid resync point: a full sync follows.
    NotSynced,
    /// Was in sync when the group was last started; the group is stopped.
    Stopped,
    /// The target holds a valid point-in-time copy but the last sync failed.
    Stale,
}

/// Replication mode of a group.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A host write completes only after the peer applied it.
    Sync,
    /// Group-consistent snapshots shipped as deltas every `period_ms`
    /// (0 = only on an explicit `sync` command).
    Periodic { period_ms: u64 },
    /// Asynchronous streaming: a host write completes once it is durable
    /// here; the group's changes ship in back-to-back cycles (SRDF/A
    /// style), each one group-consistent point applied whole on the
    /// target, the next starting as soon as the last is applied.
    Async,
}

impl Mode {
    pub fn is_sync(self) -> bool {
        matches!(self, Mode::Sync)
    }

    /// When a started source in this mode takes its first cycle from
    /// `now`: a periodic group after its period (never when 0, which is
    /// manual only), an async group at once (a cycle with nothing changed
    /// is empty and starts no other), a sync group never.
    pub fn first_cycle(self, now: Tick) -> Option<Tick> {
        match self {
            Mode::Sync | Mode::Periodic { period_ms: 0 } => None,
            Mode::Periodic { period_ms } => Some(now.plus(period_ms)),
            Mode::Async => Some(now),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Sync => f.write_str("Sync"),
            Mode::Periodic { .. } => f.write_str("Periodic"),
            Mode::Async => f.write_str("Async"),
        }
    }
}

/// Group policies (3PAR `setrcopygroup pol`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Policies {
    /// Restart the group by itself when the link comes back, but only if the
    /// link failure stopped it (edge-triggered).
    pub auto_recover: bool,
    /// Sync mode only: host writes fail while the group cannot replicate.
    pub fail_wrt_on_err: bool,
    /// How far behind the target may fall before the group stops with an
    /// Error instead of slowing the hosts, in ms (0 = no bound). Sync
    /// mode: the longest a host write may wait for the peer. Async mode:
    /// the age of the oldest write the target has not applied.
    #[serde(default)]
    pub max_lag_ms: u64,
    /// Async mode: the most changed data not yet applied on the target,
    /// in bytes (0 = no bound).
    #[serde(default)]
    pub max_backlog_bytes: u64,
    /// Non-sync modes: how many complete cycles the backup keeps as
    /// retained point-in-time copies of every secondary volume (0: none).
    pub retain: u32,
}

/// The retained copies a new group keeps: [`Policies::retain`]. Three is
/// Ceph's default for mirror snapshots and what a 3PAR admin keeps of
/// virtual copies by habit: the last point, and two to fall back to when
/// the last one already holds the damage being recovered from.
pub const DEFAULT_RETAIN: u32 = 3;

/// The most retained copies a group may keep per volume.
pub const MAX_RETAIN: u32 = 64;

impl Default for Policies {
    fn default() -> Policies {
        Policies {
            auto_recover: false,
            fail_wrt_on_err: false,
            max_lag_ms: 0,
            max_backlog_bytes: 0,
            retain: DEFAULT_RETAIN,
        }
    }
}

impl Policies {
    /// Whether a congestion bound applies to a group in `mode`. Periodic
    /// groups fall behind by design (the period) and have none.
    pub fn bounds(self, mode: Mode) -> bool {
        match mode {
            Mode::Sync => self.max_lag_ms > 0 && !self.fail_wrt_on_err,
            Mode::Async => self.max_lag_ms > 0 || self.max_backlog_bytes > 0,
            Mode::Periodic { .. } => false,
        }
    }
}

impl fmt::Display for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.auto_recover {
            parts.push("auto_recover".to_string());
        }
        if self.fail_wrt_on_err {
            parts.push("fail_wrt_on_err".into());
        }
        if self.max_lag_ms > 0 {
            parts.push(format!("max_lag={}ms", self.max_lag_ms));
        }
        if self.max_backlog_bytes > 0 {
            parts.push(format!("max_backlog={}", self.max_backlog_bytes));
        }
        if self.retain != DEFAULT_RETAIN {
            parts.push(format!("retain={}", self.retain));
        }
        f.write_str(&parts.join(","))
    }
}

/// Why a group is stopped. Decides Inactive (operator) versus Broken, and
/// whether `auto_recover` may restart it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopCause {
    /// Never started.
    NotStarted,
    /// `stoprcopygroup`.
    Operator,
    /// The link to the peer failed (or the peer array was lost).
    LinkFailure,
    /// This array restarted after a crash.
    Restart,
    /// This side failed over (`setrcopygroup failover`).
    FailedOver,
    /// The peer failed over; this side was demoted to Secondary-Rev.
    PeerFailedOver,
    /// A role reversal (`setrcopygroup reverse`).
    Reversed,
    /// The destination could not keep up within the group's bound
    /// (`max_lag`, `max_backlog`): the Error state. The reason is kept
    /// in the group.
    Congested,
}

impl StopCause {
    /// Stopped by something that went wrong rather than on request.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            StopCause::LinkFailure
                | StopCause::Restart
                | StopCause::FailedOver
                | StopCause::PeerFailedOver
                | StopCause::Congested
        )
    }
}

/// A long operation that is still running on one side of a group.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupOp {
    /// `failover` issued here; snapshot promotion still running.
    FailingOver,
    /// `restore` issued (on the Primary-Rev side) or being confirmed (on the
    /// Secondary-Rev side); the role swap has not completed.
    FailingBack,
    /// A planned failover (link up): on the Primary, host writes are held
    /// off and the last writes (or a final cycle) go to the target before
    /// the hand-over; on the Secondary that asked for it, the hand-over is
    /// awaited. On the Primary it survives a crash and a link failure, so
    /// the two sides are never writable at once: it ends only when the
    /// peer is seen Primary-Rev (demotion) or still Secondary (abort).
    HandingOver,
}

/// One `setrcopygroup pol` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyChange {
    /// `auto_recover` / `no_auto_recover`.
    AutoRecover(bool),
    /// `fail_wrt_on_err` / `no_fail_wrt_on_err`.
    FailWrtOnErr(bool),
    /// `max_lag=DURATION` (0 or `no_max_lag`: no bound), in ms.
    MaxLag(u64),
    /// `max_backlog=SIZE` (0 or `no_max_backlog`: no bound), in bytes.
    MaxBacklog(u64),
    /// `retain=N`: retained copies kept on the backup per volume.
    Retain(u32),
}

/// How far a non-sync group's target is behind its source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// Changed data not yet applied on the target, in bytes.
    pub bytes: u64,
    /// When the oldest write not yet applied there was made.
    pub oldest: Option<Tick>,
}

/// The earlier of two optional instants.
pub fn earlier(a: Option<Tick>, b: Option<Tick>) -> Option<Tick> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Lag {
    /// Age of the oldest unapplied write at `now`, in ms (0 when none).
    pub fn age_ms(self, now: Tick) -> u64 {
        self.oldest.map_or(0, |t| now.0.saturating_sub(t.0))
    }
}
