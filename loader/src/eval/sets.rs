//! Labelled event files: one JSON object per line, an event plus its
//! label and split.

use anyhow::{anyhow, bail};
use std::path::Path;

use serde_json::{Map, Value};

use crate::policy::Policy;

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
pub fn load_events(path: &Path, pol: &Policy, text: &str) -> anyhow::Result<Vec<Item>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |m: String| anyhow!("{}:{line}: {m}", path.display());
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
        bail!("{}: no events", path.display());
    }
    Ok(out)
}
