//! Sampler: greedy, determinism, the filters, penalties, the softmax
//! distribution, libstdc++'s RNG, and no allocation while sampling.

use llamux_engine::sample::{argmax, Mt19937, SampleError, Sampler, SamplerParams};

mod common;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

use common::allocs;

/// Deterministic pseudo-random logits in [-scale, scale).
fn logits(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut r = Mt19937::new(seed);
    (0..n)
        .map(|_| (r.next_f64() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

fn params(temperature: f32) -> SamplerParams {
    SamplerParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        penalty_last_n: 0,
        ..SamplerParams::default()
    }
}

#[test]
#[allow(clippy::excessive_precision)] // printed with %.17g
fn mt19937_matches_libstdcxx() {
    // Values printed by g++ 12: std::mt19937 and
    // std::uniform_real_distribution<double>(0, 1) as llama.cpp uses them.
    let mut a = Mt19937::new(5489);
    assert_eq!(
        [a.next_u32(), a.next_u32(), a.next_u32()],
        [3499211612, 581869302, 3890346734]
    );
    let mut r = Mt19937::new(1234);
    let want = [
        0.49766366630595166,
        0.81783844288953322,
        0.61211189358442275,
        0.77135991905474999,
    ];
    for w in want {
        assert_eq!(r.next_f64(), w);
    }
    let mut z = Mt19937::new(0);
    for _ in 0..700 {
        z.next_u32();
    }
    assert_eq!(z.next_u32(), 2772703073);
}

#[test]
fn greedy_is_argmax_lowest_id_on_ties() {
    let n = 1000;
    let mut s = Sampler::new(SamplerParams::greedy(), n).unwrap();
    for seed in 0..50 {
        let l = logits(n, seed, 10.0);
        let best = (0..n)
            .max_by(|&a, &b| l[a].partial_cmp(&l[b]).unwrap().then(b.cmp(&a)))
            .unwrap() as u32;
        assert_eq!(s.sample(&l, &[]).unwrap(), best);
        assert_eq!(argmax(&l), Some(best));
    }
    let mut l = vec![0.0f32; n];
    l[7] = 5.0;
    l[3] = 5.0;
    l[900] = 5.0;
    assert_eq!(s.sample(&l, &[]).unwrap(), 3);
    assert_eq!(argmax(&l), Some(3));
    // Filters on, temperature 0: still the lowest id of the best.
    let mut f = Sampler::new(
        SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        },
        n,
    )
    .unwrap();
    assert_eq!(f.sample(&l, &[]).unwrap(), 3);
}

#[test]
fn nan_logits_never_win() {
    let l = [f32::NAN, 1.0, f32::NAN, 2.0, f32::NAN];
    assert_eq!(argmax(&l), Some(3));
    for p in [
        SamplerParams::greedy(),
        SamplerParams::default(),
        params(1.0),
    ] {
        let mut s = Sampler::new(p, l.len()).unwrap();
        for _ in 0..100 {
            let t = s.sample(&l, &[]).unwrap();
            assert!(t == 1 || t == 3, "{t}");
        }
    }
    // All impossible: some id, no panic.
    let mut s = Sampler::new(params(1.0), 3).unwrap();
    assert!(s.sample(&[f32::NEG_INFINITY; 3], &[]).unwrap() < 3);
    assert!(s.sample(&[f32::NAN; 3], &[]).unwrap() < 3);
    assert_eq!(s.sample(&[0.0, f32::INFINITY, 1.0], &[]).unwrap(), 1);
}

#[test]
fn same_seed_same_sequence() {
    let n = 500;
    let run = |seed: u32| {
        let mut s = Sampler::new(
            SamplerParams {
                seed,
                ..SamplerParams::default()
            },
            n,
        )
        .unwrap();
        let mut out = Vec::new();
        for i in 0..200 {
            let t = s.sample(&logits(n, i, 3.0), &out).unwrap();
            out.push(t);
        }
        out
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // reseed restarts the sequence.
    let mut s = Sampler::new(params(1.0), n).unwrap();
    let l = logits(n, 9, 2.0);
    let a: Vec<u32> = (0..50).map(|_| s.sample(&l, &[]).unwrap()).collect();
    s.reseed(0);
    let b: Vec<u32> = (0..50).map(|_| s.sample(&l, &[]).unwrap()).collect();
    assert_eq!(a, b);
}

#[test]
fn top_k_1_and_tiny_top_p_are_greedy() {
    let n = 2000;
    let mut g = Sampler::new(SamplerParams::greedy(), n).unwrap();
    let mut k1 = Sampler::new(
        SamplerParams {
            top_k: 1,
            ..params(1.5)
        },
        n,
    )
    .unwrap();
    let mut p0 = Sampler::new(
        SamplerParams {
            top_p: 1e-6,
            ..params(1.5)
        },
        n,
    )
    .unwrap();
    let mut m1 = Sampler::new(
        SamplerParams {
            min_p: 1.0,
            ..params(1.5)
        },
        n,
    )
    .unwrap();
    for seed in 0..100 {
        let l = logits(n, seed, 1.0);
        let want = g.sample(&l, &[]).unwrap();
        assert_eq!(k1.sample(&l, &[]).unwrap(), want);
        assert_eq!(p0.sample(&l, &[]).unwrap(), want);
        assert_eq!(m1.sample(&l, &[]).unwrap(), want);
    }
}

#[test]
fn filters_keep_the_right_candidates() {
    let l = [1.0f32, 3.0, 2.0, 0.0, 2.5, -1.0];
    // top-k: the k best, sorted.
    let mut s = Sampler::new(
        SamplerParams {
            top_k: 3,
            ..params(1.0)
        },
        l.len(),
    )
    .unwrap();
    s.sample(&l, &[]).unwrap();
    assert_eq!(
        s.candidates().iter().map(|c| c.id).collect::<Vec<_>>(),
        [1, 4, 2]
    );
    let sum: f32 = s.candidates().iter().map(|c| c.p).sum();
    assert!((sum - 1.0).abs() < 1e-6);
    // top-p: the smallest head whose mass reaches p.
    let z: f32 = l.iter().map(|x| x.exp()).sum();
    let p1 = 3.0f32.exp() / z;
    let p4 = 2.5f32.exp() / z;
    let mut s = Sampler::new(
        SamplerParams {
            top_p: p1 + p4 * 0.5,
            ..params(1.0)
        },
        l.len(),
    )
    .unwrap();
    s.sample(&l, &[]).unwrap();
    assert_eq!(
        s.candidates().iter().map(|c| c.id).collect::<Vec<_>>(),
        [1, 4]
    );
    // min-p: p >= min_p * p_max, i.e. logit >= max + ln(min_p); order kept.
    let mut s = Sampler::new(
        SamplerParams {
            min_p: (-1.2f32).exp(),
            ..params(1.0)
        },
        l.len(),
    )
    .unwrap();
    s.sample(&l, &[]).unwrap();
    assert_eq!(
        s.candidates().iter().map(|c| c.id).collect::<Vec<_>>(),
        [1, 2, 4]
    );
}

#[test]
fn large_vocab_top_p_beyond_the_first_256() {
    // Flat logits: top-p needs most of the list, past llama.cpp's 256 head.
    let n = 5000;
    let l = logits(n, 3, 0.01);
    let mut s = Sampler::new(
        SamplerParams {
            top_p: 0.9,
            ..params(1.0)
        },
        n,
    )
    .unwrap();
    s.sample(&l, &[]).unwrap();
    let c = s.candidates();
    assert!(c.len() > 256 && c.len() < n, "{}", c.len());
    assert!(c.windows(2).all(|w| w[0].logit >= w[1].logit));
    let mut sorted = l.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    assert_eq!(c.last().unwrap().logit, sorted[c.len() - 1]);
}

#[test]
fn repetition_penalty_lowers_repeated_tokens() {
    let l = [2.0f32, 1.9, -1.0, 0.5];
    let mut s = Sampler::new(
        SamplerParams {
            repeat_penalty: 1.5,
            penalty_last_n: 4,
            ..SamplerParams::greedy()
        },
        4,
    )
    .unwrap();
    assert_eq!(s.sample(&l, &[]).unwrap(), 0);
    // 2.0 / 1.5 < 1.9: token 0 loses.
    assert_eq!(s.sample(&l, &[0]).unwrap(), 1);
    // Outside the window: no penalty.
    assert_eq!(s.sample(&l, &[0, 3, 3, 3, 3]).unwrap(), 0);
    // Negative logits are multiplied, so they drop too.
    let mut t = Sampler::new(
        SamplerParams {
            repeat_penalty: 2.0,
            penalty_last_n: 8,
            ..params(1.0)
        },
        4,
    )
    .unwrap();
    t.sample(&l, &[2, 0, 2]).unwrap();
    let after: Vec<f32> = {
        let mut v = [0.0f32; 4];
        for c in t.candidates() {
            v[c.id as usize] = c.logit;
        }
        v.to_vec()
    };
    assert_eq!(after, [1.0, 1.9, -2.0, 0.5]);
    // Frequency and presence penalties subtract per occurrence / once.
    let mut f = Sampler::new(
        SamplerParams {
            frequency_penalty: 0.25,
            presence_penalty: 0.5,
            penalty_last_n: 8,
            ..params(1.0)
        },
        4,
    )
    .unwrap();
    f.sample(&l, &[3, 3, 3, 9999]).unwrap();
    let c3 = f.candidates().iter().find(|c| c.id == 3).unwrap();
    assert_eq!(c3.logit, 0.5 - 3.0 * 0.25 - 0.5);
}

#[test]
fn temperature_one_follows_softmax() {
    let l = [0.0f32, 1.0, -0.5, 2.0, 0.3, -2.0, 1.5, 0.0];
    let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
    let want: Vec<f64> = l.iter().map(|&x| (x as f64).exp() / z).collect();
    let mut s = Sampler::new(
        SamplerParams {
            seed: 7,
            ..params(1.0)
        },
        l.len(),
    )
    .unwrap();
    let draws = 200_000;
    let mut hist = vec![0usize; l.len()];
    for _ in 0..draws {
        hist[s.sample(&l, &[]).unwrap() as usize] += 1;
    }
    // Chi-square with 7 degrees of freedom: 24.3 is the 0.999 quantile.
    let chi2: f64 = hist
        .iter()
        .zip(&want)
        .map(|(&h, &p)| {
            let e = p * draws as f64;
            (h as f64 - e).powi(2) / e
        })
        .sum();
    assert!(chi2 < 24.3, "chi2 {chi2}, hist {hist:?}, want {want:?}");
    // Temperature 0.5 sharpens: the best token comes up more often.
    let mut cold = Sampler::new(
        SamplerParams {
            seed: 7,
            ..params(0.5)
        },
        l.len(),
    )
    .unwrap();
    let top = (0..20_000)
        .filter(|_| cold.sample(&l, &[]).unwrap() == 3)
        .count();
    assert!(top as f64 / 20_000.0 > want[3] + 0.1, "{top}");
}

#[test]
fn bad_input_is_an_error() {
    assert_eq!(
        Sampler::new(SamplerParams::default(), 0).err(),
        Some(SampleError::EmptyVocab)
    );
    for p in [
        SamplerParams {
            temperature: f32::NAN,
            ..SamplerParams::default()
        },
        SamplerParams {
            top_p: f32::NAN,
            ..SamplerParams::default()
        },
        SamplerParams {
            repeat_penalty: 0.0,
            ..SamplerParams::default()
        },
        SamplerParams {
            frequency_penalty: f32::INFINITY,
            ..SamplerParams::default()
        },
    ] {
        assert!(matches!(Sampler::new(p, 10), Err(SampleError::BadParam(_))));
    }
    let mut s = Sampler::new(SamplerParams::default(), 10).unwrap();
    assert_eq!(
        s.sample(&[0.0; 9], &[]),
        Err(SampleError::LogitsLength { got: 9, want: 10 })
    );
    // Out-of-range ids in the history are ignored.
    assert!(s.sample(&[0.0; 10], &[u32::MAX, 10, 11]).unwrap() < 10);
}

#[test]
fn sampling_does_not_allocate() {
    let n = 32000;
    let l = logits(n, 1, 5.0);
    let recent: Vec<u32> = (0..100).map(|i| i * 7).collect();
    let mut samplers: Vec<Sampler> = [
        SamplerParams::default(),
        SamplerParams::greedy(),
        SamplerParams {
            top_k: 0,
            top_p: 0.9,
            repeat_penalty: 1.1,
            ..SamplerParams::default()
        },
        SamplerParams {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.1,
            ..SamplerParams::default()
        },
    ]
    .into_iter()
    .map(|p| Sampler::new(p, n).unwrap())
    .collect();
    let before = allocs();
    for s in &mut samplers {
        for _ in 0..5 {
            s.sample(&l, &recent).unwrap();
        }
    }
    assert_eq!(allocs(), before);
}

#[test]
fn set_params_equals_a_new_sampler_and_does_not_allocate() {
    let n = 300;
    let l = logits(n, 7, 3.0);
    let mut fresh = Sampler::new(
        SamplerParams {
            seed: 42,
            ..params(1.0)
        },
        n,
    )
    .unwrap();
    let want: Vec<u32> = (0..50).map(|_| fresh.sample(&l, &[]).unwrap()).collect();
    let mut reused = Sampler::new(
        SamplerParams {
            seed: 1,
            ..params(0.5)
        },
        n,
    )
    .unwrap();
    for _ in 0..10 {
        reused.sample(&l, &[]).unwrap();
    }
    let mut got = Vec::with_capacity(50);
    let before = allocs();
    reused
        .set_params(SamplerParams {
            seed: 42,
            ..params(1.0)
        })
        .unwrap();
    for _ in 0..50 {
        got.push(reused.sample(&l, &[]).unwrap());
    }
    assert_eq!(allocs(), before, "set_params or sample allocated");
    assert_eq!(got, want);
    assert!(reused
        .set_params(SamplerParams {
            top_p: f32::NAN,
            ..params(1.0)
        })
        .is_err());
}
