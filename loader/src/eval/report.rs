//! The model's results: accuracy with and without the margin, margins,
//! latency, threshold and bias sweeps; into the JSON result and, unless
//! --json, the text report.

use anyhow::Context as _;
use std::io::Write;

use serde_json::{json, Value};

use super::model::ModelRun;
use super::{percentile, EvalOpts, Item, Tally};
use crate::policy::Policy;
use llamux::policy_template::Format;

pub fn model(
    m: ModelRun,
    o: &EvalOpts,
    pol: &Policy,
    items: &[Item],
    classes: &[String],
    result: &mut Value,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ModelRun {
        adv,
        threads,
        prefix_ms,
        prefix_tokens,
        format,
        decided,
    } = m;
    let mut tally = Tally::new(classes);
    let mut raw = Tally::new(classes);
    for d in &decided {
        tally.add(&items[d.item].label, &d.action);
        raw.add(&items[d.item].label, &d.model_action);
    }
    let mut lat: Vec<f64> = decided
        .iter()
        .map(|d| d.latency_us as f64 / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let n = decided.len() as f64;
    let mean_margin = decided.iter().map(|d| d.margin as f64).sum::<f64>() / n;
    let margin_of = |ok: bool| {
        let v: Vec<f64> = decided
            .iter()
            .filter(|d| (d.model_action == items[d.item].label) == ok)
            .map(|d| d.margin as f64)
            .collect();
        if v.is_empty() {
            Value::Null
        } else {
            json!(v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    let uncertain = decided.iter().filter(|d| d.uncertain).count();
    let mean_ev = decided.iter().map(|d| d.event_tokens as f64).sum::<f64>() / n;
    // What other thresholds would have given (calibrate on tune only).
    let sweep: Vec<Value> = [0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
        .iter()
        .map(|&t| {
            let mut s = Tally::new(classes);
            for d in &decided {
                let a = if d.margin < t {
                    pol.default_action().name()
                } else {
                    d.model_action.clone()
                };
                s.add(&items[d.item].label, &a);
            }
            json!({"margin": t, "accuracy": s.accuracy(), "recall": s.json()["recall"].clone()})
        })
        .collect();
    // Two answers: what a bias on the second would have given.
    let bias_sweep: Vec<Value> = if pol.answers.len() == 2 {
        [
            -3.0f32, -2.0, -1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
        ]
        .iter()
        .map(|&b| {
            let mut q = pol.clone();
            q.margin = 0.0;
            q.answers[0].bias = 0.0;
            q.answers[1].bias = b;
            let mut s = Tally::new(classes);
            for d in &decided {
                s.add(
                    &items[d.item].label,
                    &q.decide(&d.scores, format != Format::Plain).action.name(),
                );
            }
            json!({"bias": b, "accuracy": s.accuracy(), "recall": s.json()["recall"].clone()})
        })
        .collect()
    } else {
        Vec::new()
    };
    let r = result.as_object_mut().context("internal")?;
    r.insert("bias_sweep".into(), json!(bias_sweep));
    r.insert(
        "model".into(),
        json!(o.model.as_ref().map(|m| m.display().to_string())),
    );
    r.insert("advisor".into(), json!(adv.name()));
    r.insert("format".into(), json!(format.name()));
    r.insert("threads".into(), json!(threads));
    r.insert("ctx".into(), json!(o.ctx));
    r.insert("prefix_tokens".into(), json!(prefix_tokens));
    r.insert("prefix_ms".into(), json!(prefix_ms));
    r.insert("result".into(), tally.json());
    r.insert("model_only".into(), raw.json());
    r.insert("uncertain".into(), json!(uncertain));
    r.insert("mean_margin".into(), json!(mean_margin));
    r.insert("mean_margin_correct".into(), margin_of(true));
    r.insert("mean_margin_wrong".into(), margin_of(false));
    r.insert("latency_ms".into(), json!({"p50": percentile(&lat, 50.0), "p95": percentile(&lat, 95.0), "mean": lat.iter().sum::<f64>() / n}));
    r.insert("mean_event_tokens".into(), json!(mean_ev));
    r.insert("sweep".into(), json!(sweep));
    r.insert(
        "decisions".into(),
        json!(decided
            .iter()
            .map(|d| json!({"line": items[d.item].line, "label": items[d.item].label, "answer_index": d.best,
                "answer": pol.answers[d.best].text, "action": d.action, "uncertain": d.uncertain, "margin": d.margin,
                "score_list": d.scores, "latency_us": d.latency_us, "event_tokens": d.event_tokens,
                "correct": d.action == items[d.item].label}))
            .collect::<Vec<_>>()),
    );
    if !o.json {
        let where_ = if threads > 0 {
            format!("{threads} threads")
        } else {
            "in the module".into()
        };
        let _ = writeln!(
            out,
            "advisor {} ({where_}), format {}, prefix {} tokens prefilled in {:.0} ms, ctx {}",
            adv.name(),
            format.name(),
            prefix_tokens,
            prefix_ms,
            o.ctx
        );
        let _ = writeln!(out, "model: {}", tally.summary());
        let _ = writeln!(
            out,
            "  {} uncertain (margin < {:.2}) -> default {}; model alone: {}",
            uncertain,
            pol.margin,
            pol.default_action().name(),
            raw.summary()
        );
        tally.print(out, "  ");
        let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "  mean margin {:.2} nats (right {}, wrong {}); latency per decision p50 {:.1} ms, p95 {:.1} ms; {:.1} event tokens on average",
            mean_margin,
            f(&margin_of(true)),
            f(&margin_of(false)),
            percentile(&lat, 50.0),
            percentile(&lat, 95.0),
            mean_ev
        );
        let sw: Vec<String> = sweep
            .iter()
            .map(|s| {
                format!(
                    "{}: {:.1}%",
                    s["margin"],
                    100.0 * s["accuracy"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        let _ = writeln!(out, "  accuracy by margin threshold: {}", sw.join(", "));
        if !bias_sweep.is_empty() {
            let bs: Vec<String> = bias_sweep
                .iter()
                .map(|s| {
                    let rec: Vec<String> = s["recall"].as_object().map_or(Vec::new(), |m| {
                        m.values()
                            .map(|r| format!("{:.0}", 100.0 * r["recall"].as_f64().unwrap_or(0.0)))
                            .collect()
                    });
                    format!(
                        "{}: {:.1}% ({})",
                        s["bias"],
                        100.0 * s["accuracy"].as_f64().unwrap_or(0.0),
                        rec.join("/")
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  accuracy (recalls) by bias on {:?} (no margin): {}",
                pol.answers[1].text.trim(),
                bs.join(", ")
            );
        }
        for d in &decided {
            let it = &items[d.item];
            if o.verbose || d.action != it.label {
                let shown = pol.key_of(&it.event).map(|k| k.1).unwrap_or_default();
                let mark = if d.action == it.label { "ok  " } else { "MISS" };
                let sc: Vec<String> = d.scores.iter().map(|s| format!("{s:.2}")).collect();
                let _ = writeln!(
                    out,
                    "  {mark} line {:>3} {:<50} label {:<10} got {:<10}{} margin {:.2} [{}]",
                    it.line,
                    shown,
                    it.label,
                    d.action,
                    if d.uncertain { " (uncertain)" } else { "" },
                    d.margin,
                    sc.join(" ")
                );
            }
        }
    }
    Ok(())
}
