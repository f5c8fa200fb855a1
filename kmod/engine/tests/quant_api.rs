//! The matmul API: row ranges, batches, error paths, quantizer edge cases.

use std::mem::size_of;

use llamux_engine::quant::{
    act_row_bytes, act_type, dequantize_row, matmul_rows, matvec_rows, quantize_acts,
    quantize_acts_batch, vec_dot, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, BlockQ8_0, GgmlType,
    QuantError,
};

const WEIGHT_TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// xorshift64*: deterministic test data without dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// A random matrix of `ty`: random bytes with every f16 scale replaced by a
/// small finite value, so results are finite and comparable.
fn random_matrix(ty: GgmlType, n_rows: usize, n_cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..rb * n_rows).map(|_| rng.next() as u8).collect();
    let scale_offsets: &[usize] = match ty {
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.f32().to_le_bytes());
            }
            &[]
        }
        GgmlType::F16 => {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&half::f16::from_f32(rng.f32()).to_bits().to_le_bytes());
            }
            &[]
        }
        GgmlType::Q8_0 => &[0],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        GgmlType::Q8K => unreachable!(),
    };
    for blk in w.chunks_exact_mut(ty.block_bytes()) {
        for &o in scale_offsets {
            let d = half::f16::from_f32(rng.f32() * 0.01);
            blk[o..o + 2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
    }
    w
}

fn random_acts(wty: GgmlType, n_cols: usize, n_batch: usize, rng: &mut Rng) -> Vec<u8> {
    let x: Vec<f32> = (0..n_cols * n_batch).map(|_| rng.f32()).collect();
    let mut acts = vec![0u8; act_row_bytes(wty, n_cols).unwrap() * n_batch];
    quantize_acts_batch(wty, &x, n_cols, &mut acts).unwrap();
    acts
}

#[test]
fn block_sizes_match_ggml() {
    assert_eq!(size_of::<BlockQ4K>(), 144);
    assert_eq!(size_of::<BlockQ5K>(), 176);
    assert_eq!(size_of::<BlockQ6K>(), 210);
    assert_eq!(size_of::<BlockQ8_0>(), 34);
    assert_eq!(size_of::<BlockQ8K>(), 292);
}

#[test]
fn act_types_are_ggmls_vec_dot_types() {
    assert_eq!(act_type(GgmlType::F32), Ok(GgmlType::F32));
    assert_eq!(act_type(GgmlType::F16), Ok(GgmlType::F16));
    assert_eq!(act_type(GgmlType::Q8_0), Ok(GgmlType::Q8_0));
    for t in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        assert_eq!(act_type(t), Ok(GgmlType::Q8K));
        assert_eq!(act_row_bytes(t, 5120), Ok(20 * 292));
    }
    assert!(matches!(
        act_type(GgmlType::Q8K),
        Err(QuantError::Unsupported { .. })
    ));
    assert_eq!(act_row_bytes(GgmlType::F16, 7), Ok(14));
}

/// Any split of the rows gives the bits of the whole matvec, for every type.
#[test]
fn matvec_over_row_ranges_equals_full_matvec() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (n_rows, n_cols) = (37, 512);
    for ty in WEIGHT_TYPES {
        let w = random_matrix(ty, n_rows, n_cols, &mut rng);
        let acts = random_acts(ty, n_cols, 1, &mut rng);
        let mut full = vec![0f32; n_rows];
        matvec_rows(&w, ty, n_cols, 0..n_rows, &acts, &mut full).unwrap();
        assert!(full.iter().all(|v| v.is_finite()), "{ty:?}");
        // Row by row, through vec_dot.
        let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
        for (r, want) in full.iter().enumerate() {
            let got = vec_dot(ty, n_cols, &w[r * rb..(r + 1) * rb], &acts).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{ty:?} row {r}");
        }
        for chunk in [1, 4, 10, 36, 37] {
            let mut pieces = vec![f32::NAN; n_rows];
            for (i, out) in pieces.chunks_mut(chunk).enumerate() {
                let start = i * chunk;
                matvec_rows(&w, ty, n_cols, start..start + out.len(), &acts, out).unwrap();
            }
            assert_eq!(
                pieces.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                full.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty:?} chunk {chunk}"
            );
        }
        // An empty range is fine.
        matvec_rows(&w, ty, n_cols, 5..5, &acts, &mut []).unwrap();
    }
}

/// The batched variant: out[b * n_rows + i] (token-major), bits equal to one matvec per vector.
#[test]
fn matmul_batch_equals_matvec_per_vector() {
    let mut rng = Rng(42);
    let (n_rows, n_cols, n_batch) = (9, 768, 3);
    for ty in WEIGHT_TYPES {
        let w = random_matrix(ty, n_rows, n_cols, &mut rng);
        let acts = random_acts(ty, n_cols, n_batch, &mut rng);
        let ab = act_row_bytes(ty, n_cols).unwrap();
        let rows = 2..8;
        let mut out = vec![0f32; rows.len() * n_batch];
        matmul_rows(&w, ty, n_cols, rows.clone(), &acts, n_batch, &mut out).unwrap();
        for b in 0..n_batch {
            let mut one = vec![0f32; rows.len()];
            matvec_rows(
                &w,
                ty,
                n_cols,
                rows.clone(),
                &acts[b * ab..(b + 1) * ab],
                &mut one,
            )
            .unwrap();
            for (i, v) in one.iter().enumerate() {
                assert_eq!(
                    v.to_bits(),
                    out[b * rows.len() + i].to_bits(),
                    "{ty:?} row {i} vector {b}"
                );
            }
        }
    }
}

#[test]
fn quantize_acts_batch_equals_one_by_one() {
    let mut rng = Rng(7);
    let n_cols = 512;
    let x: Vec<f32> = (0..n_cols * 4).map(|_| rng.f32() * 3.0).collect();
    for ty in WEIGHT_TYPES {
        let ab = act_row_bytes(ty, n_cols).unwrap();
        let mut all = vec![0u8; 4 * ab];
        quantize_acts_batch(ty, &x, n_cols, &mut all).unwrap();
        for b in 0..4 {
            let mut one = vec![0u8; ab];
            quantize_acts(ty, &x[b * n_cols..(b + 1) * n_cols], &mut one).unwrap();
            assert_eq!(one, all[b * ab..(b + 1) * ab], "{ty:?}");
        }
    }
}

#[test]
fn length_errors_are_values() {
    let n = 256;
    let w = vec![0u8; 144 * 3]; // 3 rows of Q4_K
    let mut out = vec![0f32; n];
    // dequantize_row
    assert!(matches!(
        dequantize_row(GgmlType::Q4K, &w[..143], &mut out),
        Err(QuantError::Length { .. })
    ));
    assert!(matches!(
        dequantize_row(GgmlType::Q4K, &w[..144], &mut out[..255]),
        Err(QuantError::PartialBlock { n: 255, .. })
    ));
    assert!(matches!(
        dequantize_row(GgmlType::F16, &w[..3], &mut out[..2]),
        Err(QuantError::Length { .. })
    ));
    dequantize_row(GgmlType::Q4K, &w[..144], &mut out).unwrap();
    dequantize_row(GgmlType::Q8K, &[0u8; 292], &mut out).unwrap();
    dequantize_row(GgmlType::F32, &[], &mut []).unwrap();

    // quantize_acts
    let x = vec![1f32; n];
    let mut acts = vec![0u8; 292];
    assert!(matches!(
        quantize_acts(GgmlType::Q4K, &x, &mut acts[..291]),
        Err(QuantError::Length { .. })
    ));
    assert!(matches!(
        quantize_acts(GgmlType::Q4K, &x[..100], &mut acts),
        Err(QuantError::PartialBlock { .. })
    ));
    assert!(matches!(
        quantize_acts(GgmlType::Q8K, &x, &mut acts),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(quantize_acts_batch(GgmlType::Q4K, &x, 0, &mut acts).is_err());
    assert!(quantize_acts_batch(GgmlType::Q4K, &x[..200], 256, &mut acts).is_err());
    quantize_acts(GgmlType::Q4K, &x, &mut acts).unwrap();

    // vec_dot
    assert!(matches!(
        vec_dot(GgmlType::Q8K, n, &[0u8; 292], &acts),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        vec_dot(GgmlType::Q4K, n, &w[..145], &acts),
        Err(QuantError::Length { .. })
    ));
    assert!(matches!(
        vec_dot(GgmlType::Q4K, n, &w[..144], &acts[..10]),
        Err(QuantError::Length { .. })
    ));
    assert!(matches!(
        vec_dot(GgmlType::Q4K, 100, &w[..144], &acts),
        Err(QuantError::PartialBlock { .. })
    ));
    assert_eq!(vec_dot(GgmlType::Q4K, n, &w[..144], &acts), Ok(0.0));

    // matvec_rows / matmul_rows
    let mut o3 = [0f32; 3];
    matvec_rows(&w, GgmlType::Q4K, n, 0..3, &acts, &mut o3).unwrap();
    let e = |r: Result<(), QuantError>| r.unwrap_err();
    assert!(matches!(
        e(matvec_rows(
            &w[..200],
            GgmlType::Q4K,
            n,
            0..1,
            &acts,
            &mut o3[..1]
        )),
        QuantError::Length { .. }
    ));
    assert_eq!(
        e(matvec_rows(&w, GgmlType::Q4K, n, 2..4, &acts, &mut o3[..2])),
        QuantError::RowRange {
            start: 2,
            end: 4,
            n_rows: 3
        }
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert!(matches!(
        e(matvec_rows(&w, GgmlType::Q4K, n, backwards, &acts, &mut [])),
        QuantError::RowRange { .. }
    ));
    assert!(matches!(
        e(matvec_rows(
            &w,
            GgmlType::Q4K,
            n,
            0..3,
            &acts[..291],
            &mut o3
        )),
        QuantError::Length { .. }
    ));
    assert!(matches!(
        e(matvec_rows(&w, GgmlType::Q4K, n, 0..3, &acts, &mut o3[..2])),
        QuantError::Length { .. }
    ));
    assert!(matches!(
        e(matvec_rows(&w, GgmlType::Q4K, 0, 0..0, &[], &mut [])),
        QuantError::Length { .. }
    ));
    assert!(matches!(
        e(matvec_rows(
            &w,
            GgmlType::Q4K,
            100,
            0..1,
            &acts,
            &mut o3[..1]
        )),
        QuantError::PartialBlock { .. }
    ));
    assert!(matches!(
        e(matmul_rows(
            &w,
            GgmlType::Q4K,
            n,
            0..3,
            &acts,
            2,
            &mut [0f32; 6]
        )),
        QuantError::Length {
            what: "matmul acts bytes",
            ..
        }
    ));
    assert!(matches!(
        e(matmul_rows(
            &w,
            GgmlType::Q4K,
            n,
            0..3,
            &acts,
            usize::MAX,
            &mut o3
        )),
        QuantError::Overflow
    ));
    // Errors print.
    let msg = QuantError::RowRange {
        start: 2,
        end: 4,
        n_rows: 3,
    }
    .to_string();
    assert!(msg.contains("2..4"), "{msg}");
}

/// Arbitrary bytes (NaN and inf scales included) never make a kernel panic.
#[test]
fn garbage_blocks_do_not_panic() {
    let mut rng = Rng(99);
    let n = 512;
    for ty in [
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
    ] {
        let rb = ty.row_bytes(n as u64).unwrap() as usize;
        for _ in 0..50 {
            let row: Vec<u8> = (0..rb).map(|_| rng.next() as u8).collect();
            let mut out = vec![0f32; n];
            dequantize_row(ty, &row, &mut out).unwrap();
            if ty != GgmlType::Q8K {
                let acts = random_acts(ty, n, 1, &mut rng);
                let _ = vec_dot(ty, n, &row, &acts).unwrap();
            }
        }
    }
    // Non-finite activations too.
    let x = [f32::NAN, f32::INFINITY, -f32::INFINITY, 1.0].repeat(64);
    for ty in WEIGHT_TYPES {
        let mut acts = vec![0u8; act_row_bytes(ty, 256).unwrap()];
        quantize_acts(ty, &x, &mut acts).unwrap();
    }
}

#[test]
fn q8_k_quantizer_edge_cases() {
    let q = |x: &[f32; 256]| BlockQ8K::quantize(x);
    // All zero: everything zero (ggml leaves bsums unwritten; we write 0).
    assert_eq!(
        q(&[0.0; 256]),
        BlockQ8K {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16]
        }
    );

    // Largest magnitude negative: iscale = -127 / max > 0, quants keep signs.
    let mut x = [0f32; 256];
    x[3] = -127.0;
    x[4] = 2.5; // tie: nearest_int rounds to even
    x[5] = 3.5;
    x[6] = -2.5;
    x[7] = 126.9;
    let b = q(&x);
    assert_eq!(b.d, 1.0);
    assert_eq!(&b.qs[3..8], &[-127, 2, 4, -2, 127]);
    assert_eq!(b.bsums[0], -127 + 2 + 4 - 2 + 127);

    // Largest magnitude positive: iscale < 0, so every quant flips sign and d < 0.
    let mut x = [0f32; 256];
    x[0] = 254.0;
    x[1] = 2.0;
    x[255] = -254.0; // same magnitude, later: the first one wins
    let b = q(&x);
    assert_eq!(b.d, -2.0);
    assert_eq!((b.qs[0], b.qs[1], b.qs[255]), (-127, -1, 127));
    assert_eq!(b.bsums[15], 127);
}

#[test]
fn q8_0_quantizer_rounds_half_away_from_zero() {
    let mut x = [0f32; 32];
    x[0] = 127.0; // d = 1, id = 1
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.5;
    let b = BlockQ8_0::quantize(&x);
    assert_eq!(b.d.to_f32(), 1.0);
    assert_eq!(&b.qs[..4], &[127, 3, -3, 1]);
    assert_eq!(BlockQ8_0::quantize(&[0.0; 32]).qs, [0; 32]);
}
