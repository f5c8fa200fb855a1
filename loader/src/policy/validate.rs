//! Field checks: a raw policy into a `Policy`, each bad value reported
//! at its own line and field.

use llamux_common as c;

use super::parse::{Ctx, PolicyError, RawChat, RawPolicy};
use super::{Action, Answer, Hook, KeyKind, Policy, MAX_TTL_S};
use crate::policy_template::{self as pt, ChatPrompt, Choice, Example};

pub(super) fn policy(cx: &Ctx<'_>, raw: RawPolicy) -> Result<Policy, PolicyError> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(cx.err(
            raw.name.span(),
            "name",
            "must be non-empty ASCII letters, digits, '-' or '_'",
        ));
    }
    let hook = match raw.hook.get_ref().as_str() {
        "exec" => Hook::Exec,
        "open" => Hook::Open,
        "syscall" => Hook::Syscall,
        "sched" => Hook::Sched,
        other => {
            return Err(cx.err(
                raw.hook.span(),
                "hook",
                format!("unknown hook `{other}` (expected exec, open, syscall or sched)"),
            ))
        }
    };
    let key = match raw.key.get_ref().as_str() {
        "exe" => KeyKind::Exe,
        "pid" => KeyKind::Pid,
        "comm" => KeyKind::Comm,
        "file" => KeyKind::File,
        other => {
            return Err(cx.err(
                raw.key.span(),
                "key",
                format!("unknown key `{other}` (expected exe, pid, comm or file)"),
            ))
        }
    };
    if !hook.keys().contains(&key) {
        let ok: Vec<_> = hook.keys().iter().map(|k| k.name()).collect();
        return Err(cx.err(
            raw.key.span(),
            "key",
            format!(
                "key `{}` does not apply to hook `{}` (expected {})",
                key.name(),
                hook.name(),
                ok.join(", ")
            ),
        ));
    }
    let default_deny = match &raw.default {
        None => false,
        Some(d) => match d.get_ref().as_str() {
            "allow" | "fail-open" => false,
            "deny" | "fail-closed" => {
                if !matches!(hook, Hook::Exec | Hook::Open) {
                    return Err(cx.err(
                        d.span(),
                        "default",
                        "only exec and open hooks can fail closed",
                    ));
                }
                true
            }
            other => {
                return Err(cx.err(
                    d.span(),
                    "default",
                    format!("unknown default `{other}` (expected allow or deny)"),
                ))
            }
        },
    };
    let ttl_s = match &raw.ttl {
        None => 600,
        Some(t) if (0..=MAX_TTL_S as i64).contains(t.get_ref()) => *t.get_ref() as u64,
        Some(t) => {
            return Err(cx.err(
                t.span(),
                "ttl",
                format!(
                    "must be 0 (forever) to {MAX_TTL_S} seconds (one year), found {}",
                    t.get_ref()
                ),
            ))
        }
    };
    let rate_limit = match &raw.rate_limit {
        None => 50,
        Some(r) if (1..=100_000).contains(r.get_ref()) => *r.get_ref() as u32,
        Some(r) => {
            return Err(cx.err(
                r.span(),
                "rate_limit",
                format!(
                    "must be 1..=100000 decisions per second, found {}",
                    r.get_ref()
                ),
            ))
        }
    };
    let f = raw.filter.unwrap_or_default();
    let path_prefix = match &f.path_prefix {
        None => String::new(),
        Some(p) => {
            if !matches!(hook, Hook::Exec | Hook::Open) {
                return Err(cx.err(
                    p.span(),
                    "filter.path_prefix",
                    "only applies to exec and open hooks",
                ));
            }
            if p.get_ref().len() >= c::PREFIX_LEN {
                return Err(cx.err(
                    p.span(),
                    "filter.path_prefix",
                    format!("longer than {} bytes", c::PREFIX_LEN - 1),
                ));
            }
            p.get_ref().clone()
        }
    };
    let min_rate = match &f.min_rate {
        None => 0.0,
        Some(m) if (0.0..=1e9).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => {
            return Err(cx.err(
                m.span(),
                "filter.min_rate",
                "must be 0 to 1e9 syscalls per second",
            ))
        }
    };
    let sample = match &f.sample {
        None => match hook {
            Hook::Syscall => 256,
            Hook::Sched => 16,
            _ => 0,
        },
        Some(s) if (1..=1_000_000).contains(s.get_ref()) => *s.get_ref() as u32,
        Some(s) => return Err(cx.err(s.span(), "filter.sample", "must be 1..=1000000")),
    };
    let prefix = raw.prompt.prefix.get_ref().clone();
    if prefix.trim().is_empty() {
        return Err(cx.err(
            raw.prompt.prefix.span(),
            "prompt.prefix",
            "must not be empty",
        ));
    }
    let template = raw.prompt.event.get_ref().clone();
    check_template(&template, hook)
        .map_err(|m| cx.err(raw.prompt.event.span(), "prompt.event", m))?;

    let mut answers = Vec::new();
    let n = raw.answer.get_ref().len();
    if !(2..=16).contains(&n) {
        return Err(cx.err(
            raw.answer.span(),
            "answer",
            format!("needs 2 to 16 answers, found {n}"),
        ));
    }
    for (i, a) in raw.answer.get_ref().iter().enumerate() {
        let field = |f: &str| format!("answer[{i}].{f}");
        if a.text.get_ref().is_empty() {
            return Err(cx.err(a.text.span(), &field("text"), "must not be empty"));
        }
        if answers.iter().any(|b: &Answer| &b.text == a.text.get_ref()) {
            return Err(cx.err(a.text.span(), &field("text"), "duplicate answer"));
        }
        let action = match a.action.get_ref().as_str() {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            "audit" => Action::Audit,
            "none" => Action::None,
            "renice" => {
                let Some(nice) = &a.nice else {
                    return Err(cx.err(
                        a.action.span(),
                        &field("nice"),
                        "renice needs `nice = N` (-20..=19)",
                    ));
                };
                if !(-20..=19).contains(nice.get_ref()) {
                    return Err(cx.err(nice.span(), &field("nice"), "must be -20..=19"));
                }
                Action::Renice(*nice.get_ref() as i32)
            }
            other => {
                return Err(cx.err(
                    a.action.span(),
                    &field("action"),
                    format!(
                        "unknown action `{other}` (expected allow, deny, audit, renice or none)"
                    ),
                ))
            }
        };
        match (hook, action) {
            (Hook::Exec | Hook::Open, Action::Renice(_)) => {
                return Err(cx.err(
                    a.action.span(),
                    &field("action"),
                    "renice applies to syscall and sched policies",
                ))
            }
            (Hook::Syscall | Hook::Sched, Action::Deny) => {
                return Err(cx.err(
                    a.action.span(),
                    &field("action"),
                    "deny applies to exec and open policies",
                ))
            }
            _ => {}
        }
        let bias = match &a.bias {
            None => 0.0,
            Some(b) if (-100.0..=100.0).contains(b.get_ref()) => *b.get_ref() as f32,
            Some(b) => return Err(cx.err(b.span(), &field("bias"), "must be -100..=100 (nats)")),
        };
        let chat = match &a.chat {
            Some(c) if c.get_ref().is_empty() => {
                return Err(cx.err(c.span(), &field("chat"), "must not be empty"))
            }
            c => c.as_ref().map(|c| c.get_ref().clone()),
        };
        answers.push(Answer {
            text: a.text.get_ref().clone(),
            action,
            bias,
            chat,
        });
    }
    let margin = match &raw.margin {
        None => 0.0,
        Some(m) if (0.0..=100.0).contains(m.get_ref()) => *m.get_ref() as f32,
        Some(m) => return Err(cx.err(m.span(), "margin", "must be 0..=100 (nats)")),
    };
    let chat = match raw.prompt.chat {
        None => None,
        Some(rc) => Some(parse_chat(&cx, rc, hook, &template, &answers)?),
    };
    Ok(Policy {
        file: cx.file.to_path_buf(),
        name,
        description: raw.description,
        hook,
        key,
        default_deny,
        ttl_s,
        rate_limit,
        path_prefix,
        min_rate,
        sample,
        exclude_comm: f.exclude_comm,
        prefix,
        template,
        answers,
        margin,
        chat,
    })
}

fn parse_chat(
    cx: &Ctx<'_>,
    rc: RawChat,
    hook: Hook,
    plain_event: &str,
    answers: &[Answer],
) -> Result<ChatPrompt, PolicyError> {
    let choice = match &rc.template {
        None => Choice::Auto,
        Some(t) => Choice::parse(t.get_ref()).ok_or_else(|| {
            cx.err(
                t.span(),
                "prompt.chat.template",
                format!(
                    "unknown template `{}` (expected auto, chatml, inst or plain)",
                    t.get_ref()
                ),
            )
        })?,
    };
    if rc.system.get_ref().trim().is_empty() {
        return Err(cx.err(rc.system.span(), "prompt.chat.system", "must not be empty"));
    }
    let event = match &rc.event {
        None => plain_event.to_string(),
        Some(e) => {
            check_template(e.get_ref(), hook)
                .map_err(|m| cx.err(e.span(), "prompt.chat.event", m))?;
            e.get_ref().clone()
        }
    };
    let mut examples = Vec::new();
    for (i, ex) in rc.example.iter().enumerate() {
        let field = |f: &str| format!("prompt.chat.example[{i}].{f}");
        let want = ex.answer.get_ref().trim();
        let Some(answer) = answers.iter().position(|a| {
            a.text.trim() == want || a.chat.as_deref().is_some_and(|c| c.trim() == want)
        }) else {
            let known: Vec<_> = answers
                .iter()
                .map(|a| format!("{:?}", a.text.trim()))
                .collect();
            return Err(cx.err(
                ex.answer.span(),
                &field("answer"),
                format!("no answer {want:?} (answers: {})", known.join(", ")),
            ));
        };
        pt::render(&event, ex.event.get_ref())
            .map_err(|m| cx.err(ex.event.span(), &field("event"), m))?;
        examples.push(Example {
            event: ex.event.get_ref().clone(),
            answer,
        });
    }
    Ok(ChatPrompt {
        choice,
        system: rc.system.get_ref().clone(),
        event,
        examples,
    })
}

fn check_template(t: &str, hook: Hook) -> Result<(), String> {
    if t.trim().is_empty() {
        return Err("must not be empty".into());
    }
    for (_, f, opt) in pt::placeholders(t)? {
        let known = hook.fields().contains(&f.as_str())
            || opt && hook.optional_fields().contains(&f.as_str());
        if !known {
            let q = if opt { "?" } else { "" };
            let mut all = hook.fields().join(", ");
            for o in hook.optional_fields() {
                all.push_str(&format!(", {o}?"));
            }
            return Err(format!(
                "unknown event field `{{{f}{q}}}` for hook `{}` (known: {all})",
                hook.name()
            ));
        }
    }
    Ok(())
}
