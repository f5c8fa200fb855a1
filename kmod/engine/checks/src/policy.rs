//! Policy parser (loader/src/policy.rs): any bytes in, a policy or an
//! error naming a line of the file out, never a panic. An accepted policy
//! written back as TOML parses to the same policy, and an event with every
//! field its hook offers renders its prompt and key.
//! Replayed by loader/tests/fuzz_regressions.rs.

use std::path::Path;

use llamux::policy::{self, Action, Policy};
use llamux::policy_template::Choice;
use serde_json::{Map, Value};
use toml::{Table, Value as T};

pub fn check(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match policy::parse(path, src) {
        Ok(p) => {
            let again = to_toml(&p);
            let q = policy::parse(path, &again)
                .unwrap_or_else(|e| panic!("written back: {e}\n{again}"));
            assert_eq!(q, p, "written back:\n{again}");
            let ev: Map<String, Value> = p
                .hook
                .fields()
                .iter()
                .map(|&f| (f.to_string(), Value::from(1)))
                .collect();
            p.render(&ev).unwrap();
            p.key_of(&ev).unwrap();
        }
        Err(e) => {
            assert!(
                (1..=src.matches('\n').count() + 1).contains(&e.line),
                "line out of the file: {e}"
            );
            assert!(
                !e.msg.is_empty() && e.to_string().starts_with("fuzz.toml:"),
                "{e}"
            );
        }
    }
}

/// The policy as a TOML file (explicit values where the default differs).
pub fn to_toml(p: &Policy) -> String {
    let mut t = Table::new();
    t.insert("name".into(), T::from(p.name.as_str()));
    t.insert("description".into(), T::from(p.description.as_str()));
    t.insert("hook".into(), T::from(p.hook.name()));
    t.insert("key".into(), T::from(p.key.name()));
    t.insert(
        "default".into(),
        T::from(if p.default_deny { "deny" } else { "allow" }),
    );
    t.insert("ttl".into(), T::from(p.ttl_s as i64));
    t.insert("rate_limit".into(), T::from(i64::from(p.rate_limit)));
    if p.margin != 0.0 {
        t.insert("margin".into(), T::from(f64::from(p.margin)));
    }
    let mut f = Table::new();
    if !p.path_prefix.is_empty() {
        f.insert("path_prefix".into(), T::from(p.path_prefix.as_str()));
    }
    f.insert("min_rate".into(), T::from(p.min_rate));
    if p.sample != 0 {
        f.insert("sample".into(), T::from(i64::from(p.sample)));
    }
    f.insert(
        "exclude_comm".into(),
        T::Array(p.exclude_comm.iter().map(|s| T::from(s.as_str())).collect()),
    );
    t.insert("filter".into(), T::Table(f));
    let mut pr = Table::new();
    pr.insert("prefix".into(), T::from(p.prefix.as_str()));
    pr.insert("event".into(), T::from(p.template.as_str()));
    if let Some(c) = &p.chat {
        let mut ct = Table::new();
        let choice = match c.choice {
            Choice::Auto => "auto",
            Choice::Named(f) => f.name(),
        };
        ct.insert("template".into(), T::from(choice));
        ct.insert("system".into(), T::from(c.system.as_str()));
        ct.insert("event".into(), T::from(c.event.as_str()));
        let ex = c.examples.iter().map(|e| {
            let mut et = Table::new();
            et.insert("answer".into(), T::from(p.answers[e.answer].text.as_str()));
            et.insert(
                "event".into(),
                json_to_toml(&Value::Object(e.event.clone())),
            );
            T::Table(et)
        });
        ct.insert("example".into(), T::Array(ex.collect()));
        pr.insert("chat".into(), T::Table(ct));
    }
    t.insert("prompt".into(), T::Table(pr));
    let answers = p.answers.iter().map(|a| {
        let mut at = Table::new();
        at.insert("text".into(), T::from(a.text.as_str()));
        let action = match a.action {
            Action::Renice(n) => {
                at.insert("nice".into(), T::from(i64::from(n)));
                "renice".to_string()
            }
            other => other.name(),
        };
        at.insert("action".into(), T::from(action));
        if a.bias != 0.0 {
            at.insert("bias".into(), T::from(f64::from(a.bias)));
        }
        if let Some(c) = &a.chat {
            at.insert("chat".into(), T::from(c.as_str()));
        }
        T::Table(at)
    });
    t.insert("answer".into(), T::Array(answers.collect()));
    t.to_string()
}

/// A JSON value from a TOML file back as TOML (no nulls come from TOML).
fn json_to_toml(v: &Value) -> T {
    match v {
        Value::Bool(b) => T::from(*b),
        Value::Number(n) => n
            .as_i64()
            .map(T::from)
            .unwrap_or_else(|| T::from(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => T::from(s.as_str()),
        Value::Array(a) => T::Array(a.iter().map(json_to_toml).collect()),
        Value::Object(m) => T::Table(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_toml(v)))
                .collect(),
        ),
        Value::Null => T::from(""),
    }
}

/// The shipped policies (policies/*.toml), parsed.
pub fn shipped(dir: &Path) -> Vec<Policy> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            v.push(policy::load(&p).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    assert!(!v.is_empty(), "no policies in {}", dir.display());
    v
}
