//! Ring intake: the probes' rings read into queued jobs (events and
//! requests) or trace records (hits), and the per-task memory the filters
//! need between events.

use anyhow::{anyhow, Context as _};
use std::collections::HashMap as StdMap;

use aya::maps::{MapData, RingBuf};
use aya::Ebpf;
use llamux_common as c;
use serde_json::{Map as JMap, Value};

use super::output::Counters;
use super::queue::{JobQueue, Lane, Pushed};
use super::Live;
use crate::event::{self, cstr};
use crate::policy::Hook;
use crate::trace;

/// Ring items read per round at most, so hits and the queue keep moving
/// under a flood.
const ROUND_MAX: usize = 4096;

pub struct Intake {
    events: RingBuf<MapData>,
    requests: RingBuf<MapData>,
    hits: RingBuf<MapData>,
    /// Per pid: (syscall count, ts_ns) of the previous sample.
    last_sys: StdMap<u32, (u64, u64)>,
    /// Per tid: when the sched probe first saw it run.
    first_seen: StdMap<u32, u64>,
}

fn ring(bpf: &mut Ebpf, name: &str) -> anyhow::Result<RingBuf<MapData>> {
    RingBuf::try_from(
        bpf.take_map(name)
            .with_context(|| format!("no {name} map"))?,
    )
    .map_err(|e| anyhow!("{e}"))
}

fn fields(e: &c::Event, hook: Hook, rate: f64, first_seen_ns: u64) -> JMap<String, Value> {
    event::fields(e, hook, rate, first_seen_ns, trace::now_unix())
}

impl Intake {
    pub fn new(bpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Intake {
            events: ring(bpf, "LLAMUX_EVENTS")?,
            requests: ring(bpf, "LLAMUX_REQUESTS")?,
            hits: ring(bpf, "LLAMUX_HITS")?,
            last_sys: StdMap::new(),
            first_seen: StdMap::new(),
        })
    }

    /// Reads up to ROUND_MAX events, requests (their own ring) first, and
    /// queues those a policy wants decided. Returns the items read.
    pub fn drain(&mut self, live: &[Live], queue: &mut JobQueue, cnt: &mut Counters) -> usize {
        let mut got = 0;
        while got < ROUND_MAX {
            let Some(item) = self.requests.next().or_else(|| self.events.next()) else {
                break;
            };
            got += 1;
            let Some(e) = event::decode(&item) else {
                continue;
            };
            drop(item);
            cnt.events += 1;
            match e.kind {
                c::EV_REQUEST => on_request(&e, live, queue, cnt),
                c::EV_SYSCALL => self.on_syscall(&e, live, queue, cnt),
                c::EV_SCHED => self.on_sched(&e, live, queue, cnt),
                c::EV_EXIT => {
                    self.last_sys.remove(&e.pid);
                    self.first_seen.remove(&e.tid);
                }
                _ => {}
            }
        }
        got
    }

    /// The next decision hit or applied nice change.
    pub fn next_hit(&mut self) -> Option<c::Event> {
        loop {
            let item = self.hits.next()?;
            if let Some(e) = event::decode(&item) {
                return Some(e);
            }
        }
    }

    /// A syscall sample: the pid's rate since its previous sample, for
    /// every syscall policy whose filters it passes.
    fn on_syscall(&mut self, e: &c::Event, live: &[Live], q: &mut JobQueue, cnt: &mut Counters) {
        let prev = self.last_sys.insert(e.pid, (e.b, e.ts_ns));
        let Some((pc, pt)) = prev else { return };
        let dt = e.ts_ns.saturating_sub(pt) as f64 / 1e9;
        if dt <= 0.0 {
            return;
        }
        let rate = e.b.saturating_sub(pc) as f64 / dt;
        for (i, l) in live.iter().enumerate() {
            if l.pol.hook != Hook::Syscall {
                continue;
            }
            if rate < l.pol.min_rate || l.pol.exclude_comm.iter().any(|x| *x == cstr(&e.comm)) {
                cnt.filtered += 1;
                continue;
            }
            let ev = fields(e, Hook::Syscall, rate, 0);
            let Ok((key, _)) = l.pol.key_of(&ev) else {
                continue;
            };
            if l.is_decided(key.hash) {
                continue;
            }
            let summary = format!("pid {} {} {:.0} syscalls/s", e.pid, cstr(&e.comm), rate);
            count(cnt, q.push(Lane::Fair, i, key, e, ev, summary));
        }
    }

    /// A sched sample (runtime and switches so far) for every sched policy.
    fn on_sched(&mut self, e: &c::Event, live: &[Live], q: &mut JobQueue, cnt: &mut Counters) {
        let fs = *self
            .first_seen
            .entry(e.tid)
            .or_insert(e.ts_ns.saturating_sub(e.a));
        for (i, l) in live.iter().enumerate() {
            if l.pol.hook != Hook::Sched {
                continue;
            }
            if l.pol.exclude_comm.iter().any(|x| *x == cstr(&e.comm)) {
                cnt.filtered += 1;
                continue;
            }
            let ev = fields(e, Hook::Sched, 0.0, fs);
            let Ok((key, _)) = l.pol.key_of(&ev) else {
                continue;
            };
            if l.is_decided(key.hash) {
                continue;
            }
            let summary = format!(
                "pid {} {} runtime {} ms, {} switches ({}% involuntary)",
                e.pid,
                cstr(&e.comm),
                e.a / 1_000_000,
                e.b,
                ev["involuntary_pct"]
            );
            count(cnt, q.push(Lane::Fair, i, key, e, ev, summary));
        }
    }
}

/// An LSM hook's decision request (exec or open), for the policy of that
/// hook, under the probe's key.
fn on_request(e: &c::Event, live: &[Live], q: &mut JobQueue, cnt: &mut Counters) {
    cnt.requests += 1;
    let hook = if e.a as u32 == c::HOOK_EXEC {
        Hook::Exec
    } else {
        Hook::Open
    };
    if let Some(i) = live.iter().position(|l| l.pol.hook == hook) {
        let ev = fields(e, hook, 0.0, 0);
        let summary = format!("pid {} {} {}", e.pid, cstr(&e.comm), event::path_text(e));
        count(cnt, q.push(Lane::Urgent, i, e.key, e, ev, summary));
    }
}

fn count(cnt: &mut Counters, p: Pushed) {
    match p {
        Pushed::Queued => cnt.queued += 1,
        Pushed::Dropped => cnt.queue_dropped += 1,
        Pushed::Duplicate => {}
    }
}
