// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/status: the module's state, one "key: value" a line.

use core::ffi::{c_int, c_void};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::bindings;

use crate::callbacks::ENGINE_MEM;
use crate::fpu::STATS;
use crate::load::mb_per_s;
use crate::params;
use crate::state;
use crate::sys::{self, Seq};

/// How many times status was read since load.
static READS: AtomicU64 = AtomicU64::new(0);

fn rate(m: &mut Seq, name: &str, tokens: u64, ns: u64) {
    let milli = tokens
        .saturating_mul(1_000_000_000_000)
        .checked_div(ns)
        .unwrap_or(0);
    let _ = writeln!(m, "{name}: {}.{:03}", milli / 1000, milli % 1000);
}

pub(crate) unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: the seq_file of this show call.
    let Some(mut m) = (unsafe { Seq::new(m) }) else {
        return 0;
    };
    let Some(sh) = state::shared() else {
        return 0;
    };
    let m = &mut m;
    let reads = READS.fetch_add(1, Ordering::Relaxed) + 1;
    let threads = sh.threads.load(Ordering::Relaxed);
    let _ = write!(
        m,
        "llamux {}\nmax_threads: {}\nworker_threads: {}\nstatus_reads: {}\n",
        crate::VERSION,
        params::threads(),
        threads,
        reads
    );
    // Load progress first, without the Core lock (a load does not hold it
    // while it reads): a copy under the spinlock.
    let ls = *sh.load_stat.lock();
    let _ = writeln!(
        m,
        "load_state: {}",
        if ls.active { "loading" } else { "idle" }
    );
    if ls.active {
        let _ = write!(m, "load_file: ");
        m.bytes(ls.file.get(..ls.file_len).unwrap_or_default());
        let _ = writeln!(m, "\nload_bytes: {} / {}", ls.done, ls.total);
        let _ = writeln!(
            m,
            "load_mb_per_s: {}",
            mb_per_s(ls.done, sys::now_ns().saturating_sub(ls.start_ns))
        );
        if ls.repack_total != 0 {
            let _ = writeln!(
                m,
                "load_repack_bytes: {} / {}",
                ls.repack_done, ls.repack_total
            );
        }
    }
    let _ = writeln!(m, "last_load_error: {}", ls.last_err);
    let _ = writeln!(
        m,
        "last_load_mb_per_s: {}",
        mb_per_s(ls.last_bytes, ls.last_ns)
    );
    let _ = writeln!(
        m,
        "kv_type: {}\nmax_model_mb: {}\ndrop_cache: {}",
        if params::kv_f16() != 0 { "f16" } else { "f32" },
        params::max_model_mb(),
        params::drop_cache() as i32
    );

    let mut g = sh.core.lock();
    sh.expire_pending(&mut g);
    let _ = writeln!(
        m,
        "model_loaded: {}",
        if g.meta.is_some() { "yes" } else { "no" }
    );
    if let Some(meta) = g.meta.as_ref() {
        let _ = write!(m, "model_path: ");
        m.bytes(&meta.path);
        let _ = writeln!(m, "\nmodel_file_bytes: {}", meta.file_len);
        let _ = writeln!(m, "model_load_ms: {}", meta.load_ns / 1_000_000);
        m.bytes(meta.kv_line());
        let _ = writeln!(m);
    }
    let _ = writeln!(
        m,
        "engine_alloc_bytes: {}",
        ENGINE_MEM.load(Ordering::Relaxed)
    );
    let _ = writeln!(m, "threads: {}", threads);
    let _ = writeln!(
        m,
        "n_ctx: {}\nn_batch: {}\nmax_prompt: {}\nchunk_kb: {}",
        params::n_ctx(),
        params::n_batch(),
        params::max_prompt(),
        params::chunk_kb()
    );
    let _ = write!(m, "params: ");
    super::show_sampling(m, &g.sampling);
    let _ = writeln!(m, "state: {}", g.req.name());
    let _ = writeln!(m, "requests: {}", g.n_requests);
    let _ = writeln!(m, "prompt_timeout_s: {}", params::prompt_timeout_s());
    let _ = writeln!(m, "dropped_prompts: {}", g.dropped_prompts);
    let _ = writeln!(m, "last_error: {}", g.last_error);
    let _ = writeln!(
        m,
        "advise_requests: {}\nadvise_errors: {}\nlast_advise_ms: {}",
        g.n_advise,
        g.n_advise_errors,
        g.last_advise_ns / 1_000_000
    );
    let _ = writeln!(
        m,
        "advise_prefills: {}\nadvise_reuses: {}\nadvise_slots: {}/{}",
        g.adv_stats.prefills, g.adv_stats.reuses, g.adv_stats.slots_used, g.adv_stats.slots
    );
    let n_ids = g.n_ids as u64;
    let _ = writeln!(m, "last_prompt_tokens: {}", g.last_n_prompt);
    let _ = writeln!(m, "last_generated_tokens: {}", n_ids);
    rate(
        m,
        "last_prefill_tokens_per_s",
        g.last_n_prompt.max(0) as u64,
        g.last_prefill_ns,
    );
    // As `llamux run`: the first token comes from the prefill's logits, so
    // decode speed counts n - 1 forward passes.
    rate(
        m,
        "last_decode_tokens_per_s",
        n_ids.saturating_sub(1),
        g.last_decode_ns,
    );
    let _ = writeln!(
        m,
        "last_prefill_ms: {}\nlast_decode_ms: {}",
        g.last_prefill_ns / 1_000_000,
        g.last_decode_ns / 1_000_000
    );
    // The FPU sections of the last (or running) request: generate or bench.
    let _ = writeln!(
        m,
        "fpu_slice_us: {}\nspin_us: {}",
        params::fpu_slice_us(),
        params::spin_us()
    );
    let _ = writeln!(
        m,
        "last_fpu_sections: {}\nlast_fpu_max_ns: {}\nlast_worker_wait_ns: {}\nlast_caller_wait_ns: {}",
        STATS.sections.load(Ordering::Relaxed),
        STATS.max_ns.load(Ordering::Relaxed),
        STATS.worker_wait_ns.load(Ordering::Relaxed),
        STATS.caller_wait_ns.load(Ordering::Relaxed)
    );
    let b = &g.bench;
    let _ = writeln!(
        m,
        "bench: pp={} tg={} reps={} error={}",
        b.pp, b.tg, b.reps, b.error
    );
    let _ = write!(m, "bench_pp_ns:");
    for ns in b.pp_ns() {
        let _ = write!(m, " {ns}");
    }
    let _ = write!(m, "\nbench_tg_ns:");
    for ns in b.tg_ns() {
        let _ = write!(m, " {ns}");
    }
    let _ = writeln!(m);
    let _ = write!(m, "last_ids:");
    for id in g.last_ids.iter().take(g.n_ids) {
        let _ = write!(m, " {id}");
    }
    let _ = writeln!(m);
    0
}
