//! Tokenizers for GGUF vocabularies, ports of llama.cpp's (as vendored by
//! llama-cpp-python 0.3.36):
//! - SentencePiece, `tokenizer.ggml.model = "llama"`: `llm_tokenizer_spm_session`
//!   (see [`spm`]);
//! - byte-level BPE, `tokenizer.ggml.model = "gpt2"` with the Qwen2
//!   pre-tokenizer: `llm_tokenizer_bpe_session` (see [`bpe`]);
//!
//! and for both `tokenizer_st_partition` (special tokens), `token_to_piece`
//! and `detokenize`.
//!
//! All memory is taken when the tokenizer and a [`TokenizerScratch`] are
//! made; `encode`/`detokenize` only borrow it (in the kernel they run where
//! allocating is forbidden) and report a too small buffer as an error.

use alloc::vec::Vec;
use core::fmt;

use crate::fallible::with_capacity;
use crate::gguf::{Gguf, Value, ValueType};

mod bpe;
mod spm;
mod unicode;
mod utf8;

pub use utf8::Utf8Stream;

/// Token attributes, the bits of llama.cpp's `llama_token_attr`.
pub mod attr {
    pub const UNDEFINED: u16 = 0;
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const NORMALIZED: u16 = 1 << 6;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
    pub const SINGLE_WORD: u16 = 1 << 9;
}

/// "▁" (U+2581), SentencePiece's visible space.
const SPACE: &[u8] = "\u{2581}".as_bytes();

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    MissingKey(&'static str),
    WrongType(&'static str),
    /// `tokenizer.ggml.model` is neither "llama" (SentencePiece) nor "gpt2"
    /// (byte-level BPE) with a Qwen2 pre-tokenizer.
    UnsupportedModel,
    EmptyVocab,
    TooManyTokens(u64),
    /// `key` has fewer entries than there are tokens.
    ShortArray {
        key: &'static str,
        len: u64,
        n_vocab: u64,
    },
    /// Two tokens have the same text (llama.cpp refuses such a vocabulary).
    DuplicateToken {
        id: u32,
    },
    OutOfMemory,
    /// The text is longer than the scratch was made for.
    TextTooLong {
        len: usize,
        max: usize,
    },
    /// The output buffer holds fewer than `needed` items.
    OutputTooSmall {
        needed: usize,
    },
    /// The scratch was made for another tokenizer and is too small.
    ScratchTooSmall,
    NoBosToken,
    NoEosToken,
    /// The vocabulary has no byte token, byte-sized token or `<unk>` for a byte.
    NoTokenForByte(u8),
    /// The vocabulary and the model's embedding (`token_embd.weight` rows)
    /// differ in size: ids past the vocabulary would have no text, ids past
    /// the embedding no row (llama.cpp refuses such a file too).
    VocabMismatch {
        n_vocab: u64,
        n_embd_rows: u64,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TokenizerError::*;
        match self {
            MissingKey(k) => write!(f, "missing tokenizer key {k}"),
            WrongType(k) => write!(f, "tokenizer key {k} has the wrong type"),
            UnsupportedModel => write!(
                f,
                "unsupported tokenizer (only \"llama\" SentencePiece and \"gpt2\" BPE with the qwen2 pre-tokenizer)"
            ),
            EmptyVocab => write!(f, "empty vocabulary"),
            TooManyTokens(n) => write!(f, "vocabulary of {n} tokens is too large"),
            ShortArray { key, len, n_vocab } => {
                write!(f, "{key} has {len} entries for {n_vocab} tokens")
            }
            DuplicateToken { id } => write!(f, "token {id} duplicates another token's text"),
            OutOfMemory => write!(f, "out of memory while loading the tokenizer"),
            TextTooLong { len, max } => {
                write!(f, "text of {len} bytes exceeds the scratch's {max}")
            }
            OutputTooSmall { needed } => write!(f, "output buffer too small ({needed} needed)"),
            ScratchTooSmall => write!(f, "scratch made for another tokenizer"),
            NoBosToken => write!(f, "the vocabulary has no BOS token"),
            NoEosToken => write!(f, "the vocabulary has no EOS token"),
            NoTokenForByte(b) => write!(f, "no token for byte 0x{b:02X}"),
            VocabMismatch { n_vocab, n_embd_rows } => write!(
                f,
                "the vocabulary has {n_vocab} tokens but token_embd.weight has {n_embd_rows} rows \
                 (the model would generate ids {}); refusing the file",
                if n_vocab < n_embd_rows { "that have no text" } else { "it has no embedding for" }
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TokenizerError {}

/// Special token ids (None: the vocabulary has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// A vocabulary, owning copies of the token texts.
pub struct Tokenizer {
    /// Byte-level BPE merges; None for SentencePiece.
    bpe: Option<bpe::Bpe>,
    /// Token i's text is `text[text_off[i]..text_off[i + 1]]`.
    text: Vec<u8>,
    text_off: Vec<u32>,
    /// What llama.cpp's `token_to_piece(id, special = true)` gives.
    piece: Vec<u8>,
    piece_off: Vec<u32>,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    /// Ids sorted by text: the text -> id index.
    by_text: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest first: the order in
    /// which llama.cpp splits them out of the text.
    specials: Vec<u32>,
    /// End-of-generation ids, sorted.
    eog: Vec<u32>,
    /// 256 entries, on the heap: the kernel stack is 16 KiB.
    byte_token: Vec<Option<u32>>,
    special: SpecialTokens,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    max_token_len: usize,
    /// Shortest text in `specials`: bounds the fragments of a text.
    min_special_len: usize,
}

/// Preallocated working memory for [`Tokenizer::encode`], sized for texts of
/// up to `max_bytes` bytes.
pub struct TokenizerScratch {
    max_bytes: usize,
    frags: Vec<Frag>,
    frags_next: Vec<Frag>,
    /// One fragment with spaces escaped to "▁".
    esc: Vec<u8>,
    syms: Vec<Symbol>,
    heap: Vec<Bigram>,
    /// BPE: the fragment's codepoints.
    cpts: Vec<u32>,
}

impl TokenizerScratch {
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

#[derive(Clone, Copy)]
enum Frag {
    Text { start: u32, len: u32 },
    Token(u32),
}

#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    n: u32,
    prev: i32,
    next: i32,
    /// BPE: the token whose text the symbol is (bpe::NONE if none).
    id: u32,
}

#[derive(Clone, Copy)]
struct Bigram {
    left: i32,
    right: i32,
    score: f32,
    size: u32,
}

fn oom<T>(_: T) -> TokenizerError {
    TokenizerError::OutOfMemory
}

/// Pushes without ever growing: the kernel forbids allocation while encoding.
fn push<T>(v: &mut Vec<T>, x: T) -> Result<(), TokenizerError> {
    if v.len() == v.capacity() {
        return Err(TokenizerError::ScratchTooSmall);
    }
    v.push(x);
    Ok(())
}

fn extend(v: &mut Vec<u8>, s: &[u8]) -> Result<(), TokenizerError> {
    if v.capacity() - v.len() < s.len() {
        return Err(TokenizerError::ScratchTooSmall);
    }
    v.extend_from_slice(s);
    Ok(())
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    if hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&i| hay[i] == first && &hay[i..i + needle.len()] == needle)
}

/// `strtol(text.substr(3, 2), 16)` as llama.cpp's `token_to_byte` does it.
fn byte_of_token_text(text: &[u8]) -> u8 {
    let s = text.get(3..text.len().min(5)).unwrap_or(&[]);
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i32 = 0;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(16)) {
        v = v * 16 + d as i32;
        i += 1;
    }
    (if neg { -v } else { v }) as u8
}

// Texts by which llama.cpp recognises special tokens (llama_vocab::impl::load).
#[rustfmt::skip]
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
#[rustfmt::skip]
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",
];
#[rustfmt::skip]
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>",
];
#[rustfmt::skip]
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
#[rustfmt::skip]
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
];

/// Picks one of the special ids.
type Slot = fn(&mut SpecialTokens) -> &mut Option<u32>;

/// A text fragment of `partition` (which cuts them inside `text`).
fn frag_text(text: &[u8], start: u32, len: u32) -> &[u8] {
    text.get(start as usize..start as usize + len as usize)
        .unwrap_or_default()
}

fn in_list(list: &[&str], text: &[u8]) -> bool {
    list.iter().any(|s| s.as_bytes() == text)
}

fn key_id(g: &Gguf<'_>, key: &str) -> Option<u64> {
    g.get(key).and_then(|v| v.as_u64())
}

impl Tokenizer {
    /// Loads the vocabulary like llama.cpp's `llama_vocab::impl::load`.
    ///
    /// Special ids and flags of the wrong type are ignored where llama.cpp
    /// refuses the file; bad token, score and type arrays are errors.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self, TokenizerError> {
        const K_MODEL: &str = "tokenizer.ggml.model";
        const K_TOKENS: &str = "tokenizer.ggml.tokens";
        const K_SCORES: &str = "tokenizer.ggml.scores";
        const K_TYPES: &str = "tokenizer.ggml.token_type";

        let is_bpe = match g.get(K_MODEL) {
            None => return Err(TokenizerError::MissingKey(K_MODEL)),
            Some(v) => match v.as_bytes() {
                Some(b"llama") => false,
                Some(b"gpt2") if bpe::supported_pre(g) => true,
                Some(_) => return Err(TokenizerError::UnsupportedModel),
                None => return Err(TokenizerError::WrongType(K_MODEL)),
            },
        };
        let tokens = match g.get(K_TOKENS) {
            None => return Err(TokenizerError::MissingKey(K_TOKENS)),
            Some(v) => match v.as_array() {
                Some(a) if a.elem_type == ValueType::Str => a,
                _ => return Err(TokenizerError::WrongType(K_TOKENS)),
            },
        };
        let n64 = tokens.len;
        if n64 == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        // Ids are llama_token (int32) in llama.cpp.
        if n64 > i32::MAX as u64 {
            return Err(TokenizerError::TooManyTokens(n64));
        }
        let n = n64 as usize;
        // A vocabulary-only file (no tensors) has nothing to agree with.
        if let Some(e) = g.tensor("token_embd.weight") {
            let rows = if e.n_dims >= 2 { e.dims[1] } else { 1 };
            if rows != n64 {
                return Err(TokenizerError::VocabMismatch {
                    n_vocab: n64,
                    n_embd_rows: rows,
                });
            }
        }

        // Optional per-token arrays, checked like llama.cpp.
        let scores_arr = match g.get(K_SCORES) {
            None => None,
            Some(v) => match v.as_array() {
                Some(a) if matches!(a.elem_type, ValueType::F32 | ValueType::I32) => {
                    if a.len < n64 {
                        return Err(TokenizerError::ShortArray {
                            key: K_SCORES,
                            len: a.len,
                            n_vocab: n64,
                        });
                    }
                    Some(a)
                }
                _ => return Err(TokenizerError::WrongType(K_SCORES)),
            },
        };
        let types_arr = match g.get(K_TYPES) {
            None => None,
            Some(v) => match v.as_array() {
                Some(a) if a.elem_type == ValueType::I32 => {
                    if a.len < n64 {
                        return Err(TokenizerError::ShortArray {
                            key: K_TYPES,
                            len: a.len,
                            n_vocab: n64,
                        });
                    }
                    Some(a)
                }
                _ => return Err(TokenizerError::WrongType(K_TYPES)),
            },
        };

        // Texts, with llama.cpp's stand-in for empty ones.
        let mut text_len = 0usize;
        for (i, v) in tokens.iter().enumerate() {
            let len = v.as_bytes().map_or(0, |s| s.len());
            text_len += if len == 0 { 8 + 10 } else { len };
            if text_len > u32::MAX as usize || i >= n {
                return Err(TokenizerError::TooManyTokens(n64));
            }
        }
        let mut text = with_capacity::<u8>(text_len)?;
        let mut text_off = with_capacity::<u32>(n + 1)?;
        text_off.push(0);
        let mut max_token_len = 0;
        for (i, v) in tokens.iter().enumerate() {
            let s = v.as_bytes().unwrap_or(&[]);
            if s.is_empty() {
                text.extend_from_slice(b"[EMPTY_");
                push_decimal(&mut text, i as u32);
                text.push(b']');
            } else {
                text.extend_from_slice(s);
            }
            let start = *text_off.last().unwrap_or(&0) as usize;
            max_token_len = max_token_len.max(text.len() - start);
            text_off.push(text.len() as u32);
        }
        if text_off.len() != n + 1 {
            return Err(TokenizerError::WrongType(K_TOKENS));
        }

        let mut scores = with_capacity::<f32>(n)?;
        match scores_arr {
            Some(a) => scores.extend(a.iter().take(n).map(|v| match v {
                Value::F32(x) => x,
                Value::I32(x) => x as f32,
                _ => 0.0,
            })),
            None => scores.resize(n, 0.0),
        }
        scores.resize(n, 0.0);

        let mut attrs = with_capacity::<u16>(n)?;
        match types_arr {
            Some(a) => attrs.extend(a.iter().take(n).map(|v| match v {
                Value::I32(1) => attr::NORMAL,
                Value::I32(2) => attr::UNKNOWN,
                Value::I32(3) => attr::CONTROL,
                Value::I32(4) => attr::USER_DEFINED,
                Value::I32(5) => attr::UNUSED,
                Value::I32(6) => attr::BYTE,
                _ => attr::UNDEFINED,
            })),
            None => attrs.resize(n, attr::NORMAL),
        }
        attrs.resize(n, attr::UNDEFINED);

        let mut t = Tokenizer {
            bpe: None,
            text,
            text_off,
            piece: Vec::new(),
            piece_off: Vec::new(),
            scores,
            attrs,
            by_text: Vec::new(),
            specials: Vec::new(),
            eog: Vec::new(),
            byte_token: Vec::new(),
            special: SpecialTokens::default(),
            add_bos: !is_bpe,
            add_eos: false,
            add_space_prefix: !is_bpe,
            max_token_len,
            min_special_len: usize::MAX,
        };

        let mut by_text = with_capacity::<u32>(n)?;
        by_text.extend(0..n as u32);
        crate::sort::heap_sort_by(&mut by_text, |&a, &b| {
            t.text(a).cmp(t.text(b)).then(a.cmp(&b))
        });
        if let Some(w) = by_text.windows(2).find(|w| t.text(w[0]) == t.text(w[1])) {
            return Err(TokenizerError::DuplicateToken { id: w[0].max(w[1]) });
        }
        t.by_text = by_text;

        let mut byte_token = with_capacity::<Option<u32>>(256)?;
        byte_token.resize(256, None);
        t.byte_token = byte_token;
        for b in (0..=255u8).filter(|_| !is_bpe) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let name = [
                b'<',
                b'0',
                b'x',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
                b'>',
            ];
            t.byte_token[b as usize] = t.token_id(&name).or_else(|| t.token_id(&[b]));
        }

        t.load_specials(g, is_bpe);
        if let Some(v) = g
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.as_bool())
        {
            t.add_space_prefix = v;
        }
        if let Some(v) = g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
        {
            t.add_bos = v;
        }
        if let Some(v) = g
            .get("tokenizer.ggml.add_eos_token")
            .and_then(|v| v.as_bool())
        {
            t.add_eos = v;
        }
        t.detect_special_attrs()?;

        // Special-token cache: longest first. llama.cpp's std::sort leaves
        // ties in an unspecified order; here they go by id.
        let mut specials = with_capacity::<u32>(n)?;
        specials.extend((0..n as u32).filter(|&id| {
            t.attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
        }));
        crate::sort::heap_sort_by(&mut specials, |&a, &b| {
            t.text(b).len().cmp(&t.text(a).len()).then(a.cmp(&b))
        });
        t.min_special_len = specials
            .iter()
            .map(|&id| t.text(id).len())
            .min()
            .unwrap_or(usize::MAX);
        t.specials = specials;

        t.build_pieces(is_bpe)?;
        if is_bpe {
            t.bpe = Some(bpe::Bpe::load(g, &t)?);
        }

        // llama.cpp's per-model attributes that apply to SPM vocabularies.
        let name = g
            .get("general.name")
            .and_then(|v| v.as_bytes())
            .unwrap_or(&[]);
        let lower_has = |pat: &[u8]| name.windows(pat.len()).any(|w| w.eq_ignore_ascii_case(pat));
        if lower_has(b"phi-3") || lower_has(b"phi3") {
            for i in 0..t.specials.len() {
                let id = t.specials[i] as usize;
                t.attrs[id] |= attr::RSTRIP;
            }
            if let Some(id) = t.token_id(b"</s>") {
                t.attrs[id as usize] |= attr::RSTRIP;
            }
            for s in [&b"<unk>"[..], b"<s>", b"<|endoftext|>"] {
                if let Some(id) = t.token_id(s) {
                    t.attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }
        Ok(t)
    }

    fn load_specials(&mut self, g: &Gguf<'_>, is_bpe: bool) {
        let n = self.n_vocab() as u64;
        let s = &mut self.special;
        // SentencePiece's or GPT-2's defaults, disabled when out of range.
        let check = |id: u32| if (id as u64) < n { Some(id) } else { None };
        if is_bpe {
            s.bos = check(11);
            s.eos = check(11);
        } else {
            s.bos = check(1);
            s.eos = check(2);
            s.unk = check(0);
        }
        let keys: [(&str, Slot); 17] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            // Deprecated names, read last as in llama.cpp.
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, slot) in keys {
            // An id out of range keeps the default, as in llama.cpp.
            if let Some(id) = key_id(g, key).filter(|&id| id < n) {
                *slot(s) = Some(id as u32);
            }
        }
    }

    /// llama.cpp's detection of EOT/EOM/FIM/EOG tokens by text, which also
    /// marks them as control tokens (and so changes how text is split).
    /// llama.cpp walks a hash map; this walks ids in order, which only
    /// matters for vocabularies with several candidates for one role.
    fn detect_special_attrs(&mut self) -> Result<(), TokenizerError> {
        let n = self.n_vocab();
        let lists: [(&[&str], Slot); 8] = [
            (EOT_TEXTS, |s| &mut s.eot),
            (EOM_TEXTS, |s| &mut s.eom),
            (FIM_PRE_TEXTS, |s| &mut s.fim_pre),
            (FIM_SUF_TEXTS, |s| &mut s.fim_suf),
            (FIM_MID_TEXTS, |s| &mut s.fim_mid),
            (FIM_PAD_TEXTS, |s| &mut s.fim_pad),
            (FIM_REP_TEXTS, |s| &mut s.fim_rep),
            (FIM_SEP_TEXTS, |s| &mut s.fim_sep),
        ];
        for id in 0..n {
            for (list, slot) in &lists {
                if slot(&mut self.special).is_none() && in_list(list, self.text(id)) {
                    *slot(&mut self.special) = Some(id);
                    self.attrs[id as usize] |= attr::CONTROL;
                }
            }
        }

        // Control tokens named "unused" (C strstr: up to the first NUL).
        for id in 0..n {
            let a = &mut self.attrs[id as usize];
            if *a & attr::CONTROL != 0 {
                let t = &self.text
                    [self.text_off[id as usize] as usize..self.text_off[id as usize + 1] as usize];
                let t = t.split(|&b| b == 0).next().unwrap_or(&[]);
                if t.windows(6).any(|w| w == b"unused") {
                    *a |= attr::UNUSED;
                }
            }
        }

        let mut eog = with_capacity::<u32>(n as usize + 3)?;
        let s = self.special;
        eog.extend([s.fim_pad, s.fim_rep, s.fim_sep].into_iter().flatten());
        for id in 0..n {
            if in_list(EOG_TEXTS, self.text(id)) {
                eog.push(id);
                self.attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: always rendered.
        for id in 0..n {
            if in_list(
                &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"],
                self.text(id),
            ) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([s.eos, s.eot, s.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        // "<|end|>" is not an end of generation next to "<|return|>" and
        // "<|call|>" (o200k_harmony) or "<|calls|>" and "<|flush|>" (solar-open).
        let has = |t: &Self, e: &[u32], s: &[u8]| e.iter().copied().find(|&id| t.text(id) == s);
        let end = has(self, &eog, b"<|end|>");
        let ret = has(self, &eog, b"<|return|>").is_some();
        let call =
            has(self, &eog, b"<|call|>").is_some() || has(self, &eog, b"<|calls|>").is_some();
        let flush = has(self, &eog, b"<|flush|>").is_some();
        if let Some(end) = end {
            if call && (ret || flush) {
                eog.retain(|&id| id != end);
                self.attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        // gemma4 and plamo have a normal "</s>".
        let normal_s = has(self, &eog, b"<|tool_response>").is_some()
            || has(self, &eog, b"<|plamo:eos|>").is_some();
        if let (true, Some(s_id)) = (normal_s, has(self, &eog, b"</s>")) {
            eog.retain(|&id| id != s_id);
            self.attrs[s_id as usize] = attr::NORMAL;
        }
        self.eog = eog;
        Ok(())
    }

    /// llama.cpp's token-to-piece cache (`token_to_piece(id, special = true)`).
    fn build_pieces(&mut self, is_bpe: bool) -> Result<(), TokenizerError> {
        let n = self.n_vocab() as usize;
        // Unescaping "▁" only shrinks, a byte token gives 1 byte.
        let mut piece = with_capacity::<u8>(self.text.len() + n)?;
        let mut piece_off = with_capacity::<u32>(n + 1)?;
        piece_off.push(0);
        for id in 0..n as u32 {
            let a = self.attrs[id as usize];
            let text = self.text(id);
            if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                piece.extend_from_slice(text);
            } else if a & attr::NORMAL != 0 && is_bpe {
                // May grow past the estimate for odd texts: grows fallibly.
                bpe::decode_text(text, &mut piece)?;
            } else if a & attr::NORMAL != 0 {
                let mut rest = text;
                while let Some(i) = find(rest, SPACE) {
                    piece.extend_from_slice(&rest[..i]);
                    piece.push(b' ');
                    rest = &rest[i + SPACE.len()..];
                }
                piece.extend_from_slice(rest);
            } else if a & attr::BYTE != 0 {
                // llama.cpp's substr(3, 2) throws on shorter texts.
                if text.len() >= 3 {
                    piece.push(byte_of_token_text(text));
                }
            }
            piece_off.push(piece.len() as u32);
        }
        self.piece = piece;
        self.piece_off = piece_off;
        Ok(())
    }

    fn text(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.text_off.get(i), self.text_off.get(i + 1)) {
            (Some(&a), Some(&b)) => self.text.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    pub fn n_vocab(&self) -> u32 {
        self.attrs.len() as u32
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn bos(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.special.eos
    }

    /// Whether the model wants BOS added (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// The token's text as stored in the vocabulary (empty for a bad id).
    pub fn token_text(&self, id: u32) -> &[u8] {
        self.text(id)
    }

    pub fn token_score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The [`attr`] bits of a token (UNDEFINED for a bad id).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.attrs
            .get(id as usize)
            .copied()
            .unwrap_or(attr::UNDEFINED)
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id) & attr::CONTROL != 0
    }

    pub fn is_byte(&self, id: u32) -> bool {
        self.token_attr(id) & attr::BYTE != 0
    }

    /// End of generation: EOS, EOT, EOM and the like.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The token whose text is exactly `text`.
    pub fn token_id(&self, text: &[u8]) -> Option<u32> {
        if text.len() > self.max_token_len {
            return None;
        }
        self.by_text
            .binary_search_by(|&id| self.text(id).cmp(text))
            .ok()
            .and_then(|i| self.by_text.get(i).copied())
    }

    /// The token for one byte: `<0xNN>`, else the byte itself, else `<unk>`.
    /// (llama.cpp aborts where this falls back to `<unk>`.)
    pub fn byte_token(&self, b: u8) -> Option<u32> {
        self.byte_token[b as usize].or(self.special.unk)
    }

    /// Scratch memory for texts of up to `max_text_bytes` bytes.
    pub fn scratch(&self, max_text_bytes: usize) -> Result<TokenizerScratch, TokenizerError> {
        let m = max_text_bytes;
        // Offsets are u32 and an escaped text takes up to 3 bytes a byte.
        const LIMIT: usize = (u32::MAX / 4) as usize;
        if m > LIMIT {
            return Err(TokenizerError::TextTooLong { len: m, max: LIMIT });
        }
        // Each split-out special token takes at least min_special_len bytes
        // and adds at most one text fragment.
        let n_frags = if self.specials.is_empty() {
            1
        } else {
            (m / self.min_special_len.max(1))
                .checked_mul(2)
                .and_then(|x| x.checked_add(1))
                .ok_or(TokenizerError::OutOfMemory)?
        };
        // SPM: a fragment plus the prefix space, each space escaped to 3
        // bytes; one symbol per byte at most.
        // BPE: a word rebuilt from codepoints, an invalid byte becoming
        // U+FFFD's 3 bytes; one symbol per byte of that.
        // Both: a merge queues at most two bigrams.
        let big = |k: usize| {
            m.checked_add(1)
                .and_then(|x| x.checked_mul(k))
                .ok_or(TokenizerError::OutOfMemory)
        };
        let (n_sym, n_cpts) = if self.bpe.is_some() {
            (big(3)?, m)
        } else {
            (big(1)?, 0)
        };
        Ok(TokenizerScratch {
            max_bytes: m,
            frags: with_capacity(n_frags)?,
            frags_next: with_capacity(n_frags)?,
            esc: with_capacity(big(3)?)?,
            syms: with_capacity(n_sym)?,
            heap: with_capacity(n_sym.checked_mul(3).ok_or(TokenizerError::OutOfMemory)?)?,
            cpts: with_capacity(n_cpts)?,
        })
    }

    /// Tokenizes `text` like llama.cpp's `llama_tokenize(..., add_special,
    /// parse_special = false)` (what its test-tokenizer-0 checks): control
    /// token texts are tokenized as plain text, user-defined ones are split out.
    /// `add_special` adds BOS/EOS as the vocabulary asks
    /// ([`add_bos`](Self::add_bos), [`add_eos`](Self::add_eos)).
    /// Returns the number of ids written to `out`.
    pub fn encode(
        &self,
        text: &[u8],
        add_special: bool,
        scratch: &mut TokenizerScratch,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        self.encode_with(text, add_special, false, scratch, out)
    }

    /// [`encode`](Self::encode) with `parse_special`: also split out control
    /// tokens written as text (e.g. "<s>", CodeLlama's "▁<PRE>").
    pub fn encode_with(
        &self,
        text: &[u8],
        add_special: bool,
        parse_special: bool,
        scratch: &mut TokenizerScratch,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        self.encode_inner(text, add_special, parse_special, 0..0, scratch, out)
    }

    /// Control tokens are parsed in `text` except in the byte range `plain`,
    /// which is tokenized as [`encode`](Self::encode) does (a template's
    /// tokens parsed, the user's text inside it plain text). A control token
    /// is taken only where it lies wholly outside `plain`; text around it is
    /// tokenized as one piece, so a `plain` without control-token text gives
    /// exactly `encode_with(text, .., true, ..)`.
    pub fn encode_with_plain(
        &self,
        text: &[u8],
        add_special: bool,
        plain: core::ops::Range<usize>,
        scratch: &mut TokenizerScratch,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        self.encode_inner(text, add_special, true, plain, scratch, out)
    }

    fn encode_inner(
        &self,
        text: &[u8],
        add_special: bool,
        parse_special: bool,
        plain: core::ops::Range<usize>,
        scratch: &mut TokenizerScratch,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        if text.len() > scratch.max_bytes {
            return Err(TokenizerError::TextTooLong {
                len: text.len(),
                max: scratch.max_bytes,
            });
        }
        let mut o = Out { buf: out, n: 0 };
        self.partition(text, parse_special, plain, scratch)?;
        if let Some(bpe) = &self.bpe {
            // llm_tokenizer_bpe_session: no prefix space, BOS/EOS as asked.
            if add_special && self.add_bos {
                o.push(self.special.bos.ok_or(TokenizerError::NoBosToken)?);
            }
            let frags = core::mem::take(&mut scratch.frags);
            let res = frags.iter().try_for_each(|f| match *f {
                Frag::Text { start, len } => {
                    self.bpe_fragment(bpe, frag_text(text, start, len), scratch, &mut o)
                }
                Frag::Token(id) => {
                    o.push(id);
                    Ok(())
                }
            });
            scratch.frags = frags;
            res?;
            if add_special && self.add_eos {
                o.push(self.special.eos.ok_or(TokenizerError::NoEosToken)?);
            }
            if o.n > o.buf.len() {
                return Err(TokenizerError::OutputTooSmall { needed: o.n });
            }
            return Ok(o.n);
        }

        let mut prev_special = true; // prefix the first fragment with a space
        if add_special && self.add_bos {
            o.push(self.special.bos.ok_or(TokenizerError::NoBosToken)?);
        }
        let frags = core::mem::take(&mut scratch.frags);
        let res: Result<(), TokenizerError> = (|| {
            for f in &frags {
                match *f {
                    Frag::Text { start, len } => {
                        let s = frag_text(text, start, len);
                        self.spm_fragment(
                            s,
                            self.add_space_prefix && prev_special,
                            scratch,
                            &mut o,
                        )?;
                        prev_special = false;
                    }
                    Frag::Token(id) => {
                        o.push(id);
                        prev_special = true;
                    }
                }
            }
            Ok(())
        })();
        scratch.frags = frags; // give the buffer back even on error
        res?;
        if add_special && self.add_eos {
            o.push(self.special.eos.ok_or(TokenizerError::NoEosToken)?);
        }
        if o.n > o.buf.len() {
            return Err(TokenizerError::OutputTooSmall { needed: o.n });
        }
        Ok(o.n)
    }

    /// `tokenizer_st_partition`: split special tokens out of the text, one
    /// token (longest first) at a time over all remaining text fragments.
    /// Control and unknown tokens are not taken where they overlap `plain`.
    fn partition(
        &self,
        text: &[u8],
        parse_special: bool,
        plain: core::ops::Range<usize>,
        s: &mut TokenizerScratch,
    ) -> Result<(), TokenizerError> {
        s.frags.clear();
        if text.is_empty() {
            return Ok(());
        }
        push(
            &mut s.frags,
            Frag::Text {
                start: 0,
                len: text.len() as u32,
            },
        )?;
        for &sid in &self.specials {
            let a = self.attrs[sid as usize];
            let control = a & (attr::CONTROL | attr::UNKNOWN) != 0;
            if !parse_special && control {
                continue;
            }
            let tok = self.text(sid);
            let masked = |m: usize| control && m < plain.end && m + tok.len() > plain.start;
            s.frags_next.clear();
            for i in 0..s.frags.len() {
                let (start, len) = match s.frags[i] {
                    Frag::Text { start, len } => (start as usize, len as usize),
                    f => {
                        push(&mut s.frags_next, f)?;
                        continue;
                    }
                };
                let end = start + len;
                let mut pos = start;
                let mut from = start;
                while let Some(m) = find(&text[from..end], tok).map(|i| from + i) {
                    if masked(m) {
                        from = m + 1;
                        continue;
                    }
                    if m > pos {
                        let mut l = m - pos;
                        if a & attr::LSTRIP != 0 {
                            while l > 0 && is_space(text[pos + l - 1]) {
                                l -= 1;
                            }
                        }
                        if l > 0 {
                            push(
                                &mut s.frags_next,
                                Frag::Text {
                                    start: pos as u32,
                                    len: l as u32,
                                },
                            )?;
                        }
                    }
                    push(&mut s.frags_next, Frag::Token(sid))?;
                    pos = m + tok.len();
                    if a & attr::RSTRIP != 0 {
                        while pos < end && is_space(text[pos]) {
                            pos += 1;
                        }
                    }
                    if pos >= end {
                        break;
                    }
                    from = pos;
                }
                if pos < end {
                    push(
                        &mut s.frags_next,
                        Frag::Text {
                            start: pos as u32,
                            len: (end - pos) as u32,
                        },
                    )?;
                }
            }
            core::mem::swap(&mut s.frags, &mut s.frags_next);
        }
        Ok(())
    }

    /// The text of a token, like llama.cpp's `token_to_piece(id, special)`:
    /// "▁" shown as a space, a byte token as its byte, control and unknown
    /// tokens as nothing unless `special`. Empty for a bad id.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        if !special && self.token_attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        let i = id as usize;
        match (self.piece_off.get(i), self.piece_off.get(i + 1)) {
            (Some(&a), Some(&b)) => self.piece.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// `token_to_piece(id, special = true)`.
    pub fn token_piece(&self, id: u32) -> &[u8] {
        self.token_to_piece(id, true)
    }

    /// Copies a token's piece into `out`; returns its length.
    pub fn decode_into(
        &self,
        id: u32,
        special: bool,
        out: &mut [u8],
    ) -> Result<usize, TokenizerError> {
        let p = self.token_to_piece(id, special);
        let dst = out
            .get_mut(..p.len())
            .ok_or(TokenizerError::OutputTooSmall { needed: p.len() })?;
        dst.copy_from_slice(p);
        Ok(p.len())
    }

    /// llama.cpp's `llama_detokenize`: drops the space the tokenizer put in
    /// front of the text, and with `remove_special` a leading BOS / trailing
    /// EOS the vocabulary adds; `unparse_special` renders control tokens.
    /// Returns the length, or OutputTooSmall with the length needed.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
        out: &mut [u8],
    ) -> Result<usize, TokenizerError> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.special.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special
            && self.add_eos
            && !ids.is_empty()
            && Some(ids[ids.len() - 1]) == self.special.eos
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut total = 0usize;
        for &id in ids {
            let mut p = self.token_to_piece(id, unparse_special);
            if remove_space {
                p = p.strip_prefix(b" ").unwrap_or(p);
            }
            remove_space = false;
            if let Some(dst) = out.get_mut(total..total + p.len()) {
                dst.copy_from_slice(p);
            }
            total += p.len();
        }
        if total > out.len() {
            return Err(TokenizerError::OutputTooSmall { needed: total });
        }
        Ok(total)
    }
}

/// Output ids, counted past the end so the caller learns the size needed.
struct Out<'a> {
    buf: &'a mut [u32],
    n: usize,
}

impl Out<'_> {
    fn push(&mut self, id: u32) {
        if let Some(slot) = self.buf.get_mut(self.n) {
            *slot = id;
        }
        self.n += 1;
    }
}

fn push_decimal(v: &mut Vec<u8>, mut x: u32) {
    let mut d = [0u8; 10];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    v.extend_from_slice(&d[i..]);
}

// The merge queue is libstdc++'s std::priority_queue step for step
// (push_heap / pop_heap / __adjust_heap), so pops come in exactly
// llama.cpp's order even for equal or NaN scores.

/// llama.cpp's comparator: `a` ranks below `b`.
fn lower(a: &Bigram, b: &Bigram) -> bool {
    a.score < b.score || (a.score == b.score && a.left > b.left)
}

fn sift_up(h: &mut [Bigram], mut hole: usize, top: usize, v: Bigram) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !lower(&h[parent], &v) {
            break;
        }
        h[hole] = h[parent];
        hole = parent;
    }
    h[hole] = v;
}

fn heap_push(h: &mut Vec<Bigram>, v: Bigram) -> Result<(), TokenizerError> {
    push(h, v)?;
    let last = h.len() - 1;
    sift_up(h, last, 0, v);
    Ok(())
}

fn heap_pop(h: &mut Vec<Bigram>) -> Option<Bigram> {
    let len = h.len();
    if len > 1 {
        let top = h[0];
        let v = h[len - 1];
        h[len - 1] = top;
        // __adjust_heap(first, 0, len - 1, v)
        let n = len - 1;
        let mut hole = 0;
        let mut child = 0;
        while child < (n.saturating_sub(1)) / 2 {
            child = 2 * (child + 1);
            if lower(&h[child], &h[child - 1]) {
                child -= 1;
            }
            h[hole] = h[child];
            hole = child;
        }
        if n & 1 == 0 && n >= 2 && child == (n - 2) / 2 {
            child = 2 * (child + 1);
            h[hole] = h[child - 1];
            hole = child - 1;
        }
        sift_up(&mut h[..n], hole, 0, v);
    }
    h.pop()
}
