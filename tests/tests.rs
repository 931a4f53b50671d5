//! The one integration-test binary. Each module pins one area; tests are
//! named after the rule, table row or issue they check.

mod cim; // the CIM-XML server with pywbem, pywbemcli, wbemcli and raw HTTP
mod cim_support; // test provider and in-process server
mod conformance; // the state tables replayed at core level, and that the runner can fail
mod core_rules; // behaviours the seeds state in prose (dr-transitions.md)
mod delta; // delta accounting on a 64 MiB volume
mod dsp0200; // malformed CIM-XML requests answered as DSP0200 says (the wetest fault kinds)
mod fuzz; // a short run of the fuzz targets (link decoder, peer messages)
mod lab; // two serve processes behind the fault switch: DR with kills, link failure, crash points
mod lab_modes; // the Error state under a throttled link, mode switches under write load
mod lab_retain; // retained copies listed by rcopy showvv -snap and read over NBD
mod layering;
mod link; // the replication link protocol, in memory and over a socket
mod modes; // async streaming, live mode switches, the Error state (core)
mod nbd; // the NBD export with qemu-io, qemu-img and qemu-nbd // src/core does no I/O and reads no clock
mod provider; // the SMI-S provider driven by a pywbem console, phase by phase
mod replicas; // local snapshots and clones on the core
mod retain; // retained copies on the backup, rollback and delta recover (core)
mod sim_faults; // seeded random faults with invariants, replayable by REPLICIM_SEED
mod sim_replicas; // local replicas taken while the faults run (invariant 7)
mod store; // both block stores honour the contract; snapshot properties
mod util; // shared helpers
