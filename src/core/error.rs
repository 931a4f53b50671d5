//! Typed refusals. Every message names what is wrong and what to do.

use super::names::NameError;
use super::store::StoreError;
use super::types::Role;
use super::volumes::VolumeError;

/// Why the core could not take an input. The two kinds call for opposite
/// answers, so the shell never has to read the text to decide:
/// * [`Fault::Store`]: the local store failed (a write, a sync, a full
///   disk). The array cannot keep its promises and must stop.
/// * [`Fault::Peer`]: a message from the peer is invalid for this array
///   (a block beyond a volume's end, a bad name, a count out of bounds).
///   Nothing was changed; the shell drops the peer's session, logs the
///   reason and keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("local storage failed: {0}")]
    Store(StoreError),
    #[error("{peer} sent a message this array does not accept: {reason}")]
    Peer { peer: String, reason: String },
}

impl Fault {
    /// A volume-level error while acting on `peer`'s message: the store's
    /// own failures stop the array, anything else is the message's fault.
    pub fn from_volume(peer: &str, e: VolumeError) -> Fault {
        match e {
            VolumeError::Store(s) => Fault::Store(s),
            other => Fault::Peer {
                peer: peer.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// Why a command was refused. Nothing changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("remote-copy group {group} does not exist on {array}")]
    NoSuchGroup { group: String, array: String },
    #[error("remote-copy group {group} already exists on {array}")]
    GroupExists { group: String, array: String },
    #[error(
        "{op} must be issued on the {need} side ({hint}); {array} is {role} for group {group}"
    )]
    WrongSide {
        op: &'static str,
        need: &'static str,
        hint: String,
        array: String,
        role: Role,
        group: String,
    },
    #[error(
        "{op}: group {group} is started; stop it first (stoprcopygroup {group} on {source_array})"
    )]
    NotStopped {
        op: &'static str,
        group: String,
        source_array: String,
    },
    #[error("{op}: group {group} is not started; start it first (startrcopygroup {group})")]
    NotStarted { op: &'static str, group: String },
    #[error("{op}: group {group} is busy: {what} is still running; wait for it to finish")]
    Busy {
        op: &'static str,
        group: String,
        what: String,
    },
    #[error("{op}: the link to {peer} is down; {hint}")]
    LinkDown {
        op: &'static str,
        peer: String,
        hint: String,
    },
    #[error("{op}: the link to {peer} is up; {hint}")]
    LinkUp {
        op: &'static str,
        peer: String,
        hint: String,
    },
    #[error("{op}: {peer} has not reported its state for group {group} since the link came up; retry in a moment")]
    PeerUnknown {
        op: &'static str,
        peer: String,
        group: String,
    },
    #[error("{op}: {peer} has no remote-copy group {group} (it was removed there, or its creation was lost with the link); remove the group here (removercopygroup {group}) and create it again")]
    PeerLacksGroup {
        op: &'static str,
        peer: String,
        group: String,
    },
    #[error(transparent)]
    BadName(#[from] NameError),
    #[error("group {group} already has {limit} volume pairs, the most a group can have")]
    TooManyPairs { group: String, limit: usize },
    #[error(
        "{op}: group {group} has no volumes; admit one first (admitrcopyvv VOL {group} {peer}:VOL)"
    )]
    Empty {
        op: &'static str,
        group: String,
        peer: String,
    },
    #[error("{op}: volume {vol} of group {group} is {status}, not Synced; {hint}")]
    NotSynced {
        op: &'static str,
        group: String,
        vol: String,
        status: String,
        hint: String,
    },
    #[error("recover needs a full resync of {vol} in group {group}: {why}; nothing was changed. To overwrite {peer}'s copy completely, run `setrcopygroup recover -full {group}`")]
    NeedsFullResync {
        group: String,
        vol: String,
        peer: String,
        why: String,
    },
    #[error("volume {vol} already has {limit} mirrors, the most a source volume can have")]
    TooManyMirrors { vol: String, limit: usize },
    #[error("volume {vol} is already in group {group}")]
    AlreadyAdmitted { vol: String, group: String },
    #[error("volume {vol} is not in group {group}")]
    NotInGroup { vol: String, group: String },
    #[error("volume {vol} is in remote-copy group {group}; take it out first (dismissrcopyvv {vol} {group}, or removercopygroup {group})")]
    VolumeInGroup { vol: String, group: String },
    #[error(
        "volume {vol} is a target in group {group} on {array}; a target cannot also be a source"
    )]
    VolumeIsTarget {
        vol: String,
        group: String,
        array: String,
    },
    #[error("policy {policy} applies to synchronous groups only; group {group} is periodic")]
    PolicyNeedsSync { policy: &'static str, group: String },
    #[error("group {group} is synchronous: a period applies to periodic groups; switch it first (setrcopygroup mode periodic {group})")]
    NotPeriodic { group: String },
    #[error("reverse: {why}")]
    CannotReverse { why: String },
    #[error("failover (planned, with the link up): {why}")]
    CannotHandOver { why: String },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Why a host write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("volume {vol} is read-only on {array}: it is the target of group {group} ({role}); fail over to write here")]
    ReadOnly {
        vol: String,
        array: String,
        group: String,
        role: Role,
    },
    #[error("volume {vol} is read-only while group {group} {what}; retry when it completes")]
    Quiesced {
        vol: String,
        group: String,
        what: &'static str,
    },
    #[error("volume {vol} is read-only: {why}")]
    ReadOnlyReplica { vol: String, why: &'static str },
    #[error("write to {vol} refused: group {group} has fail_wrt_on_err and cannot replicate to {peer}; restore the link or clear the policy")]
    CannotReplicate {
        vol: String,
        group: String,
        peer: String,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
}
