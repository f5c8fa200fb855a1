//! The user-space engine as advisor.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use llamux::policy_template::{self as pt, Format};
use llamux_engine::advise::{layout, Advisor};
use serde_json::{Map, Value};

use crate::engine_cmds::{self, Loaded};
use crate::policy::Policy;
use crate::pool::Pool;

use super::{build, forced_plain, Advice, Advise};

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

pub(super) fn encode(l: &Loaded, text: &str, bos: bool) -> anyhow::Result<Vec<u32>> {
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
