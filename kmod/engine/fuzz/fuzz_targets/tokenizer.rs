//! Any bytes (a flags byte, then text): encoding returns valid ids or a
//! clean error, the size it asks for is right, plain text round-trips, and
//! decoding never panics. Bit 0: add BOS/EOS, bit 1: parse special tokens,
//! bit 2: use llama.cpp's llama-spm vocabulary (from $LLAMUX_LLAMA_SRC, see
//! tests/fixtures/get-llama-src.sh) instead of a small hand-made one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llamux_checks::vocab::{assert_streams_utf8, mini_gguf, mini_tokens};
use llamux_engine::gguf::Gguf;
use llamux_engine::tokenizer::{attr, Tokenizer, TokenizerError, TokenizerScratch};

const MAX_TEXT: usize = 4096;

/// The tokenizer tests' hand-made vocabulary (llamux_checks::vocab).
fn mini() -> Tokenizer {
    Tokenizer::from_gguf(&Gguf::parse(&mini_gguf(&mini_tokens(), vec![])).unwrap()).unwrap()
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
    assert_streams_utf8(t, ids);
    if let Some(sc) = scratch {
        SCRATCH.with(|c| c.borrow_mut()[slot] = Some(sc));
    }
});
