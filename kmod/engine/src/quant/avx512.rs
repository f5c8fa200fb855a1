//! AVX-512 kernels for the x8 layouts (`q4_k_x8`, `q6_k_x8`): 512-bit
//! vectors, rows in the lanes. Each gives, per row, the integers and float
//! operations of its layout's `vec_dot_group` (tests/simd.rs compares
//! them).
//!
//! Every `unsafe fn` here needs the features of `cpu::Isa::Avx512`
//! (AVX2, FMA, F16C, AVX-512 F/BW/VL/VBMI/VNNI) at run time.

use core::arch::x86_64::*;

use super::avx2::{act_rows, bcast_f32, ld32, Q8K};
use super::avx2_x8::{self, x8_rows, Prefetch, PREFETCH_AHEAD};
use super::q4_k_x8::{D, DMIN, GROUP, QS, ROWS, SCALES};
use super::q6_k_x8;

/// vpermi2b indices over the 128 scale bytes of a Q6_K x8 group block:
/// for sub-block k, row r's scale (byte 16r + k) in both bytes of every
/// i16 lane of row r (an arithmetic shift by 8 then sign-extends it).
#[repr(C, align(64))]
struct Q6ScaleIdx([[u8; 64]; 16]);
static Q6_SCALE_IDX: Q6ScaleIdx = {
    let mut t = [[0u8; 64]; 16];
    let mut k = 0;
    while k < 16 {
        let mut l = 0;
        while l < 64 {
            t[k][l] = (16 * (l / 8) + k) as u8;
            l += 1;
        }
        k += 1;
    }
    Q6ScaleIdx(t)
};

/// vpermb indices: for sub-block s, row r's scale (value 8s + r) in the
/// bytes of row r in a vpdpbusd result (i32 lanes 2r and 2r + 1, bytes
/// 8r..8r + 8); the mask keeps only each lane's low byte.
#[repr(C, align(64))]
struct ScaleIdx([[u8; 64]; 8]);
static SCALE_IDX: ScaleIdx = {
    let mut t = [[0u8; 64]; 8];
    let mut s = 0;
    while s < 8 {
        let mut l = 0;
        while l < 64 {
            t[s][l] = (8 * s + l / 8) as u8;
            l += 1;
        }
        s += 1;
    }
    ScaleIdx(t)
};
/// The low byte of every i32 lane.
const LOW_BYTES: u64 = 0x1111_1111_1111_1111;

/// The 8-byte activation group at `p` in every qword. # Safety: 8
/// readable bytes at `p`.
#[inline(always)]
unsafe fn bq(p: *const u8) -> __m512i {
    // SAFETY: as the caller guarantees.
    unsafe { _mm512_set1_epi64(p.cast::<i64>().read_unaligned()) }
}

/// 64 bytes at `p`. # Safety: 64 readable bytes at `p`.
#[inline(always)]
unsafe fn ld64(p: *const u8) -> __m512i {
    // SAFETY: as the caller guarantees; unaligned load.
    unsafe { _mm512_loadu_si512(p as *const __m512i) }
}

/// One row group (8 rows, `g` = its group blocks) times B activation
/// rows: `out[b][r]`. The per-token operations do not depend on B, so any
/// B gives the bits of B = 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni")]
unsafe fn dot_q4k_x8<const B: usize>(g: &[u8], a: [&[u8]; B], out: &mut [[f32; ROWS]; B]) {
    let nb = a.iter().fold(g.len() / GROUP, |n, a| n.min(a.len() / Q8K));
    let gp0 = g.as_ptr();
    // SAFETY (whole body): group block i < nb, bytes i * GROUP + 0..GROUP,
    // lies inside `g`, and activation block i, bytes i * Q8K + 0..Q8K,
    // inside each `a[b]` (nb is clamped to all); every read below is such
    // a block plus an offset and length inside it (the last activation
    // read, 8 bytes at 4 + 64 * 3 + 32 + 24, ends at 260; bsums 260..292).
    // SCALE_IDX reads are whole entries (s < 8). Features: its own.
    unsafe {
        let m4 = _mm512_set1_epi8(0xF);
        let m3 = _mm512_set1_epi8(3);
        // 16-bit shift counts: high bit pairs of values k and k + 32 (scales),
        // k + 64 and k + 96 (mins).
        let cnt_s = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(2));
        let cnt_m = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(6));
        let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0);
        // One line per group block: the hardware prefetchers do the rest
        // (docs/speed.md).
        let pf = Prefetch::plan(PREFETCH_AHEAD, 64);
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            let gp = gp0.add(i * GROUP);
            let y = |b: usize| a[b].as_ptr().add(i * Q8K);
            pf.at(gp, GROUP);
            // The 128 six-bit values: scales (index 8s + r) and mins (8r + s).
            let nib = ld64(gp.add(SCALES));
            let hi = _mm512_broadcast_i64x4(ld32(gp.add(SCALES + 64)));
            let hi_s = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(hi, cnt_s), m3));
            let hi_m = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(hi, cnt_m), m3));
            let scales = _mm512_or_si512(_mm512_and_si512(nib, m4), hi_s);
            let mins = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(nib), m4), hi_m);
            // Rows 0..4 and 4..8, as i16 (8 per 128-bit lane: one row each).
            let mins_a = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(mins));
            let mins_b = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(mins));
            let mut imin = [_mm256_setzero_si256(); B];
            for (b, imin) in imin.iter_mut().enumerate() {
                // The 8 sub-block sums of the activations in each 128-bit lane.
                let bs = ld32(y(b).add(260));
                let q8s =
                    _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                let q8s = _mm512_broadcast_i32x4(q8s);
                let sum4 = |m: __m512i| {
                    let x = _mm512_madd_epi16(m, q8s);
                    let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b01_00_11_10>(x));
                    _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b10_11_00_01>(x))
                };
                *imin = _mm512_castsi512_si256(_mm512_permutex2var_epi32(
                    sum4(mins_a),
                    pick,
                    sum4(mins_b),
                ));
            }
            // Two sums per token (even and odd sub-blocks): shorter chains.
            let mut isum = [[_mm512_setzero_si512(); 2]; B];
            for j in 0..4 {
                let idx = |s: usize| {
                    core::ptr::read_volatile(SCALE_IDX.0.as_ptr().add(s) as *const __m512i)
                };
                // Each row's scale in the low i16 of its i32 lanes, 0 above.
                let sc_lo = _mm512_maskz_permutexvar_epi8(LOW_BYTES, idx(2 * j), scales);
                let sc_hi = _mm512_maskz_permutexvar_epi8(LOW_BYTES, idx(2 * j + 1), scales);
                let q: [__m512i; 4] = core::array::from_fn(|t| ld64(gp.add(QS + 64 * (4 * j + t))));
                let lo = q.map(|q| _mm512_and_si512(q, m4));
                let hi = q.map(|q| _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4));
                for (b, isum) in isum.iter_mut().enumerate() {
                    let y8 = y(b).add(4 + 64 * j);
                    // A sub-block's 32 values, 4 per i32 lane per vpdpbusd
                    // (a row has two lanes): each lane sums 16 products, at
                    // most 16 * 15 * 128 = 30720 in magnitude, so it is its
                    // own low i16, and vpdpwssd multiplies that by the scale.
                    let p = |v: &[__m512i; 4], o: usize| {
                        let x = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bq(y8.add(o)));
                        let x = _mm512_dpbusd_epi32(x, v[1], bq(y8.add(o + 8)));
                        let x = _mm512_dpbusd_epi32(x, v[2], bq(y8.add(o + 16)));
                        _mm512_dpbusd_epi32(x, v[3], bq(y8.add(o + 24)))
                    };
                    isum[0] = _mm512_dpwssd_epi32(isum[0], p(&lo, 0), sc_lo);
                    isum[1] = _mm512_dpwssd_epi32(isum[1], p(&hi, 32), sc_hi);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gp.add(D) as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(gp.add(DMIN) as *const __m128i));
            for b in 0..B {
                // Rows' two i32 lanes summed: one i32 per row.
                let t = _mm512_add_epi32(isum[b][0], isum[b][1]);
                let s = _mm512_add_epi64(t, _mm512_srli_epi64::<32>(t));
                let s = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(s));
                let yd = bcast_f32(y(b));
                acc[b] = _mm256_fmadd_ps(_mm256_mul_ps(d, yd), s, acc[b]);
                acc[b] =
                    _mm256_fnmadd_ps(_mm256_mul_ps(dmin, yd), _mm256_cvtepi32_ps(imin[b]), acc[b]);
            }
        }
        for b in 0..B {
            _mm256_storeu_ps(out[b].as_mut_ptr(), acc[b]);
        }
    }
}

/// One Q6_K x8 row group times B activation rows (see `dot_q4k_x8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni")]
unsafe fn dot_q6k_x8<const B: usize>(g: &[u8], a: [&[u8]; B], out: &mut [[f32; ROWS]; B]) {
    use q6_k_x8::{D, GROUP, HI, LO, SCALES};
    let nb = a.iter().fold(g.len() / GROUP, |n, a| n.min(a.len() / Q8K));
    let gp0 = g.as_ptr();
    // SAFETY (whole body): as in `dot_q4k_x8`, with Q6_K x8 group blocks:
    // every read is inside group block i (LO + 64 * 15 + 64 = HI, HI + 64
    // * 8 = GROUP) or activation block i (the last 8 bytes at 4 + 64 * 3 +
    // 48 + 8 end at 260; bsums 260..292); Q6_SCALE_IDX entries are whole
    // (k < 16). Features: its own.
    unsafe {
        let m4 = _mm512_set1_epi8(0xF);
        let m30 = _mm512_set1_epi8(0x30);
        // Row totals: lane 0 of rows 2j (128-bit lane 0) and 2j + 1 (lane 2)
        // of each of two vectors, then the two halves joined.
        let pick2 = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0);
        let join = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 19, 18, 17, 16, 3, 2, 1, 0);
        let pf = Prefetch::plan(PREFETCH_AHEAD, GROUP);
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            let gp = gp0.add(i * GROUP);
            let y = |b: usize| a[b].as_ptr().add(i * Q8K);
            pf.at(gp, GROUP);
            let (s_lo, s_hi) = (ld64(gp.add(SCALES)), ld64(gp.add(SCALES + 64)));
            // Scales as i16, two rows (16 sub-blocks each) per vector.
            let sw = [
                _mm512_cvtepi8_epi16(_mm512_castsi512_si256(s_lo)),
                _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(s_lo)),
                _mm512_cvtepi8_epi16(_mm512_castsi512_si256(s_hi)),
                _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(s_hi)),
            ];
            // Per token, sum over k of scale * bsum_k for each row (the
            // -32 offset, taken once).
            let mut off = [_mm256_setzero_si256(); B];
            for (b, off) in off.iter_mut().enumerate() {
                let bs = _mm512_broadcast_i64x4(ld32(y(b).add(260)));
                let o = sw.map(|s| {
                    let x = _mm512_madd_epi16(s, bs);
                    let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b01_00_11_10>(x));
                    let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b10_11_00_01>(x));
                    _mm512_add_epi32(x, _mm512_shuffle_i32x4::<0b10_11_00_01>(x, x))
                });
                let lo = _mm512_permutex2var_epi32(o[0], pick2, o[1]);
                let hi = _mm512_permutex2var_epi32(o[2], pick2, o[3]);
                *off = _mm512_castsi512_si256(_mm512_permutex2var_epi32(lo, join, hi));
            }
            let mut isum = [_mm512_setzero_si512(); B];
            for p in 0..4 {
                let ld = |o: usize, c: usize| ld64(gp.add(o + 64 * c));
                let l0 = [ld(LO, 2 * p), ld(LO, 2 * p + 1)];
                let l1 = [ld(LO, 2 * p + 8), ld(LO, 2 * p + 9)];
                let h = [ld(HI, 2 * p), ld(HI, 2 * p + 1)];
                for m in 0..4 {
                    let idx = core::ptr::read_volatile(
                        Q6_SCALE_IDX.0.as_ptr().add(4 * m + p) as *const __m512i
                    );
                    let sc = _mm512_srai_epi16::<8>(_mm512_permutex2var_epi8(s_lo, idx, s_hi));
                    let q: [__m512i; 2] = core::array::from_fn(|t| {
                        let lo = match m {
                            0 => l0[t],
                            1 => l1[t],
                            2 => _mm512_srli_epi16::<4>(l0[t]),
                            _ => _mm512_srli_epi16::<4>(l1[t]),
                        };
                        let hi = match m {
                            0 => _mm512_slli_epi16::<4>(h[t]),
                            1 => _mm512_slli_epi16::<2>(h[t]),
                            2 => h[t],
                            _ => _mm512_srli_epi16::<2>(h[t]),
                        };
                        // (hi & 0x30) | (lo & 0x0F)
                        _mm512_ternarylogic_epi64::<0xEA>(hi, m30, _mm512_and_si512(lo, m4))
                    });
                    for (b, isum) in isum.iter_mut().enumerate() {
                        let y0 = y(b).add(4 + 64 * m + 16 * p);
                        // Two maddubs of one sub-block summed in 16 bits
                        // (within -32256..=32004), then one madd by scale.
                        let pk = _mm512_add_epi16(
                            _mm512_maddubs_epi16(q[0], bq(y0)),
                            _mm512_maddubs_epi16(q[1], bq(y0.add(8))),
                        );
                        *isum = _mm512_add_epi32(*isum, _mm512_madd_epi16(pk, sc));
                    }
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gp.add(D) as *const __m128i));
            for b in 0..B {
                let s = _mm512_add_epi64(isum[b], _mm512_srli_epi64::<32>(isum[b]));
                let s = _mm256_sub_epi32(_mm512_cvtepi64_epi32(s), _mm256_slli_epi32::<5>(off[b]));
                acc[b] = _mm256_fmadd_ps(
                    _mm256_mul_ps(d, bcast_f32(y(b))),
                    _mm256_cvtepi32_ps(s),
                    acc[b],
                );
            }
        }
        for b in 0..B {
            _mm256_storeu_ps(out[b].as_mut_ptr(), acc[b]);
        }
    }
}

x8_rows!(
    q4k_x8_rows,
    dot_q4k_x8,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni",
    super::Isa::Avx512,
    4,
    avx2_x8::q4k_x8_rows
);
x8_rows!(
    q6k_x8_rows,
    dot_q6k_x8,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni",
    super::Isa::Avx512,
    4,
    avx2_x8::q6k_x8_rows
);
