//! llamux-engine: a LLaMA inference engine for GGUF models, `no_std` + `alloc`.
//!
//! One engine, two homes: this crate builds for user space (tests, the
//! `llamux` tool) and, as one hard-float object, inside the kernel module.
//! Hence: no I/O, no threads, errors as values, and all memory allocated
//! when a model or context is created.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod advise;
pub mod exec;
pub mod fallible;
pub mod gguf;
pub mod host;
pub mod model;
pub mod ops;
pub mod params;
pub mod quant;
pub mod sample;
pub mod session;
pub mod sort;
pub mod tokenizer;
