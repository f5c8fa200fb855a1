//! The parts of the `llamux` tool that read untrusted input, as a library
//! so the fuzz targets (kmod/engine/fuzz) and tests can reach them.

pub mod event;
pub mod policy;
pub mod policy_template;
pub mod render;
