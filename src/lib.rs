//! replicim: storage remote-copy replication with an SMI-S Replication
//! Services view.
//!
//! * [`core`]: the sans-IO replication state machine (arrays, volumes,
//!   snapshots, remote-copy groups) and the one derivation function.
//! * [`store`]: block stores (memory, files).
//! * [`sim`]: an in-process, seeded harness that runs several arrays over
//!   simulated links with one virtual clock.
//! * [`conformance`]: the state tables as data and the replay runner.
//! * [`cim`]: the CIM-XML (WBEM) server, with no replication vocabulary.
//! * [`provider`]: the SMI-S Replication Services provider, the only module
//!   that uses both `cim` and `core`.
//! * [`link`]: the replication link protocol (frames, handshake, heartbeats), sans-IO.
//! * [`nbd`]: the NBD export (hosts read and write volumes).
//! * [`secure`]: file modes for what an array keeps (0700 directories,
//!   0600 volumes, journals, credentials and keys).
//! * [`rcopy`]: the 3PAR command vocabulary and its CIM-XML console.
//! * [`cli`]: the subcommands of the `replicim` binary.

pub mod cim;
pub mod cli;
pub mod conformance;
pub mod core;
pub mod guard;
pub mod lab;
pub mod link;
pub mod nbd;
pub mod node;
pub mod pki;
pub mod provider;
pub mod rcopy;
pub mod rt;
pub mod secure;
pub mod sim;
pub mod store;
