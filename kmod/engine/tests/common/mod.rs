//! Shared helpers of the engine's integration tests.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The test models made by tests/models/make.sh.
pub const MODELS: [&str; 5] = [
    "tiny-f32.gguf",
    "tiny-q8_0.gguf",
    "tiny-q6_k.gguf",
    "tiny-q4_k_m.gguf",
    "tiny-mixed.gguf",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where the generated models are: $LLAMUX_MODELS or tests/models.
pub fn model_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("LLAMUX_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/models"));
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

/// Counts this thread's allocations, to show a hot path makes none. A test
/// binary installs it with `#[global_allocator] static GLOBAL: common::Counting = common::Counting;`.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above, i.e. from System.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for alloc/dealloc.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Allocations (and reallocations) made by this thread so far.
pub fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

/// A file of llama.cpp's models/ folder (vocabularies and their test
/// vectors), from $LLAMUX_LLAMA_SRC, the path tests/fixtures/get-llama-src.sh
/// prints.
pub fn read_llama_model(name: &str) -> Vec<u8> {
    let hint = "set LLAMUX_LLAMA_SRC to llama.cpp's source: \
                export LLAMUX_LLAMA_SRC=$(tests/fixtures/get-llama-src.sh)";
    let dir = std::env::var_os("LLAMUX_LLAMA_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{hint}"));
    let p = dir.join("models").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}; {hint}", p.display()))
}

/// llama.cpp's test-tokenizer-0 file pair: inputs separated by
/// "\n__ggml_vocab_test__\n", one line of space-separated ids per input.
pub fn vocab_vectors(name: &str) -> Vec<(Vec<u8>, Vec<u32>)> {
    let inp = read_llama_model(&format!("{name}.inp"));
    let out = String::from_utf8(read_llama_model(&format!("{name}.out"))).unwrap();
    let sep = b"\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                inputs.push(inp[pos..pos + i].to_vec());
                pos += i + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_vec());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree on the number of tests"
    );
    inputs.into_iter().zip(outputs).collect()
}
