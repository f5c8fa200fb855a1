//! The per-policy queue of events waiting for the advisor.

use std::collections::{HashSet, VecDeque};

use llamux_common as c;
use serde_json::{Map as JMap, Value};

/// One event waiting for a decision.
pub struct Job {
    pub policy: usize,
    /// The probe's key of an LSM request (exec/open: the file's inode);
    /// None: computed from the event (pid, comm).
    pub key: Option<c::DecisionKey>,
    /// The file's ctime the request saw (inode keys).
    pub ctime_ns: u64,
    pub event: JMap<String, Value>,
    pub summary: String,
    pub ts_ns: u64,
    pub pid: u32,
}

/// Which lane a job waits in.
#[derive(Clone, Copy)]
pub enum Lane {
    /// Decision requests from the LSM hooks: they gate enforcement, so
    /// they go first.
    Urgent,
    /// Observation events (syscall, sched), the policies taking turns.
    Fair,
}

/// What `JobQueue::push` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The same (policy, key) is already waiting.
    Duplicate,
    /// The lane is full.
    Dropped,
}

pub struct JobQueue {
    urgent: VecDeque<Job>,
    fair: VecDeque<Job>,
    /// (policy, key) of every queued job: one decision per key at a time.
    inflight: HashSet<(usize, c::DecisionKey)>,
    /// The policy whose queued events go next (`pop_fair`).
    next_policy: usize,
    n_policies: usize,
}

impl JobQueue {
    /// Jobs per lane; more are dropped (and counted).
    pub const MAX: usize = 512;

    pub fn new(n_policies: usize) -> Self {
        JobQueue {
            urgent: VecDeque::new(),
            fair: VecDeque::new(),
            inflight: HashSet::new(),
            next_policy: 0,
            n_policies,
        }
    }

    /// Queues `event` (probe event `e`) for `policy` under `key`.
    pub fn push(
        &mut self,
        lane: Lane,
        policy: usize,
        key: c::DecisionKey,
        e: &c::Event,
        event: JMap<String, Value>,
        summary: String,
    ) -> Pushed {
        if !self.inflight.insert((policy, key)) {
            return Pushed::Duplicate;
        }
        let q = match lane {
            Lane::Urgent => &mut self.urgent,
            Lane::Fair => &mut self.fair,
        };
        if q.len() >= Self::MAX {
            self.inflight.remove(&(policy, key));
            return Pushed::Dropped;
        }
        let (key, ctime_ns) = if key.is_file() {
            (Some(key), e.ctime_ns)
        } else {
            (None, 0)
        };
        q.push_back(Job {
            policy,
            key,
            ctime_ns,
            event,
            summary,
            ts_ns: e.ts_ns,
            pid: e.pid,
        });
        Pushed::Queued
    }

    /// The next job: urgent ones first, then the policies taking turns.
    pub fn pop(&mut self) -> Option<Job> {
        self.urgent
            .pop_front()
            .or_else(|| pop_fair(&mut self.fair, &mut self.next_policy, self.n_policies))
    }

    /// The job for (policy, key) left the queue: the key may be queued again.
    pub fn done(&mut self, policy: usize, key: c::DecisionKey) {
        self.inflight.remove(&(policy, key));
    }

    pub fn len(&self) -> usize {
        self.urgent.len() + self.fair.len()
    }
}

/// The next observation job, the policies taking turns (FIFO within
/// each): with decisions taking seconds under emulation, a flood of one
/// policy's events queued first must not starve the others'.
fn pop_fair(q: &mut VecDeque<Job>, next: &mut usize, n_policies: usize) -> Option<Job> {
    let n = n_policies.max(1);
    let i = (0..q.len()).min_by_key(|&i| ((q[i].policy % n + n - *next % n) % n, i))?;
    let job = q.remove(i)?;
    *next = (job.policy + 1) % n;
    Some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_take_turns_in_the_queue() {
        let job = |policy, pid| Job {
            policy,
            key: None,
            ctime_ns: 0,
            event: JMap::new(),
            summary: String::new(),
            ts_ns: 0,
            pid,
        };
        // Policy 0 floods first; policy 2's event arrives last.
        let mut q: VecDeque<Job> = [(0, 1), (0, 2), (0, 3), (1, 4), (0, 5), (2, 6)]
            .map(|(p, pid)| job(p, pid))
            .into();
        let mut next = 0;
        let order: Vec<u32> = std::iter::from_fn(|| pop_fair(&mut q, &mut next, 3))
            .map(|j| j.pid)
            .collect();
        assert_eq!(order, [1, 4, 6, 2, 3, 5]);
        assert!(pop_fair(&mut q, &mut next, 3).is_none());
    }

    #[test]
    fn requests_go_first_and_a_key_waits_once() {
        let mut q = JobQueue::new(2);
        let key = |hash| c::DecisionKey {
            hook: c::HOOK_SCHED,
            kind: c::KEY_PID,
            hash,
            dev: 0,
            gen: 0,
        };
        let ev = |pid| {
            let mut e = c::Event::zeroed();
            e.pid = pid;
            e
        };
        let push = |q: &mut JobQueue, lane, k, pid| {
            q.push(lane, 0, key(k), &ev(pid), JMap::new(), String::new())
        };
        assert_eq!(push(&mut q, Lane::Fair, 1, 10), Pushed::Queued);
        assert_eq!(push(&mut q, Lane::Fair, 1, 11), Pushed::Duplicate);
        assert_eq!(push(&mut q, Lane::Urgent, 2, 20), Pushed::Queued);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().map(|j| j.pid), Some(20));
        assert_eq!(q.pop().map(|j| j.pid), Some(10));
        // Still in flight until `done`.
        assert_eq!(push(&mut q, Lane::Fair, 1, 12), Pushed::Duplicate);
        q.done(0, key(1));
        assert_eq!(push(&mut q, Lane::Fair, 1, 12), Pushed::Queued);
        for k in 100..100 + JobQueue::MAX as u64 {
            push(&mut q, Lane::Fair, k, 1);
        }
        assert_eq!(push(&mut q, Lane::Fair, 9999, 1), Pushed::Dropped);
        // A dropped key is not left in flight.
        q.pop();
        assert_eq!(push(&mut q, Lane::Fair, 9999, 1), Pushed::Queued);
    }
}
