//! `llamux bench`: prefill and decode tokens/s, measured like llama.cpp's
//! llama-bench (pp: one batch of P tokens from an empty cache; tg: N tokens
//! one at a time from an empty cache; a warm-up run first; mean and
//! standard deviation of tokens/s over the repetitions), and with
//! `--bandwidth` decode's share of the memory bandwidth measured around
//! each decode repetition.

use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use llamux_engine::model::{bench_token, Context, ContextParams, KvType};
use serde_json::json;

use crate::engine_cmds::{load_model, pool, Res};

pub struct BenchOpts<'a> {
    pub model: &'a Path,
    pub threads: Option<usize>,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub reps: usize,
    pub bandwidth: bool,
    pub json: bool,
}

/// Mean and sample standard deviation.
fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Median (mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n => (v[(n - 1) / 2] + v[n / 2]) / 2.0,
    }
}

/// A buffer for streaming reads: 1 GiB, far beyond the caches, in huge
/// pages like the weights `llamux` reads for its AVX-512 kernels, filled
/// with non-repeating bytes.
fn bw_buffer() -> anyhow::Result<memmap2::MmapMut> {
    let mut m = memmap2::MmapMut::map_anon(1 << 30).context("bandwidth buffer")?;
    let _ = m.advise(memmap2::Advice::HugePage);
    for (i, c) in m.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    }
    Ok(m)
}

/// Streaming-read bandwidth in GB/s, best of 3 passes: `threads` threads
/// each sum their part of `buf`, started together (as bench/bw.c does);
/// the time runs until the last one is done.
fn read_bandwidth(buf: &[u8], threads: usize) -> anyhow::Result<f64> {
    fn sum(p: &[u8]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked).
            return unsafe { sum_avx2(p) };
        }
        // Eight independent lanes per 64-byte line.
        let mut acc = [0u64; 8];
        for line in p.chunks_exact(64) {
            for (a, w) in acc.iter_mut().zip(line.chunks_exact(8)) {
                *a = a.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
            }
        }
        acc.iter().fold(0, |s, a| s ^ a)
    }
    /// Two 64-byte lines per step, four 32-byte loads (bench/bw.c's loop):
    /// the plain loop above read 10-15% slower than bw.c here.
    /// # Safety: the CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn sum_avx2(p: &[u8]) -> u64 {
        use std::arch::x86_64::*;
        let mut a = [_mm256_setzero_si256(); 4];
        for c in p.chunks_exact(128) {
            for (k, a) in a.iter_mut().enumerate() {
                // SAFETY: bytes 32k..32k + 32 of the 128-byte chunk.
                *a = _mm256_add_epi64(*a, unsafe {
                    _mm256_loadu_si256(c.as_ptr().add(32 * k) as *const __m256i)
                });
            }
        }
        let s = _mm256_add_epi64(_mm256_add_epi64(a[0], a[1]), _mm256_add_epi64(a[2], a[3]));
        (_mm256_extract_epi64::<0>(s) ^ _mm256_extract_epi64::<3>(s)) as u64
    }
    let threads = threads.max(1);
    let part = buf.len() / threads / 64 * 64;
    let mut best = f64::MAX;
    for _ in 0..3 {
        // Threads that started wait for `go` (1; 2: give up, one failed
        // to start), then count themselves out in `done`.
        let (ready, go, done) = (AtomicUsize::new(0), AtomicU8::new(0), AtomicUsize::new(0));
        let wait = |f: &dyn Fn() -> bool| {
            while !f() {
                std::thread::yield_now();
            }
        };
        let secs = std::thread::scope(|sc| {
            for k in 1..threads {
                let (ready, go, done, p) = (&ready, &go, &done, &buf[k * part..(k + 1) * part]);
                let spawned = std::thread::Builder::new().spawn_scoped(sc, move || {
                    ready.fetch_add(1, Ordering::AcqRel);
                    wait(&|| go.load(Ordering::Acquire) != 0);
                    if go.load(Ordering::Acquire) == 1 {
                        std::hint::black_box(sum(p));
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                });
                if let Err(e) = spawned {
                    go.store(2, Ordering::Release);
                    bail!("bandwidth: cannot start thread {k} of {}: {e}", threads - 1);
                }
            }
            wait(&|| ready.load(Ordering::Acquire) == threads - 1);
            let t = Instant::now();
            go.store(1, Ordering::Release);
            std::hint::black_box(sum(&buf[..part]));
            wait(&|| done.load(Ordering::Acquire) == threads - 1);
            Ok(t.elapsed().as_secs_f64())
        })?;
        best = best.min(secs);
    }
    Ok((part * threads) as f64 / best / 1e9)
}

/// A forward call of the bench's context.
pub(crate) type Fwd<'a> = dyn FnMut(&mut Context, &[u32]) -> anyhow::Result<()> + 'a;

/// The prefill test: a warm-up, then `reps` timed prefills of `n` bench
/// tokens, each from an empty cache (tokens/s each). Nothing when n is 0.
pub(crate) fn pp_reps(
    ctx: &mut Context,
    fwd: &mut Fwd<'_>,
    n: usize,
    reps: usize,
    n_vocab: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut pp = Vec::new();
    if n == 0 {
        return Ok(pp);
    }
    let prompt: Vec<u32> = (0..n).map(|i| bench_token(i, n_vocab)).collect();
    ctx.reset();
    fwd(ctx, &prompt)?;
    for _ in 0..reps {
        ctx.reset();
        let t = Instant::now();
        fwd(ctx, &prompt)?;
        pp.push(n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(pp)
}

/// One decode repetition: `n` bench tokens one at a time from an empty
/// cache (tokens/s).
pub(crate) fn tg_once(
    ctx: &mut Context,
    fwd: &mut Fwd<'_>,
    n: usize,
    n_vocab: usize,
) -> anyhow::Result<f64> {
    ctx.reset();
    let t = Instant::now();
    for i in 0..n {
        fwd(ctx, &[bench_token(i, n_vocab)])?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub fn bench(o: &BenchOpts) -> Res {
    let (_gguf, model) = load_model(o.model)?;
    let mut exec = pool(o.threads)?;
    let threads = llamux_engine::exec::Exec::parallelism(&exec);
    let hp = &model.hp;
    let params = ContextParams {
        n_ctx: o.n_prompt.max(o.n_gen) + 1,
        n_batch: o.n_prompt.max(1),
        logits_all: false,
        // llama-bench's default KV cache type.
        kv_type: KvType::F16,
    };
    let mut ctx = Context::new(hp, params).map_err(|e| anyhow!("{e}"))?;
    let tok = |i: usize| bench_token(i, hp.n_vocab);
    let reps = o.reps.max(1);
    let mut fwd = |ctx: &mut Context, toks: &[u32]| {
        ctx.forward(&model, toks, &mut exec)
            .map_err(|e| anyhow!("{e}"))
    };

    let pp = pp_reps(&mut ctx, &mut fwd, o.n_prompt, reps, hp.n_vocab)?;
    let wbytes = model.weight_bytes();
    // The bandwidth a machine gives can move within seconds (on a VM, with
    // where the host runs the vCPUs), so it is measured around each decode
    // repetition and that repetition's share is taken against the larger
    // of the two measurements.
    let bw_buf = if o.bandwidth && o.n_gen > 0 {
        Some(bw_buffer()?)
    } else {
        None
    };
    let (mut tg, mut bw, mut share) = (Vec::new(), Vec::new(), Vec::new());
    if o.n_gen > 0 {
        ctx.reset();
        fwd(&mut ctx, &[tok(0)])?;
        for _ in 0..reps {
            let before = bw_buf
                .as_ref()
                .map(|b| read_bandwidth(b, threads))
                .transpose()?;
            let ts = tg_once(&mut ctx, &mut fwd, o.n_gen, hp.n_vocab)?;
            tg.push(ts);
            if let (Some(before), Some(b)) = (before, &bw_buf) {
                let gbs = before.max(read_bandwidth(b, threads)?);
                bw.push(gbs);
                share.push(ts * wbytes as f64 / 1e9 / gbs);
            }
        }
    }
    let isa = llamux_engine::quant::isa().name();
    let layout = if model.repacked() { "x8" } else { "rows" };
    let (pp_m, pp_s) = if pp.is_empty() {
        (0.0, 0.0)
    } else {
        stats(&pp)
    };
    let (tg_m, tg_s) = if tg.is_empty() {
        (0.0, 0.0)
    } else {
        stats(&tg)
    };
    if o.json {
        let mut v = json!({
            "model": o.model.display().to_string(),
            "threads": threads,
            "isa": isa,
            "layout": layout,
            "weight_bytes": wbytes,
            "reps": reps,
            "pp": { "n_tokens": o.n_prompt, "avg_ts": pp_m, "stddev_ts": pp_s, "samples_ts": pp },
            "tg": { "n_tokens": o.n_gen, "avg_ts": tg_m, "stddev_ts": tg_s, "samples_ts": tg,
                    "weight_bytes_per_s": tg_m * wbytes as f64 },
        });
        if !bw.is_empty() {
            v["tg"]["bandwidth"] = json!({ "samples_gbs": bw, "samples_share": share, "median_share": median(&share) });
        }
        println!("{v}");
    } else {
        println!("model: {} ({:.1} MiB of weights), threads {threads}, kernels {isa} ({layout} layout), {reps} reps", o.model.display(), wbytes as f64 / 1048576.0);
        if o.n_prompt > 0 {
            println!("pp{:<5} {:>10.2} ± {:.2} tokens/s", o.n_prompt, pp_m, pp_s);
        }
        if o.n_gen > 0 {
            println!(
                "tg{:<5} {:>10.2} ± {:.2} tokens/s  ({:.2} GB/s of weights)",
                o.n_gen,
                tg_m,
                tg_s,
                tg_m * wbytes as f64 / 1e9
            );
        }
        if !bw.is_empty() {
            println!(
                "bandwidth     {:>10.2} GB/s (median of {} around the decode runs), decode reads {:.0}% of it (median)",
                median(&bw),
                bw.len(),
                100.0 * median(&share)
            );
        }
    }
    Ok(())
}

/// Options of `llamux bench --kernel`.
pub struct KernelBenchOpts<'a> {
    pub model: &'a Path,
    pub threads: Option<usize>,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub reps: usize,
    pub rounds: usize,
    pub json: bool,
}

/// Most repetitions the module keeps per run (state.rs BENCH_MAX_REPS).
const KERNEL_MAX_REPS: usize = 32;
/// Most prompt tokens per module prefill (abi.rs LLX_BENCH_MAX_BATCH).
const KERNEL_MAX_PP: usize = 128;

fn read_proc(file: &str) -> anyhow::Result<String> {
    let path = format!("{}/{file}", crate::kernel_cmds::PROC);
    std::fs::read_to_string(&path).map_err(|e| crate::kernel_cmds::proc_err(file, e))
}

/// A number in a `key: value` line of /proc/llamux/status or model.
fn field_num<T: std::str::FromStr>(text: &str, file: &str, key: &str) -> anyhow::Result<T> {
    crate::kernel_cmds::status_field(text, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "{}/{file}: no number in `{key}:` (an older llamux.ko?)",
                crate::kernel_cmds::PROC
            )
        })
}

/// The module's KV cache as its status line says: (n_ctx, f16).
fn kv_of(status: &str) -> anyhow::Result<(usize, bool)> {
    let line = crate::kernel_cmds::status_field(status, "kv_cache").unwrap_or_default();
    let word = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
    };
    let n_ctx = word("n_ctx").and_then(|v| v.parse().ok());
    match (n_ctx, word("type")) {
        (Some(n), Some("f16")) => Ok((n, true)),
        (Some(n), Some("f32")) => Ok((n, false)),
        _ => Err(anyhow!(
            "{}/status: cannot read the `kv_cache:` line {line:?}",
            crate::kernel_cmds::PROC
        )),
    }
}

/// One run of the protocol in the module: (pp tokens/s, tg tokens/s) per
/// repetition and its FPU counters.
fn kernel_run(
    o: &KernelBenchOpts,
    reps: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, serde_json::Value)> {
    let req = format!("pp={} tg={} reps={reps}", o.n_prompt, o.n_gen);
    let path = format!("{}/bench", crate::kernel_cmds::PROC);
    std::fs::write(&path, &req).map_err(|e| crate::kernel_cmds::proc_err("bench", e))?;
    let st = read_proc("status")?;
    let times = |key: &str, n: usize| -> Vec<f64> {
        crate::kernel_cmds::status_field(&st, key)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse::<u64>().ok())
            .filter(|&ns| ns > 0)
            .map(|ns| n as f64 * 1e9 / ns as f64)
            .collect()
    };
    let pp = if o.n_prompt > 0 {
        times("bench_pp_ns", o.n_prompt)
    } else {
        Vec::new()
    };
    let tg = if o.n_gen > 0 {
        times("bench_tg_ns", o.n_gen)
    } else {
        Vec::new()
    };
    if (o.n_prompt > 0 && pp.len() != reps) || (o.n_gen > 0 && tg.len() != reps) {
        bail!(
            "{path}: the module reported {} + {} timings for {req}",
            pp.len(),
            tg.len()
        );
    }
    let num = |k: &str| field_num::<u64>(&st, "status", k).ok();
    let fpu = json!({
        "sections": num("last_fpu_sections"),
        "max_ns": num("last_fpu_max_ns"),
        "worker_wait_ns": num("last_worker_wait_ns"),
        "caller_wait_ns": num("last_caller_wait_ns"),
        "fpu_slice_us": num("fpu_slice_us"),
        "spin_us": num("spin_us"),
    });
    Ok((pp, tg, fpu))
}

/// `llamux bench --kernel`: the same protocol in user space (this process)
/// and in llamux.ko (/proc/llamux/bench), on the same model, tokens,
/// threads and KV cache, interleaved over `rounds` (the order alternating),
/// then medians and kernel/user ratios.
pub fn bench_kernel(o: &KernelBenchOpts) -> Res {
    let status = read_proc("status")?;
    if crate::kernel_cmds::status_field(&status, "model_loaded").as_deref() != Some("yes") {
        bail!("llamux.ko has no model loaded: write the model's path to /proc/llamux/load");
    }
    let kpath = crate::kernel_cmds::status_field(&status, "model_path").unwrap_or_default();
    let same = |a: &Path, b: &Path| -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    };
    if !same(o.model, Path::new(&kpath)) {
        bail!(
            "llamux.ko has {kpath:?} loaded, not {}: write that path to /proc/llamux/load first",
            o.model.display()
        );
    }
    let kthreads: usize = field_num(&status, "status", "threads")?;
    let threads = o.threads.unwrap_or(kthreads);
    if threads != kthreads {
        bail!(
            "llamux.ko runs {kthreads} thread(s), not {threads}: reload it with threads={threads} (or leave out -t)"
        );
    }
    let n_batch: usize = field_num(&status, "status", "n_batch")?;
    let (n_ctx, kv_f16) = kv_of(&status)?;
    let reps = o.reps.max(1);
    if reps > KERNEL_MAX_REPS {
        bail!("--reps: at most {KERNEL_MAX_REPS} with --kernel");
    }
    if o.n_prompt > n_batch.min(KERNEL_MAX_PP) {
        bail!(
            "--n-prompt {}: the module's prefill batch is {n_batch} (at most {KERNEL_MAX_PP})",
            o.n_prompt
        );
    }
    if o.n_prompt.max(o.n_gen) > n_ctx || o.n_prompt + o.n_gen == 0 {
        bail!("-p/-n: between 1 and the module's n_ctx ({n_ctx}) tokens");
    }
    let minfo = read_proc("model")?;
    let klayout = crate::kernel_cmds::status_field(&minfo, "layout").unwrap_or_default();

    let (_gguf, model) = load_model(o.model)?;
    let layout = if model.repacked() { "x8" } else { "rows" };
    if klayout != layout {
        bail!(
            "the module reads the weights in the {klayout:?} layout, this process in {layout:?}: \
             give the same repack setting to both (llamux --no-repack, llamux.ko repack=)"
        );
    }
    let mut exec = pool(Some(threads))?;
    let hp = &model.hp;
    let params = ContextParams {
        n_ctx,
        n_batch,
        logits_all: false,
        kv_type: if kv_f16 { KvType::F16 } else { KvType::F32 },
    };
    let mut ctx = Context::new(hp, params).map_err(|e| anyhow!("{e}"))?;
    let mut fwd = |ctx: &mut Context, toks: &[u32]| {
        ctx.forward(&model, toks, &mut exec)
            .map_err(|e| anyhow!("{e}"))
    };
    let rounds = o.rounds.max(1);
    let (mut upp, mut utg, mut kpp, mut ktg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fpu = Vec::new();
    let mut per_round = Vec::new();
    for r in 0..rounds {
        let mut user = |upp: &mut Vec<f64>, utg: &mut Vec<f64>| -> Res {
            let pp = pp_reps(&mut ctx, &mut fwd, o.n_prompt, reps, hp.n_vocab)?;
            let mut tg = Vec::new();
            if o.n_gen > 0 {
                ctx.reset();
                fwd(&mut ctx, &[bench_token(0, hp.n_vocab)])?;
                for _ in 0..reps {
                    tg.push(tg_once(&mut ctx, &mut fwd, o.n_gen, hp.n_vocab)?);
                }
            }
            upp.extend(&pp);
            utg.extend(&tg);
            Ok(())
        };
        let (u0, t0) = (upp.len(), utg.len());
        let (k0, kt0) = (kpp.len(), ktg.len());
        // Alternate which home goes first: a drift in the machine's speed
        // then hits both.
        let kernel_first = r % 2 == 1;
        if !kernel_first {
            user(&mut upp, &mut utg)?;
        }
        let (pp, tg, f) = kernel_run(o, reps)?;
        kpp.extend(pp);
        ktg.extend(tg);
        fpu.push(f);
        if kernel_first {
            user(&mut upp, &mut utg)?;
        }
        let m = |v: &[f64]| if v.is_empty() { 0.0 } else { median(v) };
        per_round.push(json!({
            "round": r + 1,
            "order": if kernel_first { "kernel,user" } else { "user,kernel" },
            "pp_user_ts": m(&upp[u0..]), "pp_kernel_ts": m(&kpp[k0..]),
            "tg_user_ts": m(&utg[t0..]), "tg_kernel_ts": m(&ktg[kt0..]),
        }));
        if !o.json {
            eprintln!(
                "round {}/{rounds} ({}): pp user {:.2} kernel {:.2}, tg user {:.2} kernel {:.2} tokens/s (medians)",
                r + 1,
                if kernel_first { "kernel first" } else { "user first" },
                m(&upp[u0..]),
                m(&kpp[k0..]),
                m(&utg[t0..]),
                m(&ktg[kt0..])
            );
        }
    }
    let ratio = |k: &[f64], u: &[f64]| {
        if k.is_empty() || u.is_empty() {
            None
        } else {
            Some(median(k) / median(u))
        }
    };
    let (pp_ratio, tg_ratio) = (ratio(&kpp, &upp), ratio(&ktg, &utg));
    let isa = llamux_engine::quant::isa().name();
    if o.json {
        let side = |u: &[f64], k: &[f64], n: usize, r: Option<f64>| {
            json!({ "n_tokens": n,
                    "user_ts": u, "kernel_ts": k,
                    "user_median_ts": if u.is_empty() { None } else { Some(median(u)) },
                    "kernel_median_ts": if k.is_empty() { None } else { Some(median(k)) },
                    "ratio": r })
        };
        println!(
            "{}",
            json!({
                "model": o.model.display().to_string(),
                "threads": threads,
                "isa": isa,
                "layout": layout,
                "kv_type": if kv_f16 { "f16" } else { "f32" },
                "n_ctx": n_ctx,
                "reps": reps,
                "rounds": rounds,
                "pp": side(&upp, &kpp, o.n_prompt, pp_ratio),
                "tg": side(&utg, &ktg, o.n_gen, tg_ratio),
                "per_round": per_round,
                "kernel_fpu": fpu,
            })
        );
    } else {
        println!(
            "model: {}, threads {threads}, kernels {isa} ({layout} layout), kv {} n_ctx {n_ctx}, {reps} reps x {rounds} rounds (interleaved)",
            o.model.display(),
            if kv_f16 { "f16" } else { "f32" }
        );
        println!(
            "{:<8} {:>12} {:>12} {:>14}",
            "test", "user t/s", "kernel t/s", "kernel/user"
        );
        for (name, n, u, k, r) in [
            ("pp", o.n_prompt, &upp, &kpp, pp_ratio),
            ("tg", o.n_gen, &utg, &ktg, tg_ratio),
        ] {
            if let Some(r) = r {
                println!(
                    "{:<8} {:>12.2} {:>12.2} {:>14.3}",
                    format!("{name}{n}"),
                    median(u),
                    median(k),
                    r
                );
            }
        }
        if let Some(f) = fpu.last() {
            println!("kernel FPU sections (last run): {f}");
        }
    }
    Ok(())
}
