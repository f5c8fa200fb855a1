//! The forward pass against llama.cpp on the repo's test models: logits of
//! every prompt position, greedy generation and tokenization, compared with
//! the reference written by tests/fixtures/make-ref.sh (llama.cpp built from
//! the llama-cpp-python 0.3.36 sdist, F32 KV cache, 1 thread).

mod common;

use llamux_engine::exec::Serial;
use llamux_engine::gguf::Gguf;
use llamux_engine::model::{repack_weights, Context, ContextParams, KvType, Model, Repacker};
use llamux_engine::tokenizer::Tokenizer;
use serde_json::Value;

fn reference() -> Value {
    let path = common::repo_root().join("tests/fixtures/ref/ref.json");
    serde_json::from_str(&common::read_string(&path)).unwrap()
}

fn ref_logits(file: &str) -> Vec<f32> {
    let bytes = common::read(&common::repo_root().join("tests/fixtures/ref").join(file));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A model file's bytes, with its Q4_K and Q6_K matrices repacked (the x8
/// layouts the AVX2 and AVX-512 kernels read) when `repacked`; None if it has none.
fn model_bytes(file: &str, repacked: bool) -> Option<Vec<u8>> {
    let mut bytes = common::read(&common::model_path(file));
    if repacked && repack_weights(&mut bytes).unwrap() == 0 {
        return None;
    }
    Some(bytes)
}

fn model<'a>(g: &Gguf<'a>, repacked: bool) -> Model<'a> {
    if repacked {
        Model::from_repacked_gguf(g)
    } else {
        Model::from_gguf(g)
    }
    .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Logits of every position of `tokens` in one batch.
fn prompt_logits(m: &Model<'_>, tokens: &[u32], kv_type: KvType) -> Vec<f32> {
    let params = ContextParams {
        n_ctx: 256,
        n_batch: tokens.len(),
        logits_all: true,
        kv_type,
    };
    let mut ctx = Context::new(&m.hp, params).unwrap();
    ctx.forward(m, tokens, &mut Serial).unwrap();
    ctx.logits().to_vec()
}

/// Greedy continuation decoding one token at a time (as the reference does).
fn greedy(m: &Model<'_>, tokens: &[u32], n: usize) -> Vec<u32> {
    let params = ContextParams {
        n_ctx: 256,
        n_batch: tokens.len(),
        ..ContextParams::default()
    };
    let mut ctx = Context::new(&m.hp, params).unwrap();
    ctx.forward(m, tokens, &mut Serial).unwrap();
    let mut out = Vec::new();
    loop {
        let t = argmax(ctx.logits()) as u32;
        out.push(t);
        if out.len() == n {
            return out;
        }
        ctx.forward(m, &[t], &mut Serial).unwrap();
    }
}

struct Agreement {
    top1: usize,
    positions: usize,
    max_abs: f32,
}

fn compare(ours: &[f32], theirs: &[f32], n_vocab: usize) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let mut a = Agreement {
        top1: 0,
        positions: 0,
        max_abs: 0.0,
    };
    for (o, t) in ours.chunks_exact(n_vocab).zip(theirs.chunks_exact(n_vocab)) {
        a.positions += 1;
        a.top1 += (argmax(o) == argmax(t)) as usize;
        for (x, y) in o.iter().zip(t) {
            a.max_abs = a.max_abs.max((x - y).abs());
        }
    }
    a
}

/// Required top-1 agreement and the largest |Δlogit| we accept, per model.
/// Logits have a std of about 3; measured gaps are below 1e-5 (we quantize
/// activations exactly as ggml does). The bounds leave room for SIMD
/// accumulation order, not for a bug: a wrong rope, mask or head mapping
/// moves logits by whole units. (The models' planted successor pattern makes
/// top-1 easy; the |Δlogit| bound is the sharp check.)
fn bounds(model: &str) -> (f64, f32) {
    match model {
        "tiny-f32" => (1.0, 1e-3),
        // The x8 layouts sum each row's blocks in another float order than
        // llama.cpp's AVX2 kernels (which the row-major kernels reproduce
        // bit for bit): where an activation then rounds to the other side
        // of a Q8_K step, logits move by up to 0.18 here (tiny-q6_k prompt
        // 1, position 11). ggml's scalar reference order (`--isa scalar`)
        // moves the same logit by the same 1.77e-1; tiny-mixed: 1.79e-2.
        m if m.ends_with(X8) => (0.99, 0.25),
        _ => (0.99, 1e-2),
    }
}

/// The suffix naming a model run with its matrices repacked.
const X8: &str = " (x8)";

#[test]
fn logits_and_greedy_agree_with_llama_cpp() {
    let r = reference();
    let mut report = Vec::new();
    // Every model as in its file, and those with Q4_K/Q6_K matrices also
    // repacked (on CPUs without AVX-512 the layout's scalar reference runs).
    let cases = r["models"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(n, e)| [(n, e, false), (n, e, true)]);
    for (name, entry, repacked) in cases {
        let Some(bytes) = model_bytes(entry["file"].as_str().unwrap(), repacked) else {
            continue;
        };
        let g = Gguf::parse(&bytes).unwrap();
        let m = model(&g, repacked);
        let name = &format!("{name}{}", if repacked { X8 } else { "" });
        let n_vocab = entry["n_vocab"].as_u64().unwrap() as usize;
        assert_eq!(m.hp.n_vocab, n_vocab);
        let (min_top1, max_abs) = bounds(name);
        let mut total = Agreement {
            top1: 0,
            positions: 0,
            max_abs: 0.0,
        };
        let mut greedy_same = 0;
        let runs = entry["runs"].as_array().unwrap();
        for run in runs {
            let i = run["prompt"].as_u64().unwrap() as usize;
            let tokens = ids(&r["prompts"][i]["tokens"]);
            let a = compare(
                &prompt_logits(&m, &tokens, KvType::F32),
                &ref_logits(run["logits_file"].as_str().unwrap()),
                n_vocab,
            );
            total.top1 += a.top1;
            total.positions += a.positions;
            total.max_abs = total.max_abs.max(a.max_abs);
            let want = ids(&run["greedy"]);
            let got = greedy(&m, &tokens, want.len());
            if got == want {
                greedy_same += 1;
            } else if name.as_str() == "tiny-f32" {
                panic!("{name} prompt {i}: greedy differs from llama.cpp\n ours {got:?}\ntheirs {want:?}");
            }
        }
        let share = total.top1 as f64 / total.positions as f64;
        let line = format!(
            "{name}: top-1 {}/{} positions, max |dlogit| {:.2e}, greedy 32 tokens equal on {greedy_same}/{} prompts",
            total.top1,
            total.positions,
            total.max_abs,
            runs.len()
        );
        println!("{line}");
        report.push(line.clone());
        assert!(
            share >= min_top1,
            "{line}: top-1 agreement below {min_top1}"
        );
        assert!(
            total.max_abs <= max_abs,
            "{line}: max |dlogit| above {max_abs}"
        );
    }
    let out = common::repo_root().join("target/llama-cpp-agreement.txt");
    let _ = std::fs::write(out, report.join("\n") + "\n");
}

#[test]
fn f16_kv_cache_keeps_agreement() {
    // Half the KV memory; the rounding must not change the argmax.
    let r = reference();
    let entry = &r["models"]["tiny-q4_k_m"];
    let bytes = common::read(&common::model_path(entry["file"].as_str().unwrap()));
    let g = Gguf::parse(&bytes).unwrap();
    let m = Model::from_gguf(&g).unwrap();
    let n_vocab = m.hp.n_vocab;
    for run in entry["runs"].as_array().unwrap() {
        let tokens = ids(&r["prompts"][run["prompt"].as_u64().unwrap() as usize]["tokens"]);
        let a = compare(
            &prompt_logits(&m, &tokens, KvType::F16),
            &ref_logits(run["logits_file"].as_str().unwrap()),
            n_vocab,
        );
        assert!(
            a.top1 as f64 >= 0.99 * a.positions as f64,
            "f16 cache: top-1 {}/{}",
            a.top1,
            a.positions
        );
        println!(
            "f16 KV: top-1 {}/{}, max |dlogit| {:.2e}",
            a.top1, a.positions, a.max_abs
        );
    }
}

#[test]
fn batched_prefill_equals_token_by_token() {
    for (file, repacked) in [("tiny-mixed.gguf", false), ("tiny-q4_k_m.gguf", true)] {
        let bytes = model_bytes(file, repacked).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        prefill_equals_token_by_token(&model(&g, repacked));
    }
}

fn prefill_equals_token_by_token(m: &Model<'_>) {
    let tokens: Vec<u32> = (0..20).map(|i| (i * 97 + 5) % 2048).collect();
    let batched = prompt_logits(m, &tokens, KvType::F32);
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 1,
        logits_all: false,
        kv_type: KvType::F32,
    };
    let mut ctx = Context::new(&m.hp, params).unwrap();
    for (i, &t) in tokens.iter().enumerate() {
        ctx.forward(m, &[t], &mut Serial).unwrap();
        let row = &batched[i * m.hp.n_vocab..(i + 1) * m.hp.n_vocab];
        assert_eq!(ctx.logits(), row, "position {i}");
    }
}

#[test]
fn tokenization_equals_llama_cpp_on_test_vocab() {
    let r = reference();
    let bytes = common::read(&common::model_path("tiny-f32.gguf"));
    let g = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let mut scratch = tok.scratch(4096).unwrap();
    let mut out = vec![0u32; 4096];
    let mut cases: Vec<(String, bool, bool, Vec<u32>)> = r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["text"].as_str().unwrap().to_string(),
                true,
                false,
                ids(&p["tokens"]),
            )
        })
        .collect();
    for c in r["tokenize"].as_array().unwrap() {
        cases.push((
            c["text"].as_str().unwrap().to_string(),
            c["add_special"].as_bool().unwrap(),
            c["parse_special"].as_bool().unwrap(),
            ids(&c["tokens"]),
        ));
    }
    for (text, add_special, parse_special, want) in cases {
        let n = tok
            .encode_with(
                text.as_bytes(),
                add_special,
                parse_special,
                &mut scratch,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            &out[..n],
            &want[..],
            "{text:?} add_special={add_special} parse_special={parse_special}"
        );
    }
}

#[test]
fn forward_rejects_bad_input_without_panicking() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let g = Gguf::parse(&bytes).unwrap();
    let m = Model::from_gguf(&g).unwrap();
    let params = ContextParams {
        n_ctx: 8,
        n_batch: 4,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(&m.hp, params).unwrap();
    assert!(ctx.forward(&m, &[], &mut Serial).is_err());
    assert!(ctx.forward(&m, &[1, 2, 3, 4, 5], &mut Serial).is_err());
    assert!(ctx.forward(&m, &[1, 99999], &mut Serial).is_err());
    ctx.forward(&m, &[1, 2, 3, 4], &mut Serial).unwrap();
    ctx.forward(&m, &[1, 2, 3, 4], &mut Serial).unwrap();
    assert!(
        ctx.forward(&m, &[1], &mut Serial).is_err(),
        "context of 8 is full"
    );
}

/// The module repacks in bounded steps (`Repacker::step`, one FPU section
/// each): any budget gives the bytes of one pass, progress ends at the
/// total, and a buffer of another length is refused untouched.
#[test]
fn repack_in_steps_equals_one_pass() {
    let plain = common::read(&common::model_path("tiny-mixed.gguf"));
    let once = model_bytes("tiny-mixed.gguf", true).unwrap();
    for budget in [0, 1, 5000, 1 << 20, usize::MAX] {
        let mut b = plain.clone();
        let mut r = Repacker::new(&b).unwrap();
        assert!(r.matrices() > 0);
        let (mut steps, mut last) = (0, 0);
        while !r.step(&mut b, budget).unwrap() {
            let (done, total) = r.progress();
            assert!(
                done > last && done < total,
                "budget {budget}: progress {done} of {total} after {last}"
            );
            last = done;
            steps += 1;
        }
        let (done, total) = r.progress();
        assert_eq!(done, total);
        assert!(
            b == once,
            "budget {budget}: {steps} steps differ from one pass"
        );
        // Done stays done.
        assert!(r.step(&mut b, budget).unwrap());
        if budget == 5000 {
            assert!(steps > 2, "a small budget takes several steps ({steps})");
        }
    }
    let mut r = Repacker::new(&plain).unwrap();
    let mut short = plain[..plain.len() - 1].to_vec();
    assert!(r.step(&mut short, usize::MAX).is_err());
    assert!(short == plain[..plain.len() - 1]);
    // A file with nothing to repack.
    let f32s = common::read(&common::model_path("tiny-f32.gguf"));
    assert_eq!(Repacker::new(&f32s).unwrap().matrices(), 0);
}
