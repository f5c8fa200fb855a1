//! The engine as the kernel module hosts it: one model with one generation
//! session and the advisor's prefilled policy contexts, driven request by
//! request (kmod/kengine is only the `extern "C"` layer over this).
//!
//! Errors are an `ErrorKind` (which errno the module returns) plus a
//! message written to the caller's `fmt::Write`. Big parts are boxed and
//! built by `#[inline(never)]` helpers: the kernel stack is 16 KiB, and
//! Tokenizer and Session carry KiB-sized arrays that would otherwise be
//! moved around (and summed up) in one frame.

pub mod advise;
mod info;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt::{self, Write};

use crate::exec::Exec;
use crate::gguf::Gguf;
use crate::model::{ContextParams, KvType, Model, ModelError};
use crate::params::MilliSampling;
use crate::session::{Session, SessionError, Step};
use crate::tokenizer::{Tokenizer, TokenizerError};

pub use advise::{AdviseStats, ADV_MAX_CTX_DEFAULT, ADV_SLOTS_DEFAULT, ADV_SLOTS_MAX};

/// What went wrong, as the module reports it (its errno).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// EINVAL: a malformed input or an engine error.
    Invalid,
    /// ENOMEM.
    OutOfMemory,
    /// E2BIG: a prompt or prefix longer than the context allows.
    TooBig,
    /// ENOSPC: the context filled up during generation.
    NoSpace,
}

pub(crate) fn model_kind(e: &ModelError) -> ErrorKind {
    match e {
        ModelError::OutOfMemory => ErrorKind::OutOfMemory,
        _ => ErrorKind::Invalid,
    }
}

fn session_kind(e: &SessionError) -> ErrorKind {
    match e {
        SessionError::OutOfMemory => ErrorKind::OutOfMemory,
        SessionError::Model(m) => model_kind(m),
        SessionError::PromptTooLong { .. } => ErrorKind::TooBig,
        _ => ErrorKind::Invalid,
    }
}

/// Most tokens one `Host::bench_forward` call takes.
pub const BENCH_MAX_BATCH: usize = 128;

/// Settings of `Host::load`.
#[derive(Clone, Copy, Debug)]
pub struct HostParams {
    /// KV cache positions of the generation session.
    pub n_ctx: usize,
    pub n_batch: usize,
    pub kv_f16: bool,
    /// Longest prompt in bytes (sizes tokenizer scratch).
    pub max_prompt_bytes: usize,
    /// Advisor contexts kept prefilled; 0: ADV_SLOTS_DEFAULT.
    pub advise_slots: usize,
    /// Largest advisor context; 0: ADV_MAX_CTX_DEFAULT.
    pub advise_max_ctx: usize,
    /// The file's Q4_K/Q6_K matrices were repacked (x8 layouts).
    pub repacked: bool,
}

/// A loaded model with its one session and its advisors.
pub struct Host<'a, E: Exec> {
    model: Box<Model<'a>>,
    tok: Box<Tokenizer>,
    /// None only after a failed rebuild (see `prepare`).
    sess: Option<Box<Session>>,
    /// What `sess` was built with.
    ctx_params: ContextParams,
    max_prompt_bytes: usize,
    sess_sampling: MilliSampling,
    /// `sess` was (re)built since the last start: its sampler is new.
    fresh: bool,
    pub exec: E,
    info: String,
    /// Settings of the running request.
    sampling: MilliSampling,
    /// Tokens produced since the last `start`.
    n_generated: u32,
    started: bool,
    advisors: advise::Slots,
}

pub use crate::fallible::try_box;

#[inline(never)]
fn boxed_model<'a>(g: &Gguf<'a>, repacked: bool) -> Result<Box<Model<'a>>, ModelError> {
    let m = if repacked {
        Model::from_repacked_gguf(g)?
    } else {
        Model::from_gguf(g)?
    };
    Ok(try_box(m)?)
}

#[inline(never)]
fn boxed_tokenizer(g: &Gguf<'_>) -> Result<Box<Tokenizer>, TokenizerError> {
    Ok(try_box(Tokenizer::from_gguf(g)?)?)
}

#[inline(never)]
fn boxed_session(
    m: &Model<'_>,
    tok: &Tokenizer,
    cp: ContextParams,
    s: MilliSampling,
    max_prompt_bytes: usize,
) -> Result<Box<Session>, SessionError> {
    Ok(try_box(Session::new(
        m,
        tok,
        cp,
        s.to_sampler(),
        max_prompt_bytes,
    )?)?)
}

impl<'a, E: Exec> Host<'a, E> {
    /// Parses and checks the model in `bytes` and allocates everything a
    /// generation needs (the session is built with the default sampling).
    pub fn load(
        bytes: &'a [u8],
        p: &HostParams,
        exec: E,
        msg: &mut dyn Write,
    ) -> Result<Self, ErrorKind> {
        let g = Gguf::parse(bytes).map_err(|e| {
            let _ = write!(msg, "not a valid GGUF file: {e}");
            ErrorKind::Invalid
        })?;
        let model = boxed_model(&g, p.repacked).map_err(|e| {
            let _ = write!(msg, "{e}");
            model_kind(&e)
        })?;
        let tok = boxed_tokenizer(&g).map_err(|e| {
            let _ = write!(msg, "tokenizer: {e}");
            ErrorKind::Invalid
        })?;
        let cp = ContextParams {
            n_ctx: p.n_ctx.max(1),
            n_batch: p.n_batch.max(1),
            logits_all: false,
            kv_type: if p.kv_f16 { KvType::F16 } else { KvType::F32 },
        };
        let max_prompt_bytes = p.max_prompt_bytes.max(1);
        let sess = boxed_session(&model, &tok, cp, MilliSampling::DEFAULT, max_prompt_bytes)
            .map_err(|e| {
                let _ = write!(msg, "context: {e}");
                session_kind(&e)
            })?;
        let info = info::model_info(&g, &model, &sess, bytes.len()).map_err(|_| {
            let _ = write!(msg, "out of memory");
            ErrorKind::OutOfMemory
        })?;
        Ok(Host {
            model,
            tok,
            sess: Some(sess),
            ctx_params: cp,
            max_prompt_bytes,
            sess_sampling: MilliSampling::DEFAULT,
            fresh: true,
            exec,
            info,
            sampling: MilliSampling::DEFAULT,
            n_generated: 0,
            started: false,
            advisors: advise::Slots::new(p.advise_slots, p.advise_max_ctx),
        })
    }

    /// The model's description ("key: value" lines; see info.rs).
    pub fn info(&self) -> &str {
        &self.info
    }

    /// Makes the session sample with `s`: new settings, and for every
    /// non-greedy request a restart of the random sequence from the seed
    /// (as in `llamux run`), go through `Session::set_sampling`, which
    /// allocates nothing. The session is only built when there is none
    /// (first use, or after a failed build): stack-hungry, so the module
    /// calls this on a fresh stack before `start`.
    #[inline(never)]
    pub fn prepare(&mut self, s: MilliSampling, msg: &mut dyn Write) -> Result<(), ErrorKind> {
        self.sampling = s;
        self.prepare_session().map_err(|e| {
            let _ = write!(msg, "{e}");
            session_kind(&e)
        })
    }

    fn prepare_session(&mut self) -> Result<(), SessionError> {
        if let Some(sess) = self.sess.as_mut() {
            if self.sess_sampling != self.sampling
                || !(self.fresh || self.sampling.temperature_milli == 0)
            {
                sess.set_sampling(self.sampling.to_sampler())?;
                self.sess_sampling = self.sampling;
                self.fresh = true;
            }
            return Ok(());
        }
        self.sess = Some(boxed_session(
            &self.model,
            &self.tok,
            self.ctx_params,
            self.sampling,
            self.max_prompt_bytes,
        )?);
        self.sess_sampling = self.sampling;
        self.fresh = true;
        Ok(())
    }

    /// Tokenizes the prompt and runs it through the model (prefill): the
    /// number of prompt tokens. TooBig: longer than max_prompt_bytes or
    /// the context.
    pub fn start(
        &mut self,
        prompt: &[u8],
        s: MilliSampling,
        msg: &mut dyn Write,
    ) -> Result<usize, ErrorKind> {
        self.started = false;
        self.n_generated = 0;
        self.prepare(s, msg)?;
        self.fresh = false;
        let sess = self.sess.as_mut().ok_or(ErrorKind::Invalid)?;
        let n = sess
            .start(&self.model, &self.tok, prompt, &mut self.exec)
            .map_err(|e| {
                let _ = write!(msg, "{e}");
                session_kind(&e)
            })?;
        self.started = true;
        Ok(n)
    }

    /// Produces one token: Some(id), or None at the end (EOS, full context
    /// or n_predict). NoSpace: the context filled up.
    pub fn step(&mut self) -> Result<Option<u32>, ErrorKind> {
        if !self.started {
            return Err(ErrorKind::Invalid);
        }
        if self.n_generated >= self.sampling.n_predict {
            self.started = false;
            return Ok(None);
        }
        let sess = self.sess.as_mut().ok_or(ErrorKind::Invalid)?;
        match sess.step(&self.model, &self.tok, &mut self.exec) {
            Ok(Step::Token(t)) => {
                self.n_generated += 1;
                Ok(Some(t))
            }
            Ok(Step::End) => {
                self.started = false;
                Ok(None)
            }
            Err(e) => {
                self.started = false;
                Err(match session_kind(&e) {
                    ErrorKind::TooBig => ErrorKind::NoSpace,
                    k => k,
                })
            }
        }
    }

    /// `llamux bench`'s protocol: runs bench tokens `first..first + n`
    /// ([`crate::model::bench_token`]) through the session's context in one
    /// forward call, after forgetting the sequence when `reset`. Ends any
    /// generation (the next one starts with `start`).
    pub fn bench_forward(&mut self, first: usize, n: usize, reset: bool) -> Result<(), ErrorKind> {
        self.started = false;
        self.prepare_session().map_err(|e| session_kind(&e))?;
        let sess = self.sess.as_mut().ok_or(ErrorKind::Invalid)?;
        let n_vocab = self.model.hp.n_vocab;
        let mut ids = [0u32; BENCH_MAX_BATCH];
        let ids = ids.get_mut(..n).ok_or(ErrorKind::TooBig)?;
        for (k, t) in ids.iter_mut().enumerate() {
            *t = crate::model::bench_token(first.saturating_add(k), n_vocab);
        }
        if reset {
            sess.ctx.reset();
        }
        sess.ctx
            .forward(&self.model, ids, &mut self.exec)
            .map_err(|e| model_kind(&e))
    }

    /// The text of token `t`.
    pub fn piece(&self, t: u32) -> &[u8] {
        self.tok.token_piece(t)
    }

    /// Scores an advise request record (advise::request) with the LRU of
    /// prefilled policy contexts; see advise.rs. `mem_available` says how
    /// many bytes a new context may take.
    pub fn advise(
        &mut self,
        req: &[u8],
        mem_available: &mut dyn FnMut() -> u64,
        msg: &mut dyn Write,
    ) -> Result<crate::advise::response::Response, ErrorKind> {
        self.advisors.advise(
            &self.model,
            &self.tok,
            &mut self.exec,
            req,
            mem_available,
            msg,
        )
    }

    /// The advisor's counters.
    pub fn advise_stats(&self) -> AdviseStats {
        self.advisors.stats()
    }
}

/// Formats into a fixed buffer, dropping what does not fit.
pub struct FixedBuf<'b> {
    pub buf: &'b mut [u8],
    pub len: usize,
}

impl Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncates at the end of the buffer; get() keeps it panic-free.
        let rest = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = s.len().min(rest.len());
        if let (Some(dst), Some(src)) = (rest.get_mut(..n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}
