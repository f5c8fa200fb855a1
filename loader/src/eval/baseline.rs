//! Static rules to compare the model with.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{Map, Value};

use crate::policy::{Action, Hook, Policy};

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
pub fn baseline(rule: &str, pol: &Policy, ev: &Map<String, Value>) -> anyhow::Result<Action> {
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
    let gate = |hooks: &[Hook]| -> anyhow::Result<()> {
        if hooks.contains(&pol.hook) {
            Ok(())
        } else {
            Err(anyhow!(
                "baseline {rule} does not apply to {} policies",
                pol.hook.name()
            ))
        }
    };
    let sched = |batch: bool| -> anyhow::Result<Action> {
        answer_action(pol, if batch { "batch" } else { "interactive" }).with_context(|| {
            format!("baseline {rule}: the policy has no batch/interactive answers")
        })
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
            bail!("unknown baseline {other:?} (known: {})", names.join(", "));
        }
    })
}
