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
    /// Tokens of the policy's cached prefix.
    pub prefix_tokens: usize,
}

pub trait Advise {
    /// Where the model runs ("user" or "kernel"); for `AutoAdvisor`, where
    /// the last decision was made.
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
        let (event_tokens, prefix_tokens) = (ev.len(), st.prefix_tokens);
        Ok(Advice { answer: best, scores, latency_us: t0.elapsed().as_micros() as u64, event_tokens, prefix_tokens })
    }
}

/// Where the kernel module's advisor interface lives.
pub const KERNEL_ADVISE: &str = "/proc/llamux/advise";

/// The request record of /proc/llamux/advise
/// (llamux_engine::advise::request): the engine in the module tokenizes
/// and scores exactly as `UserAdvisor` does with the same `ctx`.
pub fn kernel_request(ctx: usize, prefix: &str, event: &str, answers: &[&str]) -> Vec<u8> {
    let answers: Vec<&[u8]> = answers.iter().map(|a| a.as_bytes()).collect();
    llamux_engine::advise::request::encode(ctx, prefix.as_bytes(), event.as_bytes(), &answers)
}

/// Parses a response record (llamux_engine::advise::response, the type
/// the engine in the kernel writes it with): best, event tokens, prefix
/// tokens, scores.
pub fn kernel_response(text: &str, n_answers: usize) -> Result<(usize, usize, usize, Vec<f32>), String> {
    let bad = || format!("malformed advise response {text:?}");
    let r = llamux_engine::advise::response::Response::parse(text.as_bytes()).ok_or_else(bad)?;
    if r.scores().len() != n_answers {
        return Err(bad());
    }
    Ok((r.best, r.event_tokens, r.prefix_tokens, r.scores().to_vec()))
}

/// True when the module is loaded with a model and offers the advisor.
pub fn kernel_available() -> bool {
    Path::new(KERNEL_ADVISE).exists()
        && std::fs::read_to_string("/proc/llamux/model").map(|m| !m.starts_with("none")).unwrap_or(false)
}

/// The kernel module's engine as advisor, through /proc/llamux/advise.
pub struct KernelAdvisor {
    ctx: usize,
    /// Prefix and answer texts per policy.
    policies: Vec<(String, Vec<String>)>,
}

impl KernelAdvisor {
    pub fn new(ctx: usize) -> Self {
        KernelAdvisor { ctx, policies: Vec::new() }
    }
}

impl Advise for KernelAdvisor {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn add_policy(&mut self, p: &Policy) -> Result<usize, String> {
        self.policies.push((p.prefix.clone(), p.answers.iter().map(|a| a.text.clone()).collect()));
        Ok(self.policies.len() - 1)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> Result<Advice, String> {
        use std::io::{Read, Write};
        let t0 = Instant::now();
        let (prefix, answers) = self.policies.get(policy).ok_or("no such policy")?;
        let answers: Vec<&str> = answers.iter().map(|s| s.as_str()).collect();
        let req = kernel_request(self.ctx, prefix, event_text, &answers);
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(KERNEL_ADVISE).map_err(|e| format!("{KERNEL_ADVISE}: {e}"))?;
        let n = f.write(&req).map_err(|e| format!("{KERNEL_ADVISE}: write: {e}"))?;
        if n != req.len() {
            return Err(format!("{KERNEL_ADVISE}: short write ({n} of {})", req.len()));
        }
        let mut resp = String::new();
        f.read_to_string(&mut resp).map_err(|e| format!("{KERNEL_ADVISE}: read: {e}"))?;
        let (best, event_tokens, prefix_tokens, scores) = kernel_response(&resp, answers.len())?;
        Ok(Advice { answer: best, scores, latency_us: t0.elapsed().as_micros() as u64, event_tokens, prefix_tokens })
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
    pub fn new(choice: AdvisorChoice, model: Option<&Path>, threads: Option<usize>, ctx: usize) -> Result<Self, String> {
        let kernel_ok = kernel_available();
        let kernel = match choice {
            AdvisorChoice::User => None,
            AdvisorChoice::Kernel if !kernel_ok => {
                return Err(format!("--advisor kernel: {KERNEL_ADVISE} is not there or the module has no model"))
            }
            _ if kernel_ok => Some(KernelAdvisor::new(ctx)),
            _ => None,
        };
        let model = if choice == AdvisorChoice::Kernel { None } else { model.map(Path::to_path_buf) };
        if kernel.is_none() && model.is_none() {
            return Err("no --model given and the kernel module's advisor is not available (insmod llamux.ko model=...)".into());
        }
        let mut a = AutoAdvisor { kernel, user: None, model, threads, ctx, policies: Vec::new(), last: "user" };
        if a.kernel.is_some() {
            a.last = "kernel";
        } else {
            a.user_advisor()?;
        }
        Ok(a)
    }

    /// The user-space advisor with every policy added, built on first use.
    fn user_advisor(&mut self) -> Result<&mut UserAdvisor, String> {
        if self.user.is_none() {
            let model = self.model.as_deref().ok_or("no --model for the user-space advisor")?;
            let mut u = UserAdvisor::new(model, self.threads, self.ctx)?;
            for p in &self.policies {
                u.add_policy(p)?;
            }
            self.user = Some(u);
        }
        Ok(self.user.as_mut().unwrap())
    }
}

impl Advise for AutoAdvisor {
    fn name(&self) -> &'static str {
        self.last
    }

    fn add_policy(&mut self, p: &Policy) -> Result<usize, String> {
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

    fn advise(&mut self, policy: usize, event_text: &str) -> Result<Advice, String> {
        if let Some(k) = self.kernel.as_mut() {
            match k.advise(policy, event_text) {
                Ok(a) => {
                    self.last = "kernel";
                    return Ok(a);
                }
                Err(e) if self.model.is_some() => eprintln!("llamux: kernel advisor: {e}; deciding in user space"),
                Err(e) => return Err(format!("kernel advisor: {e}")),
            }
        }
        let a = self.user_advisor()?.advise(policy, event_text)?;
        self.last = "user";
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_record() {
        let r = kernel_request(512, "Pre\nfix", "ev", &["Y", "No"]);
        assert_eq!(r, b"llxa1 512 7 2 2 1 2\nPre\nfixevYNo");
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
