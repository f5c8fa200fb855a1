//! Trace and status output: records for `llamux trace` (trace.jsonl),
//! the relay's counters (relay.json, every second) and its state file.

use anyhow::{anyhow, Context as _};
use std::collections::HashMap as StdMap;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::Ebpf;
use llamux_common as c;
use serde_json::{json, Value};

use super::advisor::Answer;
use super::queue::Job;
use super::Live;
use crate::bpf::{state_path, LoadOpts, Loaded};
use crate::event::{self, hook_name};
use crate::fsafe;
use crate::policy::Policy;
use crate::trace::{self, TraceWriter};

#[derive(Default)]
pub struct Counters {
    pub events: u64,
    pub hits: u64,
    pub requests: u64,
    pub queued: u64,
    pub queue_dropped: u64,
    pub decisions: u64,
    pub errors: u64,
    pub filtered: u64,
}

/// One decision, as the trace records it.
pub struct Decided<'a> {
    pub live: &'a Live,
    pub job: &'a Job,
    pub key: c::DecisionKey,
    pub shown: &'a str,
    pub answer: &'a Answer,
    pub applied: &'a str,
    pub now_ns: u64,
    pub advisor: &'static str,
}

pub struct Output {
    me: u32,
    trace: TraceWriter,
    hitcount: BpfHashMap<MapData, c::DecisionKey, c::HitStat>,
    last_status: Instant,
}

impl Output {
    pub fn new(bpf: &mut Ebpf, me: u32) -> anyhow::Result<Self> {
        let hitcount = BpfHashMap::try_from(
            bpf.take_map("LLAMUX_HITCOUNT")
                .context("no LLAMUX_HITCOUNT map")?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok(Output {
            me,
            trace: TraceWriter::create()?,
            hitcount,
            last_status: Instant::now(),
        })
    }

    /// A decision hit or an applied nice change, under the policy that
    /// made the decision.
    pub fn hit(
        &mut self,
        e: &c::Event,
        live: &[Live],
        names: &StdMap<c::DecisionKey, (String, String)>,
    ) {
        let hook_pol = || {
            live.iter()
                .find(|l| l.pol.hook.id() == e.key.hook)
                .map(|l| l.pol.name.clone())
        };
        let pol = live
            .get((e.c & 0xffff_ffff) as usize)
            .map(|l| l.pol.name.clone())
            .or_else(hook_pol)
            .unwrap_or_default();
        let mut rec = event::hit_json(e, &pol, trace::now_unix());
        // An inode-keyed hit is shown under the name it was decided for.
        if let (Some((_, shown)), true) = (names.get(&e.key), e.key.is_file()) {
            rec["key"] = json!(shown);
        }
        self.trace.write(&rec);
    }

    pub fn rate_limited(&mut self, policy: &str, shown: &str) {
        self.trace.write(&json!({"type": "drop", "time": trace::now_unix(), "policy": policy, "reason": "rate_limit", "key": shown}));
    }

    pub fn decision(&mut self, d: &Decided<'_>) {
        let (pol, job, a, v) = (&d.live.pol, d.job, &d.answer.advice, &d.answer.verdict);
        let scores = pol.scores_by_answer(&a.scores);
        self.trace.write(&json!({
            "type": "decision", "time": trace::now_unix(), "policy": pol.name, "hook": pol.hook.name(),
            "key": d.shown, "key_hash": format!("{:016x}", d.key.hash), "file_id": event::file_id(&d.key), "pid": job.pid, "summary": job.summary,
            "event": job.event, "prompt": d.answer.prompt, "answer": pol.answers[v.best].text, "answer_index": v.best,
            "action": v.action.name(), "uncertain": v.uncertain, "margin": v.margin, "applied": d.applied, "scores": scores, "score_list": a.scores,
            "latency_us": a.latency_us, "e2e_us": d.now_ns.saturating_sub(job.ts_ns) / 1000,
            "event_tokens": a.event_tokens, "advisor": d.advisor, "ttl": pol.ttl_s,
        }));
    }

    /// Rewrites relay.json when a second has passed since the last time.
    pub fn status_if_due(
        &mut self,
        cnt: &Counters,
        queue_len: usize,
        live: &[Live],
        names: &StdMap<c::DecisionKey, (String, String)>,
    ) {
        if self.last_status.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_status = Instant::now();
        let st = json!({"pid": self.me, "time": trace::now_unix(), "events": cnt.events, "hits": cnt.hits, "requests": cnt.requests,
            "queued": cnt.queued, "queue_len": queue_len, "queue_dropped": cnt.queue_dropped, "decisions": cnt.decisions,
            "errors": cnt.errors, "filtered": cnt.filtered,
            "policies": live.iter().map(|l| json!({"name": l.pol.name, "decisions": l.decisions, "rate_limited": l.rate_limited})).collect::<Vec<_>>(),
            "decision_hits": decision_hits(&self.hitcount, names)});
        let _ = fsafe::write_private(
            &trace::run_dir().join("relay.json"),
            st.to_string().as_bytes(),
        );
    }
}

/// The state file `llamux status` and `llamux unload` read.
pub fn write_state(
    me: u32,
    advisor: &str,
    pols: &[Policy],
    opts: &LoadOpts,
    loaded: &Loaded,
    prefill_ms: f64,
) -> anyhow::Result<()> {
    let (map_pins, att) = (&loaded.map_pins, &loaded.att);
    let state = json!({
        "pid": me,
        "started": trace::now_unix(),
        "advisor": advisor,
        "model": opts.model.as_ref().map(|m| m.display().to_string()).unwrap_or_else(|| "kernel module's model".into()),
        "policies": pols.iter().map(|p| json!({"name": p.name, "description": p.description, "file": p.file.display().to_string(), "hook": p.hook.name(),
            "key": p.key.name(), "default": if p.default_deny {"deny"} else {"allow"}, "ttl": p.ttl_s, "rate_limit": p.rate_limit})).collect::<Vec<_>>(),
        "programs": att.programs,
        "pins": map_pins.iter().chain(att.pins.iter()).map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "detached": opts.detach,
        "prefill_ms": prefill_ms,
    });
    fsafe::write_private(
        &state_path(),
        serde_json::to_string_pretty(&state)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// The tracepoints' per-decision hit counters (HITCOUNT), most hit first.
fn decision_hits(
    m: &BpfHashMap<MapData, c::DecisionKey, c::HitStat>,
    names: &StdMap<c::DecisionKey, (String, String)>,
) -> Vec<Value> {
    let mut v: Vec<(c::DecisionKey, u64)> = m.iter().flatten().map(|(k, h)| (k, h.hits)).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v.truncate(64);
    v.iter()
        .map(|(k, n)| {
            let (pol, shown) = names.get(k).cloned().unwrap_or_else(|| {
                (
                    String::new(),
                    format!("{}:{:016x}", hook_name(k.hook), k.hash),
                )
            });
            json!({"policy": pol, "hook": hook_name(k.hook), "key": shown, "hits": n})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn nice_record_keeps_negative_values_and_the_caller() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_NICE;
        e.pid = 42;
        e.tid = 43;
        e.ppid = 7;
        e.comm[..2].copy_from_slice(b"dd");
        e.pcomm[..6].copy_from_slice(b"renice");
        e.a = -3i64 as u64;
        e.b = 5;
        e.c = 1u64 << 32;
        e.key = c::DecisionKey {
            hook: c::HOOK_SCHED,
            kind: c::KEY_PID,
            hash: 42,
            dev: 0,
            gen: 0,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(r["type"], "applied");
        assert_eq!(r["key"], "pid:42");
        assert_eq!(
            (r["nice_old"].as_i64(), r["nice_new"].as_i64()),
            (Some(-3), Some(5))
        );
        assert_eq!(
            (r["by_pid"].as_u64(), r["by_comm"].as_str()),
            (Some(7), Some("renice"))
        );
        assert_eq!(
            (r["hook"].as_str(), r["answer_index"].as_u64()),
            (Some("sched"), Some(1))
        );
    }

    #[test]
    fn tracepoint_hit_record_names_its_probe_and_count() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_TP_HIT;
        e.a = 1234;
        e.b = c::ACT_ALLOW as u64;
        e.path[..9].copy_from_slice(b"/tmp/tool");
        e.key = c::DecisionKey {
            hook: c::HOOK_EXEC,
            kind: c::KEY_EXE,
            hash: 7,
            dev: 1,
            gen: 2,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (r["type"].as_str(), r["key"].as_str()),
            (Some("hit"), Some("exe:/tmp/tool"))
        );
        assert_eq!(r["probe"], "tracepoint/sched/sched_process_exec");
        assert_eq!(r["hits"].as_u64(), Some(1234));
        e.key = c::DecisionKey {
            hook: c::HOOK_SCHED,
            kind: c::KEY_PID,
            hash: 9,
            dev: 0,
            gen: 0,
        };
        assert_eq!(
            event::hit_json(&e, "", 0.0)["probe"],
            "tracepoint/raw_syscalls/sys_enter"
        );
        assert_eq!(event::hit_json(&e, "", 0.0)["key"], "pid:9");
        assert!(trace::human(&event::hit_json(&e, "", 0.0)).contains("1234 hits"));
        // A pid-keyed open hit from sys_enter carries the path the task opened.
        e.key = c::DecisionKey {
            hook: c::HOOK_OPEN,
            kind: c::KEY_PID,
            hash: 8,
            dev: 0,
            gen: 0,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (r["key"].as_str(), r["path"].as_str()),
            (Some("pid:8"), Some("/tmp/tool"))
        );
        assert_eq!(r["probe"], "tracepoint/raw_syscalls/sys_enter");
        assert!(r.get("file_id").is_none());
        // An inode-keyed open hit (file_open) names the file and its identity.
        e.kind = c::EV_HIT;
        e.a = c::HOOK_OPEN as u64;
        e.key = c::DecisionKey {
            hook: c::HOOK_OPEN,
            kind: c::KEY_FILE,
            hash: 8,
            dev: 1,
            gen: 3,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (
                r["key"].as_str(),
                r["file_id"].as_str(),
                r["probe"].as_str()
            ),
            (Some("file:tool"), Some("1:8:3"), Some("lsm/file_open"))
        );
    }
}
