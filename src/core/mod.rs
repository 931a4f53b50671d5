//! The replication core: a deterministic, sans-IO state machine per array.
//!
//! Key types: [`Array`] (one array: volumes, snapshots, remote-copy groups),
//! [`Msg`] (what arrays tell each other), [`Command`] (operator commands in
//! 3PAR vocabulary), [`Event`] (what the shell must act on), the
//! [`BlockStore`] trait (where bytes live) and [`derive`] (the one function
//! that decides CopyState, SyncState, ProgressStatus and RoleReversed).
//!
//! Design decision: the core performs no I/O and reads no clock. Time is an
//! argument of every input, messages for the peer are returned as values,
//! and block data goes through the `BlockStore` trait whose implementations
//! live in `crate::store`. This keeps every state-table row and every fault
//! schedule reproducible from a seed in a single thread (see `crate::sim`),
//! and lets the same code run behind real sockets later.
//! A test (`tests/layering.rs`) reads these sources and fails if they name
//! tokio, std::net, std::fs, std::thread or a clock.

mod array;
mod error;
mod msg;
pub mod names;
mod read;
mod store;
mod tracked;
mod types;
mod view;
mod volumes;

pub use array::{
    block_digest, Array, ArrayConfig, Command, Counters, Durable, Event, Group, Head, LegacyGroup,
    LegacyGroupV2, Pair, ReplicaOp, VerifyReport, WriteTicket, DEFAULT_CAPACITY_BLOCKS,
    MAX_DIFF_LISTED, MAX_MIRRORS, SWITCH_DRAIN_MS, VERIFY_BATCH,
};
pub use error::{CommandError, Fault, WriteError};
pub use msg::{block_bytes, Changed, DataTag, GroupHello, Msg, PairHello, RunBlock};
pub use read::{ArrayRead, GroupRead, PairRead, ReplicaRead, VolumeRead};
pub use store::{BlockStore, StoreError};
pub use types::*;
pub use view::{derive, CopyState, PairFacts, PairView, ProgressStatus, SyncOperation, SyncState};
pub use volumes::{
    LegacyReplicaMeta, LegacyVolMeta, ReplicaKind, ReplicaMeta, Retained, SnapMeta, VolMeta,
    VolumeError, Volumes,
};
