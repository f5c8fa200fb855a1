use std::path::Path;

use super::sets::label_class;
use super::*;
use crate::policy::{Action, Policy};

fn pol(src: &str) -> Policy {
    policy::parse(Path::new("p.toml"), src).unwrap()
}

const EXEC: &str =
    "name = \"t\"\nhook = \"exec\"\nkey = \"exe\"\n[prompt]\nprefix = \"P\"\nevent = \"{path}\"\n\
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
    let bad = |t: &str| {
        load_events(Path::new("e.jsonl"), &p, t)
            .unwrap_err()
            .to_string()
    };
    let e = bad(&format!(
        "{ok}{{\"path\":\"/tmp/c\",\"label\":\"maybe\",\"split\":\"tune\"}}\n"
    ));
    assert!(e.starts_with("e.jsonl:4: unknown label \"maybe\""), "{e}");
    assert!(bad(&format!("{ok}{{\"path\":\n")).starts_with("e.jsonl:4: not a JSON object"));
    assert!(bad("[1]\n").starts_with("e.jsonl:1: not a JSON object"));
    assert!(bad("{\"label\":\"deny\"}").starts_with("e.jsonl:1: no `split`"));
    assert!(bad("{\"label\":\"deny\",\"split\":\"test\"}").starts_with("e.jsonl:1: unknown split"));
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
        .to_string()
        .contains("does not apply"));
    assert!(baseline("nope", &p, &ev("/tmp/x"))
        .unwrap_err()
        .to_string()
        .contains("unknown baseline"));
    let s = pol(SCHED);
    let e = serde_json::json!({"cpu_pct": 50, "involuntary_pct": 10})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(baseline("cpu50", &s, &e).unwrap(), Action::Renice(5));
    assert_eq!(baseline("preempt50", &s, &e).unwrap(), Action::Renice(0));
}
