//! `llamux unload` and `llamux status`: what a running loader left in the
//! run folder and the pin folder.

use anyhow::bail;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, PerCpuArray};
use llamux_common as c;
use serde_json::{json, Map as JMap, Value};

use super::bpffs::{check_pin_dir, pinned, remove_pins, PIN_DIR};
use super::state::{need_root, pid_alive, read_state, state_path, state_pid};
use crate::trace;
use llamux::render::terminal as esc;

pub fn unload() -> anyhow::Result<()> {
    need_root("llamux unload")?;
    let mut did = Vec::new();
    if let Some(st) = read_state() {
        let pid = state_pid(&st);
        if pid_alive(pid) {
            // SAFETY: sending SIGTERM to the loader recorded in the state file.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
                // reap it when it is our child (not the case with --detach)
                // SAFETY: non-blocking waitpid on a pid.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
            if pid_alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            did.push(format!("stopped relay pid {pid}"));
        }
        let _ = std::fs::remove_file(state_path());
    }
    if Path::new(PIN_DIR).exists() {
        check_pin_dir()?;
        let n = std::fs::read_dir(PIN_DIR).map(|r| r.count()).unwrap_or(0);
        remove_pins();
        if Path::new(PIN_DIR).exists() {
            bail!("could not remove {PIN_DIR}");
        }
        did.push(format!("removed {n} pins"));
    }
    let _ = std::fs::remove_file(trace::run_dir().join("relay.json"));
    if did.is_empty() {
        println!("llamux: nothing loaded");
    } else {
        println!("llamux: unloaded ({})", did.join(", "));
    }
    Ok(())
}

/// Exit quietly when the reader of our stdout goes away (`| grep -q`).
pub fn default_sigpipe() {
    // SAFETY: restores the default disposition of SIGPIPE; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

pub fn status(json_out: bool) -> anyhow::Result<()> {
    default_sigpipe();
    need_root("llamux status")?;
    let st = read_state();
    let pid = st.as_ref().map_or(0, state_pid);
    let alive = pid_alive(pid);
    let relay: Option<Value> = std::fs::read_to_string(trace::run_dir().join("relay.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let mut stats = JMap::new();
    let mut n_decisions = None;
    let pin_problem = check_pin_dir().err().map(|e| format!("{e:#}"));
    if Path::new(PIN_DIR).exists() && pin_problem.is_none() {
        if let Ok(m) = pinned("LLAMUX_STATS") {
            if let Ok(a) = PerCpuArray::<_, u64>::try_from(m) {
                for (i, name) in c::STAT_NAMES.iter().enumerate() {
                    let v: u64 = a.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
                    stats.insert(name.to_string(), json!(v));
                }
            }
        }
        if let Ok(m) = pinned("LLAMUX_DECISIONS") {
            if let Ok(h) = BpfHashMap::<_, c::DecisionKey, c::Decision>::try_from(m) {
                n_decisions = Some(h.keys().count());
            }
        }
    }
    let pins: Vec<String> = std::fs::read_dir(PIN_DIR)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let out = json!({
        "loaded": alive || !pins.is_empty(),
        "relay_pid": if alive { json!(pid) } else { Value::Null },
        "state": st, "relay": relay, "probe_stats": stats, "decisions_in_map": n_decisions, "pins": pins,
        "pin_dir_problem": pin_problem,
    });
    if json_out {
        println!("{out}");
        return Ok(());
    }
    if let Some(p) = out["pin_dir_problem"].as_str() {
        println!("warning: {}", esc(p));
    }
    if !out["loaded"].as_bool().unwrap_or(false) {
        println!("llamux: no policy loaded");
        return Ok(());
    }
    if let Some(st) = &st {
        println!(
            "relay: pid {pid} ({}), advisor {}",
            if alive { "running" } else { "NOT running" },
            esc(st["advisor"].as_str().unwrap_or("?"))
        );
        for p in st["policies"].as_array().into_iter().flatten() {
            println!(
                "policy {:<16} hook {:<8} key {:<5} default {:<5} ttl {}s rate {}/s  ({})",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["hook"].as_str().unwrap_or("")),
                esc(p["key"].as_str().unwrap_or("")),
                esc(p["default"].as_str().unwrap_or("")),
                p["ttl"],
                p["rate_limit"],
                esc(p["file"].as_str().unwrap_or(""))
            );
        }
        println!(
            "programs: {}",
            esc(&st["programs"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default())
        );
    }
    println!("pins: {}", esc(&pins.join(" ")));
    println!(
        "decisions in map: {}",
        n_decisions.map_or("?".into(), |n| n.to_string())
    );
    println!(
        "probe counters: {}",
        stats
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(r) = relay {
        println!(
            "relay counters: events={} requests={} decisions={} hits={} queue_dropped={} errors={}",
            r["events"], r["requests"], r["decisions"], r["hits"], r["queue_dropped"], r["errors"]
        );
        let dh: Vec<String> = r["decision_hits"]
            .as_array()
            .into_iter()
            .flatten()
            .take(20)
            .map(|h| {
                format!(
                    "{} {}={}",
                    esc(h["policy"].as_str().unwrap_or("")),
                    esc(h["key"].as_str().unwrap_or("")),
                    h["hits"]
                )
            })
            .collect();
        println!(
            "decision hits (tracepoints): {}",
            if dh.is_empty() {
                "none".into()
            } else {
                dh.join(", ")
            }
        );
    }
    Ok(())
}
