//! A persistent thread pool implementing the engine's `Exec`: the calling
//! thread and `threads - 1` workers take tasks from a shared counter.
//!
//! A forward pass runs hundreds of short jobs (one per matmul), so handing a
//! job out must cost far less than a futex wake-up: workers spin on an epoch
//! counter for a while after each job and only then sleep on a condvar; the
//! caller waits for the workers by spinning too (they are busy working).

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llamux_engine::exec::Exec;

/// How long an idle worker spins before it sleeps: long enough to bridge
/// the gaps between a token's matmuls and between tokens (sampling).
const SPIN: Duration = Duration::from_millis(5);

/// A task with its lifetime erased; only dereferenced while `run` waits.
#[derive(Clone, Copy)]
struct TaskPtr(*const (dyn Fn(usize) + Sync));

struct Shared {
    /// The current job; written by `run` only while no worker is inside a
    /// job (all have counted down `pending`), read by workers after they
    /// see a new `epoch`.
    job: UnsafeCell<(TaskPtr, usize)>,
    /// Bumped (Release) once per job, after `job` is written.
    epoch: AtomicU64,
    /// Next task index.
    next: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Workers asleep (or about to) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

// SAFETY: `job` is the only non-Sync field; its accesses are ordered by the
// epoch/pending protocol described on the field. The task pointee is Sync.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only a borrowed `Sync` closure.
unsafe impl Send for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(threads: usize) -> Self {
        let noop: &'static (dyn Fn(usize) + Sync) = &|_| {};
        let shared = Arc::new(Shared {
            job: UnsafeCell::new((TaskPtr(noop), 0)),
            epoch: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || worker(&s))
            })
            .collect();
        Pool { shared, workers }
    }
}

fn take_tasks(s: &Shared, task: TaskPtr, n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        // SAFETY: `run` has not returned (it waits for `pending` to reach 0
        // after its own share), so the task is alive.
        unsafe { (*task.0)(i) };
    }
}

/// Waits until `epoch` differs from `seen`; None when the pool stops.
fn wait_job(s: &Shared, seen: u64) -> Option<u64> {
    let t0 = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return Some(e);
        }
        if s.stop.load(Ordering::Relaxed) {
            return None;
        }
        spins += 1;
        if spins % 1024 != 0 || t0.elapsed() < SPIN {
            spin_loop();
            continue;
        }
        // Sleep. SeqCst on `sleepers` and `epoch` (here and in `run`):
        // either `run` sees us counted and notifies, or we see its epoch.
        let mut g = s.lock.lock().unwrap();
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
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
        // SAFETY: `run` wrote `job` before bumping the epoch we acquired,
        // and will not write it again until we count down `pending`.
        let (task, n) = unsafe { *s.job.get() };
        take_tasks(s, task, n);
        s.pending.fetch_sub(1, Ordering::AcqRel);
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
        let s = &*self.shared;
        // SAFETY (lifetime erasure): this function does not return before
        // every worker has counted down `pending`, i.e. stopped using it.
        let ptr = TaskPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(task)
        });
        // SAFETY: `pending` is 0 (the previous `run` waited for it), so no
        // worker reads `job` until the epoch below is published.
        unsafe { *s.job.get() = (ptr, n) };
        s.next.store(0, Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) != 0 {
            let _g = s.lock.lock().unwrap();
            s.wake.notify_all();
        }
        take_tasks(s, ptr, n);
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            // A worker that was asleep, or descheduled on a busy machine,
            // needs the CPU: stop hogging it after a while.
            if spins < 1 << 14 {
                spin_loop();
            } else {
                std::thread::yield_now();
            }
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
        for threads in [1, 2, 3, 5] {
            let mut p = Pool::new(threads);
            for round in 0..2000usize {
                let n = round % 37;
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                p.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
                if round % 500 == 0 {
                    // Let workers fall asleep once in a while.
                    std::thread::sleep(SPIN * 2);
                }
            }
        }
    }
}
