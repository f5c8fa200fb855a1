//! A hand-made SentencePiece vocabulary and a writer for vocabulary-only
//! GGUF files: the tokenizer tests and the tokenizer fuzz target use the
//! same one, and the checks both make of an encoding.

use llamux_engine::tokenizer::{Tokenizer, Utf8Stream};

/// A metadata value to write.
pub enum Kv {
    Str(Vec<u8>),
    U32(u32),
    Bool(bool),
    Strs(Vec<Vec<u8>>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

/// A GGUF (version 3) holding only the metadata `kvs`, no tensors.
pub fn gguf(kvs: &[(&str, Kv)]) -> Vec<u8> {
    fn s(o: &mut Vec<u8>, b: &[u8]) {
        o.extend_from_slice(&(b.len() as u64).to_le_bytes());
        o.extend_from_slice(b);
    }
    let mut o = b"GGUF".to_vec();
    o.extend_from_slice(&3u32.to_le_bytes());
    o.extend_from_slice(&0u64.to_le_bytes());
    o.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        s(&mut o, k.as_bytes());
        match v {
            Kv::Str(x) => {
                o.extend_from_slice(&8u32.to_le_bytes());
                s(&mut o, x);
            }
            Kv::U32(x) => {
                o.extend_from_slice(&4u32.to_le_bytes());
                o.extend_from_slice(&x.to_le_bytes());
            }
            Kv::Bool(x) => {
                o.extend_from_slice(&7u32.to_le_bytes());
                o.push(*x as u8);
            }
            Kv::Strs(xs) => {
                o.extend_from_slice(&9u32.to_le_bytes());
                o.extend_from_slice(&8u32.to_le_bytes());
                o.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for x in xs {
                    s(&mut o, x);
                }
            }
            Kv::F32s(xs) => {
                o.extend_from_slice(&9u32.to_le_bytes());
                o.extend_from_slice(&6u32.to_le_bytes());
                o.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                xs.iter()
                    .for_each(|x| o.extend_from_slice(&x.to_le_bytes()));
            }
            Kv::I32s(xs) => {
                o.extend_from_slice(&9u32.to_le_bytes());
                o.extend_from_slice(&5u32.to_le_bytes());
                o.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                xs.iter()
                    .for_each(|x| o.extend_from_slice(&x.to_le_bytes()));
            }
        }
    }
    o
}

/// (text, score, type) of a small SentencePiece vocabulary: <unk> <s> </s>,
/// 256 byte tokens, a few merges, a user-defined and a FIM control token.
pub fn mini_tokens() -> Vec<(Vec<u8>, f32, i32)> {
    let mut v: Vec<(Vec<u8>, f32, i32)> = vec![
        (b"<unk>".to_vec(), 0.0, 2),
        (b"<s>".to_vec(), 0.0, 3),
        (b"</s>".to_vec(), 0.0, 3),
    ];
    v.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>").into_bytes(), 0.0, 6)));
    for (t, sc) in [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("c", -2.0),
        ("ab", -1.5),
        ("▁a", -1.2),
        ("▁ab", -1.0),
        ("abc", -0.5),
        ("é", -3.0),
        ("▁é", -2.5),
        ("h", -4.0),
        ("e", -4.0),
        ("l", -4.0),
        ("o", -4.0),
        ("he", -2.0),
        ("ll", -2.0),
        ("llo", -1.0),
        ("hello", -0.1),
        ("▁hello", -0.05),
    ] {
        v.push((t.as_bytes().to_vec(), sc, 1));
    }
    v.push((b"<|user|>".to_vec(), 0.0, 4));
    v.push(("▁<PRE>".as_bytes().to_vec(), 0.0, 3));
    v
}

/// `tokens` as a "llama" vocabulary, plus the `extra` metadata.
pub fn mini_gguf(tokens: &[(Vec<u8>, f32, i32)], extra: Vec<(&str, Kv)>) -> Vec<u8> {
    let mut kvs = vec![
        ("tokenizer.ggml.model", Kv::Str(b"llama".to_vec())),
        (
            "tokenizer.ggml.tokens",
            Kv::Strs(tokens.iter().map(|t| t.0.clone()).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            Kv::F32s(tokens.iter().map(|t| t.1).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Kv::I32s(tokens.iter().map(|t| t.2).collect()),
        ),
    ];
    kvs.extend(extra);
    gguf(&kvs)
}

/// The pieces of `ids`, streamed through [`Utf8Stream`], are valid UTF-8.
pub fn assert_streams_utf8(t: &Tokenizer, ids: &[u32]) {
    let mut u = Utf8Stream::new();
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    for &id in ids {
        let k = u.push(t.token_to_piece(id, true), &mut buf).unwrap();
        all.extend_from_slice(&buf[..k]);
    }
    let k = u.finish(&mut buf).unwrap();
    all.extend_from_slice(&buf[..k]);
    assert!(std::str::from_utf8(&all).is_ok());
}
