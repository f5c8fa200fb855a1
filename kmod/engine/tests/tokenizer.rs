//! SentencePiece tokenizer: llama.cpp's test vectors for its llama-spm vocab
//! (and phi-3's), round trips, byte fallback, limits, random input, and
//! hand-made vocabularies for special and user-defined tokens.
//!
//! The vocabularies come from llama.cpp's source as vendored by
//! llama-cpp-python 0.3.36: set LLAMUX_LLAMA_SRC to the path that
//! tests/fixtures/get-llama-src.sh prints.

use llamux_checks::vocab::{assert_streams_utf8, gguf, mini_gguf, mini_tokens, Kv};
use llamux_engine::gguf::Gguf;
use llamux_engine::tokenizer::{attr, Tokenizer, TokenizerError, TokenizerScratch, Utf8Stream};

mod common;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

use common::{allocs, read_llama_model as read_model, vocab_vectors as vectors};

fn load(bytes: &[u8]) -> Tokenizer {
    Tokenizer::from_gguf(&Gguf::parse(bytes).unwrap()).unwrap()
}

fn llama_spm() -> Tokenizer {
    load(&read_model("ggml-vocab-llama-spm.gguf"))
}

/// Encodes with a scratch and output sized for the text.
fn enc(t: &Tokenizer, text: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
    let mut s = t.scratch(text.len()).unwrap();
    let mut out = vec![0u32; text.len() + 3];
    let n = t
        .encode_with(text, add_special, parse_special, &mut s, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn dec(t: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    let mut out = vec![0u8; 64 + ids.len() * 64];
    let n = t.detokenize(ids, false, false, &mut out).unwrap();
    out.truncate(n);
    out
}

fn check_vectors(t: &Tokenizer, name: &str) -> usize {
    let cases = vectors(name);
    let mut failed = Vec::new();
    for (text, want) in &cases {
        let got = enc(t, text, false, false);
        if &got != want {
            failed.push(format!(
                "{:?}\n   got  {got:?}\n   want {want:?}",
                String::from_utf8_lossy(text)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} of {} vectors fail:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    cases.len()
}

#[test]
fn llama_spm_vectors() {
    let n = check_vectors(&llama_spm(), "ggml-vocab-llama-spm.gguf");
    assert_eq!(n, 46);
    eprintln!("llama-spm: {n}/{n} vectors pass");
}

#[test]
fn phi3_vectors() {
    let t = load(&read_model("ggml-vocab-phi-3.gguf"));
    let n = check_vectors(&t, "ggml-vocab-phi-3.gguf");
    eprintln!("phi-3: {n}/{n} vectors pass");
}

// ---- llama-spm: round trips, bytes, specials, limits, random input ----

/// A small deterministic generator for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random valid UTF-8 from a mix of ASCII, spaces, Latin, CJK, emoji.
fn random_text(r: &mut Rng, max_chars: u64) -> String {
    const POOL: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\t",
        "a",
        "e",
        "the",
        "Hello",
        "world",
        ",",
        ".",
        "'s",
        "é",
        "ß",
        "Ж",
        "я",
        "日本",
        "语",
        "🦙",
        "👍🏽",
        "\u{2000}",
        "0",
        "42",
        "<",
        ">",
        "s",
        "/",
        "<s>",
        "</s>",
        "<unk>",
        "\u{0}",
        "\u{7f}",
        "\u{10ffff}",
        "ﬁ",
        "Ǆ",
        "\u{301}",
    ];
    let n = r.below(max_chars + 1);
    (0..n)
        .map(|_| match r.below(4) {
            0 => char::from_u32(r.below(0x11_0000) as u32)
                .filter(|&c| c != '\u{2581}')
                .unwrap_or('x')
                .to_string(),
            _ => POOL[r.below(POOL.len() as u64) as usize].to_string(),
        })
        .collect()
}

#[test]
fn llama_spm_round_trips() {
    let t = llama_spm();
    for (text, _) in vectors("ggml-vocab-llama-spm.gguf") {
        assert_eq!(dec(&t, &enc(&t, &text, false, false)), text);
    }
    let mut r = Rng(1);
    for _ in 0..3000 {
        let s = random_text(&mut r, 40);
        let ids = enc(&t, s.as_bytes(), false, false);
        assert_eq!(String::from_utf8_lossy(&dec(&t, &ids)), s, "{ids:?}");
        // With BOS: removed by remove_special, and the prefix space then stays.
        let with_bos = enc(&t, s.as_bytes(), true, false);
        assert_eq!(with_bos[0], 1);
        assert_eq!(&with_bos[1..], &ids[..]);
    }
    // A literal "▁" reads back as a space, as in llama.cpp.
    assert_eq!(
        dec(&t, &enc(&t, "a\u{2581}b".as_bytes(), false, false)),
        b"a b"
    );
}

#[test]
fn llama_spm_bytes_become_byte_tokens() {
    let t = llama_spm();
    // <0xNN> is id 3 + NN in this vocabulary.
    for b in 0..=255u8 {
        assert_eq!(
            t.token_id(format!("<0x{b:02X}>").as_bytes()),
            Some(3 + b as u32)
        );
        assert!(t.is_byte(3 + b as u32));
        assert_eq!(t.token_piece(3 + b as u32), [b]);
    }
    assert_eq!(
        enc(&t, b"\xff\xfe", false, false),
        [29871, 3 + 0xff, 3 + 0xfe]
    );
    // U+10FFFF has no token: its four UTF-8 bytes.
    assert_eq!(
        enc(&t, "\u{10ffff}".as_bytes(), false, false),
        [29871, 3 + 0xf4, 3 + 0x8f, 3 + 0xbf, 3 + 0xbf]
    );
    // A truncated sequence takes the next byte with it, like llama.cpp.
    let ids = enc(&t, b"\xc3A", false, false);
    assert_eq!(ids, [29871, 3 + 0xc3, 3 + b'A' as u32]);
    assert_eq!(dec(&t, &ids), b"\xc3A");
}

#[test]
fn llama_spm_special_tokens() {
    let t = llama_spm();
    assert_eq!((t.bos(), t.eos(), t.n_vocab()), (Some(1), Some(2), 32000));
    assert!(t.add_bos() && !t.add_eos() && t.add_space_prefix());
    assert!(t.is_control(1) && t.is_control(2) && !t.is_control(29871));
    assert!(t.is_eog(2) && !t.is_eog(1));
    assert_eq!(t.token_attr(0), attr::UNKNOWN);
    assert_eq!(t.token_id("▁Hello".as_bytes()), Some(15043));
    assert_eq!(t.token_id(b"no such token"), None);
    // parse_special splits control tokens out; otherwise they are text.
    assert_eq!(enc(&t, b"<s>Hello</s>", false, true), [1, 15043, 2]);
    let plain = enc(&t, b"<s>Hello</s>", false, false);
    assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
    assert_eq!(enc(&t, b"", true, false), [1]);
    assert_eq!(enc(&t, b"", false, false), [0u32; 0]);
    // Pieces: control tokens only when asked for.
    assert_eq!(t.token_to_piece(1, false), b"");
    assert_eq!(t.token_to_piece(1, true), b"<s>");
    assert_eq!(t.token_to_piece(15043, false), b" Hello");
    assert_eq!(t.token_to_piece(99999, true), b"");
    let mut buf = [0u8; 16];
    assert_eq!(t.decode_into(15043, false, &mut buf), Ok(6));
    assert_eq!(
        t.decode_into(15043, false, &mut buf[..3]),
        Err(TokenizerError::OutputTooSmall { needed: 6 })
    );
    // llama_detokenize: remove_special drops BOS (and keeps the space then).
    let mut out = [0u8; 64];
    let n = t
        .detokenize(&[1, 15043, 3186], true, false, &mut out)
        .unwrap();
    assert_eq!(&out[..n], b" Hello world");
    let n = t
        .detokenize(&[1, 15043, 3186], false, true, &mut out)
        .unwrap();
    assert_eq!(&out[..n], b"<s> Hello world");
    assert_eq!(
        t.detokenize(&[15043, 3186], false, false, &mut out[..5]),
        Err(TokenizerError::OutputTooSmall { needed: 11 })
    );
}

#[test]
fn limits_are_errors() {
    let t = llama_spm();
    let mut s = t.scratch(16).unwrap();
    let mut out = [0u32; 64];
    assert_eq!(s.max_bytes(), 16);
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
    // Worst case output: every byte a byte token, plus prefix, BOS/EOS.
    let mut s = t.scratch(1000).unwrap();
    let text: Vec<u8> = (0..1000).map(|i| 0x80 + (i % 64) as u8).collect();
    let mut out = vec![0u32; 1002];
    assert_eq!(t.encode(&text, true, &mut s, &mut out), Ok(1002));
    assert!(t.scratch(usize::MAX).is_err());
}

/// Checks one fuzz input (flags byte, then text): what the fuzz target does.
fn fuzz_one(t: &Tokenizer, s: &mut TokenizerScratch, data: &[u8]) {
    let (flags, text) = match data.split_first() {
        Some((&f, rest)) => (f, rest),
        None => (0, &[][..]),
    };
    let (add_special, parse_special) = (flags & 1 != 0, flags & 2 != 0);
    let mut out = vec![0u32; 8 * text.len() + 8];
    let n = match t.encode_with(text, add_special, parse_special, s, &mut out) {
        Ok(n) => n,
        Err(TokenizerError::TextTooLong { .. }) if text.len() > s.max_bytes() => return,
        Err(e) => panic!("{e}"),
    };
    let ids = &out[..n];
    assert!(ids.iter().all(|&id| id < t.n_vocab()));
    if n > 0 {
        let mut small = vec![0u32; n - 1];
        assert_eq!(
            t.encode_with(text, add_special, parse_special, s, &mut small),
            Err(TokenizerError::OutputTooSmall { needed: n })
        );
    }
    let mut bytes = vec![0u8; 64 * n + 64];
    let len = t
        .detokenize(ids, add_special, parse_special, &mut bytes)
        .unwrap();
    // Plain text without user-defined tokens or a literal "▁" comes back.
    let plain = !add_special && !parse_special && std::str::from_utf8(text).is_ok();
    let user_defined = (0..t.n_vocab())
        .filter(|&id| t.token_attr(id) & attr::USER_DEFINED != 0)
        .any(|id| {
            text.windows(t.token_text(id).len())
                .any(|w| w == t.token_text(id))
        });
    if plain && !user_defined && !text.windows(3).any(|w| w == "\u{2581}".as_bytes()) {
        assert_eq!(&bytes[..len], text);
    }
    // Streaming the pieces gives valid UTF-8.
    assert_streams_utf8(t, ids);
}

#[test]
fn random_bytes_never_panic() {
    let t = llama_spm();
    let m = mini(&[]);
    let mut s = t.scratch(300).unwrap();
    let mut sm = m.scratch(300).unwrap();
    let mut r = Rng(7);
    for i in 0..4000 {
        let len = r.below(330) as usize;
        let data: Vec<u8> = match i % 3 {
            // Raw bytes.
            0 => (0..len).map(|_| r.next() as u8).collect(),
            // Bytes from a small alphabet, to hit merges and special texts.
            1 => {
                let alpha = b" \t\nab<>s/|unkhelo\xc3\xa9\xe2\x96\x81\xf0\x9f";
                (0..len)
                    .map(|_| alpha[r.below(alpha.len() as u64) as usize])
                    .collect()
            }
            _ => {
                let mut v = vec![r.next() as u8];
                v.extend_from_slice(random_text(&mut r, 30).as_bytes());
                v
            }
        };
        fuzz_one(&t, &mut s, &data);
        fuzz_one(&m, &mut sm, &data);
    }
}

#[test]
fn utf8_stream_holds_split_characters() {
    let t = llama_spm();
    let text = "héllo 🦙 日本語 \u{10ffff}!";
    let ids = enc(&t, text.as_bytes(), false, false);
    assert!(ids.iter().any(|&id| t.is_byte(id)), "{ids:?}");
    let mut u = Utf8Stream::new();
    let mut all = Vec::new();
    let mut buf = [0u8; 64];
    for &id in &ids {
        let k = u.push(t.token_to_piece(id, false), &mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..k]).is_ok());
        all.extend_from_slice(&buf[..k]);
    }
    assert_eq!(u.finish(&mut buf), Ok(0));
    assert_eq!(String::from_utf8(all).unwrap(), format!(" {text}"));

    let mut u = Utf8Stream::new();
    assert_eq!(u.push(b"\xf0\x9f", &mut buf), Ok(0));
    assert_eq!(u.pending(), b"\xf0\x9f");
    assert_eq!(u.push(b"\xa6", &mut buf[..1]), Ok(0));
    let k = u.push(b"\x99a\xff", &mut buf).unwrap();
    assert_eq!(&buf[..k], "🦙a\u{fffd}".as_bytes());
    assert_eq!(u.push(b"\xe6\x97", &mut buf), Ok(0));
    // Too small: nothing consumed.
    assert_eq!(
        u.finish(&mut buf[..2]),
        Err(TokenizerError::OutputTooSmall { needed: 3 })
    );
    assert_eq!(u.pending(), b"\xe6\x97");
    let k = u.finish(&mut buf).unwrap();
    assert_eq!(&buf[..k], "\u{fffd}".as_bytes());
}

#[test]
fn encoding_does_not_allocate() {
    let t = llama_spm();
    let m = mini(&[]);
    let mut s = t.scratch(4096).unwrap();
    let mut sm = m.scratch(4096).unwrap();
    let mut out = vec![0u32; 3 * 4096];
    let mut bytes = vec![0u8; 16 * 4096];
    let text: Vec<u8> = random_text(&mut Rng(3), 500).into_bytes();
    let text = &text[..text.len().min(4096)];
    let before = allocs();
    for parse_special in [false, true] {
        let n = t
            .encode_with(text, true, parse_special, &mut s, &mut out)
            .unwrap();
        t.detokenize(&out[..n], true, false, &mut bytes).unwrap();
        let n = m
            .encode_with(
                b"a<|user|>b <s> hello",
                true,
                parse_special,
                &mut sm,
                &mut out,
            )
            .unwrap();
        m.detokenize(&out[..n], true, true, &mut bytes).unwrap();
    }
    let mut u = Utf8Stream::new();
    u.push("🦙".as_bytes(), &mut bytes).unwrap();
    assert_eq!(allocs(), before);
    let _v: Vec<u8> = Vec::with_capacity(1);
    assert!(allocs() > before, "the allocation counter counts");
}

// ---- hand-made vocabularies ----

fn mini(extra: &[(&str, bool)]) -> Tokenizer {
    let kv = extra.iter().map(|&(k, v)| (k, Kv::Bool(v))).collect();
    load(&mini_gguf(&mini_tokens(), kv))
}

fn id(t: &Tokenizer, s: &str) -> u32 {
    t.token_id(s.as_bytes())
        .unwrap_or_else(|| panic!("no token {s:?}"))
}

#[test]
fn mini_merges_and_fallback() {
    let t = mini(&[]);
    assert_eq!(enc(&t, b"hello", false, false), [id(&t, "▁hello")]);
    // Highest score first, leftmost on ties: "▁a" then "▁ab" win over "abc".
    assert_eq!(
        enc(&t, b"abc ab", false, false),
        [id(&t, "▁ab"), id(&t, "c"), id(&t, "▁ab")]
    );
    assert_eq!(enc(&t, "é".as_bytes(), false, false), [id(&t, "▁é")]);
    // No "x" token: its byte; no "▁x": "▁" then the byte.
    assert_eq!(enc(&t, b"x", false, false), [id(&t, "▁"), id(&t, "<0x78>")]);
    assert_eq!(enc(&t, b"a", true, false), [1, id(&t, "▁a")]);
}

#[test]
fn mini_user_defined_and_control_tokens() {
    let t = mini(&[]);
    let user = id(&t, "<|user|>");
    let pre = id(&t, "▁<PRE>");
    assert_eq!(t.token_attr(user), attr::USER_DEFINED);
    // CodeLlama's FIM tokens are found by text and are control tokens.
    assert_eq!(t.special_tokens().fim_pre, Some(pre));
    assert!(t.is_control(pre));
    // User-defined tokens are split out even without parse_special; text
    // after a special token gets the space prefix again.
    let sp = id(&t, "▁");
    let b = id(&t, "b");
    assert_eq!(
        enc(&t, b"a<|user|>b", false, false),
        [id(&t, "▁a"), user, sp, b]
    );
    assert_eq!(enc(&t, b"<|user|><|user|>", false, false), [user, user]);
    // Control tokens only with parse_special.
    let text = "a▁<PRE>b".as_bytes();
    assert!(!enc(&t, text, false, false).contains(&pre));
    assert_eq!(enc(&t, text, false, true), [id(&t, "▁a"), pre, sp, b]);
    assert_eq!(enc(&t, b"<s>", false, true), [1]);
    assert_eq!(t.token_to_piece(user, false), b"<|user|>");
    assert_eq!(t.token_to_piece(pre, false), b"");
    assert_eq!(t.token_to_piece(pre, true), "▁<PRE>".as_bytes());
}

#[test]
fn mini_flags_from_metadata() {
    let t = mini(&[
        ("tokenizer.ggml.add_bos_token", false),
        ("tokenizer.ggml.add_eos_token", true),
    ]);
    assert_eq!(enc(&t, b"a", true, false), [id(&t, "▁a"), 2]);
    let mut out = [0u8; 16];
    let n = t
        .detokenize(&[id(&t, "▁a"), 2], true, false, &mut out)
        .unwrap();
    assert_eq!(&out[..n], b"a");
    let t = mini(&[("tokenizer.ggml.add_space_prefix", false)]);
    assert_eq!(enc(&t, b"ab", false, false), [id(&t, "ab")]);
    assert_eq!(enc(&t, b" ab", false, false), [id(&t, "▁ab")]);
    let mut out = [0u8; 16];
    let n = t
        .detokenize(&[id(&t, "▁ab")], false, false, &mut out)
        .unwrap();
    assert_eq!(&out[..n], b" ab");
}

#[test]
fn mini_phi3_strips_space_after_special_tokens() {
    let kv = vec![("general.name", Kv::Str(b"Phi3-mini".to_vec()))];
    let t = load(&mini_gguf(&mini_tokens(), kv));
    let user = id(&t, "<|user|>");
    assert_ne!(t.token_attr(user) & attr::RSTRIP, 0);
    assert_eq!(t.token_attr(1) & attr::RSTRIP, 0);
    assert_eq!(
        enc(&t, b"a<|user|> \n b", false, false),
        [id(&t, "▁a"), user, id(&t, "▁"), id(&t, "b")]
    );
}

#[test]
fn mini_odd_vocabularies() {
    // Empty texts stand in as "[EMPTY_<id>]", as in llama.cpp.
    let mut toks = mini_tokens();
    toks.push((Vec::new(), 0.0, 1));
    let last = toks.len() as u32 - 1;
    let t = load(&mini_gguf(&toks, vec![]));
    assert_eq!(t.token_text(last), format!("[EMPTY_{last}]").as_bytes());
    // Duplicate texts are refused (llama.cpp asserts).
    let mut toks = mini_tokens();
    toks.push((b"ab".to_vec(), 0.0, 1));
    let g = mini_gguf(&toks, vec![]);
    assert!(matches!(
        Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()),
        Err(TokenizerError::DuplicateToken { .. })
    ));
    // No byte tokens: bytes fall back to <unk>.
    let toks: Vec<_> = mini_tokens().into_iter().filter(|t| t.2 != 6).collect();
    let t = load(&mini_gguf(&toks, vec![]));
    assert_eq!(enc(&t, b"x", false, false), [id(&t, "▁"), 0]);
    // Out-of-range ids in the metadata keep the defaults.
    let t = load(&mini_gguf(
        &mini_tokens(),
        vec![("tokenizer.ggml.bos_token_id", Kv::U32(1 << 30))],
    ));
    assert_eq!(t.bos(), Some(1));
    let t = load(&mini_gguf(
        &mini_tokens(),
        vec![("tokenizer.ggml.eos_token_id", Kv::U32(5))],
    ));
    assert_eq!(t.eos(), Some(5));
    assert!(t.is_eog(5));
    // Not SentencePiece, or no tokens: errors.
    let g = gguf(&[("tokenizer.ggml.model", Kv::Str(b"gpt2".to_vec()))]);
    assert_eq!(
        Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()).err(),
        Some(TokenizerError::UnsupportedModel)
    );
    let g = gguf(&[("tokenizer.ggml.model", Kv::Str(b"llama".to_vec()))]);
    assert_eq!(
        Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()).err(),
        Some(TokenizerError::MissingKey("tokenizer.ggml.tokens"))
    );
    let g = gguf(&[
        ("tokenizer.ggml.model", Kv::Str(b"llama".to_vec())),
        ("tokenizer.ggml.tokens", Kv::Strs(vec![])),
    ]);
    assert_eq!(
        Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()).err(),
        Some(TokenizerError::EmptyVocab)
    );
    let g = mini_gguf(&mini_tokens(), vec![]);
    let g2 = {
        let toks = mini_tokens();
        gguf(&[
            ("tokenizer.ggml.model", Kv::Str(b"llama".to_vec())),
            (
                "tokenizer.ggml.tokens",
                Kv::Strs(toks.iter().map(|t| t.0.clone()).collect()),
            ),
            ("tokenizer.ggml.scores", Kv::F32s(vec![0.0; 3])),
        ])
    };
    assert!(Tokenizer::from_gguf(&Gguf::parse(&g).unwrap()).is_ok());
    assert!(matches!(
        Tokenizer::from_gguf(&Gguf::parse(&g2).unwrap()),
        Err(TokenizerError::ShortArray {
            key: "tokenizer.ggml.scores",
            ..
        })
    ));
}

/// Replays kmod/engine/fuzz/regressions/tokenizer: the flags byte's bit 2
/// picks llama-spm (when LLAMUX_LLAMA_SRC is set) over the hand-made vocabulary.
#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/tokenizer");
    let m = mini(&[]);
    let mut sm = m.scratch(4096).unwrap();
    let spm = std::env::var_os("LLAMUX_LLAMA_SRC").map(|_| llama_spm());
    let mut s = spm.as_ref().map(|t| t.scratch(4096).unwrap());
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        match (&spm, &mut s, data.first().is_some_and(|f| f & 4 != 0)) {
            (Some(t), Some(s), true) => fuzz_one(t, s, &data),
            _ => fuzz_one(&m, &mut sm, &data),
        }
        n += 1;
    }
    assert!(n > 0, "empty regression corpus in {}", dir.display());
}

/// The `String` form the loader prints with: any split of any bytes gives
/// `String::from_utf8_lossy` of the whole (what the loader's own copy did).
#[cfg(feature = "std")]
#[test]
fn utf8_stream_strings_match_lossy() {
    let cases: &[&[u8]] = &[
        "héllo wörld ✓ 🦀".as_bytes(),
        b"\xe2\x82\x41 \xf0\x9f\xa6 x \xff\xfe \xc3",
        b"\xf0\x9f\xa6\x80\xf0\x9f",
        b"",
    ];
    for &bytes in cases {
        for step in 1..=5 {
            let mut u = Utf8Stream::new();
            let mut s = String::new();
            for chunk in bytes.chunks(step) {
                s.push_str(&u.push_string(chunk));
            }
            s.push_str(&u.finish_string());
            assert_eq!(
                s,
                String::from_utf8_lossy(bytes),
                "{bytes:?} in chunks of {step}"
            );
        }
    }
}
