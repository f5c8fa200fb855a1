//! SentencePiece (`tokenizer.ggml.model = "llama"`): llama.cpp's
//! `llm_tokenizer_spm_session`, one text fragment at a time (special tokens
//! are split off before, in `Tokenizer::partition`).

use alloc::vec::Vec;

use super::{
    extend, heap_pop, heap_push, push, Bigram, Out, Symbol, Tokenizer, TokenizerError,
    TokenizerScratch, SPACE,
};

/// llama.cpp's `unicode_len_utf8`: the length a lead byte announces
/// (continuation and invalid bytes count as 1).
fn utf8_len(b: u8) -> usize {
    const LOOKUP: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize] as usize
}

impl Tokenizer {
    /// `llm_tokenizer_spm_session::tokenize` on one text fragment.
    pub(super) fn spm_fragment(
        &self,
        frag: &[u8],
        space_prefix: bool,
        s: &mut TokenizerScratch,
        o: &mut Out<'_>,
    ) -> Result<(), TokenizerError> {
        s.esc.clear();
        if space_prefix {
            extend(&mut s.esc, SPACE)?;
        }
        for &b in frag {
            if b == b' ' {
                extend(&mut s.esc, SPACE)?;
            } else {
                push(&mut s.esc, b)?;
            }
        }
        let esc = &s.esc[..];
        let n = esc.len();

        // One symbol per UTF-8 character (as llama.cpp cuts it).
        s.syms.clear();
        let mut offs = 0;
        while offs < n {
            let len = utf8_len(esc[offs]).min(n - offs);
            let idx = s.syms.len() as i32;
            offs += len;
            let next = if offs == n { -1 } else { idx + 1 };
            push(
                &mut s.syms,
                Symbol {
                    start: (offs - len) as u32,
                    n: len as u32,
                    prev: idx - 1,
                    next,
                    id: 0,
                },
            )?;
        }
        if s.syms.is_empty() {
            return Ok(());
        }

        s.heap.clear();
        for i in 1..s.syms.len() as i32 {
            self.try_add_bigram(esc, &s.syms, &mut s.heap, i - 1, i)?;
        }
        // Merge the best-scoring pair while there is one.
        while let Some(b) = heap_pop(&mut s.heap) {
            let (l, r) = (s.syms[b.left as usize], s.syms[b.right as usize]);
            // Skip pairs one of whose symbols has changed since.
            if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                continue;
            }
            let left = &mut s.syms[b.left as usize];
            left.n += r.n;
            left.next = r.next;
            let prev = left.prev;
            let next = left.next;
            s.syms[b.right as usize].n = 0;
            if next >= 0 {
                s.syms[next as usize].prev = b.left;
            }
            self.try_add_bigram(esc, &s.syms, &mut s.heap, prev, b.left)?;
            self.try_add_bigram(esc, &s.syms, &mut s.heap, b.left, next)?;
        }

        // llama.cpp's `resegment`: every merged symbol is a token (only pairs
        // forming a token are queued), so its rev_merge lookup never hits;
        // what is not a token is a single character, sent as byte tokens.
        let mut i = 0i32;
        while let Some(&sym) = s.syms.get(i as usize).filter(|_| i >= 0) {
            let t = esc
                .get(sym.start as usize..(sym.start + sym.n) as usize)
                .unwrap_or_default();
            match self.token_id(t) {
                Some(id) => o.push(id),
                None => {
                    for &b in t {
                        o.push(
                            self.byte_token(b)
                                .ok_or(TokenizerError::NoTokenForByte(b))?,
                        );
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }

    fn try_add_bigram(
        &self,
        esc: &[u8],
        syms: &[Symbol],
        heap: &mut Vec<Bigram>,
        left: i32,
        right: i32,
    ) -> Result<(), TokenizerError> {
        // Negative indices are the list's ends; get() keeps the rest panic-free.
        let (Ok(li), Ok(ri)) = (usize::try_from(left), usize::try_from(right)) else {
            return Ok(());
        };
        let (Some(l), Some(r)) = (syms.get(li), syms.get(ri)) else {
            return Ok(());
        };
        let size = l.n + r.n;
        let Some(pair) = esc.get(l.start as usize..(l.start + size) as usize) else {
            return Ok(());
        };
        let Some(id) = self.token_id(pair) else {
            return Ok(());
        };
        let score = self
            .scores
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        heap_push(
            heap,
            Bigram {
                left,
                right,
                score,
                size,
            },
        )
    }
}
