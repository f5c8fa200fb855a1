//! The advisor's answer scores equal the log-probabilities read from a
//! plain forward pass over prefix + event + answer with every position's
//! logits (the advisor runs the prefix and the event with only the last
//! position's logits, and each answer after them).

mod common;

use llamux_engine::advise::Advisor;
use llamux_engine::exec::Serial;
use llamux_engine::gguf::Gguf;
use llamux_engine::model::{Context, ContextParams, KvType, Model};

fn log_softmax_at(row: &[f32], t: u32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
    row[t as usize] - lse
}

#[test]
fn scores_equal_a_full_forward() {
    let bytes = common::read(&common::model_path("tiny-q8_0.gguf"));
    let g = Gguf::parse(&bytes).unwrap();
    let m = Model::from_gguf(&g).unwrap();
    let nv = m.hp.n_vocab;
    let prefix: Vec<u32> = (1..40).map(|i| (i * 37 % 1900 + 3) as u32).collect();
    let event: Vec<u32> = (0..45).map(|i| (i * 53 % 1900 + 5) as u32).collect();
    let answers: [&[u32]; 3] = [&[379], &[295, 417], &[281, 1613, 7]];
    // n_batch 16: prefix and event run in several chunks.
    let mut adv = Advisor::new(&m, 256, 16).unwrap();
    adv.set_prefix(&m, &prefix, &mut Serial).unwrap();
    let mut scores = [0f32; 3];
    for round in 0..2 {
        let best = adv
            .score(&m, &event, &answers, &mut scores, &mut Serial)
            .unwrap();
        for (i, a) in answers.iter().enumerate() {
            let mut all = prefix.clone();
            all.extend_from_slice(&event);
            all.extend_from_slice(a);
            let params = ContextParams {
                n_ctx: 256,
                n_batch: all.len(),
                logits_all: true,
                kv_type: KvType::F32,
            };
            let mut ctx = Context::new(&m.hp, params).unwrap();
            ctx.forward(&m, &all, &mut Serial).unwrap();
            let l = ctx.logits();
            let first = prefix.len() + event.len() - 1;
            let want: f32 = a
                .iter()
                .enumerate()
                .map(|(j, &t)| log_softmax_at(&l[(first + j) * nv..(first + j + 1) * nv], t))
                .sum();
            assert!(
                (scores[i] - want).abs() < 1e-3,
                "round {round} answer {i}: {} vs {want}",
                scores[i]
            );
        }
        let top = (0..3).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        assert_eq!(best, top);
    }
}
