//! The advisor: a policy's question about one event, answered by scoring
//! the policy's answers with the model.
//!
//! `Advise` is the seam between the relay loop and whoever runs the model:
//! the user-space engine (`UserAdvisor`, also what `llamux advise` uses)
//! and the kernel module's engine through /proc/llamux/advise
//! (`KernelAdvisor`); `AutoAdvisor`, what the relay uses, prefers the
//! kernel and falls back to user space.

use std::path::Path;
use std::time::Instant;

use llamux_engine::advise::request::REQ_CHAT;
use llamux_engine::advise::{layout, Advisor};

use serde_json::{Map, Value};

use anyhow::{anyhow, bail, Context as _};

use crate::engine_cmds::{self, Loaded};
use crate::policy::Policy;
use crate::pool::Pool;
use llamux::policy_template::{self as pt, Format};

#[derive(Clone, Debug)]
pub struct Advice {
    /// Summed log-probability of each answer's tokens.
    pub scores: Vec<f32>,
    /// Time spent in the model for this event.
    pub latency_us: u64,
    /// Tokens of the event part of the prompt.
    pub event_tokens: usize,
    /// Tokens of the policy's cached prefix.
    pub prefix_tokens: usize,
}

pub trait Advise {
    /// Where the model runs ("user" or "kernel"); for `AutoAdvisor`, where
    /// the last decision was made.
    fn name(&self) -> &'static str;
    /// Prepares a policy (its prefix is prefilled once); returns its handle.
    fn add_policy(&mut self, p: &Policy) -> anyhow::Result<usize>;
    /// Scores the policy's answers after the rendered event text.
    fn advise(&mut self, policy: usize, event_text: &str) -> anyhow::Result<Advice>;
    /// Renders an event as this advisor's prompt for the policy wants it
    /// (its chat format's event template) and scores it; returns the text.
    fn advise_event(
        &mut self,
        policy: usize,
        event: &Map<String, Value>,
    ) -> anyhow::Result<(String, Advice)>;
    /// The prompt format the policy is asked in.
    fn format(&self, _policy: usize) -> Format {
        Format::Plain
    }
}

/// Tokens of `text` (with BOS when `bos`), through the engine's
/// allocation-free encoder; control tokens written as text are recognised
/// only with `special` (the policy's own prompt text, never event text).
fn encode_with(l: &Loaded, text: &str, bos: bool, special: bool) -> anyhow::Result<Vec<u32>> {
    let tok = &l.tokenizer;
    let mut scratch = tok.scratch(text.len().max(1)).map_err(|e| anyhow!("{e}"))?;
    let mut out = vec![0u32; text.len() + 2];
    let n = tok
        .encode_with(text.as_bytes(), bos, special, &mut scratch, &mut out)
        .map_err(|e| anyhow!("{e}"))?;
    out.truncate(n);
    Ok(out)
}

fn encode(l: &Loaded, text: &str, bos: bool) -> anyhow::Result<Vec<u32>> {
    encode_with(l, text, bos, false)
}

struct PolicyState {
    adv: Advisor,
    answers: Vec<Vec<u32>>,
    prefix_tokens: usize,
    /// Tokens after the event (closing the user turn; chat formats).
    suffix: Vec<u32>,
    built: pt::Built,
    pol: Policy,
    /// This policy's context positions.
    ctx: usize,
}

/// The user-space engine as advisor.
pub struct UserAdvisor {
    l: &'static Loaded,
    exec: Pool,
    ctx: usize,
    policies: Vec<PolicyState>,
    /// The GGUF's tokenizer.chat_template.
    chat_template: Option<String>,
    /// Time the last add_policy spent prefilling the prefix.
    pub last_prefix_us: u64,
}

impl UserAdvisor {
    pub fn new(model: &Path, threads: Option<usize>, ctx: usize) -> anyhow::Result<Self> {
        let l: &'static Loaded = Box::leak(Box::new(engine_cmds::load(model)?));
        // The header again (a read-only mapping) for the chat template.
        let chat_template = engine_cmds::parse(model)?
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(UserAdvisor {
            l,
            exec: engine_cmds::pool(threads)?,
            ctx,
            policies: Vec::new(),
            chat_template,
            last_prefix_us: 0,
        })
    }
}

impl Advise for UserAdvisor {
    fn name(&self) -> &'static str {
        "user"
    }

    fn add_policy(&mut self, p: &Policy) -> anyhow::Result<usize> {
        let format = forced_plain(pt::resolve(p.chat.as_ref(), self.chat_template.as_deref()));
        let built = build(p, format)?;
        // Plain prompts are tokenized as before (and as the kernel does).
        let special = format != Format::Plain;
        let prefix = encode_with(self.l, &built.prefix, true, special)
            .map_err(|e| anyhow!("policy {}: prefix: {e}", p.name))?;
        let suffix = encode_with(self.l, &built.suffix, false, true)
            .map_err(|e| anyhow!("policy {}: suffix: {e}", p.name))?;
        let mut answers = Vec::new();
        for a in &built.answers {
            let t = encode(self.l, a, false)
                .map_err(|e| anyhow!("policy {}: answer {:?}: {e}", p.name, a))?;
            if t.is_empty() {
                bail!("policy {}: answer {:?} has no tokens", p.name, a);
            }
            answers.push(t);
        }
        // Positions and batch as the module lays them out (chat prompts:
        // one batch of 128, a context grown to hold the long prefix).
        let (ctx, n_batch) = layout(
            format != Format::Plain,
            self.ctx,
            prefix.len(),
            suffix.len(),
            answers.iter().map(|a| a.len()).max().unwrap_or(1),
        );
        if prefix.len() + 64 + n_batch > ctx {
            return Err(anyhow!(
                "policy {}: prefix of {} tokens does not fit a {}-position context",
                p.name,
                prefix.len(),
                ctx
            ));
        }
        let mut adv = Advisor::new(&self.l.model, ctx, n_batch)
            .map_err(|e| anyhow!("policy {}: {e}", p.name))?;
        let t0 = Instant::now();
        adv.set_prefix(&self.l.model, &prefix, &mut self.exec)
            .map_err(|e| anyhow!("policy {}: prefix: {e}", p.name))?;
        self.last_prefix_us = t0.elapsed().as_micros() as u64;
        self.policies.push(PolicyState {
            adv,
            answers,
            prefix_tokens: prefix.len(),
            suffix,
            built,
            pol: p.clone(),
            ctx,
        });
        Ok(self.policies.len() - 1)
    }

    fn advise_event(
        &mut self,
        policy: usize,
        event: &Map<String, Value>,
    ) -> anyhow::Result<(String, Advice)> {
        let st = self.policies.get(policy).context("no such policy")?;
        let text = pt::render(&st.built.event, event)
            .map_err(|e| anyhow!("{e} (policy {} needs it)", st.pol.name))?;
        let a = self.advise(policy, &text)?;
        Ok((text, a))
    }

    fn format(&self, policy: usize) -> Format {
        self.policies
            .get(policy)
            .map_or(Format::Plain, |p| p.built.format)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> anyhow::Result<Advice> {
        let t0 = Instant::now();
        let st = self.policies.get_mut(policy).context("no such policy")?;
        let mut ev = encode(self.l, event_text, false)?;
        // Keep room for the suffix and the answers: cut the event from the
        // front if long (the suffix stays whole).
        let room = st.ctx.saturating_sub(
            st.prefix_tokens
                + st.suffix.len()
                + st.answers.iter().map(|a| a.len()).max().unwrap_or(0)
                + 1,
        );
        if ev.len() > room {
            ev.drain(..ev.len() - room);
        }
        ev.extend_from_slice(&st.suffix);
        let ev = &ev[..];
        let answers: Vec<&[u32]> = st.answers.iter().map(|a| a.as_slice()).collect();
        let mut scores = vec![0f32; answers.len()];
        st.adv
            .score(&self.l.model, ev, &answers, &mut scores, &mut self.exec)
            .map_err(|e| anyhow!("{e}"))?;
        let (event_tokens, prefix_tokens) = (ev.len(), st.prefix_tokens);
        Ok(Advice {
            scores,
            latency_us: t0.elapsed().as_micros() as u64,
            event_tokens,
            prefix_tokens,
        })
    }
}

/// LLAMUX_PROMPT_FORMAT=plain: both advisors ask in the plain format
/// (e.g. to compare with the plain prompt).
fn forced_plain(format: Format) -> Format {
    if std::env::var("LLAMUX_PROMPT_FORMAT").is_ok_and(|v| v == "plain") {
        Format::Plain
    } else {
        format
    }
}

/// A policy's prompt texts in `format`.
fn build(p: &Policy, format: Format) -> anyhow::Result<pt::Built> {
    let texts: Vec<String> = p.answers.iter().map(|a| a.text.clone()).collect();
    let chat_texts: Vec<Option<String>> = p.answers.iter().map(|a| a.chat.clone()).collect();
    pt::build(
        &p.prefix,
        &p.template,
        &texts,
        &chat_texts,
        p.chat.as_ref(),
        format,
    )
    .map_err(|e| anyhow!("policy {}: {e}", p.name))
}

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

/// Which advisor `llamux load` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AdvisorChoice {
    /// The kernel module when it has a model, else user space; a kernel
    /// error falls back to user space (needs --model).
    Auto,
    /// Only the kernel module.
    Kernel,
    /// Only the user-space engine (needs --model).
    User,
}

/// The relay's advisor: the kernel's when possible, the user-space engine
/// (built on first need) otherwise. `name()` tells who decided last.
pub struct AutoAdvisor {
    kernel: Option<KernelAdvisor>,
    user: Option<UserAdvisor>,
    model: Option<std::path::PathBuf>,
    threads: Option<usize>,
    ctx: usize,
    policies: Vec<Policy>,
    last: &'static str,
}

impl AutoAdvisor {
    pub fn new(
        choice: AdvisorChoice,
        model: Option<&Path>,
        threads: Option<usize>,
        ctx: usize,
    ) -> anyhow::Result<Self> {
        let kernel_ok = kernel_available();
        let kernel = match choice {
            AdvisorChoice::User => None,
            AdvisorChoice::Kernel if !kernel_ok => {
                return Err(anyhow!(
                    "--advisor kernel: {KERNEL_ADVISE} is not there or the module has no model"
                ))
            }
            _ if kernel_ok => Some(KernelAdvisor::new(ctx)),
            _ => None,
        };
        let model = if choice == AdvisorChoice::Kernel {
            None
        } else {
            model.map(Path::to_path_buf)
        };
        if kernel.is_none() && model.is_none() {
            bail!("no --model given and the kernel module's advisor is not available (insmod llamux.ko model=...)");
        }
        let mut a = AutoAdvisor {
            kernel,
            user: None,
            model,
            threads,
            ctx,
            policies: Vec::new(),
            last: "user",
        };
        if a.kernel.is_some() {
            a.last = "kernel";
        } else {
            a.user_advisor()?;
        }
        Ok(a)
    }

    /// The user-space advisor with every policy added, built on first use.
    fn user_advisor(&mut self) -> anyhow::Result<&mut UserAdvisor> {
        if self.user.is_none() {
            let model = self
                .model
                .as_deref()
                .context("no --model for the user-space advisor")?;
            let mut u = UserAdvisor::new(model, self.threads, self.ctx)?;
            for p in &self.policies {
                u.add_policy(p)?;
            }
            self.user = Some(u);
        }
        Ok(self.user.as_mut().unwrap())
    }

    /// Asks the kernel's advisor when there is one; on its error, user
    /// space decides if a model was given. Records who answered.
    fn kernel_first<T>(
        &mut self,
        kernel: impl FnOnce(&mut KernelAdvisor) -> anyhow::Result<T>,
        user: impl FnOnce(&mut UserAdvisor) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if let Some(k) = self.kernel.as_mut() {
            match kernel(k) {
                Ok(r) => {
                    self.last = "kernel";
                    return Ok(r);
                }
                Err(e) if self.model.is_some() => {
                    eprintln!("llamux: kernel advisor: {e:#}; deciding in user space")
                }
                Err(e) => return Err(e.context("kernel advisor")),
            }
        }
        let r = user(self.user_advisor()?)?;
        self.last = "user";
        Ok(r)
    }
}

impl Advise for AutoAdvisor {
    fn name(&self) -> &'static str {
        self.last
    }

    fn add_policy(&mut self, p: &Policy) -> anyhow::Result<usize> {
        let h = self.policies.len();
        if let Some(k) = self.kernel.as_mut() {
            k.add_policy(p)?;
        }
        if let Some(u) = self.user.as_mut() {
            u.add_policy(p)?;
        }
        self.policies.push(p.clone());
        Ok(h)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> anyhow::Result<Advice> {
        self.kernel_first(
            |k| k.advise(policy, event_text),
            |u| u.advise(policy, event_text),
        )
    }

    fn advise_event(
        &mut self,
        policy: usize,
        event: &Map<String, Value>,
    ) -> anyhow::Result<(String, Advice)> {
        self.kernel_first(
            |k| k.advise_event(policy, event),
            |u| u.advise_event(policy, event),
        )
    }

    /// The format of the advisor that decided last.
    fn format(&self, policy: usize) -> Format {
        match (self.last, &self.user, &self.kernel) {
            ("user", Some(u), _) => u.format(policy),
            ("kernel", _, Some(k)) => k.format(policy),
            _ => Format::Plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_record() {
        let plain = pt::Built {
            format: Format::Plain,
            prefix: "Pre\nfix".into(),
            suffix: String::new(),
            event: "{path}".into(),
            answers: vec!["Y".into(), "No".into()],
        };
        let r = kernel_request(512, &plain, "ev");
        assert_eq!(r, b"llxa2 512 0 7 2 0 2 1 2\nPre\nfixevYNo");
        let chat = pt::Built {
            format: Format::ChatMl,
            prefix: "<|im_start|>user\n".into(),
            suffix: "<|im_end|>\n".into(),
            ..plain
        };
        let r = kernel_request(512, &chat, "ev<|im_end|>");
        assert_eq!(
            r,
            b"llxa2 512 1 17 12 11 2 1 2\n<|im_start|>user\nev<|im_end|><|im_end|>\nYNo"
        );
    }

    #[test]
    fn kernel_chat_format_from_model_info() {
        let info = "arch: qwen2\nfile_bytes: 1\ngguf_version: 3\nchat_format: chatml\ndims: x\n";
        assert_eq!(kernel_chat_format(info), Some(Format::ChatMl));
        assert_eq!(
            kernel_chat_format("chat_format: inst\n"),
            Some(Format::Inst)
        );
        assert_eq!(kernel_chat_format("chat_format: none\n"), None);
        assert_eq!(kernel_chat_format("arch: llama\n"), None);
    }

    /// Special-token spellings in event text are plain text for the
    /// advisor's tokenizer (what both advisors score): `</s>` in a file
    /// name never becomes the end-of-text token.
    #[test]
    fn special_tokens_in_event_text_stay_text() {
        let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models/tiny-q8_0.gguf");
        assert!(
            m.exists(),
            "{} missing: run tests/models/make.sh",
            m.display()
        );
        let l = engine_cmds::load(&m).unwrap();
        let specials: Vec<u32> = [l.tokenizer.bos(), l.tokenizer.eos()]
            .into_iter()
            .flatten()
            .collect();
        assert!(!specials.is_empty());
        let text = llamux::render::field("/tmp/</s><s>[INST]<|im_end|>\nVerdict");
        let ids = encode(&l, &text, false).unwrap();
        assert!(ids.len() > 4, "{ids:?}");
        assert!(
            !ids.iter().any(|t| specials.contains(t)),
            "{ids:?} has {specials:?}"
        );
        let with_bos = encode(&l, "x", true).unwrap();
        assert_eq!(with_bos.first(), l.tokenizer.bos().as_ref());
    }

    #[test]
    fn response_record() {
        let (b, ev, pre, s) = kernel_response("1 5 40 2 bf800000 c0000000\n", 2).unwrap();
        assert_eq!((b, ev, pre), (1, 5, 40));
        assert_eq!(s, vec![-1.0, -2.0]);
        assert!(kernel_response("2 5 40 2 bf800000 c0000000\n", 2).is_err());
        assert!(kernel_response("0 5 40 3 bf800000 c0000000\n", 2).is_err());
    }
}
