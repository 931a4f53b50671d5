//! The one derivation function.
//!
//! [`derive`] is the only place where CopyState, SyncState, ProgressStatus,
//! RoleReversed, PercentSynced, WhenSynced and RequestedCopyState are decided.
//! Every consumer (the conformance runner, the CIM provider, the admin
//! client) reads a [`PairView`] and never re-derives a value.
//!
//! The rules, restated from ../shared/reference/dr-transitions.md:
//!
//! * The normal-operation table maps a SyncStatus to the three values.
//! * A stopped pair is Inactive/Frozen/Dormant only when an operator stopped
//!   it; stopped by a failure (link, peer, restart, failover) it is Broken.
//! * On an array whose role is reversed, CopyState shows FailedOver only while
//!   the link to the other array is down (rows 3a/3b, 8, 10).
//! * A resync in the reversed direction (`recover`) shows RestoreInProgress /
//!   Restoring (rows 5, 6).
//! * A running failover shows Failedover / Failing over (11) (row 2, decision
//!   in the reference), even if the link comes back before it finishes; a
//!   running restore shows Failing back (12) (rows 11, 14).
//! * RoleReversed is true exactly when the role is Primary-Rev or
//!   Secondary-Rev.

use super::types::{GroupOp, Mode, Role, StopCause, SyncStatus, Tick};

/// CIM_Synchronized.CopyState (DMTF ValueMap numbers).
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
#[repr(u16)]
pub enum CopyState {
    Initialized = 2,
    Unsynchronized = 3,
    Synchronized = 4,
    Broken = 5,
    Fractured = 6,
    Split = 7,
    Inactive = 8,
    Suspended = 9,
    #[strum(serialize = "Failedover")]
    FailedOver = 10,
    Prepared = 11,
    Aborted = 12,
    Skewed = 13,
    Mixed = 14,
    #[strum(serialize = "Not Applicable")]
    NotApplicable = 15,
    Partitioned = 16,
    Invalid = 17,
    Restored = 18,
}

/// CIM_StorageSynchronized.SyncState (DMTF ValueMap numbers; these differ
/// from CopyState's).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, strum::Display, strum::EnumString, strum::EnumIter,
)]
#[repr(u16)]
pub enum SyncState {
    Unknown = 0,
    Initialized = 2,
    PrepareInProgress = 3,
    Prepared = 4,
    ResyncInProgress = 5,
    Synchronized = 6,
    #[strum(serialize = "Fracture In Progress")]
    FractureInProgress = 7,
    QuiesceInProgress = 8,
    Quiesced = 9,
    #[strum(serialize = "Restore In Progress")]
    RestoreInProgress = 10,
    Idle = 11,
    Broken = 12,
    Fractured = 13,
    Frozen = 14,
    #[strum(serialize = "Copy In Progress")]
    CopyInProgress = 15,
}

/// CIM_Synchronized.ProgressStatus (DMTF ValueMap numbers).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, strum::Display, strum::EnumString, strum::EnumIter,
)]
#[repr(u16)]
pub enum ProgressStatus {
    Unknown = 0,
    Completed = 2,
    Dormant = 3,
    Initializing = 4,
    Preparing = 5,
    Synchronizing = 6,
    Resyncing = 7,
    Restoring = 8,
    Fracturing = 9,
    Splitting = 10,
    #[strum(serialize = "Failing over")]
    FailingOver = 11,
    #[strum(serialize = "Failing back")]
    FailingBack = 12,
    Aborting = 13,
    Mixed = 14,
    #[strum(serialize = "Not Applicable")]
    NotApplicable = 15,
    Suspending = 16,
    #[strum(serialize = "Requires fracture")]
    RequiresFracture = 17,
    #[strum(serialize = "Requires resync")]
    RequiresResync = 18,
    #[strum(serialize = "Requires activate")]
    RequiresActivate = 19,
    Pending = 20,
}

/// The Operation of ModifyReplicaSynchronization (SNIA ValueMap numbers),
/// as the provider takes it and rcopy sends it: the operations this array
/// serves. Other numbers of the ValueMap (2 to 25) are answered Not
/// Supported.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, strum::Display, strum::EnumString, strum::EnumIter,
)]
#[repr(u16)]
pub enum SyncOperation {
    Activate = 4,
    Deactivate = 7,
    Detach = 8,
    Failover = 10,
    Failback = 11,
    #[strum(serialize = "Resync Replica")]
    ResyncReplica = 14,
    /// Local snapshots only.
    #[strum(serialize = "Restore From Replica")]
    RestoreFromReplica = 15,
    Resume = 16,
    #[strum(serialize = "Reset To Sync")]
    ResetToSync = 17,
    #[strum(serialize = "Reset To Async")]
    ResetToAsync = 18,
    /// Local replicas only.
    #[strum(serialize = "Return To ResourcePool")]
    ReturnToResourcePool = 19,
    #[strum(serialize = "Reverse Roles")]
    ReverseRoles = 20,
    Suspend = 22,
}

/// The numbers of the vendor property RCM_StorageSynchronized.Role.
impl Role {
    pub fn number(self) -> u16 {
        match self {
            Role::Primary => 1,
            Role::Secondary => 2,
            Role::PrimaryRev => 3,
            Role::SecondaryRev => 4,
        }
    }

    pub fn from_number(n: u16) -> Option<Role> {
        <Role as strum::IntoEnumIterator>::iter().find(|r| r.number() == n)
    }
}

/// The numbers of the vendor property RCM_StorageSynchronized.SyncStatus.
impl SyncStatus {
    pub fn number(self) -> u16 {
        match self {
            SyncStatus::New => 1,
            SyncStatus::Syncing => 2,
            SyncStatus::Synced => 3,
            SyncStatus::NotSynced => 4,
            SyncStatus::Stopped => 5,
            SyncStatus::Stale => 6,
        }
    }

    pub fn from_number(n: u16) -> Option<SyncStatus> {
        <SyncStatus as strum::IntoEnumIterator>::iter().find(|s| s.number() == n)
    }
}

macro_rules! dmtf_number {
    ($($t:ty),*) => {$(
        impl $t {
            /// The DMTF ValueMap number.
            pub fn number(self) -> u16 {
                self as u16
            }
            /// The variant for a ValueMap number, if there is one.
            pub fn from_number(n: u16) -> Option<Self> {
                <Self as strum::IntoEnumIterator>::iter().find(|v| v.number() == n)
            }
        }
    )*};
}
dmtf_number!(CopyState, SyncState, ProgressStatus, SyncOperation);

/// Everything the derivation needs to know about one pair on one array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairFacts {
    pub role: Role,
    pub status: SyncStatus,
    pub mode: Mode,
    /// The group is started on this array.
    pub started: bool,
    pub stop_cause: StopCause,
    /// This array's link to the group's peer is up.
    pub link_up: bool,
    pub op: Option<GroupOp>,
    /// Blocks still to send or confirm, and the total of the running sync
    /// (both 0 when none is running).
    pub remaining_blocks: u64,
    pub total_blocks: u64,
    /// When the pair last completed a sync (periodic mode reports it).
    pub last_sync: Option<Tick>,
    /// The CopyState the last command asked for.
    pub requested: Option<CopyState>,
}

/// One array's view of one pair, as every consumer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairView {
    pub role: Role,
    pub status: SyncStatus,
    pub copy_state: CopyState,
    pub sync_state: SyncState,
    pub progress: ProgressStatus,
    pub role_reversed: bool,
    /// Percent of the running sync done; 100 when synced; None otherwise.
    pub percent_synced: Option<u16>,
    /// Time of the last complete sync in periodic mode; None in sync mode.
    pub when_synced: Option<Tick>,
    pub requested_copy_state: CopyState,
}

/// The single derivation from core facts to the reported view.
pub fn derive(f: &PairFacts) -> PairView {
    use CopyState as C;
    use ProgressStatus as P;
    use SyncState as S;
    let reversed = f.role.is_reversed();
    // The DR table knows a reversed pair that is not replicating only as
    // Stopped (rows 3a/3b, 4, 8, 10): one never started (New), with no
    // usable point (NotSynced) or rolled back to its last complete cycle
    // (Stale) is reported so.
    let status = match f.status {
        SyncStatus::New | SyncStatus::NotSynced | SyncStatus::Stale if reversed => {
            SyncStatus::Stopped
        }
        s => s,
    };

    // Normal-operation table first.
    let (mut copy, mut sync, mut progress) = match status {
        SyncStatus::New => (C::Initialized, S::ResyncInProgress, P::RequiresActivate),
        SyncStatus::Syncing => (C::Unsynchronized, S::ResyncInProgress, P::Synchronizing),
        SyncStatus::Synced => (C::Synchronized, S::Synchronized, P::Completed),
        SyncStatus::NotSynced => (C::Broken, S::Broken, P::Completed),
        SyncStatus::Stale => (C::Skewed, S::Broken, P::Completed),
        SyncStatus::Stopped => (C::Inactive, S::Frozen, P::Dormant),
    };

    // Stopped by a failure rather than on request: Broken, or FailedOver on a
    // reversed side while the link is down.
    if status == SyncStatus::Stopped && f.stop_cause != StopCause::Operator {
        copy = if reversed && !f.link_up {
            C::FailedOver
        } else {
            C::Broken
        };
        sync = S::Broken;
        progress = P::Completed;
    }

    // A resync in the reversed direction is the `recover` restore.
    if status == SyncStatus::Syncing && reversed {
        sync = S::RestoreInProgress;
        progress = P::Restoring;
    }

    match f.op {
        // Row 2. A link that comes back while the promotion still runs does
        // not change it: the pair is being failed over, whatever the link.
        Some(GroupOp::FailingOver) => {
            copy = C::FailedOver;
            progress = P::FailingOver;
        }
        Some(GroupOp::FailingBack) => progress = P::FailingBack,
        // A planned failover: the roles and data are unchanged until the
        // hand-over, only the progress shows it.
        Some(GroupOp::HandingOver) => progress = P::FailingOver,
        None => {}
    }

    let percent_synced = match f.status {
        SyncStatus::Synced => Some(100),
        SyncStatus::Syncing if f.total_blocks > 0 => {
            let done = f.total_blocks.saturating_sub(f.remaining_blocks);
            Some(((done * 100) / f.total_blocks).min(99) as u16)
        }
        SyncStatus::Syncing => Some(0),
        _ => None,
    };

    let when_synced = match f.mode {
        Mode::Sync => None,
        Mode::Periodic { .. } | Mode::Async => f.last_sync,
    };

    // RequestedCopyState: Synchronized while Broken or Skewed; Not Applicable
    // once the requested state is reached or nothing was requested.
    let requested_copy_state = if matches!(copy, C::Broken | C::Skewed) {
        C::Synchronized
    } else {
        match f.requested {
            Some(r) if r != copy => r,
            _ => C::NotApplicable,
        }
    };

    PairView {
        role: f.role,
        status,
        copy_state: copy,
        sync_state: sync,
        progress,
        role_reversed: reversed,
        percent_synced,
        when_synced,
        requested_copy_state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(role: Role, status: SyncStatus) -> PairFacts {
        PairFacts {
            role,
            status,
            mode: Mode::Sync,
            started: status == SyncStatus::Synced || status == SyncStatus::Syncing,
            stop_cause: StopCause::Operator,
            link_up: true,
            op: None,
            remaining_blocks: 0,
            total_blocks: 0,
            last_sync: None,
            requested: None,
        }
    }

    #[test]
    fn numbers_round_trip() {
        assert_eq!(CopyState::FailedOver.number(), 10);
        assert_eq!(SyncState::RestoreInProgress.number(), 10);
        assert_eq!(ProgressStatus::RequiresActivate.number(), 19);
        assert_eq!(CopyState::from_number(13), Some(CopyState::Skewed));
        assert_eq!(CopyState::from_number(1), None);
        assert_eq!(CopyState::FailedOver.to_string(), "Failedover");
        assert_eq!(
            SyncOperation::from_number(14),
            Some(SyncOperation::ResyncReplica)
        );
        assert_eq!(SyncOperation::from_number(9), None);
        for s in <SyncStatus as strum::IntoEnumIterator>::iter() {
            assert_eq!(SyncStatus::from_number(s.number()), Some(s));
        }
        assert_eq!(SyncStatus::from_number(0), None);
        assert_eq!(SyncOperation::ReverseRoles.number(), 20);
        for r in <Role as strum::IntoEnumIterator>::iter() {
            assert_eq!(Role::from_number(r.number()), Some(r));
        }
        assert_eq!(Role::from_number(0), None);
    }

    #[test]
    fn row_3a_and_3b_differ_only_by_link() {
        let mut f = facts(Role::PrimaryRev, SyncStatus::Stopped);
        f.stop_cause = StopCause::FailedOver;
        f.link_up = false;
        assert_eq!(derive(&f).copy_state, CopyState::FailedOver);
        f.link_up = true;
        assert_eq!(derive(&f).copy_state, CopyState::Broken);
        assert!(derive(&f).role_reversed);
    }

    #[test]
    fn requested_copy_state_follows_dmtf_rule() {
        let mut f = facts(Role::Primary, SyncStatus::Syncing);
        f.requested = Some(CopyState::Synchronized);
        assert_eq!(derive(&f).requested_copy_state, CopyState::Synchronized);
        f.status = SyncStatus::Synced;
        assert_eq!(derive(&f).requested_copy_state, CopyState::NotApplicable);
        f.status = SyncStatus::NotSynced;
        assert_eq!(derive(&f).requested_copy_state, CopyState::Synchronized);
    }
}
