//! `llamux bench`: prefill and decode tokens/s, measured like llama.cpp's
//! llama-bench (pp: one batch of P tokens from an empty cache; tg: N tokens
//! one at a time from an empty cache; a warm-up run first; mean and
//! standard deviation of tokens/s over the repetitions), and with
//! `--bandwidth` decode's share of the memory bandwidth measured around
//! each decode repetition.

use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use llamux_engine::model::{Context, ContextParams, KvType};
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
fn bw_buffer() -> Result<memmap2::MmapMut, String> {
    let mut m =
        memmap2::MmapMut::map_anon(1 << 30).map_err(|e| format!("bandwidth buffer: {e}"))?;
    let _ = m.advise(memmap2::Advice::HugePage);
    for (i, c) in m.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    }
    Ok(m)
}

/// Streaming-read bandwidth in GB/s, best of 3 passes: `threads` threads
/// each sum their part of `buf`, started together (as bench/bw.c does);
/// the time runs until the last one is done.
fn read_bandwidth(buf: &[u8], threads: usize) -> Result<f64, String> {
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
                    return Err(format!(
                        "bandwidth: cannot start thread {k} of {}: {e}",
                        threads - 1
                    ));
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
    let mut ctx = Context::new(hp, params).map_err(|e| e.to_string())?;
    // Fixed pseudo-random token ids (llama-bench uses random ones too).
    let tok = |i: usize| ((i as u64 * 2_654_435_761 + 17) % hp.n_vocab as u64) as u32;
    let prompt: Vec<u32> = (0..o.n_prompt).map(tok).collect();
    let reps = o.reps.max(1);
    let mut fwd = |ctx: &mut Context, toks: &[u32]| {
        ctx.forward(&model, toks, &mut exec)
            .map_err(|e| e.to_string())
    };

    let mut pp = Vec::new();
    if o.n_prompt > 0 {
        ctx.reset();
        fwd(&mut ctx, &prompt)?;
        for _ in 0..reps {
            ctx.reset();
            let t = Instant::now();
            fwd(&mut ctx, &prompt)?;
            pp.push(o.n_prompt as f64 / t.elapsed().as_secs_f64());
        }
    }
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
            ctx.reset();
            let t = Instant::now();
            for i in 0..o.n_gen {
                fwd(&mut ctx, &[tok(i)])?;
            }
            let ts = o.n_gen as f64 / t.elapsed().as_secs_f64();
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
