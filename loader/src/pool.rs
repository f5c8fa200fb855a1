//! A persistent thread pool implementing the engine's `Exec`: the calling
//! thread and `threads - 1` workers claim tasks from one shared counter.
//!
//! A forward pass runs hundreds of short jobs (one per matmul), so handing
//! out a job must cost far less than a futex wake-up, and on a busy machine
//! a descheduled worker must not stall everyone:
//! - idle workers spin on the counter for a while, then sleep on a condvar;
//! - the counter packs (job epoch, task count, next task) into one atomic,
//!   so a claim is one compare-exchange that also proves the job is still
//!   current; a late worker just finds nothing to claim;
//! - `run` waits for tasks to finish, not for workers to show up: if no
//!   worker wakes in time, the caller runs every task itself.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llamux_engine::exec::Exec;

/// How long an idle worker spins before it sleeps: long enough to bridge
/// the gaps between a token's matmuls and between tokens (sampling).
const SPIN: Duration = Duration::from_millis(5);

// `next` layout: epoch (24 bits) | task count (20) | next task index (20).
const IDX_BITS: u32 = 20;
const MAX_TASKS: usize = (1 << IDX_BITS) - 1;
const EPOCH_SHIFT: u32 = 2 * IDX_BITS;

fn pack(epoch: u64, n: usize, i: usize) -> u64 {
    (epoch << EPOCH_SHIFT) | ((n as u64) << IDX_BITS) | i as u64
}

fn unpack(v: u64) -> (u64, usize, usize) {
    let m = (1u64 << IDX_BITS) - 1;
    (
        v >> EPOCH_SHIFT,
        ((v >> IDX_BITS) & m) as usize,
        (v & m) as usize,
    )
}

type Task<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    next: AtomicU64,
    /// The current job's task: points at a `Task` in `run`'s frame. Only
    /// dereferenced after a successful claim, i.e. while `run` waits.
    job: AtomicPtr<Task<'static>>,
    /// Tasks of the current job that have finished.
    done: AtomicUsize,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    epoch: u64,
}

impl Pool {
    /// `threads - 1` workers; an error names the reason a thread could not
    /// be started (a process limit, memory), after stopping those that were.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            next: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::new(),
            epoch: 0,
        };
        for i in 1..threads.max(1) {
            let s = pool.shared.clone();
            match std::thread::Builder::new()
                .name("llamux-worker".into())
                .spawn(move || worker(&s))
            {
                Ok(h) => pool.workers.push(h),
                // Dropping `pool` stops and joins the workers already started.
                Err(e) => {
                    let hint = if e.kind() == std::io::ErrorKind::WouldBlock {
                        " (a process or thread limit such as `ulimit -u`? try fewer with -t)"
                    } else {
                        ""
                    };
                    anyhow::bail!(
                        "cannot start worker thread {i} of {}: {e}{hint}",
                        threads - 1
                    );
                }
            }
        }
        Ok(pool)
    }

    fn run_some(&mut self, n: usize, task: Task<'_>) {
        let s = &*self.shared;
        self.epoch = (self.epoch + 1) & ((1 << (64 - EPOCH_SHIFT)) - 1);
        let task_ref: Task<'_> = task;
        // SAFETY (lifetime erasure): the pointer is only dereferenced by a
        // thread that claimed a task of this job, and this function returns
        // only after every task has finished.
        let ptr = unsafe { std::mem::transmute::<*const Task<'_>, *mut Task<'static>>(&task_ref) };
        s.job.store(ptr, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        // Publishes `job` and `done` (SeqCst: see `wait_job` for sleepers).
        s.next.store(pack(self.epoch, n, 0), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) != 0 {
            let _g = s.lock.lock().unwrap();
            s.wake.notify_all();
        }
        take_tasks(s, self.epoch);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != n {
            spins += 1;
            // A worker running a task was descheduled: give it the CPU.
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Claims and runs tasks of job `epoch` until none are left.
fn take_tasks(s: &Shared, epoch: u64) {
    let mut cur = s.next.load(Ordering::Acquire);
    loop {
        let (e, n, i) = unpack(cur);
        if e != epoch || i >= n {
            return;
        }
        match s
            .next
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: we own task i of the current job, so `run` is
                // waiting for it and its task reference is alive; the
                // Acquire on `next` saw the store that published `job`.
                let task = unsafe { *s.job.load(Ordering::Relaxed) };
                task(i);
                s.done.fetch_add(1, Ordering::Release);
                cur = s.next.load(Ordering::Acquire);
            }
            Err(v) => cur = v,
        }
    }
}

/// Waits until the epoch in `next` differs from `seen`; None on stop.
fn wait_job(s: &Shared, seen: u64) -> Option<u64> {
    let t0 = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = unpack(s.next.load(Ordering::Acquire)).0;
        if e != seen {
            return Some(e);
        }
        if s.stop.load(Ordering::Relaxed) {
            return None;
        }
        spins += 1;
        if !spins.is_multiple_of(1024) || t0.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        // Sleep. SeqCst on `sleepers` and `next` (here and in `run_some`):
        // either `run_some` sees us counted and notifies, or we see its job.
        let mut g = s.lock.lock().unwrap();
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while unpack(s.next.load(Ordering::SeqCst)).0 == seen && !s.stop.load(Ordering::SeqCst) {
            g = s.wake.wait(g).unwrap();
        }
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        spins = 0;
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    while let Some(e) = wait_job(s, seen) {
        seen = e;
        take_tasks(s, e);
    }
}

impl Exec for Pool {
    fn parallelism(&self) -> usize {
        self.workers.len() + 1
    }

    fn run(&mut self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n <= 1 {
            (0..n).for_each(task);
            return;
        }
        // More tasks than the counter holds: run them in slices.
        let mut start = 0;
        while start < n {
            let len = (n - start).min(MAX_TASKS);
            self.run_some(len, &|i| task(start + i));
            start += len;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap();
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_per_job() {
        for threads in [1, 2, 3] {
            let mut p = Pool::new(threads).unwrap();
            for round in 0..300usize {
                let n = round % 37;
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                p.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "round {round}"
                );
                if round % 100 == 0 {
                    // Let the workers fall asleep once in a while.
                    std::thread::sleep(SPIN * 2);
                }
            }
        }
    }

    #[test]
    fn packing_round_trips() {
        let v = pack(0xAB_CDEF, MAX_TASKS, 12345);
        assert_eq!(unpack(v), (0xAB_CDEF, MAX_TASKS, 12345));
    }
}
