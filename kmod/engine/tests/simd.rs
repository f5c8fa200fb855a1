//! The SIMD kernels against the scalar reference, both run in this test.
//!
//! - Activation quantizers (Q8_K, Q8_0, F16): bytes identical.
//! - Dot products, integer parts: with power-of-two scales and small
//!   activations every partial sum is an exact integer below 2^24, so both
//!   paths must give identical bits; this pins the integer arithmetic.
//! - Dot products, general data: |simd - scalar| <= 1e-5 * S, where S is
//!   the sum of the magnitudes of every product term (both the scale and
//!   the min part for Q4_K/Q5_K), the scale of the rounding error.
//! - matmul_rows on odd row ranges, batches and unaligned buffers: the same
//!   tolerance; row pieces give the bits of the whole, each token of a
//!   batch the bits of the one-token kernel, and the AVX-512 build of the
//!   row kernels (where the CPU has it) the bits of the AVX2 one.
//! - The x8 layouts (Q4_K, Q6_K): repacking round-trips; their scalar
//!   references are within the tolerance of the row-major ones; their
//!   AVX-512 kernels give the references' bits.
//!
//! Skipped (with a message) on CPUs without AVX2/FMA/F16C.

use std::path::PathBuf;

use llamux_engine::quant::{
    self, act_row_bytes, dequantize_row, matmul_rows_isa, quantize_acts_isa, vec_dot_isa, GgmlType,
    Isa,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn have_avx2() -> bool {
    let ok = quant::isa_available(Isa::Avx2);
    if !ok {
        eprintln!("simd tests skipped: this CPU lacks AVX2/FMA/F16C");
    }
    ok
}

const WEIGHTS: [GgmlType; 6] = [
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8_0,
    GgmlType::F16,
    GgmlType::F32,
];

/// f16 scale offsets inside a block, per type.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q8_0 => &[0],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

fn set_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

/// Random weight rows: random quant bytes, finite f16 scales of varied size.
fn random_weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..rb * rows).map(|_| rng.next() as u8).collect();
    match ty {
        GgmlType::F32 => w
            .chunks_exact_mut(4)
            .for_each(|c| c.copy_from_slice(&(rng.f32() * 3.0).to_le_bytes())),
        GgmlType::F16 => w
            .chunks_exact_mut(2)
            .for_each(|c| set_f16(c, 0, rng.f32() * 3.0)),
        _ => {
            for blk in w.chunks_exact_mut(ty.block_bytes()) {
                for &o in scale_offsets(ty) {
                    let e = rng.below(12) as i32;
                    set_f16(blk, o, rng.f32() * 2f32.powi(-e));
                }
            }
        }
    }
    w
}

/// Activation rows of assorted shapes: uniform, heavy-tailed, spiky.
fn random_x(n: usize, rng: &mut Rng) -> Vec<f32> {
    let kind = rng.below(4);
    (0..n)
        .map(|i| match kind {
            0 => rng.f32(),
            1 => rng.f32() / (rng.f32().abs() + 0.01),
            2 => {
                if i % 97 == 5 {
                    rng.f32() * 1e3
                } else {
                    rng.f32() * 1e-3
                }
            }
            _ => (rng.below(5) as f32 - 2.0) * 0.5,
        })
        .collect()
}

fn acts(isa: Isa, wty: GgmlType, x: &[f32], cols: usize) -> Vec<u8> {
    let ab = act_row_bytes(wty, cols).unwrap();
    let mut out = vec![0u8; ab * (x.len() / cols)];
    for (x, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(ab)) {
        quantize_acts_isa(isa, wty, x, o).unwrap();
    }
    out
}

fn dequant(ty: GgmlType, b: &[u8], n: usize) -> Vec<f64> {
    let mut v = vec![0f32; n];
    dequantize_row(ty, b, &mut v).unwrap();
    v.into_iter().map(f64::from).collect()
}

/// Sum of |term| over the dot product's terms (the rounding-error scale).
fn magnitude(wty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
    let aty = quant::act_type(wty).unwrap();
    let av = dequant(aty, a, n);
    let parts: Vec<Vec<f64>> = match wty {
        GgmlType::Q4K | GgmlType::Q5K => {
            // The scale part (dmin = 0) and the min part (d = 0) separately.
            [2usize, 0]
                .iter()
                .map(|&zero| {
                    let mut w = w.to_vec();
                    w.chunks_exact_mut(wty.block_bytes())
                        .for_each(|b| b[zero..zero + 2].fill(0));
                    dequant(wty, &w, n)
                })
                .collect()
        }
        _ => vec![dequant(wty, w, n)],
    };
    parts
        .iter()
        .map(|p| p.iter().zip(&av).map(|(w, a)| (w * a).abs()).sum::<f64>())
        .sum()
}

fn check_close(what: &str, got: f32, want: f32, mag: f64) {
    let err = (got as f64 - want as f64).abs();
    assert!(
        err <= 1e-5 * mag + 1e-30,
        "{what}: simd {got} vs scalar {want}: err {err:e} > 1e-5 * {mag:e}"
    );
}

#[test]
fn act_quantizers_give_identical_bytes() {
    if !have_avx2() {
        return;
    }
    let mut rng = Rng(0x5eed_0001);
    for wty in [GgmlType::Q4K, GgmlType::Q8_0] {
        for case in 0..400 {
            let blocks = 1 + rng.below(5) as usize;
            let cols = blocks * 256;
            let mut x = random_x(cols + 1, &mut rng);
            match case % 8 {
                // Largest magnitude twice with opposite signs: first wins.
                1 => {
                    x[1 + 17] = -9.0;
                    x[1 + 200] = 9.0;
                }
                2 => x.iter_mut().for_each(|v| *v = 0.0),
                3 => x[1..1 + 256].iter_mut().for_each(|v| *v = -0.0),
                // Exact halves after scaling (rounding ties).
                4 => x
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = (i % 255) as f32 * 0.5 - 63.5),
                5 => x.iter_mut().for_each(|v| *v *= 1e-30),
                _ => {}
            }
            // Offset by one f32: unaligned input.
            let x = &x[1..];
            let ab = act_row_bytes(wty, cols).unwrap();
            let mut s = vec![0u8; ab + 1];
            let mut v = vec![0u8; ab + 1];
            quantize_acts_isa(Isa::Scalar, wty, x, &mut s[1..]).unwrap();
            quantize_acts_isa(Isa::Avx2, wty, x, &mut v[1..]).unwrap();
            assert_eq!(s, v, "{wty:?} case {case}");
        }
    }
}

/// F16 activations: every f32 class (random bit patterns: NaN payloads,
/// infinities, subnormals, overflow) gives the bytes of `half`'s rounding.
#[test]
fn f16_activations_give_identical_bytes() {
    if !have_avx2() {
        return;
    }
    let mut rng = Rng(0x5eed_0006);
    for case in 0..200 {
        let n = 1 + rng.below(300) as usize;
        let x: Vec<f32> = (0..n + 1)
            .map(|_| match rng.below(3) {
                0 => f32::from_bits(rng.next() as u32),
                1 => rng.f32() * 70000.0,
                _ => rng.f32() * 1e-6,
            })
            .collect();
        let x = &x[1..];
        let (mut s, mut v) = (vec![0u8; 2 * n + 1], vec![0u8; 2 * n + 1]);
        quantize_acts_isa(Isa::Scalar, GgmlType::F16, x, &mut s[1..]).unwrap();
        quantize_acts_isa(Isa::Avx2, GgmlType::F16, x, &mut v[1..]).unwrap();
        assert_eq!(s, v, "case {case}");
    }
}

/// Weights whose scales are powers of two and activations with d = 1 and
/// |q| <= 3: every sum is an exact small integer times a power of two.
#[test]
fn dot_integer_parts_are_bit_exact() {
    if !have_avx2() {
        return;
    }
    let mut rng = Rng(0x5eed_0002);
    for wty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::Q8_0] {
        for case in 0..300 {
            let blocks = 1 + rng.below(4) as usize;
            let cols = blocks * 256;
            let mut w = random_weights(wty, 1, cols, &mut rng);
            for blk in w.chunks_exact_mut(wty.block_bytes()) {
                for &o in scale_offsets(wty) {
                    let e = rng.below(6) as i32;
                    let s = if rng.below(2) == 0 { 1.0 } else { -1.0 };
                    set_f16(blk, o, s * 2f32.powi(-e));
                }
            }
            // Activations: build the quantized bytes directly.
            let aty = quant::act_type(wty).unwrap();
            let mut a = vec![0u8; act_row_bytes(wty, cols).unwrap()];
            match aty {
                GgmlType::Q8K => {
                    for b in a.chunks_exact_mut(292) {
                        b[..4].copy_from_slice(&1f32.to_le_bytes());
                        let q: Vec<i8> = (0..256).map(|_| rng.below(7) as i8 - 3).collect();
                        for (o, q) in b[4..260].iter_mut().zip(&q) {
                            *o = *q as u8;
                        }
                        for j in 0..16 {
                            let s: i16 = q[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
                            b[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
                        }
                    }
                }
                _ => {
                    for b in a.chunks_exact_mut(34) {
                        set_f16(b, 0, 1.0);
                        b[2..]
                            .iter_mut()
                            .for_each(|q| *q = (rng.below(255) as i32 - 127) as u8);
                        // Extremes. (-128 never occurs: the Q8_0 quantizer
                        // gives -127..=127, and like ggml's the kernel's
                        // sign trick would wrap on it.)
                        if case % 5 == 0 {
                            b[2..].iter_mut().for_each(|q| *q = 0x81);
                        }
                    }
                }
            }
            let s = vec_dot_isa(Isa::Scalar, wty, cols, &w, &a).unwrap();
            let v = vec_dot_isa(Isa::Avx2, wty, cols, &w, &a).unwrap();
            assert_eq!(s.to_bits(), v.to_bits(), "{wty:?} case {case}: {s} vs {v}");
        }
    }
}

#[test]
fn dots_match_scalar_within_tolerance() {
    if !have_avx2() {
        return;
    }
    let mut rng = Rng(0x5eed_0003);
    for wty in WEIGHTS {
        let mut worst = 0f64;
        for case in 0..200 {
            // Odd lengths: any whole number of blocks; for floats any n.
            let cols = match wty {
                GgmlType::F32 | GgmlType::F16 => 1 + rng.below(700) as usize,
                GgmlType::Q8_0 => 32 * (1 + rng.below(40) as usize),
                _ => 256 * (1 + rng.below(21) as usize),
            };
            let w = random_weights(wty, 1, cols, &mut rng);
            let x = random_x(cols, &mut rng);
            let a = acts(Isa::Scalar, wty, &x, cols);
            // Unaligned copies.
            let (mut wu, mut au) = (vec![0u8; w.len() + 3], vec![0u8; a.len() + 1]);
            wu[3..].copy_from_slice(&w);
            au[1..].copy_from_slice(&a);
            let s = vec_dot_isa(Isa::Scalar, wty, cols, &w, &a).unwrap();
            let v = vec_dot_isa(Isa::Avx2, wty, cols, &wu[3..], &au[1..]).unwrap();
            let mag = magnitude(wty, &w, &a, cols);
            check_close(&format!("{wty:?} case {case} cols {cols}"), v, s, mag);
            if mag > 0.0 {
                worst = worst.max((v as f64 - s as f64).abs() / mag);
            }
        }
        eprintln!("{wty:?}: max |simd - scalar| / S = {worst:.2e}");
    }
}

#[test]
fn matmul_rows_ranges_batches_unaligned() {
    if !have_avx2() {
        return;
    }
    let mut rng = Rng(0x5eed_0004);
    for wty in WEIGHTS {
        let cols = match wty {
            GgmlType::F32 | GgmlType::F16 => 77,
            GgmlType::Q8_0 => 32 * 9,
            _ => 256 * 3,
        };
        let rows = 37;
        let w = random_weights(wty, rows, cols, &mut rng);
        let mut wu = vec![0u8; w.len() + 1];
        wu[1..].copy_from_slice(&w);
        let rb = w.len() / rows;
        for n_batch in [1usize, 2, 3, 4, 5, 9, 13] {
            let x = random_x(cols * n_batch, &mut rng);
            let a = acts(Isa::Avx2, wty, &x, cols);
            let ab = a.len() / n_batch;
            let mut s = vec![0f32; rows * n_batch];
            let mut v = vec![0f32; rows * n_batch];
            matmul_rows_isa(Isa::Scalar, &w, wty, cols, 0..rows, &a, n_batch, &mut s).unwrap();
            matmul_rows_isa(Isa::Avx2, &wu[1..], wty, cols, 0..rows, &a, n_batch, &mut v).unwrap();
            for r in 0..rows {
                for b in 0..n_batch {
                    let mag = magnitude(
                        wty,
                        &w[r * rb..(r + 1) * rb],
                        &a[b * ab..(b + 1) * ab],
                        cols,
                    );
                    let i = b * rows + r;
                    check_close(&format!("{wty:?} row {r} batch {b}"), v[i], s[i], mag);
                    // Batched kernels (several tokens per weight block)
                    // give each token the bits of the one-token kernel.
                    let one = vec_dot_isa(
                        Isa::Avx2,
                        wty,
                        cols,
                        &w[r * rb..(r + 1) * rb],
                        &a[b * ab..(b + 1) * ab],
                    )
                    .unwrap();
                    assert_eq!(
                        one.to_bits(),
                        v[i].to_bits(),
                        "{wty:?} row {r} batch {b} of {n_batch}"
                    );
                }
            }
            // The AVX-512 build of the row kernels (32 registers, wider
            // token groups) gives the AVX2 bits, where the CPU has it.
            if quant::isa_available(Isa::Avx512) {
                let mut z = vec![0f32; rows * n_batch];
                matmul_rows_isa(
                    Isa::Avx512,
                    &wu[1..],
                    wty,
                    cols,
                    0..rows,
                    &a,
                    n_batch,
                    &mut z,
                )
                .unwrap();
                assert!(
                    z.iter().zip(&v).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{wty:?} avx512 vs avx2, batch {n_batch}"
                );
            }
            // Odd pieces give the bits of the whole.
            let mut at = 0;
            for len in [1usize, 7, 3, 13, 13] {
                let mut p = vec![0f32; len * n_batch];
                matmul_rows_isa(
                    Isa::Avx2,
                    &wu[1..],
                    wty,
                    cols,
                    at..at + len,
                    &a,
                    n_batch,
                    &mut p,
                )
                .unwrap();
                // Token-major: token b's piece is v[b * rows + at..][..len].
                let want = (0..n_batch).flat_map(|b| &v[b * rows + at..b * rows + at + len]);
                assert!(
                    p.iter().zip(want).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{wty:?} rows {at}..{}",
                    at + len
                );
                at += len;
            }
        }
    }
}

/// ggml's own blocks and activation rows (tests/fixtures/quant).
#[test]
fn fixture_blocks() {
    if !have_avx2() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quant");
    let meta = std::fs::read_to_string(dir.join("meta.txt")).unwrap();
    let field = |k: &str| -> usize {
        let l = meta.lines().find(|l| l.starts_with(k)).unwrap();
        l[k.len()..].trim().parse().unwrap()
    };
    let (n_rows, n) = (field("n_rows "), field("n_cols "));
    let x: Vec<f32> = std::fs::read(dir.join("x.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    for (wty, name) in [
        (GgmlType::Q4K, "q4_k"),
        (GgmlType::Q5K, "q5_k"),
        (GgmlType::Q6K, "q6_k"),
        (GgmlType::Q8_0, "q8_0"),
        (GgmlType::F16, "f16"),
        (GgmlType::F32, "f32"),
    ] {
        let w = std::fs::read(dir.join(format!("w.{name}"))).unwrap();
        let rb = w.len() / n_rows;
        let a_s = acts(Isa::Scalar, wty, &x, n);
        let a_v = acts(Isa::Avx2, wty, &x, n);
        assert_eq!(a_s, a_v, "{name} activations");
        let ab = a_s.len() / n_rows;
        for r in 0..n_rows {
            for c in 0..n_rows {
                let (wr, ar) = (&w[r * rb..(r + 1) * rb], &a_s[c * ab..(c + 1) * ab]);
                let s = vec_dot_isa(Isa::Scalar, wty, n, wr, ar).unwrap();
                let v = vec_dot_isa(Isa::Avx2, wty, n, wr, ar).unwrap();
                check_close(
                    &format!("{name} w{r} x{c}"),
                    v,
                    s,
                    magnitude(wty, wr, ar, n),
                );
            }
        }
    }
}

/// The attention helpers and the global switch (one test: it flips the
/// process-wide setting, which only this test reads).
#[test]
fn vector_helpers_and_switch() {
    let best = [Isa::Avx512, Isa::Avx2, Isa::Scalar]
        .into_iter()
        .find(|&i| quant::isa_available(i))
        .unwrap();
    assert_eq!(quant::isa(), best);
    // A cap below what the CPU has is what `isa()` then returns.
    quant::set_max_isa(Isa::Avx2);
    assert_eq!(
        quant::isa(),
        if best == Isa::Scalar {
            Isa::Scalar
        } else {
            Isa::Avx2
        }
    );
    quant::set_max_isa(Isa::Avx512);
    assert_eq!(quant::isa(), best);
    let mut rng = Rng(0x5eed_0005);
    for n in [0usize, 1, 7, 8, 31, 32, 33, 128, 1000] {
        let a: Vec<f32> = (0..n + 1).map(|_| rng.f32()).collect();
        let b: Vec<f32> = (0..n + 1).map(|_| rng.f32()).collect();
        let h: Vec<u16> = b
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let (a, b, h) = (&a[1..], &b[1..], &h[1..]);
        let mag: f64 = a.iter().zip(b).map(|(x, y)| (x * y).abs() as f64).sum();
        let o0: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        // f16 conversion (the KV cache): ties, overflow, subnormals, NaN.
        let specials = [
            65504.0,
            65520.0,
            -1e6,
            1e-7,
            3e-5,
            1.0 + 1.0 / 2048.0,
            f32::NAN,
            f32::INFINITY,
        ];
        let c: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i % 3 == 0 {
                    specials[i / 3 % 8]
                } else {
                    v * 70000.0
                }
            })
            .collect();
        let run = || {
            let (mut o1, mut o2) = (o0.clone(), o0.clone());
            quant::axpy_f32(&mut o1, 0.37, b);
            quant::axpy_f16(&mut o2, -1.5, h);
            let mut h16 = vec![0u16; n];
            quant::f32_to_f16(&c, &mut h16);
            (quant::dot_f32(a, b), quant::dot_f16(a, h), o1, o2, h16)
        };
        let v = run();
        quant::set_simd(false);
        assert_eq!(quant::isa(), Isa::Scalar);
        let s = run();
        quant::set_simd(true);
        assert_eq!(quant::isa(), best);
        assert_eq!(v.4, s.4, "f32_to_f16 n {n}");
        assert!(s
            .4
            .iter()
            .zip(&c)
            .all(|(&h, &x)| h == half::f16::from_f32(x).to_bits()));
        check_close(&format!("dot_f32 n {n}"), v.0, s.0, mag);
        check_close(&format!("dot_f16 n {n}"), v.1, s.1, mag * 1.01);
        // axpy: one FMA vs mul+add per element, within one rounding.
        for (x, y) in v.2.iter().zip(&s.2).chain(v.3.iter().zip(&s.3)) {
            assert!(
                (x - y).abs() <= 4e-7 * (x.abs() + 2.0),
                "axpy n {n}: {x} vs {y}"
            );
        }
    }
}

/// The x8 layouts (Q4_K, Q6_K): repacking is lossless, their scalar
/// references agree with the row-major ones within the dot tolerance, and
/// their AVX-512 kernels (where the CPU has them) give the references'
/// bits for every row range, batch and alignment.
#[test]
fn x8_layouts_and_kernels() {
    use llamux_engine::quant::{matmul_rows_with, q4_k_x8, q6_k_x8, repack_x8, Layout};
    let mut rng = Rng(0x5eed_0008);
    let shapes = [(8usize, 256usize), (24, 768), (40, 256 * 5)];
    for (wty, (rows, cols)) in [GgmlType::Q4K, GgmlType::Q6K]
        .into_iter()
        .flat_map(|t| shapes.map(|s| (t, s)))
    {
        let unrepack = if wty == GgmlType::Q4K {
            q4_k_x8::unrepack
        } else {
            q6_k_x8::unrepack
        };
        let w = random_weights(wty, rows, cols, &mut rng);
        let rb = w.len() / rows;
        let mut p = w.clone();
        let mut tmp = vec![0u8; 8 * rb];
        repack_x8(wty, &mut p, rows, cols, &mut tmp).unwrap();
        assert_ne!(p, w);
        let mut back = p.clone();
        unrepack(&mut back, rows, cols, &mut tmp).unwrap();
        assert_eq!(back, w, "{wty:?} {rows}x{cols}: repack then unrepack");
        // Shapes the layout does not take.
        assert!(repack_x8(wty, &mut p.clone()[..rb * 4], 4, cols, &mut tmp).is_err());
        assert!(repack_x8(wty, &mut p.clone(), rows, cols, &mut tmp[..rb]).is_err());
        assert!(repack_x8(GgmlType::Q8_0, &mut p.clone(), rows, cols, &mut tmp).is_err());
        let mut pu = vec![0u8; p.len() + 1];
        pu[1..].copy_from_slice(&p);
        for n_batch in [1usize, 3, 4, 5, 9] {
            let x = random_x(cols * n_batch, &mut rng);
            let a = acts(Isa::Scalar, wty, &x, cols);
            let ab = a.len() / n_batch;
            let mut s = vec![0f32; rows * n_batch];
            matmul_rows_with(
                Isa::Scalar,
                Layout::X8,
                &p,
                wty,
                cols,
                0..rows,
                &a,
                n_batch,
                &mut s,
            )
            .unwrap();
            for r in 0..rows {
                for b in 0..n_batch {
                    let (wr, ar) = (&w[r * rb..(r + 1) * rb], &a[b * ab..(b + 1) * ab]);
                    let want = vec_dot_isa(Isa::Scalar, wty, cols, wr, ar).unwrap();
                    check_close(
                        &format!("{wty:?} x8 {rows}x{cols} row {r} batch {b}"),
                        s[b * rows + r],
                        want,
                        magnitude(wty, wr, ar, cols),
                    );
                }
            }
            let mut bad = vec![0f32; 4 * n_batch];
            assert!(matmul_rows_with(
                Isa::Scalar,
                Layout::X8,
                &p,
                wty,
                cols,
                4..8,
                &a,
                n_batch,
                &mut bad
            )
            .is_err());
            for isa in [Isa::Avx2, Isa::Avx512]
                .into_iter()
                .filter(|&i| quant::isa_available(i))
            {
                let mut v = vec![0f32; rows * n_batch];
                matmul_rows_with(
                    isa,
                    Layout::X8,
                    &pu[1..],
                    wty,
                    cols,
                    0..rows,
                    &a,
                    n_batch,
                    &mut v,
                )
                .unwrap();
                assert!(
                    v.iter().zip(&s).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{wty:?} x8 {rows}x{cols} batch {n_batch}: {isa:?} vs scalar reference"
                );
                // Each token alone, and row groups alone, give the same bits.
                for b in 0..n_batch {
                    let mut one = vec![0f32; rows];
                    matmul_rows_with(
                        isa,
                        Layout::X8,
                        &p,
                        wty,
                        cols,
                        0..rows,
                        &a[b * ab..(b + 1) * ab],
                        1,
                        &mut one,
                    )
                    .unwrap();
                    assert!(
                        one.iter()
                            .zip(&v[b * rows..])
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{isa:?} token {b} of {n_batch}"
                    );
                }
                let mut piece = vec![0f32; 8 * n_batch];
                matmul_rows_with(
                    isa,
                    Layout::X8,
                    &p,
                    wty,
                    cols,
                    rows - 8..rows,
                    &a,
                    n_batch,
                    &mut piece,
                )
                .unwrap();
                let want = (0..n_batch).flat_map(|b| &v[b * rows + rows - 8..(b + 1) * rows]);
                assert!(
                    piece
                        .iter()
                        .zip(want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa:?} last row group"
                );
            }
        }
    }
    for isa in [Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| !quant::isa_available(i))
    {
        eprintln!("x8: {isa:?} kernels not run: this CPU lacks their features");
    }
}
