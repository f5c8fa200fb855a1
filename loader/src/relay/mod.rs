//! The relay: while policies are loaded, probe events become advisor
//! questions and the answers become decisions in the pinned map.
//!
//! One round of `Relay::run`: intake (intake.rs) drains the rings into
//! the per-policy queue (queue.rs); queued jobs pass the rate limiter
//! (rate.rs), are asked of the advisor (advisor.rs) and written as
//! decisions (writer.rs); hits, decisions and counters go to the trace
//! and status files (output.rs).

mod advisor;
mod intake;
mod output;
mod queue;
mod rate;
mod writer;

use std::collections::HashMap as StdMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya_log::EbpfLogger;
use llamux_common as c;

use crate::bpf::{build_config, write_config, LoadOpts, Loaded};
use crate::policy::{self, Policy};
use crate::policy_advise::{Advise, AutoAdvisor};
use intake::Intake;
use output::{Counters, Decided, Output};
use queue::{Job, JobQueue};
use rate::RateLimiter;
use writer::DecisionWriter;

/// How long one round may spend asking the advisor before the rings are
/// read again.
const ADVISE_BUDGET: Duration = Duration::from_millis(200);
/// Sleep when a round found the rings empty.
const IDLE_SLEEP: Duration = Duration::from_millis(20);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// aya-log's records from the probes, on stderr.
struct StderrLog;
impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("llamux[bpf] {}", r.args());
    }
    fn flush(&self) {}
}

/// Per-policy runtime state in the relay.
pub struct Live {
    pub pol: Policy,
    /// The policy's handle in the advisor.
    pub handle: usize,
    limiter: RateLimiter,
    /// Keys decided and still live (loader-side dedupe for syscall/sched):
    /// key hash -> expiry (0: never).
    decided: StdMap<u64, u64>,
    pub rate_limited: u64,
    pub decisions: u64,
}

impl Live {
    /// A live decision exists for this key hash.
    fn is_decided(&self, hash: u64) -> bool {
        self.decided
            .get(&hash)
            .is_some_and(|&exp| exp == 0 || exp > mono_ns())
    }

    /// The key a job is decided under and how it is shown.
    fn job_key(&self, job: &Job) -> Option<(c::DecisionKey, String)> {
        match (job.key, self.pol.key_of(&job.event)) {
            // Exec and open requests: the probe's inode key, shown by the
            // name the hook saw.
            (Some(k), Ok((_, shown))) if k.is_file() => Some((k, shown)),
            (_, Ok(k)) => Some(k),
            (_, Err(_)) => None,
        }
    }
}

pub struct Relay {
    live: Vec<Live>,
    adv: AutoAdvisor,
    intake: Intake,
    queue: JobQueue,
    writer: DecisionWriter,
    out: Output,
    cnt: Counters,
    logger: Option<EbpfLogger<StderrLog>>,
}

/// Relays until SIGTERM or SIGINT. `ready_fd` (--detach) gets one byte
/// once the advisor is ready.
pub fn run(
    loaded: &mut Loaded,
    pols: &[Policy],
    opts: &LoadOpts,
    ready_fd: Option<i32>,
) -> anyhow::Result<()> {
    let mut relay = Relay::start(loaded, pols, opts)?;
    if let Some(fd) = ready_fd {
        // SAFETY: fd is the pipe's write end, owned by this process.
        unsafe {
            libc::write(fd, b"k".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
    relay.run();
    Ok(())
}

impl Relay {
    /// Takes the maps, prepares the advisor (each policy's prefix is
    /// prefilled) and writes the state file.
    fn start(loaded: &mut Loaded, pols: &[Policy], opts: &LoadOpts) -> anyhow::Result<Self> {
        let me = std::process::id();
        // The probes skip this process's own events (after a --detach
        // fork it is not the one that loaded them).
        build_config(pols, me).and_then(|cfg| write_config(&mut loaded.bpf, cfg))?;
        // SAFETY: installing an async-signal-safe handler (one atomic store).
        unsafe {
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        }
        let logger = EbpfLogger::init_with_logger(&mut loaded.bpf, StderrLog).ok();

        let t0 = Instant::now();
        // One worker thread unless asked: the relay shares the CPUs with
        // the workload it watches, and a pool spinning on a busy CPU is
        // slower.
        let mut adv = AutoAdvisor::new(
            opts.advisor,
            opts.model.as_deref(),
            opts.threads.or(Some(1)),
            opts.ctx,
        )?;
        let mut live = Vec::new();
        for p in pols {
            live.push(Live {
                pol: p.clone(),
                handle: adv.add_policy(p)?,
                limiter: RateLimiter::new(p.rate_limit),
                decided: StdMap::new(),
                rate_limited: 0,
                decisions: 0,
            });
        }
        let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let out = Output::new(&mut loaded.bpf, me)?;
        output::write_state(me, adv.name(), pols, opts, loaded, prefill_ms)?;
        eprintln!(
            "llamux: advisor ready ({}, prefixes prefilled in {prefill_ms:.0} ms); relaying",
            adv.name()
        );
        Ok(Relay {
            intake: Intake::new(&mut loaded.bpf)?,
            writer: DecisionWriter::new(&mut loaded.bpf)?,
            queue: JobQueue::new(live.len()),
            live,
            adv,
            out,
            cnt: Counters::default(),
            logger,
        })
    }

    fn run(&mut self) {
        while !STOP.load(Ordering::SeqCst) {
            let got = self
                .intake
                .drain(&self.live, &mut self.queue, &mut self.cnt);
            self.trace_hits();
            if let Some(l) = self.logger.as_mut() {
                l.flush();
            }
            self.advise_queued();
            self.out
                .status_if_due(&self.cnt, self.queue.len(), &self.live, &self.writer.names);
            if got == 0 {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
        eprintln!(
            "llamux: stopping ({} events, {} decisions)",
            self.cnt.events, self.cnt.decisions
        );
    }

    /// Decision hits (LSM and tracepoints) and applied nice changes.
    fn trace_hits(&mut self) {
        while let Some(e) = self.intake.next_hit() {
            self.cnt.hits += 1;
            self.out.hit(&e, &self.live, &self.writer.names);
        }
    }

    /// As many queued jobs as the policies' rate limits and ADVISE_BUDGET
    /// allow.
    fn advise_queued(&mut self) {
        let until = Instant::now() + ADVISE_BUDGET;
        while Instant::now() < until {
            let Some(job) = self.queue.pop() else {
                break;
            };
            self.advise(job);
        }
    }

    fn advise(&mut self, job: Job) {
        let l = &mut self.live[job.policy];
        let Some((key, shown)) = l.job_key(&job) else {
            return;
        };
        self.queue.done(job.policy, key);
        if !l.limiter.try_take() {
            l.rate_limited += 1;
            self.out.rate_limited(&l.pol.name, &shown);
            return;
        }
        let answer = match advisor::ask(&mut self.adv, l, &job) {
            Ok(a) => a,
            Err(e) => {
                self.cnt.errors += 1;
                eprintln!("llamux: advise ({}): {e:#}", l.pol.name);
                return;
            }
        };
        let now_ns = mono_ns();
        let v = &answer.verdict;
        let expires = policy::expiry_ns(now_ns, l.pol.ttl_s);
        let d = c::Decision {
            action: v.action.code(),
            policy: job.policy as u32,
            expires_ns: expires,
            answer: v.best as u32,
            _pad: 0,
            ctime_ns: job.ctime_ns,
        };
        let applied = self.writer.apply(key, d, v.action, job.pid);
        if applied.map_failed {
            self.cnt.errors += 1;
        }
        l.decided.insert(key.hash, expires);
        self.writer.remember(key, &l.pol.name, &shown);
        l.decisions += 1;
        self.cnt.decisions += 1;
        self.out.decision(&Decided {
            live: l,
            job: &job,
            key,
            shown: &shown,
            answer: &answer,
            applied: &applied.text,
            now_ns,
            advisor: self.adv.name(),
        });
    }
}
