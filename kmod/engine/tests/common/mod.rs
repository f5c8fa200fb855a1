//! Shared helpers of the engine's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The test models made by tests/models/make.sh.
pub const MODELS: [&str; 5] = ["tiny-f32.gguf", "tiny-q8_0.gguf", "tiny-q6_k.gguf", "tiny-q4_k_m.gguf", "tiny-mixed.gguf"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Where the generated models are: $LLAMUX_MODELS or tests/models.
pub fn model_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("LLAMUX_MODELS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("tests/models"));
    dir.join(name)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!("{}: {e} (generate the test models and listings first: tests/models/make.sh, or run tests/run.sh)", path.display())
    })
}

pub fn read_string(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap()
}
