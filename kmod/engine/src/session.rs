//! A generation session: prompt in, tokens out, one step at a time.
//!
//! The step granularity is what both homes need: `llamux run` streams each
//! token to stdout, the module streams it to a /proc reader and can stop
//! between steps (signals, unload). Every buffer is allocated in `new`.

use alloc::vec::Vec;
use core::fmt;

use crate::exec::Exec;
use crate::fallible;
use crate::model::{Context, ContextParams, Model, ModelError};
use crate::sample::{SampleError, Sampler, SamplerParams};
use crate::tokenizer::{Tokenizer, TokenizerError, TokenizerScratch};

#[derive(Debug)]
pub enum SessionError {
    Model(ModelError),
    Tokenizer(TokenizerError),
    Sample(SampleError),
    /// The prompt tokenizes to more tokens than the context holds.
    PromptTooLong {
        n_ctx: usize,
    },
    EmptyPrompt,
    OutOfMemory,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Model(e) => write!(f, "{e}"),
            SessionError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            SessionError::Sample(e) => write!(f, "sampler: {e}"),
            SessionError::PromptTooLong { n_ctx } => {
                write!(f, "prompt does not fit in the context ({n_ctx} tokens)")
            }
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

/// The instruction template of a model architecture: the text before and
/// after the user's prompt (CodeLlama-Instruct's `[INST] ... [/INST]`, BOS
/// added by the vocabulary; Qwen2's ChatML). Its special tokens are parsed,
/// the user's text is not ([`Session::start_instruct`]).
pub fn instruct_template(arch: &str) -> (&'static str, &'static str) {
    match arch {
        "qwen2" => ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
        _ => ("[INST] ", " [/INST]"),
    }
}

/// Bytes the longest template adds to a prompt.
pub const INSTRUCT_TEMPLATE_MAX: usize = 64;

/// How special-token texts ("<s>", "<|im_end|>") in a prompt are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Specials {
    /// As plain text (llama.cpp's `parse_special = false`).
    Plain,
    /// As the control tokens they name (llama.cpp's default for prompts).
    Parse,
}

pub struct Session {
    pub ctx: Context,
    sampler: Sampler,
    scratch: TokenizerScratch,
    /// Template plus user text of `start_instruct`; capacity fixed in `new`.
    text: Vec<u8>,
    /// Prompt and generated tokens; capacity n_ctx + 1, never grown.
    tokens: Vec<u32>,
    n_prompt: usize,
    /// Sampled but not yet run through the model.
    pending: Option<u32>,
}

impl Session {
    /// `max_prompt_bytes` sizes the tokenizer's scratch (plus room for an
    /// instruction template).
    pub fn new(
        model: &Model<'_>,
        tok: &Tokenizer,
        params: ContextParams,
        sampling: SamplerParams,
        max_prompt_bytes: usize,
    ) -> Result<Self, SessionError> {
        let ctx = Context::new(&model.hp, params)?;
        let tokens = fallible::with_capacity(params.n_ctx + 1)?;
        let text_cap = max_prompt_bytes
            .checked_add(INSTRUCT_TEMPLATE_MAX)
            .ok_or(SessionError::OutOfMemory)?;
        let text = fallible::with_capacity(text_cap)?;
        Ok(Session {
            ctx,
            sampler: Sampler::new(sampling, model.hp.n_vocab)?,
            scratch: tok.scratch(text_cap)?,
            text,
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
    /// Returns the number of prompt tokens. Special tokens written in the
    /// prompt (ChatML's <|im_start|>) are parsed, as llama.cpp does for
    /// prompts: [`start_with`](Self::start_with) chooses.
    pub fn start(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        prompt: &[u8],
        exec: &mut dyn Exec,
    ) -> Result<usize, SessionError> {
        self.start_with(model, tok, prompt, Specials::Parse, exec)
    }

    /// [`start`](Self::start) with special-token texts in `prompt` read as
    /// `specials` says.
    pub fn start_with(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        prompt: &[u8],
        specials: Specials,
        exec: &mut dyn Exec,
    ) -> Result<usize, SessionError> {
        let plain = match specials {
            Specials::Plain => 0..prompt.len(),
            Specials::Parse => 0..0,
        };
        self.start_range(model, tok, plain, exec, prompt)
    }

    /// `user` inside the model's [`instruct_template`]: the template's
    /// special tokens are parsed, special-token texts in `user` are plain
    /// text unless `specials` is [`Specials::Parse`] (llama.cpp's chat,
    /// which parses them everywhere). No allocation: the text is put
    /// together in a buffer made by `new`.
    pub fn start_instruct(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        user: &[u8],
        specials: Specials,
        exec: &mut dyn Exec,
    ) -> Result<usize, SessionError> {
        let (pre, post) = instruct_template(&model.hp.arch);
        let len = pre.len() + user.len() + post.len();
        if len > self.text.capacity() {
            return Err(SessionError::Tokenizer(TokenizerError::TextTooLong {
                len,
                max: self.text.capacity(),
            }));
        }
        let mut text = core::mem::take(&mut self.text);
        text.clear();
        text.extend_from_slice(pre.as_bytes());
        text.extend_from_slice(user);
        text.extend_from_slice(post.as_bytes());
        let plain = match specials {
            Specials::Plain => pre.len()..pre.len() + user.len(),
            Specials::Parse => 0..0,
        };
        let r = self.start_range(model, tok, plain, exec, &text);
        self.text = text;
        r
    }

    fn start_range(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        plain: core::ops::Range<usize>,
        exec: &mut dyn Exec,
        prompt: &[u8],
    ) -> Result<usize, SessionError> {
        self.ctx.reset();
        self.pending = None;
        self.tokens.clear();
        let cap = self.tokens.capacity() - 1;
        self.tokens.resize(cap, 0);
        let n =
            match tok.encode_with_plain(prompt, true, plain, &mut self.scratch, &mut self.tokens) {
                Ok(n) => n,
                Err(TokenizerError::OutputTooSmall { .. }) => {
                    self.tokens.clear();
                    return Err(SessionError::PromptTooLong {
                        n_ctx: self.ctx.params.n_ctx,
                    });
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
    fn prefill(
        &mut self,
        model: &Model<'_>,
        from: usize,
        exec: &mut dyn Exec,
    ) -> Result<(), SessionError> {
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
    pub fn step(
        &mut self,
        model: &Model<'_>,
        tok: &Tokenizer,
        exec: &mut dyn Exec,
    ) -> Result<Step, SessionError> {
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
