//! The non-matmul ops. References replay ggml's scalar C with the C
//! library's float functions (std's f32 math calls glibc here); the engine
//! has its own (ops::math), which may differ by an ulp (measured below).

use std::path::PathBuf;

use llamux_engine::ops::{
    embedding_row, math, rms_norm, rms_norm_mul, rope_cache, rope_normal, silu, silu_in_place,
    silu_in_place_isa, soft_max, swiglu_in_place, swiglu_in_place_isa, OpError,
};
use llamux_engine::quant::{GgmlType, Isa, QuantError};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/quant")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const N_COLS: usize = 512; // tests/fixtures/quant/meta.txt

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Distance in units in the last place between two finite f32.
fn ulps(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let i = x.to_bits() as i32 as i64;
        if i < 0 {
            i64::from(i32::MIN) - i
        } else {
            i
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

struct Rng(u64);
impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

#[test]
fn rms_norm_is_bit_identical_to_ggml() {
    let x = f32s(&fixture("x.f32"));
    let want = f32s(&fixture("norm.f32"));
    for (r, (x, want)) in x
        .chunks_exact(N_COLS)
        .zip(want.chunks_exact(N_COLS))
        .enumerate()
    {
        let mut got = vec![0f32; N_COLS];
        rms_norm(x, 1e-5, &mut got).unwrap();
        assert_eq!(bits(&got), bits(want), "row {r}");
        // With the norm weight: (x * scale) * w, as ggml_rms_norm then ggml_mul.
        let w: Vec<f32> = (0..N_COLS).map(|i| 0.5 + i as f32 / 1000.0).collect();
        let mut got_w = vec![0f32; N_COLS];
        rms_norm_mul(x, &w, 1e-5, &mut got_w).unwrap();
        let want_w: Vec<f32> = want.iter().zip(&w).map(|(a, b)| a * b).collect();
        assert_eq!(bits(&got_w), bits(&want_w), "row {r} weighted");
    }
    let mut out = [0f32; 3];
    assert!(matches!(
        rms_norm(&[1.0; 4], 1e-5, &mut out),
        Err(OpError::Length { .. })
    ));
    assert!(matches!(
        rms_norm_mul(&[1.0; 3], &[1.0; 2], 1e-5, &mut out),
        Err(OpError::Length { .. })
    ));
    rms_norm(&[], 1e-5, &mut []).unwrap();
}

#[test]
fn embedding_dequantizes_one_row_of_any_type() {
    for (ty, name) in [
        (GgmlType::Q4K, "q4_k"),
        (GgmlType::Q5K, "q5_k"),
        (GgmlType::Q6K, "q6_k"),
        (GgmlType::Q8_0, "q8_0"),
        (GgmlType::F16, "f16"),
    ] {
        let table = fixture(&format!("w.{name}"));
        let want = f32s(&fixture(&format!("w.{name}.f32")));
        for token in [0, 7, 17] {
            let mut out = vec![0f32; N_COLS];
            embedding_row(&table, ty, token, &mut out).unwrap();
            assert_eq!(
                bits(&out),
                bits(&want[token * N_COLS..(token + 1) * N_COLS]),
                "{name} token {token}"
            );
        }
        let mut out = vec![0f32; N_COLS];
        assert_eq!(
            embedding_row(&table, ty, 18, &mut out),
            Err(OpError::Quant(QuantError::RowRange {
                start: 18,
                end: 19,
                n_rows: 18
            }))
        );
        assert!(embedding_row(&table[1..], ty, 0, &mut out).is_err());
        assert!(embedding_row(&table, ty, 0, &mut out[..100]).is_err());
        assert!(embedding_row(&table, ty, 0, &mut []).is_err());
    }
    let table = fixture("w.f32");
    let want = f32s(&table);
    let mut out = vec![0f32; N_COLS];
    embedding_row(&table, GgmlType::F32, 3, &mut out).unwrap();
    assert_eq!(bits(&out), bits(&want[3 * N_COLS..4 * N_COLS]));
}

/// ggml's rope cache and rotation, with the C library's powf/cosf/sinf.
fn rope_ref(x: &mut [f32], head_dim: usize, n_dims: usize, pos: usize, base: f32) {
    let theta_scale = base.powf(-2.0 / n_dims as f32);
    for head in x.chunks_exact_mut(head_dim) {
        let mut theta = pos as f32;
        for i in (0..n_dims).step_by(2) {
            let (c, s) = (theta.cos(), theta.sin());
            let (x0, x1) = (head[i], head[i + 1]);
            head[i] = x0 * c - x1 * s;
            head[i + 1] = x0 * s + x1 * c;
            theta *= theta_scale;
        }
    }
}

#[test]
fn rope_matches_ggml() {
    let mut rng = Rng(5);
    let (n_head, head_dim) = (4, 128);
    let x: Vec<f32> = (0..n_head * head_dim).map(|_| rng.f32()).collect();
    let mut cache = vec![0f32; head_dim];

    // Position 0 is the identity, bit for bit.
    rope_cache(0, head_dim, 10000.0, 1.0, &mut cache).unwrap();
    let mut y = x.clone();
    rope_normal(&mut y, head_dim, &cache).unwrap();
    assert_eq!(bits(&y), bits(&x));

    // The theta scale equals glibc's for these bases (asserted below), so only
    // cos/sin can differ, by an ulp: outputs agree to a few ulp of the pair's
    // size. (A 1-ulp different scale, as libm's f32 powf gives for 1e4, would
    // move angle i by up to pos * i * 2^-23 rad: 3e-3 relative at pos 16383.)
    for base in [1e6f32, 1e4, 5e5] {
        let (mut differ, mut total, mut worst) = (0, 0, 0f32);
        for pos in [1, 2, 17, 100, 1000, 4095, 16383] {
            rope_cache(pos, head_dim, base, 1.0, &mut cache).unwrap();
            let mut got = x.clone();
            rope_normal(&mut got, head_dim, &cache).unwrap();
            let mut want = x.clone();
            rope_ref(&mut want, head_dim, head_dim, pos, base);
            for (p, (g, w)) in got.chunks_exact(2).zip(want.chunks_exact(2)).enumerate() {
                let norm = x[2 * p].abs() + x[2 * p + 1].abs();
                let err = (g[0] - w[0]).abs().max((g[1] - w[1]).abs());
                let tol = norm * 4.0 * f32::EPSILON;
                assert!(err <= tol, "base {base} pos {pos} pair {p}: {g:?} vs {w:?}");
                worst = worst.max(err / norm);
                total += 2;
                differ += (g[0] != w[0]) as usize + (g[1] != w[1]) as usize;
            }
        }
        println!("rope base {base}: {differ}/{total} values differ from glibc-based ggml, worst {worst:.1e} relative");
    }

    // n_dims < head_dim: the tail of each head is untouched.
    let mut cache = vec![0f32; 64];
    rope_cache(33, 64, 10000.0, 1.0, &mut cache).unwrap();
    let mut y = x.clone();
    rope_normal(&mut y, head_dim, &cache).unwrap();
    for h in 0..n_head {
        let r = h * head_dim;
        assert_eq!(bits(&y[r + 64..r + 128]), bits(&x[r + 64..r + 128]));
        assert_ne!(bits(&y[r..r + 64]), bits(&x[r..r + 64]));
    }

    // Errors.
    assert!(matches!(
        rope_cache(1, 7, 1e4, 1.0, &mut [0.0; 7]),
        Err(OpError::BadParam(_))
    ));
    assert!(matches!(
        rope_cache(1, 0, 1e4, 1.0, &mut []),
        Err(OpError::BadParam(_))
    ));
    assert!(matches!(
        rope_cache(1, 8, 1e4, 1.0, &mut [0.0; 6]),
        Err(OpError::Length { .. })
    ));
    assert!(matches!(
        rope_normal(&mut [0.0; 130], 128, &cache),
        Err(OpError::Length { .. })
    ));
    assert!(matches!(
        rope_normal(&mut [0.0; 32], 32, &cache),
        Err(OpError::BadParam(_))
    ));
    assert!(matches!(
        rope_normal(&mut [0.0; 128], 128, &cache[..63]),
        Err(OpError::BadParam(_))
    ));
}

/// ggml_compute_forward_soft_max_f32 without mask, with the C library's expf.
fn soft_max_ref(x: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in x.iter_mut() {
        *v *= scale;
        max = if max > *v { max } else { *v };
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The instruction sets this CPU can run (the scalar reference always).
fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Scalar];
    if llamux_engine::quant::isa_available(Isa::Avx2) {
        v.push(Isa::Avx2);
    } else {
        eprintln!("AVX2 variants skipped: this CPU lacks AVX2/FMA/F16C");
    }
    v
}

#[test]
fn soft_max_matches_ggml() {
    let mut rng = Rng(11);
    for n in [1, 2, 7, 64, 1000] {
        let x: Vec<f32> = (0..n).map(|_| rng.f32() * 20.0).collect();
        let scale = 1.0 / (128f32).sqrt();
        let mut got = x.clone();
        soft_max(&mut got, scale);
        let mut want = x.clone();
        soft_max_ref(&mut want, scale);
        for (g, w) in got.iter().zip(&want) {
            assert!(ulps(*g, *w) <= 3, "n {n}: {g} vs {w}");
        }
        let sum: f64 = got.iter().map(|&v| v as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "n {n}: sum {sum}");

        // The scale is applied first, exactly as a separate multiply.
        let mut pre: Vec<f32> = x.iter().map(|v| v * scale).collect();
        soft_max(&mut pre, 1.0);
        assert_eq!(bits(&pre), bits(&got));

        // A causal mask's -inf tail adds exact zeros: the prefix alone gives the same bits.
        let mut masked = x.clone();
        masked.extend(std::iter::repeat_n(f32::NEG_INFINITY, 5));
        soft_max(&mut masked, scale);
        assert_eq!(bits(&masked[..n]), bits(&got));
        assert!(masked[n..].iter().all(|&v| v == 0.0));
    }
    soft_max(&mut [], 1.0);
}

#[test]
fn silu_and_swiglu_match_ggml() {
    assert_eq!(silu(0.0), 0.0);
    assert_eq!(silu(100.0), 100.0);
    assert_eq!(silu(-200.0), -0.0);
    for isa in isas() {
        let mut rng = Rng(3);
        let mut x: Vec<f32> = (0..4099).map(|_| rng.f32() * 12.0).collect();
        // The vector expf's whole normal range (its |n| > 126 paths too).
        x.extend((-870..=880).map(|i| i as f32 * 0.1));
        x.extend([0.0, -0.0, 100.0, 200.0]);
        let up: Vec<f32> = (0..x.len()).map(|_| rng.f32()).collect();
        let mut s = x.clone();
        silu_in_place_isa(isa, &mut s);
        let mut worst = 0;
        for (&v, &got) in x.iter().zip(&s) {
            let want = v / (1.0 + (-v).exp()); // ggml_silu_f32 with glibc expf
            worst = worst.max(ulps(got, want));
        }
        let bound = if isa == Isa::Scalar { 2 } else { 4 };
        assert!(
            worst <= bound,
            "{isa:?}: silu differs from glibc-based ggml by {worst} ulp"
        );
        eprintln!("{isa:?}: silu within {worst} ulp of glibc-based ggml");
        // An element's result does not depend on where it sits.
        let mut tail = x[5..].to_vec();
        silu_in_place_isa(isa, &mut tail);
        assert_eq!(bits(&tail), bits(&s[5..]), "{isa:?}");

        let mut g = x.clone();
        swiglu_in_place_isa(isa, &mut g, &up).unwrap();
        let want: Vec<f32> = s.iter().zip(&up).map(|(a, b)| a * b).collect();
        assert_eq!(bits(&g), bits(&want), "{isa:?}");
        assert!(matches!(
            swiglu_in_place_isa(isa, &mut g, &up[1..]),
            Err(OpError::Length { .. })
        ));
    }
    // The default entry points use the best kernels.
    let mut rng = Rng(4);
    let x: Vec<f32> = (0..37).map(|_| rng.f32() * 12.0).collect();
    let (mut a, mut b) = (x.clone(), x.clone());
    silu_in_place(&mut a);
    silu_in_place_isa(llamux_engine::quant::isa(), &mut b);
    assert_eq!(bits(&a), bits(&b));
    swiglu_in_place(&mut a, &x).unwrap();
    swiglu_in_place_isa(llamux_engine::quant::isa(), &mut b, &x).unwrap();
    assert_eq!(bits(&a), bits(&b));
}

/// How far the engine's math (libm in f64, rounded once) is from glibc's
/// float functions (what ggml calls on Linux) on the inputs the ops see:
/// never more than 1 ulp, rarely different. (libm's own f32 routines differ
/// on 1-10% of these inputs.)
#[test]
fn engine_math_is_within_one_ulp_of_glibc() {
    let mut report = Vec::new();
    let mut check = |name: &str,
                     inputs: &mut dyn Iterator<Item = f32>,
                     ours: &dyn Fn(f32) -> f32,
                     theirs: &dyn Fn(f32) -> f32| {
        let (mut n, mut differ) = (0u64, 0u64);
        for x in inputs {
            let (a, b) = (ours(x), theirs(x));
            assert!(ulps(a, b) <= 1, "{name}({x:e}): {a:e} vs {b:e}");
            n += 1;
            differ += (a.to_bits() != b.to_bits()) as u64;
        }
        report.push(format!("{name}: {differ}/{n} differ by 1 ulp"));
    };
    // expf on softmax/SiLU arguments.
    check(
        "expf",
        &mut (0..200_000).map(|i| -87.0 + i as f32 * 0.00087),
        &math::expf,
        &f32::exp,
    );
    // cosf/sinf on RoPE angles (up to pos 16384).
    check(
        "cosf",
        &mut (0..200_000).map(|i| i as f32 * 0.0819),
        &math::cosf,
        &f32::cos,
    );
    check(
        "sinf",
        &mut (0..200_000).map(|i| i as f32 * 0.0819),
        &math::sinf,
        &f32::sin,
    );
    // powf for RoPE theta scales: base^(-2/n_dims).
    for n_dims in [64, 128] {
        let e = -2.0 / n_dims as f32;
        check(
            &format!("powf(b, -2/{n_dims})"),
            &mut (0..100_000).map(|i| 1000.0 + i as f32 * 37.0),
            &|b| math::powf(b, e),
            &|b| b.powf(e),
        );
        for base in [1e4f32, 1e6, 5e5] {
            assert_eq!(
                math::powf(base, e).to_bits(),
                base.powf(e).to_bits(),
                "theta scale, base {base}"
            );
        }
    }
    assert_eq!(math::sqrtf(2.0), 2f32.sqrt());
    for r in report {
        println!("{r}");
    }
}
