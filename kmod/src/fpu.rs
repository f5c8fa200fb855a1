// SPDX-License-Identifier: GPL-2.0

//! FPU sections around engine calls, and their counters.
//!
//! The engine is a hard-float object: every call into it runs between
//! kernel_fpu_begin_mask(KFPU_MXCSR) and kernel_fpu_end(), in process
//! context, with preemption off, so nothing may sleep inside. Its allocator
//! and parallel-run callbacks arrive inside such a section and leave it
//! while they may sleep (`outside`). That is sound because the SysV ABI
//! makes every xmm/ymm register caller-saved across these extern "C" calls
//! (the engine holds no vector state in registers over them) and
//! KFPU_MXCSR reloads the default MXCSR the engine assumes.
//!
//! Every section is timed (local_clock at begin and end, on the CPU it
//! holds: preemption is off in between), so status can show how many the
//! last request opened and how long the longest was; `age_ns` lets the
//! worker pool end a section between tasks once it is old enough.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sys;

/// CPUs whose sections are timed (a section on a CPU past this is not).
const MAX_CPUS: usize = 256;

/// When the section open on each CPU began (local_clock ns).
static START: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Counters of the current (or last) request: reset by `Stats::begin`.
pub(crate) struct Stats {
    active: AtomicBool,
    since: AtomicU64,
    pub(crate) sections: AtomicU64,
    pub(crate) max_ns: AtomicU64,
    /// Time workers spent between jobs (spinning or asleep), summed.
    pub(crate) worker_wait_ns: AtomicU64,
    /// Time the caller spent waiting for workers to finish a job.
    pub(crate) caller_wait_ns: AtomicU64,
}

pub(crate) static STATS: Stats = Stats {
    active: AtomicBool::new(false),
    since: AtomicU64::new(0),
    sections: AtomicU64::new(0),
    max_ns: AtomicU64::new(0),
    worker_wait_ns: AtomicU64::new(0),
    caller_wait_ns: AtomicU64::new(0),
};

impl Stats {
    /// A request starts (the engine turn holder): counters from zero.
    pub(crate) fn begin(&self) {
        self.sections.store(0, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
        self.worker_wait_ns.store(0, Ordering::Relaxed);
        self.caller_wait_ns.store(0, Ordering::Relaxed);
        self.since.store(sys::local_clock(), Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
    }

    /// The request ended: the counters keep its values.
    pub(crate) fn end(&self) {
        self.active.store(false, Ordering::Release);
    }

    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Adds a wait that began at `t0` (clamped to the request's start).
    pub(crate) fn add_wait(&self, counter: &AtomicU64, t0: u64) {
        if self.active() {
            let t0 = t0.max(self.since.load(Ordering::Relaxed));
            counter.fetch_add(sys::local_clock().saturating_sub(t0), Ordering::Relaxed);
        }
    }
}

/// kernel_fpu_begin and the section's start time.
fn begin() {
    sys::fpu_begin();
    if let Some(s) = START.get(sys::cpu_id()) {
        s.store(sys::local_clock(), Ordering::Relaxed);
    }
}

/// The section's length into the counters, then kernel_fpu_end.
fn end() {
    if STATS.active() {
        if let Some(s) = START.get(sys::cpu_id()) {
            let ns = sys::local_clock().saturating_sub(s.load(Ordering::Relaxed));
            STATS.sections.fetch_add(1, Ordering::Relaxed);
            STATS.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }
    sys::fpu_end();
}

/// How long the section this CPU is in has been open.
///
/// Only meaningful inside a section (preemption is off there, so the CPU
/// is the one that opened it).
pub(crate) fn age_ns() -> u64 {
    START.get(sys::cpu_id()).map_or(0, |s| {
        sys::local_clock().saturating_sub(s.load(Ordering::Relaxed))
    })
}

/// An open FPU section; closed on drop. Not `Send`: the section belongs to
/// the CPU and task that opened it.
pub(crate) struct FpuSection {
    _not_send: PhantomData<*mut ()>,
}

impl FpuSection {
    /// Opens a section. The caller runs only engine code inside.
    pub(crate) fn enter() -> Self {
        begin();
        FpuSection {
            _not_send: PhantomData,
        }
    }
}

impl Drop for FpuSection {
    fn drop(&mut self) {
        end();
    }
}

/// Runs `f` outside the caller's FPU section and reopens it afterwards:
/// for engine callbacks that may sleep.
///
/// # Safety
/// Called only from an engine callback, i.e. inside an `FpuSection` that
/// engine code is running in.
pub(crate) unsafe fn outside<R>(f: impl FnOnce() -> R) -> R {
    end();
    let r = f();
    begin();
    r
}
