//! The advisor: a policy's question about one event, answered by scoring
//! the policy's answers with the model.
//!
//! `Advise` is the seam between the relay loop and whoever runs the model:
//! today the user-space engine (`UserAdvisor`, also what `llamux advise`
//! uses); the kernel module's advisor interface plugs in behind the same
//! trait once it exists.

use std::path::Path;
use std::time::Instant;

use llamux_engine::advise::Advisor;

use crate::engine_cmds::{self, Loaded};
use crate::policy::Policy;
use crate::pool::Pool;

#[derive(Clone, Debug)]
pub struct Advice {
    pub answer: usize,
    /// Summed log-probability of each answer's tokens.
    pub scores: Vec<f32>,
    /// Time spent in the model for this event.
    pub latency_us: u64,
    /// Tokens of the event part of the prompt.
    pub event_tokens: usize,
}

pub trait Advise {
    /// Where the model runs ("user" or "module").
    fn name(&self) -> &'static str;
    /// Prepares a policy (its prefix is prefilled once); returns its handle.
    fn add_policy(&mut self, p: &Policy) -> Result<usize, String>;
    /// Scores the policy's answers after the rendered event text.
    fn advise(&mut self, policy: usize, event_text: &str) -> Result<Advice, String>;
}

/// Tokens of `text` (with BOS when `bos`), through the engine's
/// allocation-free encoder.
fn encode(l: &Loaded, text: &str, bos: bool) -> Result<Vec<u32>, String> {
    let tok = &l.tokenizer;
    let mut scratch = tok.scratch(text.len().max(1)).map_err(|e| e.to_string())?;
    let mut out = vec![0u32; text.len() + 2];
    let n = tok.encode(text.as_bytes(), bos, &mut scratch, &mut out).map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}

struct PolicyState {
    adv: Advisor,
    answers: Vec<Vec<u32>>,
    prefix_tokens: usize,
}

/// The user-space engine as advisor.
pub struct UserAdvisor {
    l: &'static Loaded,
    exec: Pool,
    ctx: usize,
    policies: Vec<PolicyState>,
}

impl UserAdvisor {
    pub fn new(model: &Path, threads: Option<usize>, ctx: usize) -> Result<Self, String> {
        let l: &'static Loaded = Box::leak(Box::new(engine_cmds::load(model)?));
        Ok(UserAdvisor { l, exec: engine_cmds::pool(threads), ctx, policies: Vec::new() })
    }

    pub fn prefix_tokens(&self, policy: usize) -> usize {
        self.policies[policy].prefix_tokens
    }
}

impl Advise for UserAdvisor {
    fn name(&self) -> &'static str {
        "user"
    }

    fn add_policy(&mut self, p: &Policy) -> Result<usize, String> {
        let prefix = encode(self.l, &p.prefix, true).map_err(|e| format!("policy {}: prefix: {e}", p.name))?;
        let mut answers = Vec::new();
        for a in &p.answers {
            let t = encode(self.l, &a.text, false).map_err(|e| format!("policy {}: answer {:?}: {e}", p.name, a.text))?;
            if t.is_empty() {
                return Err(format!("policy {}: answer {:?} has no tokens", p.name, a.text));
            }
            answers.push(t);
        }
        let n_batch = answers.iter().map(|a| a.len()).max().unwrap_or(1).max(32);
        if prefix.len() + 64 + n_batch > self.ctx {
            return Err(format!("policy {}: prefix of {} tokens does not fit a {}-position context", p.name, prefix.len(), self.ctx));
        }
        let mut adv = Advisor::new(&self.l.model, self.ctx, n_batch).map_err(|e| format!("policy {}: {e}", p.name))?;
        adv.set_prefix(&self.l.model, &prefix, &mut self.exec).map_err(|e| format!("policy {}: prefix: {e}", p.name))?;
        self.policies.push(PolicyState { adv, answers, prefix_tokens: prefix.len() });
        Ok(self.policies.len() - 1)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> Result<Advice, String> {
        let t0 = Instant::now();
        let st = self.policies.get_mut(policy).ok_or("no such policy")?;
        let ev = encode(self.l, event_text, false)?;
        // Keep room for the answers: cut the event from the front if long.
        let room = self.ctx.saturating_sub(st.prefix_tokens + st.answers.iter().map(|a| a.len()).max().unwrap_or(0) + 1);
        let ev = if ev.len() > room { &ev[ev.len() - room..] } else { &ev[..] };
        let answers: Vec<&[u32]> = st.answers.iter().map(|a| a.as_slice()).collect();
        let mut scores = vec![0f32; answers.len()];
        let best = st.adv.score(&self.l.model, ev, &answers, &mut scores, &mut self.exec).map_err(|e| e.to_string())?;
        Ok(Advice { answer: best, scores, latency_us: t0.elapsed().as_micros() as u64, event_tokens: ev.len() })
    }
}
