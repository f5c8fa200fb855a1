//! Using a policy: an event rendered into its prompt, the decision key
//! of an event, and answer scores turned into a verdict.

use serde_json::{Map, Value};

use llamux_common as c;

use super::{Action, Hook, KeyKind, Policy, Verdict};
use crate::policy_template as pt;

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Policy {
    /// The event's part of the prompt (after the cached prefix). Field
    /// values are escaped (`render::field`): no value can add a line or
    /// change the template's structure.
    pub fn render(&self, event: &Map<String, Value>) -> Result<String, String> {
        pt::render(&self.template, event)
            .map_err(|e| format!("{e} (policy {} needs it)", self.name))
    }

    /// Each answer's text with its score, for trace and `advise --json`.
    pub fn scores_by_answer(&self, scores: &[f32]) -> Map<String, Value> {
        self.answers
            .iter()
            .zip(scores)
            .map(|(an, s)| (an.text.clone(), serde_json::json!(s)))
            .collect()
    }

    /// The action when the model is not sure: the policy default for
    /// exec and open, no action for the others.
    pub fn default_action(&self) -> Action {
        match self.hook {
            Hook::Exec | Hook::Open if self.default_deny => Action::Deny,
            Hook::Exec | Hook::Open => Action::Allow,
            _ => Action::None,
        }
    }

    /// The decision for answer scores: the best answer, unless it leads
    /// the next by less than `margin` (then the default, "uncertain").
    /// `chat`: the scores came from the chat prompt (answers' biases apply).
    pub fn decide(&self, scores: &[f32], chat: bool) -> Verdict {
        let scores: Vec<f32> = scores
            .iter()
            .zip(&self.answers)
            .map(|(s, a)| if chat { s + a.bias } else { *s })
            .collect();
        let mut best = 0;
        for (i, &s) in scores.iter().enumerate() {
            if s > scores[best] {
                best = i;
            }
        }
        let second = scores
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best)
            .map(|(_, &s)| s)
            .fold(f32::NEG_INFINITY, f32::max);
        let margin = if second.is_finite() {
            scores.get(best).map_or(0.0, |b| b - second)
        } else {
            f32::INFINITY
        };
        let uncertain = margin < self.margin;
        let action = match self.answers.get(best) {
            Some(a) if !uncertain => a.action,
            _ => self.default_action(),
        };
        Verdict {
            best,
            margin,
            uncertain,
            action,
        }
    }

    /// The decision key of an event, as the probes compute it.
    pub fn key_of(&self, event: &Map<String, Value>) -> Result<(c::DecisionKey, String), String> {
        let get = |f: &str| {
            event
                .get(f)
                .map(value_text)
                .ok_or_else(|| format!("event has no field `{f}` for key {}", self.key.name()))
        };
        let (hash, shown) = match self.key {
            KeyKind::Pid => {
                let p = get("pid")?;
                (
                    p.parse::<u64>()
                        .map_err(|_| format!("pid `{p}` is not a number"))?,
                    format!("pid:{p}"),
                )
            }
            KeyKind::Comm => {
                let s = get("comm")?;
                (c::fnv1a(s.as_bytes()), format!("comm:{s}"))
            }
            KeyKind::Exe | KeyKind::File => {
                let s = get("path")?;
                (c::fnv1a(s.as_bytes()), format!("{}:{s}", self.key.name()))
            }
        };
        Ok((
            c::DecisionKey {
                hook: self.hook.id(),
                kind: self.key.id(),
                hash,
                dev: 0,
                gen: 0,
            },
            shown,
        ))
    }
}
