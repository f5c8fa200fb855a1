//! Decision trace: the relay appends one JSON object per line to
//! RUN_DIR/trace.jsonl (decisions and the probes' decision hits);
//! `llamux trace` follows it and prints human or JSON lines.

use anyhow::anyhow;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llamux::render::terminal as esc;
use serde_json::Value;

pub fn run_dir() -> PathBuf {
    std::env::var_os("LLAMUX_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/llamux"))
}

pub fn trace_path() -> PathBuf {
    run_dir().join("trace.jsonl")
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub struct TraceWriter {
    f: File,
}

impl TraceWriter {
    pub fn create() -> anyhow::Result<Self> {
        // Prompts, paths and pids: readable by root only (0600).
        crate::fsafe::private_dir(&run_dir(), 0o755)?;
        let f = crate::fsafe::open_private(&trace_path(), false)?;
        Ok(TraceWriter { f })
    }

    pub fn write(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        // One write per record: readers never see half a line unless the
        // disk is full, and then the trace is the least of the problems.
        let _ = self.f.write_all(line.as_bytes());
    }
}

fn fmt_time(t: f64) -> String {
    let secs = t as u64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "{h:02}:{m:02}:{s:02}.{:03}",
        ((t - secs as f64) * 1000.0) as u64
    )
}

/// One trace record for a terminal. Every text from the record is escaped
/// (`render::terminal`): a path with an escape sequence or a newline cannot
/// reach the screen raw or forge a line. `--json` prints records exactly.
pub fn human(v: &Value) -> String {
    let s = |k: &str| {
        esc(&v
            .get(k)
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .unwrap_or_default())
    };
    let t = fmt_time(v.get("time").and_then(Value::as_f64).unwrap_or(0.0));
    match v.get("type").and_then(Value::as_str) {
        Some("decision") => {
            let scores = v
                .get("scores")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| format!("{}={:.3}", esc(k.trim()), x.as_f64().unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            // Under the policy's margin the default applied ("uncertain").
            let unsure = if v.get("uncertain").and_then(Value::as_bool) == Some(true) {
                ", uncertain"
            } else {
                ""
            };
            format!(
                "{t} {:<14} {:<28} {} -> {} [{}{unsure}] ({scores}) {:.1} ms",
                s("policy"),
                s("key"),
                s("summary"),
                s("answer").trim(),
                s("action"),
                v.get("latency_us").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0
            )
        }
        Some("hit") if v.get("hits").is_some() => format!(
            "{t} {:<14} {:<28} hit pid {} comm {} -> {} ({} hits, {})",
            s("policy"),
            s("key"),
            s("pid"),
            s("comm"),
            s("action"),
            s("hits"),
            s("probe")
        ),
        Some("hit") => format!(
            "{t} {:<14} {:<28} hit pid {} comm {} -> {} ({})",
            s("policy"),
            s("key"),
            s("pid"),
            s("comm"),
            s("action"),
            s("probe")
        ),
        Some("applied") => format!(
            "{t} {:<14} {:<28} applied: pid {} {} nice {} -> {} (set by pid {} {}, {})",
            s("policy"),
            s("key"),
            s("pid"),
            s("comm"),
            s("nice_old"),
            s("nice_new"),
            s("by_pid"),
            s("by_comm"),
            s("probe")
        ),
        Some("drop") => format!("{t} {:<14} dropped: {}", s("policy"), s("reason")),
        // serde_json escapes control characters in strings.
        _ => v.to_string(),
    }
}

/// Prints trace records: from the start with `all`, else only new ones;
/// stops after `count` records or `timeout` without follow.
pub fn follow(
    json: bool,
    all: bool,
    follow: bool,
    count: Option<usize>,
    timeout: Option<f64>,
) -> anyhow::Result<()> {
    crate::bpf::default_sigpipe();
    let p = trace_path();
    let start = Instant::now();
    let deadline = timeout.map(|t| start + Duration::from_secs_f64(t));
    let f = loop {
        match File::open(&p) {
            Ok(f) => break f,
            Err(_) if follow && deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => return Err(anyhow!("{}: {e} (is a policy loaded?)", p.display())),
        }
    };
    let mut r = BufReader::new(f);
    if !all {
        r.seek(SeekFrom::End(0)).map_err(|e| anyhow!("{e}"))?;
    }
    let mut n = 0;
    let mut line = String::new();
    let out = std::io::stdout();
    loop {
        line.clear();
        let got = r.read_line(&mut line).map_err(|e| anyhow!("{e}"))?;
        if got > 0 && line.ends_with('\n') {
            let v: Value = match serde_json::from_str(line.trim_end()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let mut o = out.lock();
            let _ = if json {
                writeln!(o, "{}", line.trim_end())
            } else {
                writeln!(o, "{}", human(&v))
            };
            let _ = o.flush();
            n += 1;
            if count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            continue;
        }
        if got > 0 {
            // a partial line: rewind and wait for the rest
            let back = got as i64;
            r.seek_relative(-back).map_err(|e| anyhow!("{e}"))?;
        }
        if !follow || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_decision_marks_uncertain() {
        let mut v = serde_json::json!({"type": "decision", "time": 0.0, "policy": "exec-guard", "key": "exe:/tmp/x",
            "summary": "pid 1 sh /tmp/x", "answer": "N", "action": "allow", "scores": {"Y": -1.0, "N": -0.8}, "latency_us": 1000});
        let sure = human(&v);
        assert!(
            sure.contains("-> N [allow] (") && !sure.contains("uncertain"),
            "{sure}"
        );
        v["uncertain"] = true.into();
        let h = human(&v);
        assert!(h.contains("-> N [allow, uncertain]"), "{h}");
    }

    #[test]
    fn human_lines_escape_event_text() {
        let path =
            "/tmp/x\u{1b}]0;owned\u{7}\n12:00:00.000 exec-guard exe:/tmp/evil decided -> Y [allow]";
        let v = serde_json::json!({"type": "decision", "time": 1.0, "policy": "exec-guard", "key": format!("exe:{path}"),
            "summary": format!("pid 1 sh {path}"), "answer": "N", "action": "deny", "scores": {"Y\u{1b}[2J": -1.0}, "latency_us": 10});
        let h = human(&v);
        assert_eq!(h.lines().count(), 1, "{h:?}");
        assert!(!h.chars().any(|c| c.is_control()), "{h:?}");
        assert!(h.contains("exe:/tmp/x\\x1b]0;owned\\x07\\n12:00"), "{h}");
        for t in ["hit", "applied", "drop"] {
            let v = serde_json::json!({"type": t, "time": 1.0, "policy": "p", "key": path, "comm": "a\rb", "by_comm": "\u{9b}c",
                "reason": "\n", "hits": 1, "pid": 1});
            let h = human(&v);
            assert!(
                !h.chars().any(|c| c.is_control()) && h.lines().count() == 1,
                "{t}: {h:?}"
            );
        }
        // JSON output stays exact: the record round-trips.
        let j = v.to_string();
        assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), v);
        assert!(!j.contains('\n') && !j.contains('\u{1b}'));
    }
}
