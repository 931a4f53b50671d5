//! Messages between arrays.
//!
//! The core emits them as values (`Array::poll_transmit`) and takes them as
//! values (`Array::handle_message`). A link delivers them in order and may
//! lose everything in flight when it goes down; it never duplicates or
//! reorders. Every volume name in a message is the *receiver's* name for the
//! volume, so no side needs the other's naming to act on a message.
//!
//! The core gives these no wire format; `link` owns one (serde derives
//! only say what the fields are).

use super::types::{Block, Mode, Policies, Role, SyncStatus, WriteId};

/// Why a block is being sent.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataTag {
    /// A synchronous host write; acknowledged to the host after the ack.
    Write(WriteId),
    /// A block of a running sync (initial, resync, periodic cycle, recover).
    Sync,
}

/// What one side tells the other about one pair in a [`Msg::Hello`].
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PairHello {
    /// The receiver's name of the volume.
    pub vol: String,
    pub status: SyncStatus,
    /// Generation of the point the sender's data can be diffed against (its
    /// base snapshot, or the last sync it completed), if it knows one.
    pub point_gen: Option<u64>,
    /// Generation the sender proposed in a SyncDone not yet acknowledged.
    pub pending_gen: Option<u64>,
    pub gen: u64,
}

/// What one side tells the other about one group in a [`Msg::Hello`].
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupHello {
    pub group: String,
    pub role: Role,
    /// Incremented by every role reversal; the higher epoch wins.
    pub epoch: u64,
    pub started: bool,
    /// The sender's mode and policies: a target takes its source's, so a
    /// change its Config message missed (the link was down) reaches it.
    pub mode: Mode,
    pub policies: Policies,
    pub pairs: Vec<PairHello>,
}

/// One message on the replication link.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// First message after a link comes up, in both directions, and again
    /// for one group after a role change. The listing sent at link-up is
    /// split into parts of at most `names::HELLO_GROUPS` groups; its last
    /// part has `complete` set, so the receiver knows that a group it shares
    /// with the sender and did not hear of is missing there.
    Hello {
        array: String,
        groups: Vec<GroupHello>,
        complete: bool,
    },
    /// Create the group on the peer (sender is the source).
    CreateGroup {
        group: String,
        mode: Mode,
        policies: Policies,
    },
    /// Remove the group on the peer.
    RemoveGroup {
        group: String,
        /// Delete the receiver's volumes of the group too.
        remove_vv: bool,
    },
    /// Mode or policy change, sender is the source.
    Config {
        group: String,
        mode: Mode,
        policies: Policies,
    },
    /// Add a pair; `vol` is the target volume, created if missing.
    Admit {
        group: String,
        vol: String,
        source_vol: String,
        blocks: u64,
    },
    /// Answer to Admit: `fresh` when the target was created (all zeros).
    AdmitResult {
        group: String,
        vol: String,
        fresh: bool,
        error: Option<String>,
    },
    /// Remove a pair; `vol` is the receiver's volume.
    Dismiss {
        group: String,
        vol: String,
    },
    /// A sync run begins for these target volumes (`full`: no common base).
    Start {
        group: String,
        pairs: Vec<(String, bool)>,
    },
    /// The source stopped the group.
    Stop {
        group: String,
    },
    /// One block for the target.
    Data {
        group: String,
        vol: String,
        block: u64,
        #[serde(with = "block_bytes")]
        data: Box<Block>,
        tag: DataTag,
    },
    /// The target applied a block.
    DataAck {
        group: String,
        vol: String,
        block: u64,
        tag: DataTag,
    },
    /// Several blocks of a running sync for the target (sent instead of
    /// `Data` with `DataTag::Sync` when `ArrayConfig::run_batch` > 1).
    SyncBlocks {
        group: String,
        vol: String,
        blocks: Vec<RunBlock>,
    },
    /// The target applied `count` blocks of a `SyncBlocks`.
    SyncBlocksAck {
        group: String,
        vol: String,
        count: u64,
    },
    /// The receiver refused replication traffic for this group (it is not
    /// the target it is taken for); the sender stops the group.
    Refused {
        group: String,
        reason: String,
    },
    /// The receiver refused an operation (recover, restore, reverse,
    /// create); only that operation is cancelled, replication is left alone.
    OpRefused {
        group: String,
        op: String,
        reason: String,
    },
    /// All blocks of the run are applied; the target now holds generation `gen`.
    SyncDone {
        group: String,
        vol: String,
        gen: u64,
        /// The source's time of the run's point (a cycle's freeze).
        at: super::types::Tick,
        /// The name of an application-consistent point (`syncrcopy -n`).
        label: Option<String>,
    },
    SyncDoneAck {
        group: String,
        vol: String,
        gen: u64,
    },
    /// Primary-Rev asks the old primary to become the target of a resync.
    RecoverPrepare {
        group: String,
        full: bool,
    },
    /// The old primary is ready; `changed` lists, per receiver volume, the
    /// blocks it changed since the common base (they must be overwritten).
    RecoverReady {
        group: String,
        changed: Vec<(String, Changed)>,
    },
    /// Primary-Rev asks to swap back to the natural direction.
    RestorePrepare {
        group: String,
    },
    RestoreReady {
        group: String,
    },
    RestoreCommit {
        group: String,
    },
    RestoreAbort {
        group: String,
    },
    /// Swap the natural direction of a stopped group.
    Reverse {
        group: String,
        epoch: u64,
    },
    ReverseDone {
        group: String,
        epoch: u64,
    },
    /// The Secondary asks the Primary for a planned failover (link up).
    HandOverRequest {
        group: String,
    },
    /// The Primary has stopped taking host writes and everything it
    /// acknowledged is ahead of this message: take over as Primary-Rev.
    HandOver {
        group: String,
    },
    /// A source in the Error state asks whether the destination has
    /// caught up; `sent` is the sender's tick, echoed back.
    Probe {
        group: String,
        sent: u64,
    },
    /// The answer to a [`Msg::Probe`]: everything sent before the probe
    /// has been applied here.
    ProbeAck {
        group: String,
        sent: u64,
    },
    /// Online verify: the digests of blocks `first..` of the receiver's
    /// volume `vol`, as the sender holds them (`verifyrcopy`).
    VerifyBlocks {
        group: String,
        vol: String,
        first: u64,
        digests: Vec<[u8; 16]>,
    },
    /// The answer to [`Msg::VerifyBlocks`]: of the `count` blocks from
    /// `first`, those whose digest differs here.
    VerifyDiff {
        group: String,
        vol: String,
        first: u64,
        count: u64,
        differing: Vec<u64>,
    },
}

impl Msg {
    /// The host write this message carries, as (the peer's volume, block),
    /// or None. Only these may leave before the batch that made them is
    /// durable: a shell that logs the extent first (its activity log)
    /// resends it from this side after a crash, so the peer's copy never
    /// holds what this side lost. Every other message waits for the commit.
    pub fn host_write(&self) -> Option<(&str, u64)> {
        match self {
            Msg::Data {
                vol,
                block,
                tag: DataTag::Write(_),
                ..
            } => Some((vol, *block)),
            _ => None,
        }
    }

    /// The group a message is about, if any.
    pub fn group(&self) -> Option<&str> {
        match self {
            Msg::Hello { .. } => None,
            Msg::CreateGroup { group, .. }
            | Msg::RemoveGroup { group, .. }
            | Msg::Config { group, .. }
            | Msg::Admit { group, .. }
            | Msg::AdmitResult { group, .. }
            | Msg::Dismiss { group, .. }
            | Msg::Start { group, .. }
            | Msg::Stop { group }
            | Msg::Data { group, .. }
            | Msg::DataAck { group, .. }
            | Msg::SyncBlocks { group, .. }
            | Msg::SyncBlocksAck { group, .. }
            | Msg::Refused { group, .. }
            | Msg::OpRefused { group, .. }
            | Msg::SyncDone { group, .. }
            | Msg::SyncDoneAck { group, .. }
            | Msg::RecoverPrepare { group, .. }
            | Msg::RecoverReady { group, .. }
            | Msg::RestorePrepare { group }
            | Msg::RestoreReady { group }
            | Msg::RestoreCommit { group }
            | Msg::RestoreAbort { group }
            | Msg::Reverse { group, .. }
            | Msg::ReverseDone { group, .. }
            | Msg::HandOverRequest { group }
            | Msg::HandOver { group }
            | Msg::Probe { group, .. }
            | Msg::ProbeAck { group, .. }
            | Msg::VerifyBlocks { group, .. }
            | Msg::VerifyDiff { group, .. } => Some(group),
        }
    }
}

/// Blocks one side changed, as the other must resend them.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// `(first block, count)` runs, ascending and disjoint.
    Ranges(Vec<(u64, u64)>),
    /// Too many runs to list in one message: resend the whole volume.
    All,
}

impl Changed {
    /// Runs of consecutive blocks of `blocks` (ascending).
    pub fn runs(blocks: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for b in blocks {
            match out.last_mut() {
                Some((first, n)) if *first + *n == b => *n += 1,
                _ => out.push((b, 1)),
            }
        }
        out
    }

    /// Every block listed, for a volume of `size` blocks.
    pub fn blocks(&self, size: u64) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Changed::Ranges(r) => Box::new(r.iter().flat_map(|(f, n)| *f..f + n)),
            Changed::All => Box::new(0..size),
        }
    }
}

/// A block as one byte string (serde has no impl for 4096-byte arrays).
/// One block of a [`Msg::SyncBlocks`].
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RunBlock {
    pub block: u64,
    #[serde(with = "block_bytes")]
    pub data: Box<Block>,
}

pub mod block_bytes {
    use super::Block;
    use crate::core::BLOCK_SIZE;

    pub fn serialize<S: serde::Serializer>(b: &Block, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&b[..])
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<Block>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Box<Block>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "{BLOCK_SIZE} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Box<Block>, E> {
                let b: Block = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Box::new(b))
            }
        }
        d.deserialize_bytes(V)
    }
}
