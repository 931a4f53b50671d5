//! The WBEM side: CIM-XML (DSP0200/DSP0201) over HTTP(S), with no
//! replication vocabulary.
//!
//! Key pieces: [`model`] (names, types, values, classes, instances, paths),
//! [`mof`] (the MOF compiler), [`repo`] (the class repository), [`xml`]
//! (the only CIM-XML codec), [`ops`] (typed intrinsic operations),
//! [`dispatch`] (main provider + the `Provider` trait), [`interop`] (the
//! interop namespace), [`server`] (hyper, TLS, auth, limits).
//!
//! Design decision: every request is decoded into a typed operation before
//! anything runs, and all results are encoded by one writer that emits only
//! what pywbem's strict checks and wbemcli's hand-written parser accept.

pub mod client;
pub mod dispatch;
pub mod error;
pub mod headers;
pub mod interop;
pub mod model;
pub mod mof;
pub mod ops;
pub mod query;
pub mod repo;
pub mod schema;
pub mod server;
pub mod xml;

pub use error::CimError;
