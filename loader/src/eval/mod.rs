//! `llamux eval`: how good a policy's decisions are on a labelled event
//! set (tests/eval/*.jsonl): accuracy, per-action recall, the confusion
//! table, the answers' margins, latency per decision with the policy
//! prefix cached, and static-rule baselines on the same events.
//!
//! An event file has one JSON object per line: an event's fields as
//! `llamux trace --json` shows them (at the top level or under "event"),
//! plus `label` (an action of the policy, e.g. "deny", or an answer's
//! text, e.g. "batch") and `split` ("tune" or "heldout"). Other keys
//! ("why") are notes and never reach the prompt.
//!
//! sets.rs reads event files, metrics.rs counts (accuracy, recall,
//! confusion), baseline.rs holds the static rules, model.rs asks the
//! advisor about every event and report.rs turns its answers into the
//! result and the text report.

mod baseline;
mod metrics;
mod model;
mod report;
mod sets;

use anyhow::{anyhow, bail, Context as _};
use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::policy;
use crate::policy_advise::AdvisorChoice;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Tune,
    Heldout,
    All,
}

pub struct EvalOpts {
    pub model: Option<PathBuf>,
    pub policy: PathBuf,
    pub events: PathBuf,
    pub split: Split,
    pub threads: Option<usize>,
    pub ctx: usize,
    pub advisor: AdvisorChoice,
    pub json: bool,
    pub baselines: Vec<String>,
    pub margin: Option<f32>,
    pub probe_fields_only: bool,
    pub verbose: bool,
    /// Say on stderr every 10 events how far it is.
    pub progress: bool,
}

pub use baseline::{baseline, BASELINES};
pub use metrics::{percentile, Tally};
pub use sets::{classes, load_events, Item};

pub fn run(o: &EvalOpts) -> anyhow::Result<()> {
    crate::bpf::default_sigpipe();
    let mut pol = policy::load(&o.policy).map_err(|e| anyhow!("{e}"))?;
    if let Some(m) = o.margin {
        if !(0.0..=100.0).contains(&m) {
            bail!("--margin must be 0..=100 (nats)");
        }
        pol.margin = m;
    }
    let text =
        std::fs::read_to_string(&o.events).with_context(|| o.events.display().to_string())?;
    let all = load_events(&o.events, &pol, &text)?;
    let mut items: Vec<Item> = all
        .into_iter()
        .filter(|it| match o.split {
            Split::All => true,
            Split::Tune => it.split == "tune",
            Split::Heldout => it.split == "heldout",
        })
        .collect();
    if items.is_empty() {
        return Err(anyhow!(
            "{}: no events in split {:?}",
            o.events.display(),
            o.split
        ));
    }
    if o.probe_fields_only {
        for it in &mut items {
            for f in pol.hook.optional_fields() {
                it.event.remove(*f);
            }
        }
    }
    for b in &o.baselines {
        // Unknown names and wrong hooks fail before any model is loaded.
        baseline(b, &pol, &items[0].event)?;
    }
    let classes = classes(&pol);
    let split_name = match o.split {
        Split::Tune => "tune",
        Split::Heldout => "heldout",
        Split::All => "all",
    };

    let mut result = json!({"policy": pol.name, "hook": pol.hook.name(), "events_file": o.events.display().to_string(),
        "split": split_name, "events": items.len(), "classes": classes, "margin_threshold": pol.margin});
    let mut out = std::io::stdout().lock();
    if !o.json {
        let _ = writeln!(
            out,
            "policy {} ({}), {} split {}: {} events",
            pol.name,
            pol.hook.name(),
            o.events.display(),
            split_name,
            items.len()
        );
        let answers: Vec<String> = pol
            .answers
            .iter()
            .map(|a| format!("{:?}={}", a.text.trim(), a.action.name()))
            .collect();
        let _ = writeln!(
            out,
            "answers: {}; default: {}; margin threshold {:.2} nats",
            answers.join(" "),
            pol.default_action().name(),
            pol.margin
        );
    }

    let model_given = o.model.is_some() || o.advisor == AdvisorChoice::Kernel;
    if model_given {
        let m = model::evaluate(o, &pol, &items)?;
        report::model(m, o, &pol, &items, &classes, &mut result, &mut out)?;
    }

    let mut bl = Vec::new();
    for b in &o.baselines {
        let mut t = Tally::new(&classes);
        for it in &items {
            t.add(&it.label, &baseline(b, &pol, &it.event)?.name());
        }
        if !o.json {
            let _ = writeln!(out, "baseline {b}: {}", t.summary());
            t.print(&mut out, "  ");
        }
        let mut v = t.json();
        if let Some(m) = v.as_object_mut() {
            m.insert("rule".into(), json!(b));
            m.insert(
                "description".into(),
                json!(BASELINES.iter().find(|x| x.0 == b).map_or("", |x| x.1)),
            );
        }
        bl.push(v);
    }
    if let Some(r) = result.as_object_mut() {
        r.insert("baselines".into(), json!(bl));
    }
    if o.json {
        let _ = writeln!(out, "{result}");
    } else if !model_given && o.baselines.is_empty() {
        bail!("nothing to do: give -m MODEL, --advisor kernel or --baseline RULE");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
