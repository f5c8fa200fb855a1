//! `llamux advise`: one event, one decision, printed.

use std::path::Path;

use anyhow::{anyhow, bail};
use llamux_common as c;
use serde_json::{json, Value};

use super::status::default_sigpipe;
use crate::policy;
use crate::policy_advise::{Advise, AdvisorChoice, AutoAdvisor};
use llamux::policy_template::Format;
use llamux::render::terminal as esc;

/// `llamux advise`: the decision for one event, computed in user space
/// (or by the kernel module's advisor with `--advisor kernel|auto`).
pub fn advise_cmd(
    model: Option<&Path>,
    advisor: AdvisorChoice,
    policy_file: &Path,
    event_json: &str,
    threads: Option<usize>,
    ctx: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    default_sigpipe();
    let pol = policy::load(policy_file).map_err(|e| anyhow!("{e}"))?;
    let ev: Value =
        serde_json::from_str(event_json).map_err(|e| anyhow!("--event: not JSON: {e}"))?;
    let Value::Object(ev) = ev else {
        bail!("--event: expected a JSON object");
    };
    pol.render(&ev).map_err(anyhow::Error::msg)?;
    let (key, shown) = pol
        .key_of(&ev)
        .unwrap_or((c::DecisionKey::zeroed(), String::new()));
    let mut adv = AutoAdvisor::new(advisor, model, threads, ctx)?;
    let h = adv.add_policy(&pol)?;
    let (text, a) = adv.advise_event(h, &ev)?;
    let v = pol.decide(&a.scores, adv.format(h) != Format::Plain);
    let ans = &pol.answers[v.best];
    let scores = pol.scores_by_answer(&a.scores);
    if json_out {
        println!(
            "{}",
            json!({"policy": pol.name, "key": shown, "key_hash": format!("{:016x}", key.hash), "prompt": text,
                "answer": ans.text, "answer_index": v.best, "action": v.action.name(), "uncertain": v.uncertain, "margin": v.margin,
                "scores": scores, "score_list": a.scores,
                "latency_us": a.latency_us, "event_tokens": a.event_tokens, "prefix_tokens": a.prefix_tokens, "advisor": adv.name()})
        );
    } else {
        println!("policy {}: {}", pol.name, esc(&shown));
        for (an, s) in pol.answers.iter().zip(&a.scores) {
            println!(
                "  {:<12} {:>10.4}  {}",
                format!("{:?}", an.text),
                s,
                an.action.name()
            );
        }
        let unsure = if v.uncertain {
            format!(
                ", uncertain: margin {:.2} < {:.2}, the default applies",
                v.margin, pol.margin
            )
        } else {
            String::new()
        };
        println!(
            "answer {:?} -> {}{unsure} ({:.1} ms, {} advisor)",
            ans.text,
            v.action.name(),
            a.latency_us as f64 / 1000.0,
            adv.name()
        );
    }
    Ok(())
}
