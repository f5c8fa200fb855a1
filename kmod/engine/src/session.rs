//! A generation session: prompt in, tokens out, one step at a time.
//!
//! The step granularity is what both homes need: `llamux run` streams each
//! token to stdout, the module streams it to a /proc reader and can stop
//! between steps (signals, unload). Every buffer is allocated in `new`.

use alloc::vec::Vec;
use core::fmt;

use crate::exec::Exec;
use crate::model::{Context, ContextParams, Model, ModelError};
use crate::sample::{SampleError, Sampler, SamplerParams};
use crate::tokenizer::{Tokenizer, TokenizerError, TokenizerScratch};

#[derive(Debug)]
pub enum SessionError {
    Model(ModelError),
    Tokenizer(TokenizerError),
    Sample(SampleError),
    /// The prompt tokenizes to more tokens than the context holds.
    PromptTooLong { n_ctx: usize },
    EmptyPrompt,
    OutOfMemory,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Model(e) => write!(f, "{e}"),
            SessionError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            SessionError::Sample(e) => write!(f, "sampler: {e}"),
            SessionError::PromptTooLong { n_ctx } => write!(f, "prompt does not fit in the context ({n_ctx} tokens)"),
            SessionError::EmptyPrompt => write!(f, "empty prompt"),
            SessionError::OutOfMemory => write!(f, "out of memory"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SessionError {}

impl From<ModelError> for SessionError {
    fn from(e: ModelError) -> Self {
        SessionError::Model(e)
    }
}

impl From<SampleError> for SessionError {
    fn from(e: SampleError) -> Self {
        SessionError::Sample(e)
    }
}

impl From<TokenizerError> for SessionError {
    fn from(e: TokenizerError) -> Self {
        SessionError::Tokenizer(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Token(u32),
    /// End of sequence, or the context is full.
    End,
}

pub struct Session {
    pub ctx: Context,
    sampler: Sampler,
    scratch: TokenizerScratch,
    /// Prompt and generated tokens; capacity n_ctx + 1, never grown.
    tokens: Vec<u32>,
    n_prompt: usize,
    /// Sampled but not yet run through the model.
    pending: Option<u32>,
}

impl Session {
    /// `max_prompt_bytes` sizes the tokenizer's scratch.
    pub fn new(
        model: &Model<'_>,
        tok: &Tokenizer,
        params: ContextParams,
        sampling: SamplerParams,
        max_prompt_bytes: usize,
    ) -> Result<Self, SessionError> {
        let ctx = Context::new(&model.hp, params)?;
        let mut tokens = Vec::new();
        tokens.try_reserve_exact(params.n_ctx + 1).map_err(|_| SessionError::OutOfMemory)?;
        Ok(Session {
            ctx,
            sampler: Sampler::new(sampling, model.hp.n_vocab)?,
            scratch: tok.scratch(max_prompt_bytes)?,
            tokens,
            n_prompt: 0,
            pending: None,
        })
    }

    /// New sampling parameters for the next prompt (no allocation; the
    /// random sequence restarts from the new seed).
    pub fn set_sampling(&mut self, p: SamplerParams) -> Result<(), SessionError> {
        Ok(self.sampler.set_params(p)?)
    }

    /// Tokenizes `prompt` and runs it through the model, in batches.
    /// Returns the number of prompt tokens.
    pub fn start(&mut self, model: &Model<'_>, tok: &Tokenizer, prompt: &[u8], exec: &mut dyn Exec) -> Result<usize, SessionError> {
        self.ctx.reset();
        self.pending = None;
        self.tokens.clear();
        let cap = self.tokens.capacity() - 1;
        self.tokens.resize(cap, 0);
        // Special tokens written in the prompt (ChatML's <|im_start|>) are
        // parsed, as llama.cpp does for prompts.
        let n = match tok.encode_with(prompt, true, true, &mut self.scratch, &mut self.tokens) {
            Ok(n) => n,
            Err(TokenizerError::OutputTooSmall { .. }) => {
                self.tokens.clear();
                return Err(SessionError::PromptTooLong { n_ctx: self.ctx.params.n_ctx });
            }
            Err(e) => {
                self.tokens.clear();
                return Err(e.into());
            }
        };
        self.tokens.truncate(n);
        if n == 0 {
            return Err(SessionError::EmptyPrompt);
        }
        self.n_prompt = n;
        self.prefill(model, 0, exec)?;
        Ok(n)
    }

    /// Runs tokens[from..] through the model in batches.
    fn prefill(&mut self, model: &Model<'_>, from: usize, exec: &mut dyn Exec) -> Result<(), SessionError> {
        let b = self.ctx.params.n_batch;
        let mut i = from;
        while i < self.tokens.len() {
            let end = (i + b).min(self.tokens.len());
            self.ctx.forward(model, &self.tokens[i..end], exec)?;
            i = end;
        }
        Ok(())
    }

    /// Produces the next token: runs the previous one through the model
    /// (if any), then samples.
    pub fn step(&mut self, model: &Model<'_>, tok: &Tokenizer, exec: &mut dyn Exec) -> Result<Step, SessionError> {
        if let Some(t) = self.pending.take() {
            if self.ctx.pos >= self.ctx.params.n_ctx {
                return Ok(Step::End);
            }
            self.ctx.forward(model, &[t], exec)?;
        }
        if self.tokens.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        let logits = self.ctx.logits();
        let n_vocab = model.hp.n_vocab;
        let last = &logits[logits.len() - n_vocab..];
        let t = self.sampler.sample(last, &self.tokens)?;
        if tok.is_eog(t) || self.tokens.len() >= self.tokens.capacity() {
            return Ok(Step::End);
        }
        self.tokens.push(t);
        self.pending = Some(t);
        Ok(Step::Token(t))
    }

    pub fn prompt_tokens(&self) -> &[u32] {
        &self.tokens[..self.n_prompt]
    }

    pub fn generated_tokens(&self) -> &[u32] {
        &self.tokens[self.n_prompt..]
    }
}
