//! AVX2 + FMA (+ F16C) kernels, shaped like ggml's x86 ones
//! (ggml-cpu/arch/x86/quants.c): integer products per sub-block with
//! maddubs/madd, mins folded once per super-block through `bsums`, one float
//! FMA per super-block. Integer parts equal the scalar reference exactly;
//! the float accumulation order differs (8 lanes of FMA), so dot products
//! agree with it only within rounding (see tests/simd.rs for the bounds).
//!
//! Every `unsafe fn` here needs AVX2, FMA and F16C at run time; the safe
//! wrappers at the bottom check that (`cpu::isa_available`, one relaxed
//! atomic load) and fall back to the scalar kernels.
//!
//! Inputs are byte slices of whole blocks; lengths are clamped to whole
//! blocks of both operands, so no read leaves the slices.

use core::arch::x86_64::*;

use super::cpu::{isa_available, Isa};
use super::float::f16_bits_to_f32;
use super::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, BlockQ8_0, QK8_0, QK_K};

const Q4K: usize = 144;
const Q5K: usize = 176;
const Q6K: usize = 210;
const Q80: usize = 34;
pub(super) const Q8K: usize = 292;

/// ggml's `hsum_float_8`.
#[inline(always)]
unsafe fn hsum_f32x8(x: __m256) -> f32 {
    // SAFETY (whole fn): register-only intrinsics, AVX enabled by callers.
    unsafe {
        let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }
}

/// The 12 packed scale bytes of Q4_K/Q5_K as 8 scales then 8 mins
/// (ggml's utmp shuffle, = `scales_mins_k4`).
#[inline(always)]
fn k4_scales(s: &[u8]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let mut u = [w(0), w(4), w(8), 0];
    u[3] = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
    let uaux = u[1] & KMASK1;
    u[1] = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
    u[2] = uaux;
    u[0] &= KMASK1;
    u
}

/// vpshufb masks that broadcast 16-bit lane `i` (of 8) to every lane.
#[repr(C, align(32))]
struct Shuffles([[u8; 32]; 8]);
static K4_SHUFFLES: Shuffles = {
    let mut t = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 {
        let mut k = 0;
        while k < 32 {
            t[i][k] = (2 * i + k % 2) as u8;
            k += 1;
        }
        i += 1;
    }
    Shuffles(t)
};

/// The shuffle that broadcasts 16-bit lane `i` (of 8, `i < 8`) to every
/// lane. Read with a volatile load so the compiler keeps one vpshufb per
/// scale (one shuffle uop) instead of turning the known mask into a shift
/// and a broadcast (two).
#[inline(always)]
unsafe fn k4_shuffle(i: usize) -> __m256i {
    // SAFETY: `i < 8` (callers' loops), so the read is one whole, 32-byte
    // aligned mask of the static.
    unsafe { core::ptr::read_volatile(K4_SHUFFLES.0.as_ptr().add(i) as *const __m256i) }
}

/// The high nibble of each byte, by shift and mask.
#[inline(always)]
unsafe fn high_nibbles(x: __m256i, m4: __m256i) -> __m256i {
    // SAFETY: register-only; callers enable AVX2.
    unsafe { _mm256_and_si256(_mm256_srli_epi16(x, 4), m4) }
}

/// The high nibble of each byte, by one GF(2) affine transform: output bit
/// i is input bit i + 4 for i < 4, else 0 (matrix byte 7 - i selects the
/// input bits of output bit i).
#[inline]
#[target_feature(enable = "avx2,gfni")]
unsafe fn high_nibbles_gf(x: __m256i, _m4: __m256i) -> __m256i {
    const SHR4: i64 = 0x1020_4080_0000_0000;
    _mm256_gf2p8affine_epi64_epi8::<0>(x, _mm256_set1_epi64x(SHR4))
}

/// How many whole blocks of `bw` (weights) and `Q8K` (activations) bytes
/// one row `w` and every `a[b]` hold.
#[inline(always)]
fn multi_blocks<const B: usize>(w: &[u8], a: &[&[u8]; B], bw: usize) -> usize {
    a.iter().fold(w.len() / bw, |n, a| n.min(a.len() / Q8K))
}

/// How far ahead of the weight block being read the Q4_K/Q6_K kernels
/// prefetch: decode reads every weight once and the hardware prefetcher
/// alone falls behind (measured in docs/speed.md).
const PREFETCH_AHEAD: usize = 4096;

/// Prefetches the `len` bytes PREFETCH_AHEAD past `x`, one line per 64
/// bytes: called once per block of `len` bytes, so consecutive calls cover
/// the stream without gaps.
#[inline(always)]
fn prefetch_ahead(x: *const u8, len: usize) {
    let p = x.wrapping_add(PREFETCH_AHEAD);
    for off in (0..len).step_by(64) {
        // SAFETY: a prefetch is a hint: it never faults, even past the end
        // of the matrix, and the address is computed without `add`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8) };
    }
}

/// 32 bytes at `p` (unaligned).
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline(always)]
pub(super) unsafe fn ld32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu needs no alignment.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The f16 (as f32) at `p`. # Safety: 2 readable bytes at `p`; F16C.
#[inline(always)]
unsafe fn f16p(p: *const u8) -> f32 {
    // SAFETY: as the caller guarantees; register-only conversion.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            p.cast::<u16>().read_unaligned() as i32,
        )))
    }
}

/// The f32 at `p`. # Safety: 4 readable bytes at `p`.
#[inline(always)]
unsafe fn f32p(p: *const u8) -> f32 {
    // SAFETY: as the caller guarantees.
    unsafe { p.cast::<f32>().read_unaligned() }
}

/// The f32 at `p` in every lane, broadcast from memory (a load: no scalar
/// multiply and shuffle per token, as `set1(dy * xd)` cost). Multiplying
/// it by a splat of the weight scale gives the bits of the scalar product.
///
/// # Safety
/// 4 readable bytes at `p`; AVX.
#[inline(always)]
pub(super) unsafe fn bcast_f32(p: *const u8) -> __m256 {
    // SAFETY: as the caller guarantees.
    unsafe { _mm256_set1_ps(p.cast::<f32>().read_unaligned()) }
}

/// `[hsum_f32x8(v[0]), .., hsum_f32x8(v[3])]` with the same bits: the same
/// additions in the same grouping, four at a time.
#[inline(always)]
unsafe fn hsum4_f32x8(v: [__m256; 4]) -> __m128 {
    // SAFETY (whole body): register-only; callers enable AVX.
    unsafe {
        // [lo+hi of v0 | of v1], [of v2 | of v3]
        let t = _mm256_add_ps(
            _mm256_permute2f128_ps(v[0], v[1], 0x20),
            _mm256_permute2f128_ps(v[0], v[1], 0x31),
        );
        let u = _mm256_add_ps(
            _mm256_permute2f128_ps(v[2], v[3], 0x20),
            _mm256_permute2f128_ps(v[2], v[3], 0x31),
        );
        // Per half: [x0+x2 of t, of u, x1+x3 of t, of u]
        let p = _mm256_add_ps(_mm256_unpacklo_ps(t, u), _mm256_unpackhi_ps(t, u));
        // (x0+x2) + (x1+x3): lanes 0/1 of each half are v0, v2 | v1, v3.
        let q = _mm256_add_ps(p, _mm256_permute_ps(p, 0b01_00_11_10));
        // lo = [v0, v2, ..], hi = [v1, v3, ..]: interleave to [v0, v1, v2, v3].
        _mm_unpacklo_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1))
    }
}

/// `[m0 + m2 + m1 + m3 grouped as (m0+m2)+(m1+m3)]` of each of 4 vectors:
/// the min-sum reduction of the Q4_K kernel, four at a time, same bits.
#[inline(always)]
unsafe fn hsum4_f32x4(m: [__m128; 4]) -> __m128 {
    // SAFETY (whole body): register-only.
    unsafe {
        // [m0_0+m0_2, m1_0+m1_2, m0_1+m0_3, m1_1+m1_3]
        let p01 = _mm_add_ps(_mm_unpacklo_ps(m[0], m[1]), _mm_unpackhi_ps(m[0], m[1]));
        let p23 = _mm_add_ps(_mm_unpacklo_ps(m[2], m[3]), _mm_unpackhi_ps(m[2], m[3]));
        _mm_add_ps(_mm_movelh_ps(p01, p23), _mm_movehl_ps(p23, p01))
    }
}

/// One Q4_K row times B activation rows, each weight block unpacked once
/// for all B. Per activation the operations and their order are those of
/// the single-row kernel, so each `out[b]` has the bits of
/// `vec_dot_q4k(w, a[b])`. (An R-rows x B tile was tried for decode: on
/// weights streamed from memory it ran 15-25% slower than one row.)
macro_rules! dot_q4k_multi_fn {
    ($name:ident, $high:ident) => {
        // Always inlined: compiled with the caller's features (the AVX-512
        // build gets 32 registers for the B accumulators).
        #[inline(always)]
        unsafe fn $name<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
            let nb = multi_blocks::<B>(w, &a, Q4K);
            let wp = w.as_ptr();
            // SAFETY (whole body): `multi_blocks` keeps weight block i < nb, bytes
            // i * Q4K + 0..Q4K, inside `w`, and activation block i, bytes
            // i * Q8K + 0..Q8K, inside each `a[b]`: every pointer below is such a
            // block plus an offset inside it. The intrinsics need the features the
            // caller guarantees.
            unsafe {
                let m4 = _mm256_set1_epi8(0xF);
                let mut acc = [_mm256_setzero_ps(); B];
                let mut acc_m = [_mm_setzero_ps(); B];
                for i in 0..nb {
                    // Activation block i of token b; its values are read where
                    // used, so no per-token value stays live across the block
                    // (with 8 tokens that had spilled even with 32 registers).
                    let y = |b: usize| a[b].as_ptr().add(i * Q8K);
                    let x = wp.add(i * Q4K);
                    prefetch_ahead(x, Q4K);
                    let (xd, xdmin) = (f16p(x), f16p(x.add(2)));
                    let u = k4_scales(&*(x.add(4) as *const [u8; 12]));
                    let ms = _mm256_cvtepu8_epi16(_mm_set_epi32(
                        u[3] as i32,
                        u[2] as i32,
                        u[1] as i32,
                        u[0] as i32,
                    ));
                    // dy * -xdmin has the bits of -dy * xdmin.
                    let (xd8, nxdmin4) = (_mm256_set1_ps(xd), _mm_set1_ps(-xdmin));
                    for b in 0..B {
                        let dmin = _mm_mul_ps(nxdmin4, _mm256_castps256_ps128(bcast_f32(y(b))));
                        // bsums summed in pairs: one per 32-value sub-block.
                        let bs = ld32(y(b).add(260));
                        let q8s = _mm_hadd_epi16(
                            _mm256_castsi256_si128(bs),
                            _mm256_extracti128_si256(bs, 1),
                        );
                        let prod = _mm_madd_epi16(_mm256_extracti128_si256(ms, 1), q8s);
                        acc_m[b] = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(prod), acc_m[b]);
                    }
                    let sc = _mm256_castsi256_si128(ms);
                    let scales = _mm256_set_m128i(sc, sc);
                    let mut sumi = [_mm256_setzero_si256(); B];
                    for j in 0..QK_K / 64 {
                        let scale_l = _mm256_shuffle_epi8(scales, k4_shuffle(2 * j));
                        let scale_h = _mm256_shuffle_epi8(scales, k4_shuffle(2 * j + 1));
                        let q4 = ld32(x.add(16 + 32 * j));
                        let q4l = _mm256_and_si256(q4, m4);
                        let q4h = $high(q4, m4);
                        for b in 0..B {
                            let p_l = _mm256_madd_epi16(
                                scale_l,
                                _mm256_maddubs_epi16(q4l, ld32(y(b).add(4 + 64 * j))),
                            );
                            let p_h = _mm256_madd_epi16(
                                scale_h,
                                _mm256_maddubs_epi16(q4h, ld32(y(b).add(36 + 64 * j))),
                            );
                            sumi[b] = _mm256_add_epi32(sumi[b], _mm256_add_epi32(p_l, p_h));
                        }
                    }
                    for b in 0..B {
                        let d = _mm256_mul_ps(xd8, bcast_f32(y(b)));
                        acc[b] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[b]), acc[b]);
                    }
                }
                if B.is_multiple_of(4) {
                    // Four results at once, same bits as one by one.
                    for ((o, v), m) in out
                        .chunks_exact_mut(4)
                        .zip(acc.chunks_exact(4))
                        .zip(acc_m.chunks_exact(4))
                    {
                        let (mut v4, mut m4) = ([_mm256_setzero_ps(); 4], [_mm_setzero_ps(); 4]);
                        v4.copy_from_slice(v);
                        m4.copy_from_slice(m);
                        // `o` is 4 long.
                        _mm_storeu_ps(o.as_mut_ptr(), _mm_add_ps(hsum4_f32x8(v4), hsum4_f32x4(m4)));
                    }
                    return;
                }
                for b in 0..B {
                    let mut m = acc_m[b];
                    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
                    m = _mm_add_ss(m, _mm_movehdup_ps(m));
                    out[b] = hsum_f32x8(acc[b]) + _mm_cvtss_f32(m);
                }
            }
        }
    };
}
dot_q4k_multi_fn!(dot_q4k_multi, high_nibbles);
dot_q4k_multi_fn!(dot_q4k_multi_gf, high_nibbles_gf);

/// One Q5_K row with B activation rows (see `dot_q4k_multi`); each
/// `out[b]` has the bits of `vec_dot_q5k(w, a[b])`.
#[inline(always)]
unsafe fn dot_q5k_multi<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
    let nb = multi_blocks::<B>(w, &a, Q5K);
    let wp = w.as_ptr();
    // SAFETY (whole body): as in `dot_q4k_multi`, with Q5K-byte blocks.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let mut acc = [_mm256_setzero_ps(); B];
        let mut summs = [0f32; B];
        for i in 0..nb {
            let mut y = [wp; B];
            for b in 0..B {
                y[b] = a[b].as_ptr().add(i * Q8K);
            }
            let x = wp.add(i * Q5K);
            prefetch_ahead(x, Q5K);
            let (xd, xdmin) = (f16p(x), f16p(x.add(2)));
            let u = k4_scales(&*(x.add(4) as *const [u8; 12]));
            let ms = _mm256_cvtepu8_epi16(_mm_set_epi32(
                u[3] as i32,
                u[2] as i32,
                u[1] as i32,
                u[0] as i32,
            ));
            for b in 0..B {
                let dmin = -f32p(y[b]) * xdmin;
                let bs = ld32(y[b].add(260));
                let q8s =
                    _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                let prod = _mm_madd_epi16(_mm256_extracti128_si256(ms, 1), q8s);
                let z = _mm_setzero_si128();
                let hs = _mm_hadd_epi32(_mm_hadd_epi32(prod, z), z);
                summs[b] += dmin * _mm_cvtsi128_si32(hs) as f32;
            }
            let sc = _mm256_castsi256_si128(ms);
            let scales = _mm256_set_m128i(sc, sc);
            let hbits = ld32(x.add(16));
            let mut sumi = [_mm256_setzero_si256(); B];
            for j in 0..QK_K / 64 {
                let scale_0 = _mm256_shuffle_epi8(scales, k4_shuffle(2 * j));
                let scale_1 = _mm256_shuffle_epi8(scales, k4_shuffle(2 * j + 1));
                let q5 = ld32(x.add(48 + 32 * j));
                // Bit 2j (2j + 1) of each qh byte becomes bit 4 of the quant.
                let b0 = _mm256_set1_epi8(1 << (2 * j));
                let b1 = _mm256_set1_epi8(1 << (2 * j + 1));
                let h0 = _mm256_and_si256(
                    _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b0), b0),
                    _mm256_set1_epi8(16),
                );
                let h1 = _mm256_and_si256(
                    _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b1), b1),
                    _mm256_set1_epi8(16),
                );
                let q5_0 = _mm256_or_si256(_mm256_and_si256(q5, m4), h0);
                let q5_1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q5, 4), m4), h1);
                for b in 0..B {
                    let p0 = _mm256_madd_epi16(
                        scale_0,
                        _mm256_maddubs_epi16(q5_0, ld32(y[b].add(4 + 64 * j))),
                    );
                    let p1 = _mm256_madd_epi16(
                        scale_1,
                        _mm256_maddubs_epi16(q5_1, ld32(y[b].add(36 + 64 * j))),
                    );
                    sumi[b] = _mm256_add_epi32(sumi[b], _mm256_add_epi32(p0, p1));
                }
            }
            for b in 0..B {
                let d = _mm256_mul_ps(_mm256_set1_ps(xd), bcast_f32(y[b]));
                acc[b] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[b]), acc[b]);
            }
        }
        for b in 0..B {
            out[b] = hsum_f32x8(acc[b]) + summs[b];
        }
    }
}

/// The four 32-value groups of 6-bit quants (0..64) of one 128-value half
/// of a Q6_K block: low nibbles from `ql1`/`ql2` (low, then high halves of
/// their bytes) with bits 4-5 from the 2-bit pairs of `qh`.
#[inline(always)]
unsafe fn q6_quants(ql1: __m256i, ql2: __m256i, qh: __m256i) -> [__m256i; 4] {
    // SAFETY (whole body): register-only; callers enable AVX2.
    unsafe {
        let (m4, m2) = (_mm256_set1_epi8(0xF), _mm256_set1_epi8(3));
        let h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
        let h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4);
        let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4);
        let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4);
        [
            _mm256_or_si256(_mm256_and_si256(ql1, m4), h0),
            _mm256_or_si256(_mm256_and_si256(ql2, m4), h1),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h2),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql2, 4), m4), h3),
        ]
    }
}

/// `q6_quants` with one GF(2) affine instruction per moved bit field:
/// output bit i takes the input bits set in matrix byte 7 - i, so pair k of
/// `qh` (bits 2k, 2k + 1) lands in bits 4-5 and a high nibble in bits 0-3.
#[inline]
#[target_feature(enable = "avx2,gfni")]
unsafe fn q6_quants_gf(ql1: __m256i, ql2: __m256i, qh: __m256i) -> [__m256i; 4] {
    const SHR4: i64 = 0x1020_4080_0000_0000;
    let pair = |k: i64| ((1 << (2 * k)) << 24) | ((1 << (2 * k + 1)) << 16);
    let m4 = _mm256_set1_epi8(0xF);
    let g = |x: __m256i, m: i64| _mm256_gf2p8affine_epi64_epi8::<0>(x, _mm256_set1_epi64x(m));
    [
        _mm256_or_si256(_mm256_and_si256(ql1, m4), g(qh, pair(0))),
        _mm256_or_si256(_mm256_and_si256(ql2, m4), g(qh, pair(1))),
        _mm256_or_si256(g(ql1, SHR4), g(qh, pair(2))),
        _mm256_or_si256(g(ql2, SHR4), g(qh, pair(3))),
    ]
}

/// One Q6_K row times B activation rows (see `dot_q4k_multi`); each
/// `out[b]` has the bits of `vec_dot_q6k(w, a[b])`.
macro_rules! dot_q6k_multi_fn {
    ($name:ident, $quants:ident) => {
        // Always inlined: compiled with the caller's features (the AVX-512
        // build gets 32 registers for the B accumulators).
        #[inline(always)]
        unsafe fn $name<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
            let nb = multi_blocks::<B>(w, &a, Q6K);
            let wp = w.as_ptr();
            // SAFETY (whole body): as in `dot_q4k_multi`, with Q6K-byte blocks.
            unsafe {
                let mut acc = [_mm256_setzero_ps(); B];
                for i in 0..nb {
                    let y = |b: usize| a[b].as_ptr().add(i * Q8K);
                    let x = wp.add(i * Q6K);
                    prefetch_ahead(x, Q6K);
                    let xd = f16p(x.add(208));
                    let scales = _mm_loadu_si128(x.add(192) as *const __m128i);
                    let m32s = _mm256_set1_epi8(32);
                    let mut sumi = [_mm256_setzero_si256(); B];
                    for j in 0..QK_K / 128 {
                        let ql1 = ld32(x.add(64 * j));
                        let ql2 = ld32(x.add(64 * j + 32));
                        let qh = ld32(x.add(128 + 32 * j));
                        let q = $quants(ql1, ql2, qh);
                        for (k, &q) in q.iter().enumerate() {
                            let is = 8 * j + 2 * k;
                            // Scales is, is + 1 for the two 16-value halves.
                            let sh = _mm_set_epi64x(
                                0x0101_0101_0101_0101 * (is as i64 + 1),
                                0x0101_0101_0101_0101 * is as i64,
                            );
                            let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, sh));
                            for b in 0..B {
                                let q8 = ld32(y(b).add(4 + 128 * j + 32 * k));
                                let p = _mm256_sub_epi16(
                                    _mm256_maddubs_epi16(q, q8),
                                    _mm256_maddubs_epi16(m32s, q8),
                                );
                                sumi[b] = _mm256_add_epi32(sumi[b], _mm256_madd_epi16(sc, p));
                            }
                        }
                    }
                    for b in 0..B {
                        let d = _mm256_mul_ps(_mm256_set1_ps(xd), bcast_f32(y(b)));
                        acc[b] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[b]), acc[b]);
                    }
                }
                if B.is_multiple_of(4) {
                    for (o, v) in out.chunks_exact_mut(4).zip(acc.chunks_exact(4)) {
                        let mut v4 = [_mm256_setzero_ps(); 4];
                        v4.copy_from_slice(v);
                        // `o` is 4 long.
                        _mm_storeu_ps(o.as_mut_ptr(), hsum4_f32x8(v4));
                    }
                    return;
                }
                for b in 0..B {
                    out[b] = hsum_f32x8(acc[b]);
                }
            }
        }
    };
}
dot_q6k_multi_fn!(dot_q6k_multi, q6_quants);
dot_q6k_multi_fn!(dot_q6k_multi_gf, q6_quants_gf);

/// A one-token dot product: `$multi::<1>`, compiled for `$feat`.
macro_rules! one_token {
    ($(#[$doc:meta])* $name:ident, $multi:ident, $feat:tt) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU must support every feature this function enables.
        #[inline]
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(w: &[u8], a: &[u8]) -> f32 {
            let mut o = [0f32];
            // SAFETY: `$multi` needs a subset of this function's features.
            unsafe { $multi::<1>(w, [a], &mut o) };
            o[0]
        }
    };
}
one_token!(
    /// Q4_K x Q8_K (ggml's AVX2 `ggml_vec_dot_q4_K_q8_K`).
    vec_dot_q4k, dot_q4k_multi, "avx2,fma,f16c"
);
one_token!(
    /// [`vec_dot_q4k`] with the high nibbles taken by one GFNI affine
    /// instruction instead of a shift and a mask (6% faster here on one
    /// token; not in the multi-token kernels, where it ran 7% slower). Same
    /// bits.
    vec_dot_q4k_gf, dot_q4k_multi_gf, "avx2,fma,f16c,gfni"
);
one_token!(
    /// Q5_K x Q8_K (ggml's AVX2 `ggml_vec_dot_q5_K_q8_K`).
    vec_dot_q5k, dot_q5k_multi, "avx2,fma,f16c"
);
one_token!(
    /// Q6_K x Q8_K (ggml's AVX2 `ggml_vec_dot_q6_K_q8_K`): quants 0..64 times
    /// q8 with maddubs, minus 32 * q8 (maddubs again), scales via madd. (Taking
    /// the 32 * q8 part once per block from the bsums, as newer ggml does,
    /// spreads it over the lanes differently: logits then leave the bits of
    /// llama.cpp's AVX2 kernels, by up to 1.8e-2 on tiny-mixed.)
    vec_dot_q6k, dot_q6k_multi, "avx2,fma,f16c"
);
one_token!(
    /// [`vec_dot_q6k`] with the 6-bit quants assembled by GFNI affine
    /// instructions (see `q6_quants_gf`). Same bits.
    vec_dot_q6k_gf, dot_q6k_multi_gf, "avx2,fma,f16c,gfni"
);

/// Q8_0 x Q8_0 (ggml's AVX2 `ggml_vec_dot_q8_0_q8_0`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let nb = (w.len() / Q80).min(a.len() / Q80);
    let (pw, pa) = (w.as_ptr(), a.as_ptr());
    // SAFETY (whole body): block i < nb lies inside both slices (nb is
    // clamped to both), so bytes 34i..34i + 34 are readable; unaligned
    // loads; the intrinsics need the features the caller guarantees.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let f16 = |p: *const u8| {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                p.cast::<u16>().read_unaligned() as i32,
            )))
        };
        for i in 0..nb {
            let (x, y) = (pw.add(i * Q80), pa.add(i * Q80));
            let d = _mm256_set1_ps(f16(x) * f16(y));
            let qx = _mm256_loadu_si256(x.add(2) as *const __m256i);
            let qy = _mm256_loadu_si256(y.add(2) as *const __m256i);
            // |x| * (y * sign x): maddubs wants one unsigned operand.
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc = _mm256_fmadd_ps(d, s, acc);
        }
        hsum_f32x8(acc)
    }
}

/// One Q8_0 row times B Q8_0 activation rows: each weight block loaded
/// once, the operations per row those of `vec_dot_q8_0` (same bits).
#[inline(always)]
unsafe fn dot_q8_0_multi<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
    let nb = multi_len::<B>(w, &a, Q80);
    let (pw, pa) = (w.as_ptr(), a.map(|a| a.as_ptr()));
    // SAFETY (whole body): block i < nb lies inside `w` and every `a[b]`
    // (nb is clamped to all), so bytes 34i..34i + 34 are readable;
    // unaligned loads; features from the caller.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            let x = pw.add(i * Q80);
            let dx = f16p(x);
            let qx = ld32(x.add(2));
            let ax = _mm256_sign_epi8(qx, qx);
            for (b, acc) in acc.iter_mut().enumerate() {
                let y = pa[b].add(i * Q80);
                let d = _mm256_set1_ps(dx * f16p(y));
                let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(ld32(y.add(2)), qx));
                *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), *acc);
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            *o = hsum_f32x8(acc);
        }
    }
}

/// f32 dot over `n` values: `$lda(i)`/`$ldb(i)` load 8 values at i (only
/// called with i + 8 <= n), `$sa(i)`/`$sb(i)` one. 4 accumulators of 8,
/// like ggml's GGML_F32_STEP; the tail is added in scalar.
macro_rules! dot_body {
    ($n:expr, $lda:expr, $ldb:expr, $sa:expr, $sb:expr) => {{
        let n = $n;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps($lda(i + 8 * k), $ldb(i + 8 * k), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps($lda(i), $ldb(i), acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_f32x8(s);
        while i < n {
            sum += $sa(i) * $sb(i);
            i += 1;
        }
        sum
    }};
}

/// `dot_body!` for B activation rows at once, each with the bits of
/// `dot_body!`: its four accumulators are independent FMA chains
/// (accumulator k takes the 8 values at 32j + 8k), so they run one after
/// another, each for all B rows: B chains in flight, and each weight vector
/// loaded (and converted) once per B rows instead of once per row.
/// `$ldw(i)`/`$lda(b, i)` load 8 values, `$sw(i)`/`$sa(b, i)` one.
macro_rules! dot_body_multi {
    ($B:expr, $n:expr, $ldw:expr, $lda:expr, $sw:expr, $sa:expr, $out:expr) => {{
        let n = $n;
        let n32 = n / 32 * 32;
        let n8 = n32 + (n - n32) / 8 * 8;
        // (acc0 + acc1) and (acc2 + acc3) per row, built as the passes end.
        let (mut lo, mut hi) = ([_mm256_setzero_ps(); $B], [_mm256_setzero_ps(); $B]);
        for k in 0..4 {
            let mut part = [_mm256_setzero_ps(); $B];
            let mut i = 8 * k;
            while i < n32 {
                let x = $ldw(i);
                for (b, acc) in part.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(x, $lda(b, i), *acc);
                }
                i += 32;
            }
            // dot_body's 8-value tail continues accumulator 0.
            let mut i = n32;
            while k == 0 && i < n8 {
                let x = $ldw(i);
                for (b, acc) in part.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(x, $lda(b, i), *acc);
                }
                i += 8;
            }
            let half = if k < 2 { &mut lo } else { &mut hi };
            for (h, p) in half.iter_mut().zip(part) {
                *h = if k % 2 == 0 { p } else { _mm256_add_ps(*h, p) };
            }
        }
        for (b, o) in $out.iter_mut().enumerate() {
            let mut sum = hsum_f32x8(_mm256_add_ps(lo[b], hi[b]));
            for i in n8..n {
                sum += $sw(i) * $sa(b, i);
            }
            *o = sum;
        }
    }};
}

/// Values in `w` and in every `a[b]`, clamped to the shortest, for
/// elements of `size` bytes.
#[inline(always)]
fn multi_len<const B: usize>(w: &[u8], a: &[&[u8]; B], size: usize) -> usize {
    a.iter().fold(w.len(), |n, a| n.min(a.len())) / size
}

/// One f32 row times B f32 activation rows, bits of `vec_dot_f32_bytes`
/// per row (see `dot_body_multi!`).
#[inline(always)]
unsafe fn dot_f32_multi<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
    let n = multi_len::<B>(w, &a, 4);
    let (pw, pa) = (w.as_ptr(), a.map(|a| a.as_ptr()));
    // SAFETY (whole body): 8 floats are loaded at i only when i + 8 <= n,
    // one (the tail) at i < n, and n is clamped to every slice, so the
    // bytes read at 4i are inside each; unaligned loads; features from the
    // caller.
    unsafe {
        let ld = |p: *const u8, i: usize| _mm256_loadu_ps(p.add(4 * i) as *const f32);
        dot_body_multi!(
            B,
            n,
            |i| ld(pw, i),
            |b: usize, i| ld(pa[b], i),
            |i| f32p(pw.add(4 * i)),
            |b: usize, i| f32p(pa[b].add(4 * i)),
            out
        )
    }
}

/// One f16 row times B f16 activation rows, bits of `vec_dot_f16_bytes`
/// per row.
#[inline(always)]
unsafe fn dot_f16_multi<const B: usize>(w: &[u8], a: [&[u8]; B], out: &mut [f32; B]) {
    let n = multi_len::<B>(w, &a, 2);
    let (pw, pa) = (w.as_ptr(), a.map(|a| a.as_ptr()));
    // SAFETY (whole body): as in `dot_f32_multi`, 16-byte loads at 2i.
    unsafe {
        let ld = |p: *const u8, i: usize| {
            _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i) as *const __m128i))
        };
        dot_body_multi!(
            B,
            n,
            |i| ld(pw, i),
            |b: usize, i| ld(pa[b], i),
            |i| f16p(pw.add(2 * i)),
            |b: usize, i| f16p(pa[b].add(2 * i)),
            out
        )
    }
}

/// Dot of two f32 rows given as little-endian bytes.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32_bytes(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len().min(a.len()) / 4;
    let (pw, pa) = (w.as_ptr(), a.as_ptr());
    // SAFETY (whole body): `dot_body` loads 8 floats at i only when
    // i + 8 <= n and one at i < n, so the bytes read at 4i are inside both
    // slices (n is clamped to both lengths); unaligned loads; features
    // from the caller.
    unsafe {
        let ld = |p: *const u8, i: usize| _mm256_loadu_ps(p.add(4 * i) as *const f32);
        dot_body!(
            n,
            |i| ld(pw, i),
            |i| ld(pa, i),
            |i| f32p(pw.add(4 * i)),
            |i| f32p(pa.add(4 * i))
        )
    }
}

/// Dot of two f16 rows given as little-endian bytes (exact conversions,
/// f32 FMA accumulation like ggml's F16C path).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16_bytes(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len().min(a.len()) / 2;
    let (pw, pa) = (w.as_ptr(), a.as_ptr());
    // SAFETY (whole body): as in `vec_dot_f32_bytes`, 16-byte loads at 2i.
    unsafe {
        let ld = |p: *const u8, i: usize| {
            _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i) as *const __m128i))
        };
        dot_body!(
            n,
            |i| ld(pw, i),
            |i| ld(pa, i),
            |i| f16p(pw.add(2 * i)),
            |i| f16p(pa.add(2 * i))
        )
    }
}

/// `sum a[i] * b[i]` over the shorter length.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (whole body): 8-float loads at i + 8 <= n, inside both slices.
    unsafe {
        let ld = |p: *const f32, i: usize| _mm256_loadu_ps(p.add(i));
        dot_body!(n, |i| ld(pa, i), |i| ld(pb, i), |i| a[i], |i| b[i])
    }
}

/// `sum a[i] * f16(b[i])`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (whole body): as in `dot_f32`; 8 halves are 16 bytes.
    unsafe {
        let la = |i: usize| _mm256_loadu_ps(pa.add(i));
        let lb = |i: usize| _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
        dot_body!(n, la, lb, |i| a[i], |i| f16_bits_to_f32(b[i]))
    }
}

/// F16 activation rows: `_mm256_cvtps_ph` rounds to nearest even like
/// `half::f16::from_f32` (ggml's GGML_FP32_TO_FP16), overflow to infinity,
/// NaNs quieted with the payload's top bits: the same bits.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_f16(x: &[f32], out: &mut [u8]) {
    let n = x.len().min(out.len() / 2);
    let mut i = 0;
    let (px, po) = (x.as_ptr(), out.as_mut_ptr());
    // SAFETY: 8 floats read at i + 8 <= n <= x.len(), 16 bytes written at
    // 2i + 16 <= 2n <= out.len(); unaligned accesses.
    unsafe {
        while i + 8 <= n {
            let h = _mm256_cvtps_ph(_mm256_loadu_ps(px.add(i)), _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128(po.add(2 * i) as *mut __m128i, h);
            i += 8;
        }
    }
    for i in i..n {
        out[2 * i..2 * i + 2].copy_from_slice(&half::f16::from_f32(x[i]).to_bits().to_le_bytes());
    }
}

/// `dst[i] = f16 bits of src[i]`, rounded like `half::f16::from_f32` (see
/// `quantize_f16`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    // SAFETY: 8 floats read and 8 halves written at i + 8 <= n, inside
    // both slices; unaligned accesses.
    unsafe {
        while i + 8 <= n {
            let h = _mm256_cvtps_ph(
                _mm256_loadu_ps(src[i..i + 8].as_ptr()),
                _MM_FROUND_TO_NEAREST_INT,
            );
            _mm_storeu_si128(dst[i..i + 8].as_mut_ptr() as *mut __m128i, h);
            i += 8;
        }
    }
    for i in i..n {
        dst[i] = half::f16::from_f32(src[i]).to_bits();
    }
}

/// `o[i] += s * v[i]`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy_f32(o: &mut [f32], s: f32, v: &[f32]) {
    let n = o.len().min(v.len());
    let mut i = 0;
    // SAFETY: 8-float accesses at i + 8 <= n, inside both slices.
    unsafe {
        let vs = _mm256_set1_ps(s);
        while i + 8 <= n {
            let p = o[i..i + 8].as_mut_ptr();
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(
                    vs,
                    _mm256_loadu_ps(v[i..i + 8].as_ptr()),
                    _mm256_loadu_ps(p),
                ),
            );
            i += 8;
        }
    }
    for i in i..n {
        o[i] += s * v[i];
    }
}

/// `o[i] += s * f16(v[i])`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy_f16(o: &mut [f32], s: f32, v: &[u16]) {
    let n = o.len().min(v.len());
    let mut i = 0;
    // SAFETY: as in `axpy_f32`; 8 halves are 16 bytes.
    unsafe {
        let vs = _mm256_set1_ps(s);
        while i + 8 <= n {
            let p = o[i..i + 8].as_mut_ptr();
            let vv = _mm256_cvtph_ps(_mm_loadu_si128(v[i..i + 8].as_ptr() as *const __m128i));
            _mm256_storeu_ps(p, _mm256_fmadd_ps(vs, vv, _mm256_loadu_ps(p)));
            i += 8;
        }
    }
    for i in i..n {
        o[i] += s * f16_bits_to_f32(v[i]);
    }
}

/// e^x in 8 lanes: ggml's AVX2 `ggml_v_expf` (ggml-cpu/vec.h), what
/// llama.cpp's SiLU, SwiGLU and softmax use. Within 2 ulp of expf (tests).
#[inline(always)]
unsafe fn v_expf(x: __m256) -> __m256 {
    // SAFETY (whole body): register-only; callers enable AVX2 and FMA.
    unsafe {
        let ps = _mm256_set1_ps;
        let r = ps(f32::from_bits(0x4b40_0000)); // 0x1.8p23
        let z = _mm256_fmadd_ps(x, ps(f32::from_bits(0x3fb8_aa3b)), r); // 0x1.715476p+0
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            ps(f32::from_bits(0x35bf_be8e)), // 0x1.7f7d1cp-20
            _mm256_fnmadd_ps(n, ps(f32::from_bits(0x3f31_7200)), x), // 0x1.62e4p-1
        );
        let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(ps(1.0))));
        let abs_n = _mm256_andnot_ps(ps(-0.0), n);
        let c = _mm256_castps_si256(_mm256_cmp_ps(abs_n, ps(126.0), _CMP_GT_OQ));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(
                    ps(f32::from_bits(0x3c07_2010)),
                    b,
                    ps(f32::from_bits(0x3d2b_9f17)),
                ), // 0x1.0e4020p-7, 0x1.573e2ep-5
                u,
                _mm256_fmadd_ps(
                    ps(f32::from_bits(0x3e2a_af33)),
                    b,
                    ps(f32::from_bits(0x3eff_fedb)),
                ), // 0x1.555e66p-3, 0x1.fffdb6p-2
            ),
            u,
            _mm256_mul_ps(ps(f32::from_bits(0x3f7f_fff6)), b), // 0x1.ffffecp-1
        );
        if _mm256_movemask_ps(_mm256_castsi256_ps(c)) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let d = _mm256_castps_si256(_mm256_cmp_ps(abs_n, ps(192.0), _CMP_GT_OQ));
        let (c, d) = (_mm256_castsi256_ps(c), _mm256_castsi256_ps(d));
        _mm256_or_ps(
            _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(
                d,
                _mm256_or_ps(
                    _mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                    _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)),
                ),
            ),
        )
    }
}

/// x / (1 + e^-x): ggml's `ggml_v_silu`.
#[inline(always)]
unsafe fn v_silu(x: __m256) -> __m256 {
    // SAFETY: register-only; callers enable AVX2 and FMA.
    unsafe {
        _mm256_div_ps(
            x,
            _mm256_add_ps(
                _mm256_set1_ps(1.0),
                v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x)),
            ),
        )
    }
}

/// `x[i] = f(x[i], y[i])` 8 lanes at a time; the tail goes through a
/// zero-padded block, so an element's result never depends on its place.
#[inline(always)]
unsafe fn map2(x: &mut [f32], y: &[f32], f: impl Fn(__m256, __m256) -> __m256) {
    let n = x.len().min(y.len());
    let mut i = 0;
    // SAFETY: 8-float accesses at i + 8 <= n, inside both slices; the tail
    // works on stack arrays.
    unsafe {
        while i + 8 <= n {
            let p = x[i..i + 8].as_mut_ptr();
            _mm256_storeu_ps(
                p,
                f(_mm256_loadu_ps(p), _mm256_loadu_ps(y[i..i + 8].as_ptr())),
            );
            i += 8;
        }
        if i < n {
            let (mut tx, mut ty) = ([0f32; 8], [0f32; 8]);
            tx[..n - i].copy_from_slice(&x[i..n]);
            ty[..n - i].copy_from_slice(&y[i..n]);
            _mm256_storeu_ps(
                tx.as_mut_ptr(),
                f(_mm256_loadu_ps(tx.as_ptr()), _mm256_loadu_ps(ty.as_ptr())),
            );
            x[i..n].copy_from_slice(&tx[..n - i]);
        }
    }
}

/// `x[i] = f(x[i])` (see `map2`).
#[inline(always)]
unsafe fn map1(x: &mut [f32], f: impl Fn(__m256) -> __m256) {
    let n = x.len();
    let mut i = 0;
    // SAFETY: 8-float accesses at i + 8 <= n; the tail works on a stack array.
    unsafe {
        while i + 8 <= n {
            let p = x[i..i + 8].as_mut_ptr();
            _mm256_storeu_ps(p, f(_mm256_loadu_ps(p)));
            i += 8;
        }
        if i < n {
            let mut t = [0f32; 8];
            t[..n - i].copy_from_slice(&x[i..]);
            _mm256_storeu_ps(t.as_mut_ptr(), f(_mm256_loadu_ps(t.as_ptr())));
            x[i..].copy_from_slice(&t[..n - i]);
        }
    }
}

/// `x[i] = silu(x[i])` by `ggml_v_silu`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn silu_f32(x: &mut [f32]) {
    // SAFETY: same features as this function's.
    unsafe { map1(x, |v| v_silu(v)) }
}

/// `g[i] = silu(g[i]) * up[i]`, as ggml's AVX2 `ggml_vec_swiglu_f32`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn swiglu_f32(g: &mut [f32], up: &[f32]) {
    // SAFETY: same features as this function's.
    unsafe { map2(g, up, |v, u| _mm256_mul_ps(v_silu(v), u)) }
}

/// Low bytes of 4 x 8 i32 lanes, in order (C's wrapping conversion).
#[inline(always)]
unsafe fn low_bytes(v: [__m256i; 4]) -> __m256i {
    // SAFETY: register-only.
    unsafe {
        let ff = _mm256_set1_epi32(0xFF);
        let a = _mm256_packus_epi32(_mm256_and_si256(v[0], ff), _mm256_and_si256(v[1], ff));
        let b = _mm256_packus_epi32(_mm256_and_si256(v[2], ff), _mm256_and_si256(v[3], ff));
        let p = _mm256_packus_epi16(a, b);
        // The packs interleave 128-bit lanes: 0 4 1 5 2 6 3 7 (dwords).
        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// Q8_K activation quantization, bit-identical to `BlockQ8K::quantize`
/// (ggml's `quantize_row_q8_K_ref`, which ggml's x86 backend also runs):
/// same largest-magnitude pick (first index, NaNs skipped), same float
/// products and the same round-to-nearest-even magic-number trick.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8k(x: &[f32], out: &mut [u8]) {
    let nb = (x.len() / QK_K).min(out.len() / Q8K);
    // SAFETY (whole body): loads/stores go through bounds-checked slices.
    unsafe {
        let absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        for i in 0..nb {
            let x = &x[i * QK_K..(i + 1) * QK_K];
            let o = &mut out[i * Q8K..(i + 1) * Q8K];
            let ld = |k: usize| _mm256_loadu_ps(x[8 * k..8 * k + 8].as_ptr());
            let mut m = _mm256_setzero_ps();
            for k in 0..QK_K / 8 {
                // max_ps returns its second operand when either is NaN:
                // NaNs never win, as with the scalar `>`.
                m = _mm256_max_ps(_mm256_and_ps(ld(k), absm), m);
            }
            let mut m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            let amax = _mm_cvtss_f32(m4);
            if amax == 0.0 {
                o.fill(0);
                continue;
            }
            // The first element of that magnitude, with its sign.
            let va = _mm256_set1_ps(amax);
            let mut max = amax;
            for k in 0..QK_K / 8 {
                let hit =
                    _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(ld(k), absm), va, _CMP_EQ_OQ));
                if hit != 0 {
                    max = x[8 * k + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let vs = _mm256_set1_ps(iscale);
            let magic = _mm256_set1_ps(12582912.0);
            let mant = _mm256_set1_epi32(0x007f_ffff);
            let off = _mm256_set1_epi32(0x0040_0000);
            let top = _mm256_set1_epi32(127);
            let ones = _mm256_set1_epi8(1);
            let ones16 = _mm256_set1_epi16(1);
            o[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
            for g in 0..QK_K / 32 {
                let mut q = [_mm256_setzero_si256(); 4];
                for (k, q) in q.iter_mut().enumerate() {
                    let v = _mm256_add_ps(_mm256_mul_ps(vs, ld(4 * g + k)), magic);
                    let n = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), off);
                    *q = _mm256_min_epi32(n, top);
                }
                let q = low_bytes(q);
                _mm256_storeu_si256(
                    o[4 + 32 * g..4 + 32 * g + 32].as_mut_ptr() as *mut __m256i,
                    q,
                );
                // bsums 2g, 2g + 1: byte pairs, then quads, then 16s.
                let s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q), ones16);
                let s8 = _mm256_hadd_epi32(s4, s4);
                let s16 = _mm256_hadd_epi32(s8, s8);
                let lo = _mm256_cvtsi256_si32(s16) as i16;
                let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(s16, 1)) as i16;
                o[260 + 4 * g..262 + 4 * g].copy_from_slice(&lo.to_le_bytes());
                o[262 + 4 * g..264 + 4 * g].copy_from_slice(&hi.to_le_bytes());
            }
        }
    }
}

/// Q8_0 activation quantization, bit-identical to `BlockQ8_0::quantize`
/// (ggml's `quantize_row_q8_0_ref`: amax / 127, roundf = ties away from
/// zero) for finite inputs.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let nb = (x.len() / QK8_0).min(out.len() / Q80);
    // SAFETY (whole body): loads/stores go through bounds-checked slices.
    unsafe {
        let absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        for i in 0..nb {
            let x = &x[i * QK8_0..(i + 1) * QK8_0];
            let o = &mut out[i * Q80..(i + 1) * Q80];
            let mut v = [_mm256_setzero_ps(); 4];
            for (k, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(x[8 * k..8 * k + 8].as_ptr());
            }
            let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| {
                _mm256_max_ps(_mm256_and_ps(v, absm), m)
            });
            let mut m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            let d = _mm_cvtss_f32(m4) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            o[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
            let vid = _mm256_set1_ps(id);
            let mut q = [_mm256_setzero_si256(); 4];
            for (q, &v) in q.iter_mut().zip(&v) {
                let p = _mm256_mul_ps(v, vid);
                // roundf: truncate, then step away from zero on |frac| >= 0.5.
                let t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                let up = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(p, t), absm), half, _CMP_GE_OQ);
                let step = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(p, sign)));
                *q = _mm256_cvtps_epi32(_mm256_add_ps(t, step));
            }
            // Saturating packs, like Rust's float-to-int `as`.
            let a = _mm256_packs_epi32(q[0], q[1]);
            let b = _mm256_packs_epi32(q[2], q[3]);
            let p = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(a, b),
                _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
            );
            _mm256_storeu_si256(o[2..34].as_mut_ptr() as *mut __m256i, p);
        }
    }
}

/// Activation rows b..b + W of `ab` bytes each.
#[inline(always)]
pub(super) fn act_rows<const W: usize>(acts: &[u8], ab: usize, b: usize) -> [&[u8]; W] {
    // `get`, not indexing: the caller checked the lengths, and a short
    // row would only give a short (clamped) dot product, never a panic.
    let mut r: [&[u8]; W] = [&[]; W];
    for (k, r) in r.iter_mut().enumerate() {
        *r = acts.get((b + k) * ab..(b + k + 1) * ab).unwrap_or(&[]);
    }
    r
}

/// `out[b * n_rows + i] = dot(row i of w, activation row b)` (token-major,
/// as `matmul::rows_with`), rows of `rb` bytes, activation rows of `ab`
/// bytes: the matmul inner loops in one function, so the block kernel is
/// inlined into them. Activation rows are taken W at a time by the
/// `*_multi` kernel for each width W listed (each weight block read once
/// per W tokens), the rest one by one by `$single`; every way gives the
/// bits of `$single`. `$feat` is the feature set the whole loop is
/// compiled for: AVX2's, or AVX2's plus AVX-512 F/BW/VL, which changes no
/// operation (the kernels use AVX2 intrinsics only) but gives the compiler
/// 32 vector registers instead of 16 for the W accumulators.
macro_rules! rows_kernel_multi {
    ($name:ident, $feat:tt, $multi:ident, [$($w:literal),*], $single:ident) => {
        /// # Safety
        /// The CPU must support every feature this function enables.
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[u8], rb: usize, acts: &[u8], ab: usize, n_batch: usize, out: &mut [f32]) {
            if rb == 0 || ab == 0 || n_batch == 0 || w.len() < rb {
                return;
            }
            let n_rows = w.len() / rb;
            // SAFETY (the calls below): they need a subset of this
            // function's features.
            for (i, row) in w.chunks_exact(rb).enumerate() {
                let mut b = 0;
                $(
                while b + $w <= n_batch {
                    let mut t = [0f32; $w];
                    unsafe { $multi::<$w>(row, act_rows::<$w>(acts, ab, b), &mut t) };
                    for (k, t) in t.into_iter().enumerate() {
                        if let Some(o) = out.get_mut((b + k) * n_rows + i) {
                            *o = t;
                        }
                    }
                    b += $w;
                }
                )*
                for b in b..n_batch {
                    let t = unsafe { $single(row, act_rows::<1>(acts, ab, b)[0]) };
                    if let Some(o) = out.get_mut(b * n_rows + i) {
                        *o = t;
                    }
                }
            }
        }
    };
}

/// Both builds of a row kernel (see `rows_kernel_multi`) and their safe
/// entry points, which check the CPU once per call; without AVX2 they loop
/// the scalar dot. The AVX-512 build may take more tokens per weight block
/// (`$w512`): with 32 registers 8 accumulators fit where AVX2 spills; and
/// its one-token kernel (`$single512`) may use GFNI.
macro_rules! row_kernels {
    ($safe:ident, $safe512:ident, $multi:ident, [$($w:literal),*], [$($w512:literal),*], $single:ident, $single512:ident, $fallback:ident) => {
        pub(super) fn $safe(w: &[u8], rb: usize, acts: &[u8], ab: usize, n_batch: usize, out: &mut [f32]) {
            rows_kernel_multi!(rows, "avx2,fma,f16c", $multi, [$($w),*], $single);
            if isa_available(Isa::Avx2) {
                // SAFETY: the CPU supports AVX2, FMA and F16C (checked).
                unsafe { rows(w, rb, acts, ab, n_batch, out) }
            } else {
                super::matmul::rows_with($fallback, w, rb, acts, ab, n_batch, out)
            }
        }
        pub(super) fn $safe512(w: &[u8], rb: usize, acts: &[u8], ab: usize, n_batch: usize, out: &mut [f32]) {
            rows_kernel_multi!(rows, "avx2,fma,f16c,gfni,avx512f,avx512bw,avx512vl", $multi, [$($w512),*], $single512);
            if isa_available(Isa::Avx512) {
                // SAFETY: the CPU supports AVX2, FMA, F16C, GFNI and
                // AVX-512 F/BW/VL (checked).
                unsafe { rows(w, rb, acts, ab, n_batch, out) }
            } else {
                $safe(w, rb, acts, ab, n_batch, out)
            }
        }
    };
}
row_kernels!(
    q4k_rows,
    q4k_rows_512,
    dot_q4k_multi,
    [8, 4],
    [4],
    vec_dot_q4k,
    vec_dot_q4k_gf,
    q4k
);
row_kernels!(
    q5k_rows,
    q5k_rows_512,
    dot_q5k_multi,
    [4],
    [8, 4],
    vec_dot_q5k,
    vec_dot_q5k,
    q5k
);
row_kernels!(
    q6k_rows,
    q6k_rows_512,
    dot_q6k_multi,
    [8, 4],
    [8, 4],
    vec_dot_q6k,
    vec_dot_q6k_gf,
    q6k
);
row_kernels!(
    q8_0_rows,
    q8_0_rows_512,
    dot_q8_0_multi,
    [4],
    [8, 4],
    vec_dot_q8_0,
    vec_dot_q8_0,
    q8_0
);
row_kernels!(
    f32_rows,
    f32_rows_512,
    dot_f32_multi,
    [8, 4],
    [8, 4],
    vec_dot_f32_bytes,
    vec_dot_f32_bytes,
    f32s
);
row_kernels!(
    f16_rows,
    f16_rows_512,
    dot_f16_multi,
    [8, 4],
    [8, 4],
    vec_dot_f16_bytes,
    vec_dot_f16_bytes,
    f16s
);

// Safe entry points for the dispatch tables. Each checks the CPU (a cached
// atomic) so it is sound from anywhere, and falls back to the reference.

macro_rules! safe_dot {
    ($name:ident, $simd:ident, $scalar:ty) => {
        pub(super) fn $name(w: &[u8], a: &[u8]) -> f32 {
            if isa_available(Isa::Avx2) {
                // SAFETY: the CPU supports AVX2, FMA and F16C (checked).
                unsafe { $simd(w, a) }
            } else {
                <$scalar as super::WeightFormat>::vec_dot(w, a)
            }
        }
    };
}
safe_dot!(q4k, vec_dot_q4k, BlockQ4K);
safe_dot!(q5k, vec_dot_q5k, BlockQ5K);
safe_dot!(q6k, vec_dot_q6k, BlockQ6K);
safe_dot!(q8_0, vec_dot_q8_0, BlockQ8_0);
safe_dot!(f32s, vec_dot_f32_bytes, f32);
safe_dot!(f16s, vec_dot_f16_bytes, half::f16);

macro_rules! safe_quant {
    ($name:ident, $simd:ident, $scalar:ty) => {
        pub(super) fn $name(x: &[f32], out: &mut [u8]) {
            if isa_available(Isa::Avx2) {
                // SAFETY: the CPU supports AVX2, FMA and F16C (checked).
                unsafe { $simd(x, out) }
            } else {
                <$scalar as super::ActFormat>::quantize(x, out)
            }
        }
    };
}
safe_quant!(quant_q8k, quantize_q8k, BlockQ8K);
safe_quant!(quant_q8_0, quantize_q8_0, BlockQ8_0);
safe_quant!(quant_f16, quantize_f16, half::f16);
