//! Any bytes (a flags byte, then text): encoding returns valid ids or a
//! clean error, the size it asks for is right, plain text round-trips, and
//! decoding never panics. Bit 0: add BOS/EOS, bit 1: parse special tokens,
//! bit 2: use llama.cpp's llama-spm vocabulary (from $LLAMUX_LLAMA_SRC, see
//! tests/fixtures/get-llama-src.sh) instead of a small hand-made one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llamux_engine::gguf::Gguf;
use llamux_engine::tokenizer::{attr, Tokenizer, TokenizerError, TokenizerScratch, Utf8Stream};

const MAX_TEXT: usize = 4096;

/// A GGUF holding only a vocabulary of (text, score, token type).
fn vocab_gguf(tokens: &[(Vec<u8>, f32, i32)]) -> Vec<u8> {
    fn s(o: &mut Vec<u8>, b: &[u8]) {
        o.extend_from_slice(&(b.len() as u64).to_le_bytes());
        o.extend_from_slice(b);
    }
    fn arr(o: &mut Vec<u8>, key: &str, elem_type: u32, n: usize) {
        s(o, key.as_bytes());
        o.extend_from_slice(&9u32.to_le_bytes());
        o.extend_from_slice(&elem_type.to_le_bytes());
        o.extend_from_slice(&(n as u64).to_le_bytes());
    }
    let mut o = b"GGUF".to_vec();
    o.extend_from_slice(&3u32.to_le_bytes());
    o.extend_from_slice(&0u64.to_le_bytes());
    o.extend_from_slice(&4u64.to_le_bytes());
    s(&mut o, b"tokenizer.ggml.model");
    o.extend_from_slice(&8u32.to_le_bytes());
    s(&mut o, b"llama");
    arr(&mut o, "tokenizer.ggml.tokens", 8, tokens.len());
    tokens.iter().for_each(|t| s(&mut o, &t.0));
    arr(&mut o, "tokenizer.ggml.scores", 6, tokens.len());
    tokens
        .iter()
        .for_each(|t| o.extend_from_slice(&t.1.to_le_bytes()));
    arr(&mut o, "tokenizer.ggml.token_type", 5, tokens.len());
    tokens
        .iter()
        .for_each(|t| o.extend_from_slice(&t.2.to_le_bytes()));
    o
}

/// <unk> <s> </s>, byte tokens, a few merges, a user-defined and a control token.
fn mini() -> Tokenizer {
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
    let g = vocab_gguf(&v);
    Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()).unwrap()
}

fn llama_spm() -> Option<Tokenizer> {
    let dir = std::env::var_os("LLAMUX_LLAMA_SRC")?;
    let bytes =
        std::fs::read(std::path::Path::new(&dir).join("models/ggml-vocab-llama-spm.gguf")).ok()?;
    Some(Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap())
}

/// A vocabulary and the texts of its user-defined tokens.
struct Vocab {
    t: Tokenizer,
    user_defined: Vec<Vec<u8>>,
}

impl Vocab {
    fn new(t: Tokenizer) -> Self {
        let user_defined = (0..t.n_vocab())
            .filter(|&id| t.token_attr(id) & attr::USER_DEFINED != 0)
            .map(|id| t.token_text(id).to_vec())
            .collect();
        Vocab { t, user_defined }
    }
}

thread_local! {
    /// A scratch per vocabulary (mini, llama-spm).
    static SCRATCH: std::cell::RefCell<[Option<TokenizerScratch>; 2]> = const { std::cell::RefCell::new([None, None]) };
}

static VOCABS: OnceLock<(Vocab, Option<Vocab>)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (mini, spm) = VOCABS.get_or_init(|| (Vocab::new(mini()), llama_spm().map(Vocab::new)));
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let (v, slot) = match spm {
        Some(spm) if flags & 4 != 0 => (spm, 1),
        _ => (mini, 0),
    };
    let t = &v.t;
    let (add_special, parse_special) = (flags & 1 != 0, flags & 2 != 0);
    // One scratch per vocabulary, reused as the module reuses its own (and
    // much faster than allocating it per input).
    let mut scratch = SCRATCH.with(|c| c.borrow_mut()[slot].take());
    let s = scratch.get_or_insert_with(|| t.scratch(MAX_TEXT).unwrap());
    let mut out = vec![0u32; 8 * text.len() + 8];
    let n = match t.encode_with(text, add_special, parse_special, s, &mut out) {
        Ok(n) => n,
        Err(TokenizerError::TextTooLong { .. }) if text.len() > MAX_TEXT => return,
        Err(e) => panic!("{e}"),
    };
    let ids = &out[..n];
    assert!(ids.iter().all(|&id| id < t.n_vocab()));
    if n > 0 {
        let mut small = vec![0u32; n - 1];
        let r = t.encode_with(text, add_special, parse_special, s, &mut small);
        assert_eq!(r, Err(TokenizerError::OutputTooSmall { needed: n }));
    }
    let mut bytes = vec![0u8; 64 * n + 64];
    let len = t
        .detokenize(ids, add_special, parse_special, &mut bytes)
        .unwrap();
    // Plain text without user-defined tokens or a literal "▁" comes back.
    let plain = !add_special && !parse_special && std::str::from_utf8(text).is_ok();
    let user_defined = v
        .user_defined
        .iter()
        .any(|u| text.windows(u.len()).any(|w| w == u.as_slice()));
    if plain && !user_defined && !text.windows(3).any(|w| w == "\u{2581}".as_bytes()) {
        assert_eq!(&bytes[..len], text);
    }
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
    if let Some(sc) = scratch {
        SCRATCH.with(|c| c.borrow_mut()[slot] = Some(sc));
    }
});
