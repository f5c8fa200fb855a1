//! The model's answer about every event of the set.

use super::{EvalOpts, Item};
use crate::policy::Policy;
use crate::policy_advise::{self, Advise, AdvisorChoice, KernelAdvisor, UserAdvisor};
use anyhow::{bail, Context as _};
use llamux::policy_template::Format;

pub struct Decided {
    pub item: usize,
    pub best: usize,
    pub margin: f32,
    pub uncertain: bool,
    pub action: String,
    pub model_action: String,
    pub scores: Vec<f32>,
    pub latency_us: u64,
    pub event_tokens: usize,
}

/// The advisor's answers about a set.
pub struct ModelRun {
    pub adv: Box<dyn Advise>,
    /// User-space threads (0: the kernel module's advisor).
    pub threads: usize,
    pub prefix_ms: f64,
    pub prefix_tokens: usize,
    pub format: Format,
    pub decided: Vec<Decided>,
}

pub fn evaluate(o: &EvalOpts, pol: &Policy, items: &[Item]) -> anyhow::Result<ModelRun> {
    let (mut adv, threads): (Box<dyn Advise>, usize) = match o.advisor {
        AdvisorChoice::Kernel => {
            if !policy_advise::kernel_available() {
                bail!(
                    "--advisor kernel: {} is not there or the module has no model",
                    policy_advise::KERNEL_ADVISE
                );
            }
            (Box::new(KernelAdvisor::new(o.ctx)), 0)
        }
        _ => {
            let m = o
                .model
                .as_deref()
                .context("give -m MODEL (or --advisor kernel)")?;
            let t = o
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            (Box::new(UserAdvisor::new(m, Some(t), o.ctx)?), t)
        }
    };
    let t0 = std::time::Instant::now();
    let h = adv.add_policy(pol)?;
    let prefix_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let format = adv.format(h);
    let mut decided = Vec::new();
    let mut prefix_tokens = 0;
    for (i, it) in items.iter().enumerate() {
        let (_, a) = adv
            .advise_event(h, &it.event)
            .with_context(|| format!("{}:{}", o.events.display(), it.line))?;
        if o.progress && (i + 1) % 10 == 0 {
            eprintln!("llamux eval: {}/{} events", i + 1, items.len());
        }
        prefix_tokens = a.prefix_tokens;
        let v = pol.decide(&a.scores, format != Format::Plain);
        let model_action = pol.answers[v.best].action.name();
        decided.push(Decided {
            item: i,
            best: v.best,
            margin: v.margin,
            uncertain: v.uncertain,
            action: v.action.name(),
            model_action,
            scores: a.scores.clone(),
            latency_us: a.latency_us,
            event_tokens: a.event_tokens,
        });
    }
    Ok(ModelRun {
        adv,
        threads,
        prefix_ms,
        prefix_tokens,
        format,
        decided,
    })
}
