//! The kernel module's engine as advisor, through /proc/llamux/advise.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use llamux::policy_template::{self as pt, Format};
use llamux_engine::advise::request::REQ_CHAT;
use serde_json::{Map, Value};

use crate::policy::Policy;

use super::{build, forced_plain, Advice, Advise};

/// Where the kernel module's advisor interface lives.
pub const KERNEL_ADVISE: &str = "/proc/llamux/advise";

/// The request record of /proc/llamux/advise
/// (llamux_engine::advise::request) for a prompt built in some format:
/// the engine in the module tokenizes and scores exactly as `UserAdvisor`
/// does with the same `ctx` (a chat format's prefix and suffix with
/// control tokens, the event never).
pub fn kernel_request(ctx: usize, built: &pt::Built, event: &str) -> Vec<u8> {
    let answers: Vec<&[u8]> = built.answers.iter().map(|a| a.as_bytes()).collect();
    let flags = if built.format == Format::Plain {
        0
    } else {
        REQ_CHAT
    };
    llamux_engine::advise::request::encode(
        ctx,
        flags,
        built.prefix.as_bytes(),
        event.as_bytes(),
        built.suffix.as_bytes(),
        &answers,
    )
}

/// The module's model's chat format, from /proc/llamux/model's
/// `chat_format:` line (None: no chat template, or no such line).
pub fn kernel_chat_format(model_info: &str) -> Option<Format> {
    model_info
        .lines()
        .find_map(|l| l.strip_prefix("chat_format: "))
        .and_then(|f| Format::from_name(f.trim()))
        .filter(|&f| f != Format::Plain)
}

/// Parses a response record (llamux_engine::advise::response, the type
/// the engine in the kernel writes it with): best, event tokens, prefix
/// tokens, scores.
pub fn kernel_response(
    text: &str,
    n_answers: usize,
) -> anyhow::Result<(usize, usize, usize, Vec<f32>)> {
    let bad = || anyhow!("malformed advise response {text:?}");
    let r = llamux_engine::advise::response::Response::parse(text.as_bytes()).ok_or_else(bad)?;
    if r.scores().len() != n_answers {
        return Err(bad());
    }
    Ok((r.best, r.event_tokens, r.prefix_tokens, r.scores().to_vec()))
}

/// True when the module is loaded with a model and offers the advisor.
pub fn kernel_available() -> bool {
    Path::new(KERNEL_ADVISE).exists()
        && std::fs::read_to_string("/proc/llamux/model")
            .map(|m| !m.starts_with("none"))
            .unwrap_or(false)
}

/// The kernel module's engine as advisor, through /proc/llamux/advise.
pub struct KernelAdvisor {
    ctx: usize,
    /// Each policy's prompt texts, in the format the module's model takes.
    policies: Vec<pt::Built>,
    /// The module's model's chat format.
    chat: Option<Format>,
}

impl KernelAdvisor {
    /// Asks the module's model for its chat format (/proc/llamux/model).
    pub fn new(ctx: usize) -> Self {
        let info = std::fs::read_to_string("/proc/llamux/model").unwrap_or_default();
        Self::with_chat_format(ctx, kernel_chat_format(&info))
    }

    pub fn with_chat_format(ctx: usize, chat: Option<Format>) -> Self {
        KernelAdvisor {
            ctx,
            policies: Vec::new(),
            chat,
        }
    }
}

impl Advise for KernelAdvisor {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn add_policy(&mut self, p: &Policy) -> anyhow::Result<usize> {
        let format = forced_plain(pt::resolve_format(p.chat.as_ref(), self.chat));
        self.policies.push(build(p, format)?);
        Ok(self.policies.len() - 1)
    }

    /// Rendered with the same template as in user space: the module takes
    /// chat prompts too (REQ_CHAT).
    fn advise_event(
        &mut self,
        policy: usize,
        event: &Map<String, Value>,
    ) -> anyhow::Result<(String, Advice)> {
        let b = self.policies.get(policy).context("no such policy")?;
        let text = pt::render(&b.event, event).map_err(anyhow::Error::msg)?;
        let a = self.advise(policy, &text)?;
        Ok((text, a))
    }

    fn format(&self, policy: usize) -> Format {
        self.policies
            .get(policy)
            .map_or(Format::Plain, |b| b.format)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> anyhow::Result<Advice> {
        use std::io::{Read, Write};
        let t0 = Instant::now();
        let built = self.policies.get(policy).context("no such policy")?;
        let n_answers = built.answers.len();
        let req = kernel_request(self.ctx, built, event_text);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(KERNEL_ADVISE)
            .map_err(|e| anyhow!("{KERNEL_ADVISE}: {e}"))?;
        let n = f
            .write(&req)
            .map_err(|e| anyhow!("{KERNEL_ADVISE}: write: {e}"))?;
        if n != req.len() {
            bail!("{KERNEL_ADVISE}: short write ({n} of {})", req.len());
        }
        let mut resp = String::new();
        f.read_to_string(&mut resp)
            .map_err(|e| anyhow!("{KERNEL_ADVISE}: read: {e}"))?;
        let (_best, event_tokens, prefix_tokens, scores) = kernel_response(&resp, n_answers)?;
        Ok(Advice {
            scores,
            latency_us: t0.elapsed().as_micros() as u64,
            event_tokens,
            prefix_tokens,
        })
    }
}
