// SPDX-License-Identifier: GPL-2.0

//! Llamux: LLaMA inference inside the Linux kernel.
//!
//! The host of the hard-float engine object (engine_hf.o, built by
//! kmod/build-engine.sh from kmod/kengine over kmod/engine). Files:
//! - `abi` (kmod/kengine/src/abi.rs): the engine ABI, shared with kengine;
//! - `sys`: every raw kernel interface, wrapped safely;
//! - `fpu`: FPU sections around engine calls;
//! - `engine`: safe wrappers over the engine's entries;
//! - `callbacks`: what the engine calls back (allocator, panic, runner);
//! - `workers`: the per-CPU worker pool;
//! - `params`: the module parameters (declared in llamux_glue.c);
//! - `state`: the shared state, its locks and the engine turn;
//! - `load`: model loading;
//! - `proc`: one file per /proc/llamux file.

// Shared with kengine, which uses all of it.
#[macro_use]
#[path = "../kengine/src/abi.rs"]
#[allow(unreachable_pub, dead_code)]
mod abi;
mod callbacks;
mod engine;
mod fpu;
mod load;
mod params;
mod proc;
mod state;
mod sys;
mod workers;

use core::sync::atomic::Ordering;

use kernel::prelude::*;
use kernel::str::BStr;

use crate::abi::{LlxSampling, LLX_ABI_VERSION};
use crate::state::{Req, Shared};

module! {
    type: Llamux,
    name: "llamux",
    author: "Llamux developers",
    description: "LLaMA inference inside the Linux kernel",
    license: "GPL",
}

/// Version reported on load and in /proc/llamux/status.
pub(crate) const VERSION: &str = "0.1.0";

/// The loaded module. Dropping it stops requests, removes /proc/llamux
/// (waiting for callbacks in flight), then the workers and the engine.
struct Llamux {
    state: Pin<KBox<Shared>>,
    dir: Option<sys::ProcEntry>,
}

/// The sampling defaults: "defaults", then `params=`.
fn default_sampling() -> Result<LlxSampling> {
    let mut s = LlxSampling {
        temperature_milli: 0,
        top_k: 0,
        top_p_milli: 0,
        min_p_milli: 0,
        repeat_penalty_milli: 0,
        repeat_last_n: 0,
        n_predict: 0,
        reserved: 0,
        seed: 0,
    };
    engine::parse_params(b"defaults", &mut s)?;
    if let Some(p) = params::params() {
        engine::parse_params(p.as_bytes(), &mut s).inspect_err(|e| {
            pr_err!(
                "bad params= \"{}\" (errno {})\n",
                BStr::from_bytes(p.as_bytes()),
                e.to_errno()
            );
        })?;
    }
    Ok(s)
}

impl kernel::Module for Llamux {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let abi = engine::abi_version();
        if abi != LLX_ABI_VERSION {
            pr_err!("engine ABI {}, module expects {}\n", abi, LLX_ABI_VERSION);
            return Err(EINVAL);
        }
        let sampling = default_sampling()?;
        let last_ids = KVec::from_elem(0u32, state::MAX_IDS, GFP_KERNEL)?;
        let state = KBox::pin_init(Shared::new(sampling, last_ids), GFP_KERNEL)?;
        let ncpu = sys::online_cpus().count().max(1) as u32;
        let want = params::threads();
        let n = if want == 0 { ncpu } else { want.clamp(1, ncpu) };
        // SAFETY: `pool` is a #[pin] field of the pinned state (never moved),
        // and it is stopped in `drop` (or below) before the state is freed.
        let threads = unsafe { Pin::new_unchecked(&state.pool).start(n)? };
        state.threads.store(threads, Ordering::Relaxed);
        state::publish(Some(state.as_ref()));
        let dir = match proc::create() {
            Ok(d) => d,
            Err(e) => {
                state::publish(None);
                state.pool.stop();
                return Err(e);
            }
        };
        pr_info!(
            "loaded version {} (max_threads={}, worker_threads={})\n",
            VERSION,
            params::threads(),
            threads
        );
        if let Some(m) = params::model() {
            // A bad model leaves the module loaded and usable without one.
            if let Err(e) = load::load_model_file(&state, m) {
                pr_err!(
                    "model={} not loaded (errno {})\n",
                    BStr::from_bytes(m.as_bytes()),
                    e.to_errno()
                );
            }
        }
        Ok(Llamux {
            state,
            dir: Some(dir),
        })
    }
}

impl Drop for Llamux {
    fn drop(&mut self) {
        let sh = &self.state;
        // A running generation quits at its next token, a load at its next
        // chunk; waiters wake up and see `stopping`.
        {
            let mut g = sh.core.lock();
            g.stopping = true;
            sh.stopping.store(true, Ordering::Relaxed);
        }
        sh.changed.notify_all();
        if let Some(d) = self.dir.take() {
            d.remove();
        }
        state::publish(None);
        let engine = {
            let mut g = sh.core.lock();
            g.req = Req::Idle;
            g.meta = None;
            g.engine.take()
        };
        sh.pool.stop();
        drop(engine);
        // Every engine allocation goes through llx_kmalloc/llx_kfree: the
        // tests read this line to prove an unload leaks nothing.
        pr_info!(
            "engine memory outstanding at unload: {} bytes\n",
            callbacks::ENGINE_MEM.load(Ordering::Relaxed)
        );
        pr_info!("unloaded\n");
    }
}
