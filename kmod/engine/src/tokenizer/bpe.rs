//! Byte-level BPE (GGUF `tokenizer.ggml.model = "gpt2"`), a port of
//! llama.cpp's `llm_tokenizer_bpe_session` for the Qwen2 pre-tokenizer
//! (`tokenizer.ggml.pre` "qwen2" and its aliases), as vendored by
//! llama-cpp-python 0.3.36.
//!
//! A text fragment is cut into codepoints, split into words by the Qwen2
//! regex (hand-written like llama.cpp's `unicode_regex_split_custom_qwen2`),
//! each word's bytes become GPT-2 byte characters, and adjacent symbols are
//! merged lowest merge rank first. Symbols carry token ids: a merge is
//! looked up by the ids of its two halves, which is llama.cpp's lookup by
//! text as long as every merge's halves and result are tokens (true of real
//! vocabularies; a merge whose halves are not both tokens is dropped).

use alloc::vec::Vec;

use super::unicode::{byte_to_cpt, cpt_to_byte, cpt_to_utf8, next_cpt, Flags};
use super::{
    extend, heap_pop, heap_push, push, Bigram, Out, Symbol, Tokenizer, TokenizerError,
    TokenizerScratch,
};
use crate::fallible::with_capacity;
use crate::gguf::{Gguf, ValueType};

/// No token id (a symbol whose text is not a token).
const NONE: u32 = u32::MAX;

/// Pre-tokenizers understood (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2 names).
const QWEN2_PRE: &[&[u8]] = &[b"qwen2", b"deepseek-r1-qwen", b"kormo", b"f2llmv2"];

#[derive(Clone, Copy)]
struct Merge {
    left: u32,
    right: u32,
    rank: u32,
    result: u32,
}

pub(super) struct Bpe {
    /// Sorted by (left, right); one entry per pair, the lowest rank.
    merges: Vec<Merge>,
    /// The token for each byte's GPT-2 character.
    byte_char: [u32; 256],
}

/// Whether the GGUF's pre-tokenizer is one this module implements.
pub(super) fn supported_pre(g: &Gguf<'_>) -> bool {
    g.get("tokenizer.ggml.pre")
        .and_then(|v| v.as_bytes())
        .is_some_and(|p| QWEN2_PRE.contains(&p))
}

impl Bpe {
    /// Reads `tokenizer.ggml.merges` ("left right" strings, rank = index).
    pub(super) fn load(g: &Gguf<'_>, t: &Tokenizer) -> Result<Bpe, TokenizerError> {
        const K_MERGES: &str = "tokenizer.ggml.merges";
        let arr = match g.get(K_MERGES) {
            None => return Err(TokenizerError::MissingKey(K_MERGES)),
            Some(v) => match v.as_array() {
                Some(a) if a.elem_type == ValueType::Str => a,
                _ => return Err(TokenizerError::WrongType(K_MERGES)),
            },
        };
        // Ranks go through the f32 merge queue: keep them exact.
        if arr.len > 1 << 24 {
            return Err(TokenizerError::TooManyTokens(arr.len));
        }
        let mut merges = with_capacity::<Merge>(arr.len as usize)?;
        let mut joined = with_capacity::<u8>(2 * t.max_token_len + 1)?;
        for (rank, v) in arr.iter().enumerate() {
            if rank >= arr.len as usize {
                break;
            }
            let s = v.as_bytes().unwrap_or(&[]);
            // llama.cpp: word.find(' ', 1).
            let Some(sp) = s.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&s[..sp], &s[sp + 1..]);
            let (Some(left), Some(right)) = (t.token_id(a), t.token_id(b)) else {
                continue;
            };
            joined.clear();
            joined.extend_from_slice(a);
            joined.extend_from_slice(b);
            let result = t.token_id(&joined).unwrap_or(NONE);
            merges.push(Merge {
                left,
                right,
                rank: rank as u32,
                result,
            });
        }
        crate::sort::heap_sort_by(&mut merges, |a, b| {
            (a.left, a.right, a.rank).cmp(&(b.left, b.right, b.rank))
        });
        merges.dedup_by(|later, first| later.left == first.left && later.right == first.right);

        let mut byte_char = [NONE; 256];
        for (b, slot) in byte_char.iter_mut().enumerate() {
            let (u, n) = cpt_to_utf8(byte_to_cpt(b as u8));
            *slot = t.token_id(&u[..n]).unwrap_or(NONE);
        }
        Ok(Bpe { merges, byte_char })
    }

    fn find(&self, left: u32, right: u32) -> Option<&Merge> {
        if left == NONE || right == NONE {
            return None;
        }
        let i = self
            .merges
            .binary_search_by(|m| (m.left, m.right).cmp(&(left, right)))
            .ok()?;
        self.merges.get(i)
    }
}

/// llama.cpp's `unicode_regex_split_custom_qwen2` over one fragment: the end
/// of the word starting at `pos` of `cpts`. The regex is
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
fn qwen2_word_end(cpts: &[u32], pos: usize) -> usize {
    const OUT: u32 = u32::MAX;
    let end = cpts.len();
    let cpt_at = |p: usize| cpts.get(p).copied().unwrap_or(OUT);
    let flags_at = |p: usize| cpts.get(p).map_or(Flags::default(), |&c| Flags::of(c));
    // unicode_tolower only changes ASCII letters among those compared
    // (gen_unicode.py checks this).
    let lower = |c: u32| {
        if (b'A' as u32..=b'Z' as u32).contains(&c) {
            c + 32
        } else {
            c
        }
    };
    let is = |c: u32, ch: u8| c == ch as u32;

    let cpt = cpt_at(pos);
    let flags = flags_at(pos);

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if is(cpt, b'\'') && pos + 1 < end {
        let n = lower(cpt_at(pos + 1));
        if is(n, b's') || is(n, b't') || is(n, b'm') || is(n, b'd') {
            return pos + 2;
        }
        if pos + 2 < end {
            let nn = lower(cpt_at(pos + 2));
            if (is(n, b'r') && is(nn, b'e'))
                || (is(n, b'v') && is(nn, b'e'))
                || (is(n, b'l') && is(nn, b'l'))
            {
                return pos + 3;
            }
        }
    }

    // [^\r\n\p{L}\p{N}]?\p{L}+
    if !(is(cpt, b'\r') || is(cpt, b'\n') || flags.number())
        && (flags.letter() || flags_at(pos + 1).letter())
    {
        let mut p = pos + 1;
        while flags_at(p).letter() {
            p += 1;
        }
        return p;
    }

    // \p{N}
    if flags.number() {
        return pos + 1;
    }

    // <space>?[^\s\p{L}\p{N}]+[\r\n]*
    let mut f2 = if is(cpt, b' ') {
        flags_at(pos + 1)
    } else {
        flags
    };
    let plain = |f: Flags| !(f.whitespace() || f.letter() || f.number()) && f.any();
    if plain(f2) && flags.any() {
        let mut p = pos + is(cpt, b' ') as usize;
        while plain(f2) {
            p += 1;
            f2 = flags_at(p);
        }
        while is(cpt_at(p), b'\r') || is(cpt_at(p), b'\n') {
            p += 1;
        }
        return p;
    }

    let mut num_ws = 0;
    let mut last_rn = 0;
    while flags_at(pos + num_ws).whitespace() {
        let c = cpt_at(pos + num_ws);
        if is(c, b'\r') || is(c, b'\n') {
            last_rn = pos + num_ws + 1;
        }
        num_ws += 1;
    }
    // \s*[\r\n]+
    if last_rn > 0 {
        return last_rn;
    }
    // \s+(?!\S)
    if num_ws > 1 && cpt_at(pos + num_ws) != OUT {
        return pos + num_ws - 1;
    }
    // \s+
    if num_ws > 0 {
        return pos + num_ws;
    }
    // no match
    pos + 1
}

impl Tokenizer {
    /// `llm_tokenizer_bpe_session::tokenize` on one text fragment.
    pub(super) fn bpe_fragment(
        &self,
        bpe: &Bpe,
        frag: &[u8],
        s: &mut TokenizerScratch,
        o: &mut Out<'_>,
    ) -> Result<(), TokenizerError> {
        s.cpts.clear();
        let mut i = 0;
        while i < frag.len() {
            let (c, n) = next_cpt(frag, i);
            push(&mut s.cpts, c)?;
            i += n;
        }
        let mut pos = 0;
        while pos < s.cpts.len() {
            let end = qwen2_word_end(&s.cpts, pos).clamp(pos + 1, s.cpts.len());
            // The word's bytes as llama.cpp rebuilds them from codepoints.
            s.esc.clear();
            for &c in &s.cpts[pos..end] {
                let (u, n) = cpt_to_utf8(c);
                extend(&mut s.esc, &u[..n])?;
            }
            self.bpe_word(bpe, s, o)?;
            pos = end;
        }
        Ok(())
    }

    /// Merges the word in `s.esc` and writes its tokens.
    fn bpe_word(
        &self,
        bpe: &Bpe,
        s: &mut TokenizerScratch,
        o: &mut Out<'_>,
    ) -> Result<(), TokenizerError> {
        let word = &s.esc[..];
        let n = word.len();
        // One symbol per byte (each byte is one GPT-2 character).
        s.syms.clear();
        for (k, &b) in word.iter().enumerate() {
            let next = if k + 1 == n { -1 } else { k as i32 + 1 };
            let sym = Symbol {
                start: k as u32,
                n: 1,
                prev: k as i32 - 1,
                next,
                id: bpe.byte_char[b as usize],
            };
            push(&mut s.syms, sym)?;
        }
        s.heap.clear();
        for k in 1..s.syms.len() as i32 {
            add_bigram(bpe, &s.syms, &mut s.heap, k - 1, k)?;
        }
        while let Some(b) = heap_pop(&mut s.heap) {
            let (l, r) = (s.syms[b.left as usize], s.syms[b.right as usize]);
            // Outdated pair: a symbol changed since (sizes tell, as texts do).
            if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                continue;
            }
            let id = bpe.find(l.id, r.id).map_or(NONE, |m| m.result);
            let left = &mut s.syms[b.left as usize];
            left.n += r.n;
            left.next = r.next;
            left.id = id;
            let (prev, next) = (left.prev, left.next);
            s.syms[b.right as usize].n = 0;
            if next >= 0 {
                s.syms[next as usize].prev = b.left;
            }
            add_bigram(bpe, &s.syms, &mut s.heap, prev, b.left)?;
            add_bigram(bpe, &s.syms, &mut s.heap, b.left, next)?;
        }
        let mut k = 0i32;
        while k >= 0 && (k as usize) < s.syms.len() {
            let sym = s.syms[k as usize];
            if sym.id != NONE {
                o.push(sym.id);
            } else {
                // Not a token: each byte of its GPT-2 text that is a token.
                for &b in &word[sym.start as usize..(sym.start + sym.n) as usize] {
                    let (u, un) = cpt_to_utf8(byte_to_cpt(b));
                    for &ub in &u[..un] {
                        if let Some(id) = self.token_id(&[ub]) {
                            o.push(id);
                        }
                    }
                }
            }
            k = sym.next;
        }
        Ok(())
    }
}

fn add_bigram(
    bpe: &Bpe,
    syms: &[Symbol],
    heap: &mut Vec<Bigram>,
    left: i32,
    right: i32,
) -> Result<(), TokenizerError> {
    if left < 0 || right < 0 {
        return Ok(());
    }
    let (l, r) = (syms[left as usize], syms[right as usize]);
    let Some(m) = bpe.find(l.id, r.id) else {
        return Ok(());
    };
    // The queue pops the highest score: the lowest rank, then the leftmost.
    heap_push(
        heap,
        Bigram {
            left,
            right,
            score: -(m.rank as f32),
            size: l.n + r.n,
        },
    )
}

/// llama.cpp's `llama_decode_text`: a token's GPT-2 characters back to bytes.
pub(super) fn decode_text(text: &[u8], out: &mut Vec<u8>) -> Result<(), TokenizerError> {
    let mut i = 0;
    while i < text.len() {
        let (c, n) = next_cpt(text, i);
        i += n;
        match cpt_to_byte(c) {
            Some(b) => {
                out.try_reserve(1).map_err(super::oom)?;
                out.push(b);
            }
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (u, un) = cpt_to_utf8(c);
                out.try_reserve(12 + 2 * un + text.len() + 1)
                    .map_err(super::oom)?;
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for &b in &u[..un] {
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 15) as usize]);
                }
                out.extend_from_slice(text);
                out.push(b']');
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::qwen2_word_end;

    fn split(s: &str) -> alloc::vec::Vec<alloc::string::String> {
        let c: alloc::vec::Vec<u32> = s.chars().map(|c| c as u32).collect();
        let mut out = alloc::vec::Vec::new();
        let mut p = 0;
        while p < c.len() {
            let e = qwen2_word_end(&c, p);
            out.push(
                c[p..e]
                    .iter()
                    .map(|&x| char::from_u32(x).unwrap())
                    .collect(),
            );
            p = e;
        }
        out
    }

    #[test]
    fn qwen2_split() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(
            split("I'm 123 ok!!\n\n  x"),
            ["I", "'m", " ", "1", "2", "3", " ok", "!!\n\n", " ", " x"]
        );
        assert_eq!(split("a  \n b"), ["a", "  \n", " b"]);
        assert_eq!(split("   "), ["   "]);
        assert_eq!(split("x   "), ["x", "   "]);
    }
}
