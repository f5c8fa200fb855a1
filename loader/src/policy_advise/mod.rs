//! The advisor: a policy's question about one event, answered by scoring
//! the policy's answers with the model.
//!
//! `Advise` is the seam between the relay loop and whoever runs the model:
//! the user-space engine (`UserAdvisor`, also what `llamux advise` uses)
//! and the kernel module's engine through /proc/llamux/advise
//! (`KernelAdvisor`); `AutoAdvisor`, what the relay uses, prefers the
//! kernel and falls back to user space.

mod auto;
mod kernel;
#[cfg(test)]
mod tests;
mod user;

use anyhow::anyhow;
use llamux::policy_template::{self as pt, Format};
use serde_json::{Map, Value};

use crate::policy::Policy;

pub use auto::{AdvisorChoice, AutoAdvisor};
pub use kernel::{kernel_available, KernelAdvisor, KERNEL_ADVISE};
pub use user::UserAdvisor;

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
