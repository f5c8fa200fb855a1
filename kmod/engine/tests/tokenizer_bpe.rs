//! Byte-level BPE tokenizer (Qwen2): llama.cpp's test vectors for its qwen2
//! vocab, ChatML special tokens, round trips, random bytes, limits, and no
//! allocation while encoding.
//!
//! The vocabulary comes from llama.cpp's source as vendored by
//! llama-cpp-python 0.3.36: set LLAMUX_LLAMA_SRC to the path that
//! tests/fixtures/get-llama-src.sh prints.

use std::sync::OnceLock;

use llamux_engine::gguf::Gguf;
use llamux_engine::tokenizer::{Tokenizer, TokenizerError};

mod common;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

use common::{allocs, read_llama_model as read_model, vocab_vectors as vectors};

/// The qwen2 vocabulary (151,936 tokens, 151,387 merges), loaded once.
fn qwen2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes: &'static [u8] =
            Box::leak(read_model("ggml-vocab-qwen2.gguf").into_boxed_slice());
        Tokenizer::from_gguf(&Gguf::parse(bytes).unwrap()).unwrap()
    })
}

fn enc(t: &Tokenizer, text: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
    let mut s = t.scratch(text.len()).unwrap();
    let mut out = vec![0u32; 3 * text.len() + 2];
    let n = t
        .encode_with(text, add_special, parse_special, &mut s, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn dec(t: &Tokenizer, ids: &[u32], unparse_special: bool) -> Vec<u8> {
    let mut out = vec![0u8; 64 + ids.len() * 64];
    let n = t.detokenize(ids, false, unparse_special, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn qwen2_vectors() {
    let t = qwen2();
    let cases = vectors("ggml-vocab-qwen2.gguf");
    let mut failed = Vec::new();
    for (text, want) in &cases {
        // test-tokenizer-0: add_special = false, parse_special = false.
        let got = enc(t, text, false, false);
        if &got != want {
            failed.push(format!(
                "{:?}\n   got  {got:?}\n   want {want:?}",
                String::from_utf8_lossy(text)
            ));
        }
        // And llama.cpp's check that detokenizing gives the text back.
        assert_eq!(
            dec(t, want, false),
            *text,
            "detokenize {:?}",
            String::from_utf8_lossy(text)
        );
    }
    assert!(
        failed.is_empty(),
        "qwen2: {} of {} vectors fail:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    assert_eq!(cases.len(), 46);
}

#[test]
fn qwen2_metadata() {
    let t = qwen2();
    assert_eq!(t.n_vocab(), 151936);
    assert!(!t.add_bos() && !t.add_eos() && !t.add_space_prefix());
    let im_start = t.token_id(b"<|im_start|>").unwrap();
    let im_end = t.token_id(b"<|im_end|>").unwrap();
    let eot = t.token_id(b"<|endoftext|>").unwrap();
    assert_eq!((eot, im_start, im_end), (151643, 151644, 151645));
    assert_eq!(t.bos(), Some(151643));
    assert!(t.is_eog(im_end) && t.is_eog(eot) && !t.is_eog(im_start));
    assert!(t.is_control(im_start));
    // Pieces: GPT-2 byte characters mapped back to bytes.
    assert_eq!(
        t.token_piece(t.token_id("Ġworld".as_bytes()).unwrap()),
        b" world"
    );
    assert_eq!(t.token_piece(t.token_id("Ċ".as_bytes()).unwrap()), b"\n");
    assert_eq!(t.token_piece(im_end), b"<|im_end|>");
    assert_eq!(t.token_to_piece(im_end, false), b"");
    // Byte 0xF0 alone is one token: its GPT-2 character "ð".
    assert_eq!(t.token_piece(t.token_id("ð".as_bytes()).unwrap()), [0xF0]);
}

#[test]
fn qwen2_chatml() {
    let t = qwen2();
    // From llama.cpp's llama-tokenize on the same vocab.
    let chat = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite fib in Rust 🦀<|im_end|>\n<|im_start|>assistant\n";
    let want = [
        151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 7985,
        15801, 304, 33789, 11162, 99, 222, 151645, 198, 151644, 77091, 198,
    ];
    assert_eq!(enc(t, chat.as_bytes(), true, true), want);
    assert_eq!(dec(t, &want, true), chat.as_bytes());
    // Without parse_special the control tokens are plain text.
    let plain = [
        27, 91, 318, 4906, 91, 29, 87, 27, 91, 8691, 723, 427, 91, 29,
    ];
    assert_eq!(enc(t, b"<|im_start|>x<|endoftext|>", true, false), plain);
    assert_eq!(dec(t, &[151644, 87, 151643], false), b"x");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_text(r: &mut Rng, max_chars: u64) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "é",
        "ß",
        "中",
        "文",
        "🦀",
        "🦙",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "'s",
        "'LL",
        "'Re",
        "0",
        "123",
        "٣",
        "!",
        "...",
        "->",
        "{",
        "}",
        "(",
        ")",
        "<|im_start|>",
        "<|im_end|>",
        "\u{3000}",
        "\u{a0}",
        "ÿ",
        "x y",
        "fn",
        "main",
        "Hello",
        " world",
        "\u{301}",
        "ʼ",
        "ǅ",
        "Ⅻ",
        "\u{feff}",
        "\u{200b}",
    ];
    let n = r.next() % max_chars;
    (0..n)
        .map(|_| PIECES[(r.next() % PIECES.len() as u64) as usize])
        .collect()
}

#[test]
fn qwen2_round_trips() {
    let t = qwen2();
    let mut r = Rng(0x9e3779b97f4a7c15);
    for _ in 0..300 {
        let text = random_text(&mut r, 60);
        for parse_special in [false, true] {
            let ids = enc(t, text.as_bytes(), false, parse_special);
            assert_eq!(dec(t, &ids, true), text.as_bytes(), "{text:?}");
        }
    }
}

#[test]
fn qwen2_random_bytes_never_panic() {
    let t = qwen2();
    let mut r = Rng(7);
    let mut s = t.scratch(256).unwrap();
    let mut out = vec![0u32; 3 * 256 + 2];
    for i in 0..2000 {
        let len = (r.next() % 257) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| match i % 3 {
                0 => r.next() as u8,
                1 => [
                    0x80, 0xbf, 0xc0, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff, b' ', b'a', b'\n',
                    b'1',
                ][(r.next() % 14) as usize],
                _ => b"<|im_end|> '"[(r.next() % 12) as usize],
            })
            .collect();
        let n = t
            .encode_with(&bytes, true, i % 2 == 0, &mut s, &mut out)
            .unwrap();
        assert!(n <= 3 * len + 2);
        assert!(out[..n].iter().all(|&id| id < t.n_vocab()));
        // Valid UTF-8 comes back unchanged.
        if std::str::from_utf8(&bytes).is_ok() {
            assert_eq!(dec(t, &out[..n], true), bytes);
        }
    }
}

#[test]
fn qwen2_invalid_utf8_like_llama_cpp() {
    let t = qwen2();
    // llama.cpp turns each invalid byte into U+FFFD ("�", token 30543)
    // and decodes overlong forms as they come (C0 80 is NUL).
    let fffd = t.token_id("ï¿½".as_bytes()).unwrap();
    assert_eq!(enc(t, &[0xff], false, false), [fffd]);
    assert_eq!(
        enc(t, &[0xc0, 0x80], false, false),
        enc(t, &[0], false, false)
    );
}

#[test]
fn qwen2_limits_are_errors() {
    let t = qwen2();
    let mut s = t.scratch(16).unwrap();
    let mut out = [0u32; 64];
    assert_eq!(
        t.encode(&[b'a'; 17], false, &mut s, &mut out),
        Err(TokenizerError::TextTooLong { len: 17, max: 16 })
    );
    let n = t
        .encode(b"Hello world, hi!", true, &mut s, &mut out)
        .unwrap();
    for short in 0..n {
        let r = t.encode(b"Hello world, hi!", true, &mut s, &mut out[..short]);
        assert_eq!(r, Err(TokenizerError::OutputTooSmall { needed: n }));
    }
    // Worst case: every byte invalid, each U+FFFD split into 3 tokens.
    let mut s = t.scratch(1000).unwrap();
    let text = vec![0x80u8; 1000];
    let mut out = vec![0u32; 3000];
    let n = t.encode(&text, true, &mut s, &mut out).unwrap();
    assert!(n <= 3000);
    assert!(t.scratch(usize::MAX).is_err());
}

#[test]
fn qwen2_encoding_does_not_allocate() {
    let t = qwen2();
    let mut s = t.scratch(4096).unwrap();
    let mut out = vec![0u32; 3 * 4096 + 2];
    let mut bytes = vec![0u8; 16 * 4096];
    let text = random_text(&mut Rng(3), 400).into_bytes();
    let text = &text[..text.len().min(4096)];
    let before = allocs();
    for parse_special in [false, true] {
        let n = t
            .encode_with(text, true, parse_special, &mut s, &mut out)
            .unwrap();
        t.detokenize(&out[..n], true, true, &mut bytes).unwrap();
    }
    let n = t
        .encode_with(&[0xff, 0xc0, b' ', 0xe0], true, true, &mut s, &mut out)
        .unwrap();
    t.detokenize(&out[..n], true, false, &mut bytes).unwrap();
    assert_eq!(allocs(), before);
    let _v: Vec<u8> = Vec::with_capacity(1);
    assert!(allocs() > before, "the allocation counter counts");
}
