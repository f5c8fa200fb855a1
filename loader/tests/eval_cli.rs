//! `llamux eval` on a tiny test model: counts, recall, confusion and the
//! baseline are recomputed here from the per-event decisions and the
//! events themselves, each decision equals `llamux advise` on the same
//! event, and bad event files fail with the file and line named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    let m = root().join("tests/models/tiny-q8_0.gguf");
    assert!(
        m.exists(),
        "{} missing: run tests/models/make.sh",
        m.display()
    );
    m
}

fn llamux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llamux"))
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const EVENTS: &[(&str, &str, &str)] = &[
    ("/tmp/tool", "allow", "tune"),
    ("/tmp/python", "deny", "tune"),
    ("/tmp/go-build1/b001/exe/main", "allow", "heldout"),
    ("/tmp/.x/kthreadd", "deny", "tune"),
    ("/tmp/xmrig", "N", "heldout"),
    ("/tmp/cargo-target/debug/deps/t-1", "Y", "tune"),
];

fn write_events(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for (i, (path, label, split)) in EVENTS.iter().enumerate() {
        let ev = serde_json::json!({"pid": 100 + i, "uid": 1000, "comm": "sh", "time": "1.000", "path": path,
            "exe": path.rsplit('/').next().unwrap(), "ppid": 1, "parent_comm": "bash", "label": label, "split": split, "why": "test"});
        s.push_str(&ev.to_string());
        s.push('\n');
    }
    let f = dir.join("events.jsonl");
    std::fs::write(&f, s).unwrap();
    f
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llamux-eval-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn eval_counts_match_the_decisions_and_advise() {
    let d = tmpdir("counts");
    let ev = write_events(&d);
    // The shipped policy without its calibration (bias, margin): the
    // margins below are the raw score differences.
    let src = std::fs::read_to_string(root().join("policies/exec-guard.toml")).unwrap();
    let plain: Vec<&str> = src
        .lines()
        .filter(|l| !l.starts_with("bias") && !l.starts_with("margin"))
        .collect();
    let pol = d.join("exec-guard.toml");
    std::fs::write(&pol, plain.join("\n")).unwrap();
    let (m, p, e) = (
        model(),
        pol.to_str().unwrap().to_string(),
        ev.to_str().unwrap().to_string(),
    );
    let m = m.to_str().unwrap();
    let v = json_of(&llamux(&[
        "eval",
        "-m",
        m,
        "-p",
        &p,
        "--events",
        &e,
        "-t",
        "1",
        "--ctx",
        "512",
        "--json",
        "--baseline",
        "tmp-rule",
    ]));
    assert_eq!(v["events"], 6);
    assert_eq!(
        v["format"], "plain",
        "the tiny models have no chat template"
    );
    let decisions = v["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 6);
    // Labels as classes: "N" is deny, "Y" allow.
    let want_labels: Vec<&str> = EVENTS
        .iter()
        .map(|e| {
            if e.1 == "N" {
                "deny"
            } else if e.1 == "Y" {
                "allow"
            } else {
                e.1
            }
        })
        .collect();
    let mut conf = [[0usize; 2]; 2];
    let idx = |a: &str| if a == "allow" { 0 } else { 1 };
    for (d, want) in decisions.iter().zip(&want_labels) {
        assert_eq!(d["label"], *want);
        conf[idx(want)][idx(d["action"].as_str().unwrap())] += 1;
    }
    let r = &v["result"];
    for (i, l) in ["allow", "deny"].iter().enumerate() {
        for (j, p) in ["allow", "deny"].iter().enumerate() {
            assert_eq!(
                r["confusion"][l][p].as_u64().unwrap() as usize,
                conf[i][j],
                "{l} -> {p}"
            );
        }
        let total: usize = conf[i].iter().sum();
        assert_eq!(r["recall"][l]["total"].as_u64().unwrap() as usize, total);
        assert_eq!(
            r["recall"][l]["correct"].as_u64().unwrap() as usize,
            conf[i][i]
        );
    }
    let correct = conf[0][0] + conf[1][1];
    assert_eq!(r["correct"].as_u64().unwrap() as usize, correct);
    assert!((r["accuracy"].as_f64().unwrap() - correct as f64 / 6.0).abs() < 1e-12);
    // Margins: best minus the other answer's score.
    let mut sum = 0.0;
    for d in decisions {
        let s: Vec<f64> = d["score_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let margin = (s[0] - s[1]).abs();
        assert!((d["margin"].as_f64().unwrap() - margin).abs() < 1e-4);
        sum += margin;
    }
    assert!((v["mean_margin"].as_f64().unwrap() - sum / 6.0).abs() < 1e-4);
    let lat = &v["latency_ms"];
    assert!(
        lat["p50"].as_f64().unwrap() > 0.0
            && lat["p95"].as_f64().unwrap() >= lat["p50"].as_f64().unwrap()
    );

    // Each decision is `llamux advise`'s for the same event (same scores).
    for (i, (path, _, _)) in EVENTS.iter().enumerate() {
        let ev = serde_json::json!({"pid": 100 + i, "uid": 1000, "comm": "sh", "time": "1.000", "path": path,
            "exe": path.rsplit('/').next().unwrap(), "ppid": 1, "parent_comm": "bash"});
        let a = json_of(&llamux(&[
            "advise",
            "-m",
            m,
            "-p",
            &p,
            "-e",
            &ev.to_string(),
            "-t",
            "1",
            "--ctx",
            "512",
            "--json",
        ]));
        assert_eq!(a["answer_index"], decisions[i]["answer_index"], "{path}");
        assert_eq!(a["score_list"], decisions[i]["score_list"], "{path}");
    }

    // The tmp-rule baseline, computed here: deny direct children of /tmp
    // and hidden paths.
    let b = &v["baselines"][0];
    assert_eq!(b["rule"], "tmp-rule");
    let mut ok = 0;
    for (e, want) in EVENTS.iter().zip(&want_labels) {
        let direct = e.0.matches('/').count() == 2;
        let got = if direct || e.0.contains("/.") {
            "deny"
        } else {
            "allow"
        };
        ok += usize::from(got == *want);
    }
    assert_eq!(b["correct"].as_u64().unwrap() as usize, ok);

    // --split heldout: only those lines.
    let h = json_of(&llamux(&[
        "eval", "-m", m, "-p", &p, "--events", &e, "-t", "1", "--ctx", "512", "--json", "--split",
        "heldout",
    ]));
    let lines: Vec<u64> = h["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5]);

    // A margin no answer reaches: every decision is "uncertain" and the
    // policy default (allow) applies.
    let u = json_of(&llamux(&[
        "eval", "-m", m, "-p", &p, "--events", &e, "-t", "1", "--ctx", "512", "--json", "--margin",
        "100",
    ]));
    assert_eq!(u["uncertain"], 6);
    assert!(u["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["action"] == "allow" && d["uncertain"] == true));
    assert_eq!(u["result"]["confusion"]["deny"]["allow"], 3);
    assert_eq!(
        u["model_only"], v["result"],
        "the model's own answers are unchanged"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn baselines_only_and_chat_format() {
    let d = tmpdir("chat");
    let ev = write_events(&d);
    let e = ev.to_str().unwrap();
    // Baselines need no model.
    let pol = root().join("policies/exec-guard.toml");
    let v = json_of(&llamux(&[
        "eval",
        "-p",
        pol.to_str().unwrap(),
        "--events",
        e,
        "--json",
        "--baseline",
        "deny",
        "--baseline",
        "allow",
    ]));
    assert_eq!(
        (
            v["baselines"][0]["correct"].as_u64(),
            v["baselines"][1]["correct"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert!(v.get("decisions").is_none());
    let bad = llamux(&[
        "eval",
        "-p",
        pol.to_str().unwrap(),
        "--events",
        e,
        "--baseline",
        "cpu50",
    ]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("does not apply to exec")
    );

    // A policy naming ChatML is asked in it even on a model without a
    // chat template: a longer prefix (system turn, examples) and the
    // suffix counted with each event.
    let src = std::fs::read_to_string(&pol)
        .unwrap()
        .replace("template = \"auto\"", "template = \"chatml\"");
    let chat = d.join("chat.toml");
    std::fs::write(&chat, src).unwrap();
    let m = model();
    let m = m.to_str().unwrap();
    let c = json_of(&llamux(&[
        "eval",
        "-m",
        m,
        "-p",
        chat.to_str().unwrap(),
        "--events",
        e,
        "-t",
        "1",
        "--ctx",
        "2048",
        "--json",
        "--split",
        "heldout",
    ]));
    let p = json_of(&llamux(&[
        "eval",
        "-m",
        m,
        "-p",
        pol.to_str().unwrap(),
        "--events",
        e,
        "-t",
        "1",
        "--json",
        "--split",
        "heldout",
    ]));
    assert_eq!(
        (c["format"].as_str(), p["format"].as_str()),
        (Some("chatml"), Some("plain"))
    );
    assert!(c["prefix_tokens"].as_u64().unwrap() > 4 * p["prefix_tokens"].as_u64().unwrap());
    assert!(c["mean_event_tokens"].as_f64().unwrap() > p["mean_event_tokens"].as_f64().unwrap());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_event_files_name_the_line() {
    let d = tmpdir("bad");
    let pol = root().join("policies/exec-guard.toml");
    let run = |name: &str, text: &str| {
        let f = d.join(name);
        std::fs::write(&f, text).unwrap();
        let o = llamux(&[
            "eval",
            "-p",
            pol.to_str().unwrap(),
            "--events",
            f.to_str().unwrap(),
            "--baseline",
            "allow",
        ]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(err.contains(f.to_str().unwrap()), "{err}");
        err
    };
    let ok = "{\"path\":\"/tmp/a\",\"label\":\"allow\",\"split\":\"tune\"}\n";
    let e = run(
        "malformed.jsonl",
        &format!("{ok}{ok}{{\"path\": \"/tmp/b\", \"label\"\n"),
    );
    assert!(e.contains("malformed.jsonl:3: not a JSON object"), "{e}");
    let e = run(
        "label.jsonl",
        &format!("{ok}{{\"path\":\"/tmp/b\",\"label\":\"quarantine\",\"split\":\"tune\"}}\n"),
    );
    assert!(
        e.contains("label.jsonl:2: unknown label \"quarantine\" for policy exec-guard"),
        "{e}"
    );
    let e = run("split.jsonl", "{\"path\":\"/tmp/b\",\"label\":\"deny\"}\n");
    assert!(e.contains("split.jsonl:1: no `split`"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The shipped event sets parse against the shipped policies, hold the
/// sizes docs/advisor.md states, and keep about a third held out in each
/// label.
#[test]
fn shipped_event_sets() {
    for (set, pol, min) in [
        ("exec", "exec-guard", 80),
        ("exec", "exec-guard-closed", 80),
        ("open", "open-guard", 40),
        ("sched", "sched-advisor", 40),
    ] {
        let f = root().join(format!("tests/eval/{set}.jsonl"));
        let p = root().join(format!("policies/{pol}.toml"));
        let v = json_of(&llamux(&[
            "eval",
            "-p",
            p.to_str().unwrap(),
            "--events",
            f.to_str().unwrap(),
            "--json",
            "--baseline",
            "default",
        ]));
        let n = v["events"].as_u64().unwrap();
        assert!(n >= min, "{set}: {n} events");
        let text = std::fs::read_to_string(&f).unwrap();
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
        labels.sort();
        labels.dedup();
        for l in labels {
            let of: Vec<&Value> = rows.iter().filter(|r| r["label"] == l).collect();
            let held = of.iter().filter(|r| r["split"] == "heldout").count();
            assert!(
                held * 4 >= of.len() && held * 2 <= of.len(),
                "{set} {l}: {held} of {} held out",
                of.len()
            );
        }
    }
}
