// SPDX-License-Identifier: GPL-2.0

//! The module's state and its locking.
//!
//! `Core` (one Mutex) holds the model, the request of /proc/llamux/generate
//! and the counters; it is only held briefly. Engine work happens outside
//! it, under the *engine turn*: `busy` marks it taken, and the turn holder
//! owns the engine (taken out of `Core` until the turn ends), so one engine
//! user at a time, and waiters sleep interruptibly on `changed`. A
//! generation takes the turn for its prefill and for each token, so advise
//! requests are served between its tokens, and a pending or slow generate
//! request never starves the kernel advisor.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::{CondVar, Mutex, SpinLock};
use kernel::{new_condvar, new_mutex, new_spinlock};

use crate::abi::LlxAdviseStats;
use crate::engine::{Loaded, Sampling};
use crate::workers::Pool;

/// Token ids of the last generation kept for status.
pub(crate) const MAX_IDS: usize = 4096;
/// Bytes of one token's text the engine may return.
pub(crate) const PIECE_MAX: usize = 512;

/// The request of /proc/llamux/generate.
// One lives in the state, never moved on a hot path: boxing the piece buffer
// would only add a fallible allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Req {
    Idle,
    /// Written, not yet read; dropped after prompt_timeout_s.
    Pending {
        prompt: KVec<u8>,
        len: usize,
        sampling: Sampling,
        since_ns: u64,
    },
    /// Owned by the open file `reader` (its address) that read first.
    Running {
        reader: usize,
        piece: [u8; PIECE_MAX],
        len: usize,
        off: usize,
    },
}

impl Req {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Req::Idle => "idle",
            Req::Pending { .. } => "pending",
            Req::Running { .. } => "running",
        }
    }
}

/// Repetitions /proc/llamux/bench keeps.
pub(crate) const BENCH_MAX_REPS: usize = 32;

/// The last run of /proc/llamux/bench: its settings and each timed
/// repetition's ns.
#[derive(Clone, Copy)]
pub(crate) struct Bench {
    pub(crate) pp: u32,
    pub(crate) tg: u32,
    pub(crate) reps: u32,
    pub(crate) pp_ns: [u64; BENCH_MAX_REPS],
    pub(crate) n_pp: usize,
    pub(crate) tg_ns: [u64; BENCH_MAX_REPS],
    pub(crate) n_tg: usize,
    /// 0 or -errno.
    pub(crate) error: i32,
}

impl Bench {
    pub(crate) const fn new(pp: u32, tg: u32, reps: u32) -> Self {
        Bench {
            pp,
            tg,
            reps,
            pp_ns: [0; BENCH_MAX_REPS],
            n_pp: 0,
            tg_ns: [0; BENCH_MAX_REPS],
            n_tg: 0,
            error: 0,
        }
    }

    pub(crate) fn push_pp(&mut self, ns: u64) {
        if let Some(s) = self.pp_ns.get_mut(self.n_pp) {
            *s = ns;
            self.n_pp += 1;
        }
    }

    pub(crate) fn push_tg(&mut self, ns: u64) {
        if let Some(s) = self.tg_ns.get_mut(self.n_tg) {
            *s = ns;
            self.n_tg += 1;
        }
    }

    pub(crate) fn pp_ns(&self) -> &[u64] {
        self.pp_ns.get(..self.n_pp).unwrap_or_default()
    }

    pub(crate) fn tg_ns(&self) -> &[u64] {
        self.tg_ns.get(..self.n_tg).unwrap_or_default()
    }
}

/// What status and /proc/llamux/model show of the loaded model.
pub(crate) struct Meta {
    pub(crate) path: KVec<u8>,
    /// The engine's description (the first `info_len` bytes of `info`).
    pub(crate) info: KVec<u8>,
    pub(crate) info_len: usize,
    pub(crate) file_len: usize,
    pub(crate) load_ns: u64,
}

impl Meta {
    /// The "kv_cache: ..." line of the engine's info text, no newline.
    pub(crate) fn kv_line(&self) -> &[u8] {
        kv_line(self.info())
    }

    pub(crate) fn info(&self) -> &[u8] {
        self.info.get(..self.info_len).unwrap_or_default()
    }
}

pub(crate) fn kv_line(info: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"kv_cache: ";
    let Some(at) = info.windows(KEY.len()).position(|w| w == KEY) else {
        return &[];
    };
    let rest = info.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

pub(crate) struct Core {
    pub(crate) stopping: bool,
    /// The engine; None when no model is loaded or while a turn has it.
    pub(crate) engine: Option<KBox<Loaded>>,
    /// Some while a model is loaded.
    pub(crate) meta: Option<Meta>,
    /// The engine turn is taken.
    pub(crate) busy: bool,
    /// Defaults for the next request.
    pub(crate) sampling: Sampling,
    pub(crate) req: Req,
    /// Token ids of the last generation: the first `n_ids` (the vector is
    /// MAX_IDS long, allocated at init).
    pub(crate) last_ids: KVec<u32>,
    pub(crate) n_ids: usize,
    pub(crate) last_n_prompt: i64,
    pub(crate) last_prefill_ns: u64,
    pub(crate) last_decode_ns: u64,
    pub(crate) last_error: i32,
    pub(crate) n_requests: u64,
    pub(crate) dropped_prompts: u64,
    pub(crate) n_advise: u64,
    pub(crate) n_advise_errors: u64,
    pub(crate) adv_stats: LlxAdviseStats,
    pub(crate) last_advise_ns: u64,
    pub(crate) bench: Bench,
}

/// Load progress for status, read without the Core lock.
#[derive(Clone, Copy)]
pub(crate) struct LoadStat {
    pub(crate) active: bool,
    pub(crate) file: [u8; 128],
    pub(crate) file_len: usize,
    pub(crate) done: u64,
    pub(crate) total: u64,
    pub(crate) start_ns: u64,
    pub(crate) repack_done: u64,
    pub(crate) repack_total: u64,
    /// Last finished load: 0 or -errno.
    pub(crate) last_err: i32,
    /// Last successful load.
    pub(crate) last_bytes: u64,
    pub(crate) last_ns: u64,
}

impl LoadStat {
    const IDLE: LoadStat = LoadStat {
        active: false,
        file: [0; 128],
        file_len: 0,
        done: 0,
        total: 0,
        start_ns: 0,
        repack_done: 0,
        repack_total: 0,
        last_err: 0,
        last_bytes: 0,
        last_ns: 0,
    };
}

#[pin_data]
pub(crate) struct Shared {
    #[pin]
    pub(crate) core: Mutex<Core>,
    /// Notified when the turn ends, a request ends, or a load begins.
    #[pin]
    pub(crate) changed: CondVar,
    #[pin]
    pub(crate) load_stat: SpinLock<LoadStat>,
    /// A load is in progress (one at a time).
    #[pin]
    pub(crate) loading: Mutex<bool>,
    #[pin]
    pub(crate) load_done: CondVar,
    /// Bumped by every new load: an older one stops.
    pub(crate) load_seq: AtomicU32,
    /// Module exit began (also in Core, for lock-free checks).
    pub(crate) stopping: AtomicBool,
    #[pin]
    pub(crate) pool: Pool,
    /// Threads that run jobs, the caller included.
    pub(crate) threads: AtomicU32,
}

impl Shared {
    pub(crate) fn new(sampling: Sampling, last_ids: KVec<u32>) -> impl PinInit<Self> {
        pin_init!(Shared {
            core <- new_mutex!(
                Core {
                    stopping: false,
                    engine: None,
                    meta: None,
                    busy: false,
                    sampling,
                    req: Req::Idle,
                    last_ids,
                    n_ids: 0,
                    last_n_prompt: 0,
                    last_prefill_ns: 0,
                    last_decode_ns: 0,
                    last_error: 0,
                    n_requests: 0,
                    dropped_prompts: 0,
                    n_advise: 0,
                    n_advise_errors: 0,
                    adv_stats: LlxAdviseStats { prefills: 0, reuses: 0, slots_used: 0, slots: 0 },
                    last_advise_ns: 0,
                    bench: Bench::new(0, 0, 0),
                },
                "llamux_core"
            ),
            changed <- new_condvar!("llamux_changed"),
            load_stat <- new_spinlock!(LoadStat::IDLE, "llamux_load_stat"),
            loading <- new_mutex!(false, "llamux_loading"),
            load_done <- new_condvar!("llamux_load_done"),
            load_seq: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            pool <- Pool::new(),
            threads: AtomicU32::new(1),
        })
    }

    /// Drops a prompt pending for longer than prompt_timeout_s (Core lock
    /// held): a writer that never reads does not block the module.
    pub(crate) fn expire_pending(&self, g: &mut Guard<'_, Core, MutexBackend>) {
        let timeout = crate::params::prompt_timeout_s() as u64;
        if let Req::Pending { since_ns, .. } = g.req {
            if timeout != 0
                && crate::sys::now_ns().saturating_sub(since_ns) >= timeout * 1_000_000_000
            {
                g.req = Req::Idle;
                g.dropped_prompts += 1;
                pr_info!(
                    "generate: pending prompt dropped, unread for {} s\n",
                    timeout
                );
                self.changed.notify_all();
            }
        }
    }
}

/// The engine turn: exclusive use of the engine, taken under the Core lock
/// (`Turn::take`) and given back by `end` or on drop.
pub(crate) struct Turn<'a> {
    sh: &'a Shared,
    pub(crate) engine: Option<KBox<Loaded>>,
    ended: bool,
}

impl<'a> Turn<'a> {
    /// Waits (interruptibly) until the turn is free while `ok` accepts the
    /// state, then takes it. `ok` runs first and after every wake-up.
    pub(crate) fn take(
        sh: &'a Shared,
        g: &mut Guard<'_, Core, MutexBackend>,
        mut ok: impl FnMut(&mut Core) -> Result,
    ) -> Result<Turn<'a>> {
        loop {
            ok(g)?;
            if !g.busy {
                break;
            }
            if sh.changed.wait_interruptible(g) {
                return Err(ERESTARTSYS);
            }
        }
        g.busy = true;
        Ok(Turn {
            sh,
            engine: g.engine.take(),
            ended: false,
        })
    }

    /// Gives the turn (and the engine) back, Core lock held.
    pub(crate) fn end(mut self, g: &mut Guard<'_, Core, MutexBackend>) {
        self.give_back(g);
    }

    fn give_back(&mut self, g: &mut Core) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(e) = self.engine.take() {
            g.engine = Some(e);
        }
        g.busy = false;
        self.sh.changed.notify_all();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let sh = self.sh;
            let mut g = sh.core.lock();
            self.give_back(&mut g);
        }
    }
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(core::ptr::null_mut());

/// Publishes the module state for the /proc and engine callbacks.
pub(crate) fn publish(sh: Option<Pin<&Shared>>) {
    let p = sh.map_or(core::ptr::null_mut(), |s| {
        s.get_ref() as *const Shared as *mut Shared
    });
    SHARED.store(p, Ordering::Release);
}

/// The module state; None outside init..exit (no callback runs then).
pub(crate) fn shared() -> Option<&'static Shared> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: `publish` stores a pointer to the pinned state before any
    // /proc file exists and clears it only after proc_remove (which waits
    // for callbacks in flight) and before the state is freed.
    unsafe { p.as_ref() }
}
