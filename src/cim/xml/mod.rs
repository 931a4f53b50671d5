//! The only module that knows CIM-XML (DSP0201): [`decode`] turns request
//! bytes into values, [`encode`] writes response bytes.

pub mod decode;
pub mod encode;
