//! Decisions by scoring: after a prompt, which of a small set of answers
//! does the model find most likely?
//!
//! A policy's fixed prompt prefix is run once and stays in the KV cache;
//! each event then costs only its own tokens plus the answers' tokens.

pub mod request;
pub mod response;

use crate::exec::Exec;
use crate::model::{Context, ContextParams, Model, ModelError};

pub struct Advisor {
    pub ctx: Context,
    /// Tokens of the cached prefix (positions 0..prefix_len of the cache).
    prefix_len: usize,
}

/// Most answers a policy may have.
pub const MAX_ANSWERS: usize = 16;

/// Chat formats a GGUF `tokenizer.chat_template` may be written for, by
/// name ("chatml", "inst"); None: neither. The loader's policy templates
/// and the module's /proc/llamux/model (`chat_format:`) both use this.
pub fn chat_format_of(template: &str) -> Option<&'static str> {
    // A window scan, not str::contains: core's substring searcher brings
    // nine bounds-check panic paths into the module's engine object.
    let has = |needle: &str| {
        template
            .as_bytes()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    if has("<|im_start|>") {
        Some("chatml")
    } else if has("[INST]") {
        Some("inst")
    } else {
        None
    }
}

/// Context positions and batch of one policy's advisor, the same in user
/// space and in the module: a plain prompt keeps `ctx` and batches of 32;
/// a chat prompt (its events with their suffix run to ~100 tokens) uses
/// one batch of 128, and its context grows to hold its prefix, suffix and
/// 256 positions of event. `longest`: the longest answer, in tokens.
pub fn layout(
    chat: bool,
    ctx: usize,
    prefix: usize,
    suffix: usize,
    longest: usize,
) -> (usize, usize) {
    let n_batch = longest.max(if chat { 128 } else { 32 });
    let ctx = if chat {
        let need = prefix.saturating_add(suffix).saturating_add(256 + n_batch);
        ctx.max(need.div_ceil(256).saturating_mul(256))
    } else {
        ctx
    };
    (ctx, n_batch)
}

impl Advisor {
    /// `n_batch` must be at least the longest answer.
    pub fn new(model: &Model<'_>, n_ctx: usize, n_batch: usize) -> Result<Self, ModelError> {
        let params = ContextParams {
            n_ctx,
            n_batch,
            logits_all: true,
            ..ContextParams::default()
        };
        Ok(Advisor {
            ctx: Context::new(&model.hp, params)?,
            prefix_len: 0,
        })
    }

    /// Runs the policy's fixed prefix once; every later `score` reuses it.
    pub fn set_prefix(
        &mut self,
        model: &Model<'_>,
        tokens: &[u32],
        exec: &mut dyn Exec,
    ) -> Result<(), ModelError> {
        self.ctx.reset();
        self.prefix_len = 0;
        self.feed(model, tokens, exec)?;
        self.prefix_len = tokens.len();
        Ok(())
    }

    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// Runs the prefix or an event. Only the last position's logits are
    /// read after them: the output matrix (the vocabulary times the width,
    /// ~15% of a 1.5B model's work per token) runs for that row alone.
    fn feed(
        &mut self,
        model: &Model<'_>,
        tokens: &[u32],
        exec: &mut dyn Exec,
    ) -> Result<(), ModelError> {
        self.ctx.params.logits_all = false;
        let mut r = Ok(());
        for chunk in tokens.chunks(self.ctx.params.n_batch) {
            r = self.ctx.forward(model, chunk, exec);
            if r.is_err() {
                break;
            }
        }
        self.ctx.params.logits_all = true;
        r
    }

    /// Scores each answer (its tokens' summed log-probability) after
    /// prefix + `event`, writes them to `scores` and returns the index of
    /// the best (the first on ties). Allocates nothing.
    pub fn score(
        &mut self,
        model: &Model<'_>,
        event: &[u32],
        answers: &[&[u32]],
        scores: &mut [f32],
        exec: &mut dyn Exec,
    ) -> Result<usize, ModelError> {
        let n_vocab = model.hp.n_vocab;
        if answers.is_empty() || answers.len() > MAX_ANSWERS || scores.len() < answers.len() {
            return Err(ModelError::BadKey("advisor answers".into()));
        }
        // The prefix's own last logits are not kept: every event brings at
        // least one token, whose logits the first answer tokens follow.
        if event.is_empty() {
            return Err(ModelError::BadKey("advisor event is empty".into()));
        }
        if let Some(a) = answers
            .iter()
            .find(|a| a.is_empty() || a.len() > self.ctx.params.n_batch)
        {
            return Err(ModelError::BatchTooLarge {
                n_tokens: a.len(),
                n_batch: self.ctx.params.n_batch,
            });
        }
        self.ctx.truncate(self.prefix_len);
        self.feed(model, event, exec)?;
        let base = self.ctx.pos;
        // First answer tokens all follow the event's last position.
        {
            let logits = self.ctx.logits();
            let last = &logits[logits.len() - n_vocab..];
            let lse = log_sum_exp(last);
            for (s, a) in scores.iter_mut().zip(answers) {
                *s = match last.get(a[0] as usize) {
                    Some(&l) => l - lse,
                    None => return Err(ModelError::TokenOutOfRange(a[0])),
                };
            }
        }
        // Later tokens: run the answer (but its last token) once, and read
        // the log-probability of token j+1 from position j.
        for (s, a) in scores.iter_mut().zip(answers) {
            if a.len() < 2 {
                continue;
            }
            self.ctx.truncate(base);
            self.ctx.forward(model, &a[..a.len() - 1], exec)?;
            let logits = self.ctx.logits();
            for (j, &t) in a[1..].iter().enumerate() {
                let row = &logits[j * n_vocab..(j + 1) * n_vocab];
                let l = *row.get(t as usize).ok_or(ModelError::TokenOutOfRange(t))?;
                *s += l - log_sum_exp(row);
            }
        }
        self.ctx.truncate(base);
        let mut best = 0;
        for (i, &s) in scores[..answers.len()].iter().enumerate() {
            if s > scores[best] {
                best = i;
            }
        }
        Ok(best)
    }
}

fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|&v| libm::expf(v - max)).sum();
    max + libm::logf(sum)
}
