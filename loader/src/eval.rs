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

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::policy::{self, Action, Hook, Policy};
use crate::policy_advise::{self, Advise, AdvisorChoice, KernelAdvisor, UserAdvisor};
use llamux::policy_template::Format;

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

/// One labelled event.
#[derive(Clone, Debug)]
pub struct Item {
    pub line: usize,
    pub event: Map<String, Value>,
    /// The label as an action name (a class).
    pub label: String,
    pub split: String,
}

/// Keys of an event line that are not event fields.
const META: &[&str] = &["label", "split", "why"];

/// The action a label names: an answer's action ("deny", "renice(5)"),
/// an answer's text ("N", "batch") or the policy default's action.
pub fn label_class(pol: &Policy, label: &str) -> Option<String> {
    let l = label.trim();
    if let Some(a) = pol.answers.iter().find(|a| a.action.name() == l) {
        return Some(a.action.name());
    }
    if let Some(a) = pol.answers.iter().find(|a| a.text.trim() == l) {
        return Some(a.action.name());
    }
    (pol.default_action().name() == l).then(|| l.to_string())
}

/// The classes of a policy: its answers' actions, then the default's.
pub fn classes(pol: &Policy) -> Vec<String> {
    let mut c: Vec<String> = Vec::new();
    for a in pol
        .answers
        .iter()
        .map(|a| a.action)
        .chain([pol.default_action()])
    {
        if !c.contains(&a.name()) {
            c.push(a.name());
        }
    }
    c
}

/// Reads an event file; errors name the file and the line.
pub fn load_events(path: &Path, pol: &Policy, text: &str) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |m: String| format!("{}:{line}: {m}", path.display());
        if raw.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(raw).map_err(|e| at(format!("not a JSON object: {e}")))?;
        let Value::Object(mut o) = v else {
            return Err(at("not a JSON object".into()));
        };
        let label = match o.get("label") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(at("`label` must be a string".into())),
            None => return Err(at("no `label`".into())),
        };
        let class = label_class(pol, &label).ok_or_else(|| {
            let answers: Vec<String> = pol
                .answers
                .iter()
                .map(|a| format!("{:?}", a.text.trim()))
                .collect();
            at(format!(
                "unknown label {label:?} for policy {} (expected one of {} or an answer: {})",
                pol.name,
                classes(pol).join(", "),
                answers.join(", ")
            ))
        })?;
        let split = match o.get("split").and_then(Value::as_str) {
            Some(s @ ("tune" | "heldout")) => s.to_string(),
            Some(s) => {
                return Err(at(format!(
                    "unknown split {s:?} (expected \"tune\" or \"heldout\")"
                )))
            }
            None => return Err(at("no `split` (\"tune\" or \"heldout\")".into())),
        };
        let event = match o.remove("event") {
            Some(Value::Object(e)) => e,
            Some(_) => return Err(at("`event` must be an object".into())),
            None => {
                for k in META {
                    o.remove(*k);
                }
                o
            }
        };
        out.push(Item {
            line,
            event,
            label: class,
            split,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(out)
}

/// Accuracy, recall per class and the confusion table of predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct Tally {
    pub classes: Vec<String>,
    /// confusion[label][prediction]
    pub confusion: Vec<Vec<usize>>,
}

impl Tally {
    pub fn new(classes: &[String]) -> Self {
        let n = classes.len();
        Tally {
            classes: classes.to_vec(),
            confusion: vec![vec![0; n]; n],
        }
    }
    fn idx(&self, c: &str) -> usize {
        self.classes.iter().position(|x| x == c).unwrap_or(0)
    }
    pub fn add(&mut self, label: &str, pred: &str) {
        let (l, p) = (self.idx(label), self.idx(pred));
        self.confusion[l][p] += 1;
    }
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }
    pub fn correct(&self) -> usize {
        (0..self.classes.len()).map(|i| self.confusion[i][i]).sum()
    }
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }
    /// (correct, total) of each class that has labels.
    pub fn recall(&self) -> Vec<(String, usize, usize)> {
        (0..self.classes.len())
            .map(|i| {
                (
                    self.classes[i].clone(),
                    self.confusion[i][i],
                    self.confusion[i].iter().sum(),
                )
            })
            .filter(|r| r.2 > 0)
            .collect()
    }
    pub fn json(&self) -> Value {
        let conf: Map<String, Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    l.clone(),
                    Value::Object(
                        self.classes
                            .iter()
                            .enumerate()
                            .map(|(j, p)| (p.clone(), json!(self.confusion[i][j])))
                            .collect(),
                    ),
                )
            })
            .collect();
        let recall: Map<String, Value> = self
            .recall()
            .into_iter()
            .map(|(c, k, n)| {
                (
                    c,
                    json!({"correct": k, "total": n, "recall": k as f64 / n as f64}),
                )
            })
            .collect();
        json!({"total": self.total(), "correct": self.correct(), "accuracy": self.accuracy(), "recall": recall, "confusion": conf})
    }
    fn print(&self, o: &mut impl Write, indent: &str) {
        let w = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(5)
            .max(6);
        let _ = write!(o, "{indent}{:<w$}", "label\\got");
        for c in &self.classes {
            let _ = write!(o, " {c:>w$}");
        }
        let _ = writeln!(o);
        for (i, c) in self.classes.iter().enumerate() {
            if self.confusion[i].iter().sum::<usize>() == 0 {
                continue;
            }
            let _ = write!(o, "{indent}{c:<w$}");
            for n in &self.confusion[i] {
                let _ = write!(o, " {n:>w$}");
            }
            let _ = writeln!(o);
        }
    }
    fn summary(&self) -> String {
        let r: Vec<String> = self
            .recall()
            .iter()
            .map(|(c, k, n)| format!("{c} {k}/{n} = {:.1}%", 100.0 * *k as f64 / *n as f64))
            .collect();
        format!(
            "accuracy {}/{} = {:.1}%; recall: {}",
            self.correct(),
            self.total(),
            100.0 * self.accuracy(),
            r.join(", ")
        )
    }
}

/// Static rules to compare the model with (no model involved).
pub const BASELINES: &[(&str, &str)] = &[
    ("default", "the policy default for every event"),
    ("allow", "allow everything (exec, open)"),
    ("deny", "deny everything (exec, open)"),
    ("tmp-rule", "exec: deny files directly in /tmp, /var/tmp or /dev/shm or under a hidden (dot) directory; allow the rest"),
    ("tools", "open: deny shells, network, archive and encoding tools (sh bash dash zsh cat curl wget nc ncat socat scp rsync rclone tar zip base64 dd strings grep perl python3); allow the rest"),
    ("www-data", "exec, open: deny uid 33 (www-data); allow the rest"),
    ("cpu50", "sched: batch when cpu_pct >= 50, else interactive"),
    ("preempt50", "sched: batch when involuntary_pct >= 50, else interactive"),
];

/// The action of a named answer text ("batch") of the policy.
fn answer_action(pol: &Policy, text: &str) -> Option<Action> {
    pol.answers
        .iter()
        .find(|a| a.text.trim() == text)
        .map(|a| a.action)
}

/// What a static rule decides for an event.
pub fn baseline(rule: &str, pol: &Policy, ev: &Map<String, Value>) -> Result<Action, String> {
    let s = |k: &str| {
        ev.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    let n = |k: &str| ev.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let gate = |hooks: &[Hook]| -> Result<(), String> {
        if hooks.contains(&pol.hook) {
            Ok(())
        } else {
            Err(format!(
                "baseline {rule} does not apply to {} policies",
                pol.hook.name()
            ))
        }
    };
    let sched = |batch: bool| -> Result<Action, String> {
        answer_action(pol, if batch { "batch" } else { "interactive" })
            .ok_or_else(|| format!("baseline {rule}: the policy has no batch/interactive answers"))
    };
    Ok(match rule {
        "default" => pol.default_action(),
        "allow" | "deny" => {
            gate(&[Hook::Exec, Hook::Open])?;
            if rule == "allow" {
                Action::Allow
            } else {
                Action::Deny
            }
        }
        "tmp-rule" => {
            gate(&[Hook::Exec])?;
            let p = s("path");
            let dir = p.rsplit_once('/').map_or("", |d| d.0);
            let hidden = p.split('/').rev().skip(1).any(|c| c.starts_with('.'))
                || p.rsplit('/').next().is_some_and(|f| f.starts_with('.'));
            if matches!(dir, "/tmp" | "/var/tmp" | "/dev/shm") || hidden {
                Action::Deny
            } else {
                Action::Allow
            }
        }
        "tools" => {
            gate(&[Hook::Open])?;
            const TOOLS: &[&str] = &[
                "sh", "bash", "dash", "zsh", "cat", "curl", "wget", "nc", "ncat", "socat", "scp",
                "rsync", "rclone", "tar", "zip", "base64", "dd", "strings", "grep", "perl",
                "python3",
            ];
            if TOOLS.contains(&s("comm").as_str()) {
                Action::Deny
            } else {
                Action::Allow
            }
        }
        "www-data" => {
            gate(&[Hook::Exec, Hook::Open])?;
            if n("uid") == 33.0 {
                Action::Deny
            } else {
                Action::Allow
            }
        }
        "cpu50" => {
            gate(&[Hook::Sched])?;
            sched(n("cpu_pct") >= 50.0)?
        }
        "preempt50" => {
            gate(&[Hook::Sched])?;
            sched(n("involuntary_pct") >= 50.0)?
        }
        other => {
            let names: Vec<&str> = BASELINES.iter().map(|b| b.0).collect();
            return Err(format!(
                "unknown baseline {other:?} (known: {})",
                names.join(", ")
            ));
        }
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

struct Decided {
    item: usize,
    best: usize,
    margin: f32,
    uncertain: bool,
    action: String,
    model_action: String,
    scores: Vec<f32>,
    latency_us: u64,
    event_tokens: usize,
}

pub fn run(o: &EvalOpts) -> Result<(), String> {
    crate::bpf::default_sigpipe();
    let mut pol = policy::load(&o.policy).map_err(|e| e.to_string())?;
    if let Some(m) = o.margin {
        if !(0.0..=100.0).contains(&m) {
            return Err("--margin must be 0..=100 (nats)".into());
        }
        pol.margin = m;
    }
    let text =
        std::fs::read_to_string(&o.events).map_err(|e| format!("{}: {e}", o.events.display()))?;
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
        return Err(format!(
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
        let (mut adv, threads): (Box<dyn Advise>, usize) = match o.advisor {
            AdvisorChoice::Kernel => {
                if !policy_advise::kernel_available() {
                    return Err(format!(
                        "--advisor kernel: {} is not there or the module has no model",
                        policy_advise::KERNEL_ADVISE
                    ));
                }
                (Box::new(KernelAdvisor::new(o.ctx)), 0)
            }
            _ => {
                let m = o
                    .model
                    .as_deref()
                    .ok_or("give -m MODEL (or --advisor kernel)")?;
                let t = o
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                (Box::new(UserAdvisor::new(m, Some(t), o.ctx)?), t)
            }
        };
        let t0 = std::time::Instant::now();
        let h = adv.add_policy(&pol)?;
        let prefix_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let format = adv.format(h);
        let mut decided = Vec::new();
        let mut prefix_tokens = 0;
        for (i, it) in items.iter().enumerate() {
            let (_, a) = adv
                .advise_event(h, &it.event)
                .map_err(|e| format!("{}:{}: {e}", o.events.display(), it.line))?;
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
        let mut tally = Tally::new(&classes);
        let mut raw = Tally::new(&classes);
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
                let mut s = Tally::new(&classes);
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
                let mut s = Tally::new(&classes);
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
        let r = result.as_object_mut().ok_or("internal")?;
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
            tally.print(&mut out, "  ");
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
                                .map(|r| {
                                    format!("{:.0}", 100.0 * r["recall"].as_f64().unwrap_or(0.0))
                                })
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
        return Err("nothing to do: give -m MODEL, --advisor kernel or --baseline RULE".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(src: &str) -> Policy {
        policy::parse(Path::new("p.toml"), src).unwrap()
    }

    const EXEC: &str = "name = \"t\"\nhook = \"exec\"\nkey = \"exe\"\n[prompt]\nprefix = \"P\"\nevent = \"{path}\"\n\
        [[answer]]\ntext = \" Y\"\naction = \"allow\"\n[[answer]]\ntext = \" N\"\naction = \"deny\"\n";
    const SCHED: &str = "name = \"s\"\nhook = \"sched\"\nkey = \"pid\"\n[prompt]\nprefix = \"P\"\nevent = \"{comm}\"\n\
        [[answer]]\ntext = \" interactive\"\naction = \"renice\"\nnice = 0\n[[answer]]\ntext = \" batch\"\naction = \"renice\"\nnice = 5\n";

    #[test]
    fn labels_and_errors_name_the_line() {
        let p = pol(EXEC);
        let ok = "{\"path\":\"/tmp/a\",\"label\":\"deny\",\"split\":\"tune\",\"why\":\"x\"}\n\n{\"event\":{\"path\":\"/tmp/b\"},\"label\":\"Y\",\"split\":\"heldout\"}\n";
        let v = load_events(Path::new("e.jsonl"), &p, ok).unwrap();
        assert_eq!(
            (v.len(), v[0].label.as_str(), v[1].label.as_str(), v[1].line),
            (2, "deny", "allow", 3)
        );
        assert!(!v[0].event.contains_key("why") && !v[0].event.contains_key("label"));
        let bad = |t: &str| load_events(Path::new("e.jsonl"), &p, t).unwrap_err();
        let e = bad(&format!(
            "{ok}{{\"path\":\"/tmp/c\",\"label\":\"maybe\",\"split\":\"tune\"}}\n"
        ));
        assert!(e.starts_with("e.jsonl:4: unknown label \"maybe\""), "{e}");
        assert!(bad(&format!("{ok}{{\"path\":\n")).starts_with("e.jsonl:4: not a JSON object"));
        assert!(bad("[1]\n").starts_with("e.jsonl:1: not a JSON object"));
        assert!(bad("{\"label\":\"deny\"}").starts_with("e.jsonl:1: no `split`"));
        assert!(
            bad("{\"label\":\"deny\",\"split\":\"test\"}").starts_with("e.jsonl:1: unknown split")
        );
        assert!(bad("{\"split\":\"tune\"}").starts_with("e.jsonl:1: no `label`"));
        assert!(bad("\n\n").contains("no events"));
        // Sched labels by answer text or action; the default class is "none".
        let s = pol(SCHED);
        assert_eq!(label_class(&s, "batch").as_deref(), Some("renice(5)"));
        assert_eq!(label_class(&s, "renice(0)").as_deref(), Some("renice(0)"));
        assert_eq!(classes(&s), ["renice(0)", "renice(5)", "none"]);
    }

    #[test]
    fn tally() {
        let c = vec!["allow".to_string(), "deny".to_string()];
        let mut t = Tally::new(&c);
        for (l, p) in [
            ("allow", "allow"),
            ("allow", "deny"),
            ("deny", "deny"),
            ("deny", "deny"),
            ("deny", "allow"),
        ] {
            t.add(l, p);
        }
        assert_eq!((t.total(), t.correct()), (5, 3));
        assert_eq!(t.confusion, vec![vec![1, 1], vec![1, 2]]);
        assert_eq!(
            t.recall(),
            vec![("allow".into(), 1, 2), ("deny".into(), 2, 3)]
        );
        assert_eq!(t.json()["confusion"]["deny"]["allow"], 1);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 95.0), 4.0);
    }

    #[test]
    fn baselines() {
        let p = pol(EXEC);
        let ev = |path: &str| {
            serde_json::json!({"path": path, "uid": 0})
                .as_object()
                .unwrap()
                .clone()
        };
        for (path, want) in [
            ("/tmp/x", Action::Deny),
            ("/tmp/go-build1/b001/exe/main", Action::Allow),
            ("/tmp/.X11-unix/.r/c/tsm", Action::Deny),
            ("/tmp/.hidden", Action::Deny),
        ] {
            assert_eq!(baseline("tmp-rule", &p, &ev(path)).unwrap(), want, "{path}");
        }
        assert!(baseline("cpu50", &p, &ev("/tmp/x"))
            .unwrap_err()
            .contains("does not apply"));
        assert!(baseline("nope", &p, &ev("/tmp/x"))
            .unwrap_err()
            .contains("unknown baseline"));
        let s = pol(SCHED);
        let e = serde_json::json!({"cpu_pct": 50, "involuntary_pct": 10})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(baseline("cpu50", &s, &e).unwrap(), Action::Renice(5));
        assert_eq!(baseline("preempt50", &s, &e).unwrap(), Action::Renice(0));
    }
}
