//! The advisor as the module serves it: request records in, response
//! records out, with the prefilled contexts of the last few policies kept.
//!
//! The engine tokenizes like the loader's user-space advisor
//! (loader/src/policy_advise.rs): prefix with BOS, event, suffix and
//! answers without; control tokens recognised in the prefix and suffix of
//! a chat request (REQ_CHAT) only, never in the event or the answers; the
//! advisor's positions and batch from `advise::layout` (plain: CTX and
//! max(longest answer, 32)); the event cut from the front to leave room
//! for the suffix and the answers. So the scores are bit-identical to
//! `llamux advise` with the same --ctx.
//!
//! Up to `slots` advisors are kept, one per (CTX, flags, prefix, suffix,
//! answers)
//! (compared byte for byte): a request matching one reuses its prefilled
//! prefix KV cache and allocates nothing. Any other request builds a new
//! advisor (allocation and prefill happen only then) in a free slot or in
//! place of the least recently used one; so policies used in turn are each
//! prefilled once while they fit. A new context is first checked against
//! the memory the caller says is available (a KV cache of a big CTX would
//! otherwise make the kernel reclaim and OOM-kill to satisfy it); if it
//! does not fit or its allocation fails while other advisors are cached,
//! they are freed and the build is tried once more. CTX itself is bounded
//! by `max_ctx`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;

use super::{model_kind, ErrorKind};
use crate::advise::request::Request;
use crate::advise::response::Response;
use crate::advise::{Advisor, MAX_ANSWERS};
use crate::exec::Exec;
use crate::fallible::{copy_of, try_box, zeroed};
use crate::model::{Context, ContextParams, Model};
use crate::tokenizer::{Tokenizer, TokenizerScratch};

/// Longest request record, in bytes.
pub const ADVISE_MAX: usize = 16384;
/// Advisor slots: the default and the most (each holds a KV cache of CTX
/// positions: with a big model, few slots).
pub const ADV_SLOTS_DEFAULT: usize = 4;
pub const ADV_SLOTS_MAX: usize = 8;
/// Largest CTX when the caller sets none.
pub const ADV_MAX_CTX_DEFAULT: usize = 32768;

/// Counters for status.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct AdviseStats {
    /// Advisors built, each with one prefill of its policy's prefix.
    pub prefills: u64,
    /// Requests served by an already prefilled advisor.
    pub reuses: u64,
    pub slots_used: usize,
    pub slots: usize,
}

struct AdvState {
    adv: Advisor,
    /// CTX, flags, prefix, suffix and answers of the request that built
    /// this state.
    req_ctx: usize,
    flags: u32,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    answers_key: Vec<u8>,
    /// The advisor's positions (`advise::layout`).
    ctx: usize,
    /// Suffix tokens (after the event).
    suffix_toks: Vec<u32>,
    /// Byte length of each answer text (the key, with the texts).
    answer_bytes: [usize; MAX_ANSWERS],
    /// Token count of each answer.
    answer_lens: [usize; MAX_ANSWERS],
    n_answers: usize,
    /// Answer tokens back to back (`answer_lens` splits them).
    answer_toks: Vec<u32>,
    prefix_tokens: usize,
    scratch: TokenizerScratch,
    /// Event tokens (room for ADVISE_MAX bytes' worth).
    ev: Vec<u32>,
    /// `Slots::clock` at its last request (LRU).
    last_used: u64,
}

impl AdvState {
    fn matches(&self, r: &Request<'_>) -> bool {
        self.req_ctx == r.ctx
            && self.flags == r.flags
            && self.answer_bytes.get(..self.n_answers) == Some(r.answer_lens())
            && self.prefix[..] == *r.prefix
            && self.suffix[..] == *r.suffix
            && self.answers_key[..] == *r.answers_bytes()
    }
}

/// The prefilled advisors of the last policies (LRU; None: a free slot).
pub struct Slots {
    advs: [Option<Box<AdvState>>; ADV_SLOTS_MAX],
    n: usize,
    max_ctx: usize,
    /// Clock of `AdvState::last_used`: one tick per request.
    clock: u64,
    prefills: u64,
    reuses: u64,
}

fn oom(msg: &mut dyn Write) -> ErrorKind {
    let _ = write!(msg, "out of memory");
    ErrorKind::OutOfMemory
}

/// Builds the advisor for `r` and prefills its prefix (the setup path:
/// allocation happens here only).
#[inline(never)]
fn build(
    model: &Model<'_>,
    tok: &Tokenizer,
    exec: &mut dyn Exec,
    r: &Request<'_>,
    max_ctx: usize,
    mem_available: &mut dyn FnMut() -> u64,
    msg: &mut dyn Write,
) -> Result<Box<AdvState>, ErrorKind> {
    let mut scratch = tok.scratch(ADVISE_MAX).map_err(|x| {
        let _ = write!(msg, "tokenizer scratch: {x}");
        ErrorKind::OutOfMemory
    })?;
    let mut buf = zeroed::<u32>(ADVISE_MAX + 2).map_err(|_| oom(msg))?;
    // Control tokens only in the policy's own text of a chat request.
    let n = tok
        .encode_with(r.prefix, true, r.chat(), &mut scratch, &mut buf)
        .map_err(|x| {
            let _ = write!(msg, "prefix: {x}");
            ErrorKind::Invalid
        })?;
    let prefix_toks = copy_of(buf.get(..n).unwrap_or_default()).map_err(|_| oom(msg))?;
    let n = tok
        .encode_with(r.suffix, false, r.chat(), &mut scratch, &mut buf)
        .map_err(|x| {
            let _ = write!(msg, "suffix: {x}");
            ErrorKind::Invalid
        })?;
    let suffix_toks = copy_of(buf.get(..n).unwrap_or_default()).map_err(|_| oom(msg))?;
    let mut answer_toks = Vec::new();
    let mut answer_lens = [0usize; MAX_ANSWERS];
    let mut longest = 0;
    for ((i, text), len) in r.answers().enumerate().zip(answer_lens.iter_mut()) {
        let n = tok
            .encode(text, false, &mut scratch, &mut buf)
            .map_err(|x| {
                let _ = write!(msg, "answer {i}: {x}");
                ErrorKind::Invalid
            })?;
        if n == 0 {
            let _ = write!(msg, "answer {i} has no tokens");
            return Err(ErrorKind::Invalid);
        }
        answer_toks.try_reserve(n).map_err(|_| oom(msg))?;
        answer_toks.extend_from_slice(buf.get(..n).unwrap_or_default());
        *len = n;
        longest = longest.max(n);
    }
    let (ctx, n_batch) = crate::advise::layout(
        r.chat(),
        r.ctx,
        prefix_toks.len(),
        suffix_toks.len(),
        longest,
    );
    if ctx > max_ctx {
        let _ = write!(
            msg,
            "advisor context of {ctx} positions (prefix of {} tokens) is over the limit of {max_ctx}",
            prefix_toks.len()
        );
        return Err(ErrorKind::TooBig);
    }
    if prefix_toks.len() + 64 + n_batch > ctx {
        let _ = write!(
            msg,
            "prefix of {} tokens does not fit a {ctx}-position context",
            prefix_toks.len()
        );
        return Err(ErrorKind::TooBig);
    }
    let cp = ContextParams {
        n_ctx: ctx,
        n_batch,
        logits_all: true,
        ..ContextParams::default()
    };
    let need = Context::bytes_for(&model.hp, &cp).map_or(u64::MAX, |b| b as u64);
    let avail = mem_available();
    if need > avail {
        let _ = write!(
            msg,
            "advisor context of {ctx} positions needs {need} bytes, {avail} available"
        );
        return Err(ErrorKind::OutOfMemory);
    }
    let mut adv = Advisor::new(model, ctx, n_batch).map_err(|x| {
        let _ = write!(msg, "advisor: {x}");
        model_kind(&x)
    })?;
    adv.set_prefix(model, &prefix_toks, exec).map_err(|x| {
        let _ = write!(msg, "prefix: {x}");
        model_kind(&x)
    })?;
    let (Ok(prefix), Ok(suffix), Ok(answers_key)) = (
        copy_of(r.prefix),
        copy_of(r.suffix),
        copy_of(r.answers_bytes()),
    ) else {
        return Err(oom(msg));
    };
    let mut answer_bytes = [0usize; MAX_ANSWERS];
    for (b, &l) in answer_bytes.iter_mut().zip(r.answer_lens()) {
        *b = l;
    }
    try_box(AdvState {
        adv,
        req_ctx: r.ctx,
        flags: r.flags,
        prefix,
        suffix,
        answers_key,
        ctx,
        suffix_toks,
        answer_bytes,
        answer_lens,
        n_answers: r.n_answers(),
        answer_toks,
        prefix_tokens: prefix_toks.len(),
        scratch,
        ev: buf,
        last_used: 0,
    })
    .map_err(|_| oom(msg))
}

impl Slots {
    /// `slots` 0: ADV_SLOTS_DEFAULT (at most ADV_SLOTS_MAX); `max_ctx` 0:
    /// ADV_MAX_CTX_DEFAULT.
    pub fn new(slots: usize, max_ctx: usize) -> Self {
        Slots {
            advs: Default::default(),
            n: if slots == 0 {
                ADV_SLOTS_DEFAULT
            } else {
                slots.min(ADV_SLOTS_MAX)
            },
            max_ctx: if max_ctx == 0 {
                ADV_MAX_CTX_DEFAULT
            } else {
                max_ctx
            },
            clock: 0,
            prefills: 0,
            reuses: 0,
        }
    }

    pub fn stats(&self) -> AdviseStats {
        AdviseStats {
            prefills: self.prefills,
            reuses: self.reuses,
            slots_used: self.advs.iter().filter(|a| a.is_some()).count(),
            slots: self.n,
        }
    }

    /// Scores one request record. Errors: Invalid (malformed record, CTX
    /// over max_ctx, engine error), TooBig (record over ADVISE_MAX, prefix
    /// too long for CTX), OutOfMemory (also: the context does not fit the
    /// available memory).
    pub fn advise(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        exec: &mut dyn Exec,
        req: &[u8],
        mem_available: &mut dyn FnMut() -> u64,
        msg: &mut dyn Write,
    ) -> Result<Response, ErrorKind> {
        if req.len() > ADVISE_MAX {
            let _ = write!(msg, "request of {} bytes, at most {ADVISE_MAX}", req.len());
            return Err(ErrorKind::TooBig);
        }
        let Some(r) = Request::parse(req) else {
            let _ = write!(msg, "malformed advise request");
            return Err(ErrorKind::Invalid);
        };
        if r.ctx > self.max_ctx {
            let _ = write!(
                msg,
                "advisor context of {} positions is over the limit of {}",
                r.ctx, self.max_ctx
            );
            return Err(ErrorKind::Invalid);
        }
        let n_slots = self.n.clamp(1, ADV_SLOTS_MAX);
        let slot = match self.advs[..n_slots]
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.matches(&r)))
        {
            Some(i) => {
                self.reuses += 1;
                i
            }
            None => {
                // A free slot, else the least recently used one, freed first.
                let i = self.advs[..n_slots]
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        let mut lru = 0;
                        for (j, a) in self.advs[..n_slots].iter().enumerate() {
                            if a.as_ref().map_or(0, |a| a.last_used)
                                < self.advs[lru].as_ref().map_or(0, |a| a.last_used)
                            {
                                lru = j;
                            }
                        }
                        lru
                    });
                self.advs[i] = None;
                // The first try's message is kept aside (no allocation: this
                // is also the out-of-memory path) in case a retry replaces it.
                let mut first_buf = [0u8; 256];
                let mut first = super::FixedBuf {
                    buf: &mut first_buf,
                    len: 0,
                };
                let built = match build(
                    model,
                    tok,
                    exec,
                    &r,
                    self.max_ctx,
                    mem_available,
                    &mut first,
                ) {
                    Err(ErrorKind::OutOfMemory) if self.advs.iter().any(Option::is_some) => {
                        // No memory for one more: keep only the new one.
                        self.advs.iter_mut().for_each(|a| *a = None);
                        build(model, tok, exec, &r, self.max_ctx, mem_available, msg)
                    }
                    Err(k) => {
                        let text = first.buf.get(..first.len).unwrap_or_default();
                        let valid = match core::str::from_utf8(text) {
                            Ok(t) => t,
                            Err(e) => core::str::from_utf8(
                                text.get(..e.valid_up_to()).unwrap_or_default(),
                            )
                            .unwrap_or(""),
                        };
                        let _ = msg.write_str(valid);
                        Err(k)
                    }
                    b => b,
                };
                self.advs[i] = Some(built?);
                self.prefills += 1;
                i
            }
        };
        self.clock += 1;
        let clock = self.clock;
        let Some(st) = self.advs[slot].as_deref_mut() else {
            return Err(ErrorKind::Invalid);
        };
        st.last_used = clock;
        let n_ev = tok
            .encode(r.event, false, &mut st.scratch, &mut st.ev)
            .map_err(|x| {
                let _ = write!(msg, "event: {x}");
                ErrorKind::Invalid
            })?;
        // Split the answers' tokens (build made the lengths add up).
        let mut answers: [&[u32]; MAX_ANSWERS] = [&[]; MAX_ANSWERS];
        let mut rest = &st.answer_toks[..];
        let mut longest = 0;
        let n_answers = st.n_answers.min(MAX_ANSWERS);
        for (a, &l) in answers.iter_mut().zip(&st.answer_lens).take(n_answers) {
            let (head, tail) = rest.split_at(l.min(rest.len()));
            (*a, rest) = (head, tail);
            longest = longest.max(l);
        }
        // As the user-space advisor: cut the event from the front if long
        // (the suffix stays whole), then the suffix after it.
        let n_suf = st.suffix_toks.len();
        let room = st
            .ctx
            .saturating_sub(st.prefix_tokens + n_suf + longest + 1);
        let from = n_ev.saturating_sub(room);
        // Event tokens are at most its bytes, the suffix's at most its
        // bytes: both fit `ev` (ADVISE_MAX + 2); checked anyway.
        let Some(dst) = st.ev.get_mut(n_ev..n_ev + n_suf) else {
            let _ = write!(msg, "event and suffix too long");
            return Err(ErrorKind::TooBig);
        };
        dst.copy_from_slice(&st.suffix_toks);
        let ev = st.ev.get(from..n_ev + n_suf).unwrap_or_default();
        let mut scores = [0f32; MAX_ANSWERS];
        let best = st
            .adv
            .score(model, ev, &answers[..n_answers], &mut scores, exec)
            .map_err(|x| {
                let _ = write!(msg, "{x}");
                model_kind(&x)
            })?;
        Response::new(
            best,
            ev.len(),
            st.prefix_tokens,
            scores.get(..n_answers).unwrap_or_default(),
        )
        .ok_or_else(|| {
            let _ = write!(msg, "no answers");
            ErrorKind::Invalid
        })
    }
}
