// SPDX-License-Identifier: GPL-2.0

//! The per-CPU worker pool behind the engine's `llx_parallel_run`.
//!
//! One kthread per online CPU after the first (the caller is the last
//! worker). A job is published by bumping `gen`; workers and the caller
//! claim task indices from `next` until none are left, each task in its
//! own short FPU section. Workers spin up to `spin_us` for the next job and
//! the caller for the job's end before sleeping: a forward pass hands out
//! jobs in quick bursts, and a wake-up costs more than a short spin.
//! Only one engine user runs at a time (the engine turn, state.rs), so one
//! job at a time.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use kernel::prelude::*;
use kernel::sync::{CondVar, Mutex, SpinLock};
use kernel::{new_condvar, new_mutex, new_spinlock};

use crate::engine::Job;
use crate::params;
use crate::sys::{self, KThread};

#[pin_data]
pub(crate) struct Pool {
    /// The current job (Job::to_raw), published by the release of `gen`.
    job_f: AtomicUsize,
    job_data: AtomicPtr<c_void>,
    job_n: AtomicUsize,
    next: AtomicUsize,
    /// Workers still in the current job.
    busy: AtomicU32,
    gen: AtomicU64,
    /// Workers sleeping on `wake` (the caller wakes them only then).
    sleepers: AtomicU32,
    n_workers: AtomicU32,
    /// Taken by sleepers around their condition check (no lost wake-up).
    #[pin]
    lock: SpinLock<()>,
    #[pin]
    wake: CondVar,
    #[pin]
    done: CondVar,
    #[pin]
    threads: Mutex<KVec<KThread>>,
}

impl Pool {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Pool {
            job_f: AtomicUsize::new(0),
            job_data: AtomicPtr::new(core::ptr::null_mut()),
            job_n: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicU32::new(0),
            gen: AtomicU64::new(0),
            sleepers: AtomicU32::new(0),
            n_workers: AtomicU32::new(0),
            lock <- new_spinlock!((), "llamux_pool"),
            wake <- new_condvar!("llamux_pool_wake"),
            done <- new_condvar!("llamux_pool_done"),
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
        // Worker i on the i-th online CPU after the first (the caller's
        // usual place is free to move anywhere).
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
            match unsafe { KThread::start_on_cpu(worker_main, arg, cpu) } {
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

    /// Claims and runs task indices until none are left.
    fn take(&self, job: &Job) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= job.n {
                break;
            }
            // SAFETY: `i < n`, and the job's llx_parallel_run is still
            // waiting: for the caller, it is this call; for a worker, the
            // caller waits until `busy` (which counts it) drops to 0.
            unsafe { job.run(i) };
            sys::cond_resched();
        }
    }

    /// Runs every task of `job` on the workers and this thread; returns
    /// when all have run (outside any FPU section).
    pub(crate) fn run(&self, job: Job) {
        let workers = self.n_workers.load(Ordering::Relaxed);
        if workers == 0 || job.n == 1 {
            self.next.store(0, Ordering::Relaxed);
            self.take(&job);
            return;
        }
        let (f, data, n) = job.to_raw();
        self.job_f.store(f, Ordering::Relaxed);
        self.job_data.store(data, Ordering::Relaxed);
        self.job_n.store(n, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
        self.busy.store(workers, Ordering::Relaxed);
        // Publishes the job; SeqCst pairs with a sleeper's count and check.
        self.gen.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            drop(self.lock.lock());
            self.wake.notify_all();
        }
        self.take(&job);
        // The tasks' data lives on the engine's stack: wait for all.
        if !self.spin_until(|| self.busy.load(Ordering::Acquire) == 0) {
            let mut g = self.lock.lock();
            while self.busy.load(Ordering::Acquire) != 0 {
                self.done.wait(&mut g);
            }
        }
    }

    fn worker_loop(&self) {
        let mut seen = 0u64;
        loop {
            let new_job = || self.gen.load(Ordering::Acquire) != seen || sys::kthread_should_stop();
            if !self.spin_until(new_job) {
                let mut g = self.lock.lock();
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                while self.gen.load(Ordering::SeqCst) == seen && !sys::kthread_should_stop() {
                    // Interruptible: an idle worker is not a hung task.
                    // Kthreads get no signals, so the result is moot.
                    let _ = self.wake.wait_interruptible(&mut g);
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            if sys::kthread_should_stop() {
                break;
            }
            let g = self.gen.load(Ordering::Acquire);
            if g == seen {
                continue;
            }
            seen = g;
            // SAFETY: the words `run` stored before publishing `gen`
            // (acquired above) are one job's.
            let job = unsafe {
                Job::from_raw(
                    self.job_f.load(Ordering::Relaxed),
                    self.job_data.load(Ordering::Relaxed),
                    self.job_n.load(Ordering::Relaxed),
                )
            };
            self.take(&job);
            if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
                drop(self.lock.lock());
                self.done.notify_all();
            }
        }
    }
}

unsafe extern "C" fn worker_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the 'static pool `Pool::start` passed.
    let pool = unsafe { &*arg.cast::<Pool>() };
    pool.worker_loop();
    0
}
