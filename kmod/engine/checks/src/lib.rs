//! llamux-checks: one copy of what both a fuzz target and a test need.
//! The fuzz targets (kmod/engine/fuzz) call the `check` functions on
//! every input; the engine's and the loader's tests replay the committed
//! regressions (kmod/engine/fuzz/regressions) through the same functions.
//! Fixtures: a hand-made SentencePiece vocabulary ([`vocab`]) and GGUF
//! rewriting for malformed models ([`gguf_write`]).

pub mod advise;
#[cfg(feature = "loader")]
pub mod event;
pub mod gguf_write;
#[cfg(feature = "loader")]
pub mod policy;
pub mod vocab;
