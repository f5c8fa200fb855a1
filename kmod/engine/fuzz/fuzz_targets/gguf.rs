//! Any bytes: the reader returns Ok or Err, and what it accepts is in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llamux_engine::gguf::Gguf;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::parse(data) {
        for t in &g.tensors {
            assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
        }
        for kv in &g.metadata {
            if let Some(a) = kv.value.as_array() {
                assert_eq!(a.iter().count() as u64, a.len);
            }
        }
    }
});
