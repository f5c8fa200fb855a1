//! `llamux bench`: prefill and decode tokens/s, measured like llama.cpp's
//! llama-bench (pp: one batch of P tokens from an empty cache; tg: N tokens
//! one at a time from an empty cache; a warm-up run first; mean and
//! standard deviation of tokens/s over the repetitions).

use std::path::Path;
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
    pub json: bool,
}

/// Mean and sample standard deviation.
fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

pub fn bench(o: &BenchOpts) -> Res {
    let (_gguf, model) = load_model(o.model)?;
    let mut exec = pool(o.threads);
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
    let mut fwd = |ctx: &mut Context, toks: &[u32]| ctx.forward(&model, toks, &mut exec).map_err(|e| e.to_string());

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
    let mut tg = Vec::new();
    if o.n_gen > 0 {
        ctx.reset();
        fwd(&mut ctx, &[tok(0)])?;
        for _ in 0..reps {
            ctx.reset();
            let t = Instant::now();
            for i in 0..o.n_gen {
                fwd(&mut ctx, &[tok(i)])?;
            }
            tg.push(o.n_gen as f64 / t.elapsed().as_secs_f64());
        }
    }
    let wbytes = model.weight_bytes();
    let isa = llamux_engine::quant::isa().name();
    let (pp_m, pp_s) = if pp.is_empty() { (0.0, 0.0) } else { stats(&pp) };
    let (tg_m, tg_s) = if tg.is_empty() { (0.0, 0.0) } else { stats(&tg) };
    if o.json {
        let v = json!({
            "model": o.model.display().to_string(),
            "threads": threads,
            "isa": isa,
            "weight_bytes": wbytes,
            "reps": reps,
            "pp": { "n_tokens": o.n_prompt, "avg_ts": pp_m, "stddev_ts": pp_s, "samples_ts": pp },
            "tg": { "n_tokens": o.n_gen, "avg_ts": tg_m, "stddev_ts": tg_s, "samples_ts": tg,
                    "weight_bytes_per_s": tg_m * wbytes as f64 },
        });
        println!("{v}");
    } else {
        println!("model: {} ({:.1} MiB of weights), threads {threads}, kernels {isa}, {reps} reps", o.model.display(), wbytes as f64 / 1048576.0);
        if o.n_prompt > 0 {
            println!("pp{:<5} {:>10.2} ± {:.2} tokens/s", o.n_prompt, pp_m, pp_s);
        }
        if o.n_gen > 0 {
            println!("tg{:<5} {:>10.2} ± {:.2} tokens/s  ({:.2} GB/s of weights)", o.n_gen, tg_m, tg_s, tg_m * wbytes as f64 / 1e9);
        }
    }
    Ok(())
}
