//! Writes a parsed GGUF back out with edits: malformed models for tests
//! (the engine's and the loader's tests).

use llamux_engine::gguf::{Gguf, Value};

fn put_str(o: &mut Vec<u8>, s: &[u8]) {
    o.extend_from_slice(&(s.len() as u64).to_le_bytes());
    o.extend_from_slice(s);
}

/// The value's payload, without its type id.
fn put_value(o: &mut Vec<u8>, v: &Value<'_>, keep: Option<u64>) {
    match *v {
        Value::U8(x) => o.push(x),
        Value::I8(x) => o.push(x as u8),
        Value::U16(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => o.push(x as u8),
        Value::Str(s) => put_str(o, s),
        Value::Array(a) => {
            let n = keep.map_or(a.len, |k| k.min(a.len));
            o.extend_from_slice(&(a.elem_type as u32).to_le_bytes());
            o.extend_from_slice(&n.to_le_bytes());
            // Elements have no type id (nested arrays do: the arm above).
            for e in a.iter().take(n as usize) {
                put_value(o, &e, None);
            }
        }
    }
}

/// `bytes` re-encoded with every metadata array whose key is in `cut`
/// shortened to its first `keep` elements; tensors and their data unchanged.
pub fn with_arrays_cut(bytes: &[u8], cut: &[&str], keep: u64) -> Vec<u8> {
    let g = Gguf::parse(bytes).expect("a valid GGUF to start from");
    let mut o = b"GGUF".to_vec();
    o.extend_from_slice(&g.version.to_le_bytes());
    o.extend_from_slice(&(g.tensors.len() as u64).to_le_bytes());
    o.extend_from_slice(&(g.metadata.len() as u64).to_le_bytes());
    for kv in &g.metadata {
        put_str(&mut o, kv.key.as_bytes());
        o.extend_from_slice(&(kv.value.value_type() as u32).to_le_bytes());
        put_value(&mut o, &kv.value, cut.contains(&kv.key).then_some(keep));
    }
    for t in &g.tensors {
        put_str(&mut o, t.name.as_bytes());
        o.extend_from_slice(&t.n_dims.to_le_bytes());
        for d in &t.dims[..t.n_dims as usize] {
            o.extend_from_slice(&d.to_le_bytes());
        }
        o.extend_from_slice(&t.type_id.to_le_bytes());
        o.extend_from_slice(&t.rel_offset.to_le_bytes());
    }
    while !(o.len() as u64).is_multiple_of(g.alignment) {
        o.push(0);
    }
    o.extend_from_slice(&bytes[g.data_offset as usize..]);
    o
}

/// A model whose vocabulary (tokens, scores, types) is `drop` entries
/// shorter than its token_embd.weight rows.
pub fn with_short_vocab(bytes: &[u8], drop: u64) -> Vec<u8> {
    let g = Gguf::parse(bytes).expect("a valid GGUF");
    let n = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .expect("a vocabulary")
        .len;
    with_arrays_cut(
        bytes,
        &[
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
        ],
        n - drop,
    )
}
