// SPDX-License-Identifier: GPL-2.0

//! The per-CPU worker pool behind the engine's `llx_parallel_run`.
//!
//! One kthread per online CPU after the first (the caller is the last
//! worker), placed by the scheduler (or bound, `pin_workers`). A job is
//! published in `next`, which packs the job's epoch with the next task
//! index: a claim is one compare-exchange that also proves the job is still
//! the current one, so the caller waits for the tasks that were claimed to
//! finish (`done`), never for a worker to show up; a worker that wakes late
//! finds nothing to claim (as the user-space pool, loader/src/pool.rs).
//! A thread runs its tasks back to back in one FPU section while the
//! section is younger than `fpu_slice_us` (the caller in the section it
//! called the engine from), then ends it and calls cond_resched before the
//! next task: the bound on a section is fpu_slice_us plus one task, and the
//! engine cuts a task to at most 2^20 multiply-adds (weight values times
//! the batch's tokens) or 8 rows (model.rs rows_per_task). Workers spin up
//! to `spin_us` for the next job and the caller for the job's end before
//! sleeping: a forward pass hands out jobs in quick bursts, and a wake-up
//! costs more than a short spin. Only one engine user runs at a time (the
//! engine turn, state.rs), so one job at a time.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use kernel::prelude::*;
use kernel::sync::{CondVar, Mutex, SpinLock};
use kernel::{new_condvar, new_mutex, new_spinlock};

use crate::engine::Job;
use crate::fpu::{self, FpuSection, STATS};
use crate::params;
use crate::sys::{self, KThread};

#[pin_data]
pub(crate) struct Pool {
    /// The current job (Job::to_raw), published by the release of `next`.
    job_f: AtomicUsize,
    job_data: AtomicPtr<c_void>,
    job_n: AtomicUsize,
    /// Epoch of the current job (high 32 bits) | next task index (low 32).
    next: AtomicU64,
    /// Tasks of the current job that have finished.
    done: AtomicUsize,
    /// Workers sleeping on `wake` (the caller wakes them only then).
    sleepers: AtomicU32,
    n_workers: AtomicU32,
    /// Taken by sleepers around their condition check (no lost wake-up).
    #[pin]
    lock: SpinLock<()>,
    #[pin]
    wake: CondVar,
    #[pin]
    finished: CondVar,
    #[pin]
    threads: Mutex<KVec<KThread>>,
}

const IDX_BITS: u32 = 32;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;

impl Pool {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Pool {
            job_f: AtomicUsize::new(0),
            job_data: AtomicPtr::new(core::ptr::null_mut()),
            job_n: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicU32::new(0),
            n_workers: AtomicU32::new(0),
            lock <- new_spinlock!((), "llamux_pool"),
            wake <- new_condvar!("llamux_pool_wake"),
            finished <- new_condvar!("llamux_pool_done"),
            threads <- new_mutex!(KVec::new(), "llamux_pool_threads"),
        })
    }

    /// Starts `nthreads - 1` workers (the caller is the last thread);
    /// returns how many threads run jobs, the caller included.
    ///
    /// # Safety
    /// The pool is not freed before `stop` has returned.
    pub(crate) unsafe fn start(self: Pin<&Self>, nthreads: u32) -> Result<u32> {
        let pool: &Pool = self.get_ref();
        let want = nthreads.saturating_sub(1) as usize;
        let mut threads = pool.threads.lock();
        threads.reserve(want, GFP_KERNEL)?;
        let ncpu = sys::online_cpus().count();
        let first = sys::online_cpus().next();
        // Worker i named (or, pin_workers, bound to) the i-th online CPU
        // after the first.
        for cpu in sys::online_cpus() {
            if threads.len() >= want {
                break;
            }
            if ncpu > 1 && Some(cpu) == first {
                continue;
            }
            let arg = pool as *const Pool as *mut c_void;
            // SAFETY: the pool is pinned and, by this function's contract,
            // outlives every worker (`stop` joins them).
            let t = unsafe {
                if params::pin_workers() {
                    KThread::start_on_cpu(worker_main, arg, cpu)
                } else {
                    KThread::start(worker_main, arg, cpu)
                }
            };
            match t {
                Ok(t) => threads.push(t, GFP_KERNEL)?,
                Err(e) => {
                    pr_err!("worker on cpu {}: error {}\n", cpu, e.to_errno());
                    break;
                }
            }
        }
        let n = threads.len() as u32;
        pool.n_workers.store(n, Ordering::Relaxed);
        Ok(n + 1)
    }

    /// Stops every worker (no job runs: the engine turn is not taken).
    pub(crate) fn stop(&self) {
        let threads = core::mem::replace(&mut *self.threads.lock(), KVec::new());
        for t in threads {
            t.stop();
        }
        self.n_workers.store(0, Ordering::Relaxed);
    }

    /// Spins up to spin_us until `cond` holds; false if it did not (then
    /// sleep). need_resched() keeps the spin polite under PREEMPT_NONE.
    fn spin_until(&self, cond: impl Fn() -> bool) -> bool {
        let end = sys::local_clock().saturating_add(params::spin_us() as u64 * 1000);
        while !cond() {
            if sys::need_resched() || sys::local_clock() > end {
                return false;
            }
            sys::cpu_relax();
        }
        true
    }

    /// Claims and runs tasks of job `epoch` until none are left, inside
    /// the caller's FPU section; past fpu_slice_us the section is ended,
    /// the CPU offered (cond_resched) and a new one opened.
    ///
    /// # Safety
    /// Called inside an FPU section (engine callback or worker), which is
    /// open again when this returns.
    unsafe fn take(&self, epoch: u64) {
        let slice_ns = params::fpu_slice_us() as u64 * 1000;
        let mut cur = self.next.load(Ordering::Acquire);
        loop {
            let i = (cur & IDX_MASK) as usize;
            if cur >> IDX_BITS != epoch || i >= self.job_n.load(Ordering::Relaxed) {
                return;
            }
            if let Err(v) =
                self.next
                    .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                cur = v;
                continue;
            }
            // Task i of the current job is ours: the caller waits for it
            // (`done` < n), so the job's words (published before `next`,
            // which the claim acquired) are its.
            // SAFETY: `f` is 0 or the word `run` stored from a Job.
            let job = unsafe {
                Job::from_raw(
                    self.job_f.load(Ordering::Relaxed),
                    self.job_data.load(Ordering::Relaxed),
                    self.job_n.load(Ordering::Relaxed),
                )
            };
            // SAFETY: `i < n`, inside an FPU section (this function's
            // contract), and the job's llx_parallel_run waits for it.
            unsafe { job.run(i) };
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == job.n {
                // The last task: the caller may be asleep (a spurious
                // notify when it is not is harmless). Does not sleep.
                drop(self.lock.lock());
                self.finished.notify_all();
            }
            if fpu::age_ns() >= slice_ns || sys::need_resched() {
                // SAFETY: inside a section (contract); cond_resched may sleep.
                unsafe { fpu::outside(sys::cond_resched) };
            }
            cur = self.next.load(Ordering::Acquire);
        }
    }

    /// Runs every task of `job` on the workers and this thread; returns
    /// when all have run.
    ///
    /// # Safety
    /// Called from the engine's llx_parallel_run, inside its FPU section
    /// (left only while waiting and between slices).
    pub(crate) unsafe fn run(&self, job: Job) {
        let workers = self.n_workers.load(Ordering::Relaxed);
        let (f, data, n) = job.to_raw();
        self.job_f.store(f, Ordering::Relaxed);
        self.job_data.store(data, Ordering::Relaxed);
        self.job_n.store(n, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        let epoch = ((self.next.load(Ordering::Relaxed) >> IDX_BITS) + 1) & IDX_MASK;
        // Publishes the job; SeqCst pairs with a sleeper's count and check.
        self.next.store(epoch << IDX_BITS, Ordering::SeqCst);
        if workers > 0 && n > 1 && n as u64 <= IDX_MASK && self.sleepers.load(Ordering::SeqCst) > 0
        {
            // Waking does not sleep: fine inside the section.
            drop(self.lock.lock());
            self.wake.notify_all();
        }
        if n as u64 > IDX_MASK {
            // More tasks than `next` can count (never in practice): alone.
            self.next
                .store(((epoch + 1) & IDX_MASK) << IDX_BITS, Ordering::SeqCst);
            for i in 0..n {
                // SAFETY: inside the engine's section; i < n.
                unsafe { job.run(i) };
            }
            return;
        }
        // SAFETY: inside the engine's section (contract).
        unsafe { self.take(epoch) };
        // The tasks' data lives on the engine's stack: wait for the ones
        // workers claimed.
        if self.done.load(Ordering::Acquire) == n {
            return;
        }
        let t0 = sys::local_clock();
        // SAFETY: inside the engine's section (contract); waiting may sleep.
        unsafe {
            fpu::outside(|| {
                if !self.spin_until(|| self.done.load(Ordering::Acquire) == n) {
                    let mut g = self.lock.lock();
                    while self.done.load(Ordering::Acquire) != n {
                        self.finished.wait(&mut g);
                    }
                }
            })
        };
        STATS.add_wait(&STATS.caller_wait_ns, t0);
    }

    fn worker_loop(&self) {
        let mut seen = 0u64;
        loop {
            let t0 = sys::local_clock();
            let epoch = || self.next.load(Ordering::Acquire) >> IDX_BITS;
            let new_job = || epoch() != seen || sys::kthread_should_stop();
            if !self.spin_until(new_job) {
                let mut g = self.lock.lock();
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                while self.next.load(Ordering::SeqCst) >> IDX_BITS == seen
                    && !sys::kthread_should_stop()
                {
                    // Interruptible: an idle worker is not a hung task.
                    // Kthreads get no signals, so the result is moot.
                    let _ = self.wake.wait_interruptible(&mut g);
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            if sys::kthread_should_stop() {
                break;
            }
            let e = epoch();
            if e == seen {
                continue;
            }
            seen = e;
            STATS.add_wait(&STATS.worker_wait_ns, t0);
            {
                let _fpu = FpuSection::enter();
                // SAFETY: inside the section just opened.
                unsafe { self.take(e) };
            }
            sys::cond_resched();
        }
    }
}

unsafe extern "C" fn worker_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the 'static pool `Pool::start` passed.
    let pool = unsafe { &*arg.cast::<Pool>() };
    pool.worker_loop();
    0
}
