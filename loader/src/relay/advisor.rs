//! Advisor calls: one queued event asked of the policy's model, and the
//! scores turned into a verdict.

use super::queue::Job;
use super::Live;
use crate::policy::Verdict;
use crate::policy_advise::{Advice, Advise, AutoAdvisor};
use llamux::policy_template::Format;

/// The advisor's answer about one job.
pub struct Answer {
    /// The prompt the event was rendered as.
    pub prompt: String,
    pub advice: Advice,
    pub verdict: Verdict,
}

/// Renders the job's event in the policy's prompt format (a chat template
/// in user space), scores the answers and decides.
pub fn ask(adv: &mut AutoAdvisor, l: &Live, job: &Job) -> anyhow::Result<Answer> {
    let (prompt, advice) = adv.advise_event(l.handle, &job.event)?;
    // Calibration: the answers' biases apply to chat prompts, and under
    // the policy's margin the default applies ("uncertain").
    let verdict = l
        .pol
        .decide(&advice.scores, adv.format(l.handle) != Format::Plain);
    Ok(Answer {
        prompt,
        advice,
        verdict,
    })
}
