//! The only module that knows CIM-XML (DSP0201): [`decode`] turns request
//! bytes into values, [`encode`] writes response bytes, and [`call`] is
//! the client's side (requests out, responses in). No element name is
//! written or matched outside this module (`tests/layering.rs`).

pub mod call;
pub mod decode;
pub mod encode;
