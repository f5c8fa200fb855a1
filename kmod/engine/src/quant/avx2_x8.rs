//! AVX2 kernels for the x8 layouts (`q4_k_x8`, `q6_k_x8`): the shape of
//! the AVX-512 ones (`avx512`) in 256-bit vectors, a row group in two
//! halves of 4 rows (32 bytes of each 64-byte chunk). maddubs products of
//! a sub-block are summed in 16 bits before one madd with the 4 rows'
//! scales, and no row ends with a horizontal sum. Each gives, per row, the
//! integers and float operations of its layout's `vec_dot_group`
//! (tests/simd.rs compares them), so the bits equal the AVX-512 kernels'.
//!
//! Also what both levels share: the prefetch and the row loop (`x8_rows`).
//!
//! Every `unsafe fn` here needs AVX2, FMA and F16C at run time.

use core::arch::x86_64::*;

use super::avx2::{act_rows, bcast_f32, ld32, Q8K};
use super::q4_k_x8::{self, D, DMIN, GROUP, QS, ROWS, SCALES};
use super::q6_k_x8;

/// How far ahead of the group block being read the kernels prefetch on
/// AMD, into L2 only: all of it for Q6_K (the hardware prefetchers do not
/// follow its interleaved loads), one line for Q4_K on AVX-512. Chosen by
/// measurement: docs/speed.md, "Kernel design notes and measurements".
pub(super) const PREFETCH_AHEAD: usize = 16384;

/// Q4_K on AVX2: the whole group block 8 KiB ahead (the slower 256-bit
/// kernel leaves the loads time; measured in docs/speed.md).
const Q4_AHEAD_AVX2: usize = 8192;

/// What a kernel prefetches per group block: `len` bytes `ahead` bytes
/// past it, into L1 or only into L2.
#[derive(Clone, Copy)]
pub(super) struct Prefetch {
    ahead: usize,
    len: usize,
    l1: bool,
}

impl Prefetch {
    /// The plan for this CPU: AMD's (`ahead`, `len`, L2); on Intel every
    /// line of the group block 8 KiB ahead into L1, which read the most of
    /// the bandwidth there (docs/speed.md).
    pub(super) fn plan(ahead: usize, len: usize) -> Self {
        if super::cpu::intel() {
            Prefetch {
                ahead: 8192,
                len: usize::MAX,
                l1: true,
            }
        } else {
            Prefetch {
                ahead,
                len,
                l1: false,
            }
        }
    }

    /// Prefetches for the group block at `x` of `group` bytes.
    #[inline(always)]
    pub(super) fn at(self, x: *const u8, group: usize) {
        let p = x.wrapping_add(self.ahead);
        for off in (0..self.len.min(group)).step_by(64) {
            let line = p.wrapping_add(off) as *const i8;
            // SAFETY: a prefetch is a hint that never faults, even past the
            // end of the matrix, and the address is computed without `add`.
            unsafe {
                if self.l1 {
                    _mm_prefetch::<_MM_HINT_T0>(line)
                } else {
                    _mm_prefetch::<_MM_HINT_T1>(line)
                }
            }
        }
    }
}

/// The 8-byte activation group at `p` in every qword. # Safety: 8
/// readable bytes at `p`.
#[inline(always)]
unsafe fn bq(p: *const u8) -> __m256i {
    // SAFETY: as the caller guarantees.
    unsafe { _mm256_set1_epi64x(p.cast::<i64>().read_unaligned()) }
}

/// 16 bytes at `p`. # Safety: 16 readable bytes at `p`.
#[inline(always)]
unsafe fn ld16(p: *const u8) -> __m128i {
    // SAFETY: as the caller guarantees; unaligned load.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// Row sums of a token's two half-group sums (`h[0]`: rows 0..4, two i32
/// lanes per row; `h[1]`: rows 4..8), rows 0..8 in order.
#[inline(always)]
unsafe fn row_sums(h: [__m256i; 2]) -> __m256i {
    // SAFETY: register-only intrinsics; AVX2 is the caller's.
    unsafe {
        // 128-bit lane 0: rows 0, 1, 4, 5; lane 1: rows 2, 3, 6, 7.
        let s = _mm256_hadd_epi32(h[0], h[1]);
        _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7))
    }
}

/// A 64-byte aligned scratch of six-bit values.
#[repr(C, align(64))]
struct Values([u8; 64]);

/// pshufb indices: for half h (rows 4h..4h + 4) each row's byte of an
/// 8-byte group broadcast to both 128-bit lanes, as the low byte of the
/// four i16 lanes of that row (0x80: a zero high byte).
#[repr(C, align(32))]
struct HalfIdx([[u8; 32]; 2]);
static HALF_IDX: HalfIdx = {
    let mut t = [[0x80u8; 32]; 2];
    let mut h = 0;
    while h < 2 {
        let mut l = 0;
        while l < 16 {
            // i16 lane l: row 4h + l / 4.
            t[h][2 * l] = (4 * h + l / 4) as u8;
            l += 1;
        }
        h += 1;
    }
    HalfIdx(t)
};

/// pshufb indices over Q6_K scales interleaved two rows to a 128-bit lane
/// (byte 2k + j: row j's sub-block k, k < 8): for sub-block k, row j's
/// scale in both bytes of the four i16 lanes of row j (an arithmetic
/// shift by 8 then sign-extends it).
#[repr(C, align(32))]
struct Q6ScaleIdx([[u8; 32]; 8]);
static Q6_SCALE_IDX: Q6ScaleIdx = {
    let mut t = [[0u8; 32]; 8];
    let mut k = 0;
    while k < 8 {
        let mut b = 0;
        while b < 32 {
            t[k][b] = (2 * k + (b % 16) / 8) as u8;
            b += 1;
        }
        k += 1;
    }
    Q6ScaleIdx(t)
};

/// One Q4_K x8 row group (its group blocks `g`) times B activation rows:
/// `out[b][r]`. The per-token operations do not depend on B, so any B
/// gives the bits of B = 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4k_x8<const B: usize>(g: &[u8], a: [&[u8]; B], out: &mut [[f32; ROWS]; B]) {
    let nb = a.iter().fold(g.len() / GROUP, |n, a| n.min(a.len() / Q8K));
    let gp0 = g.as_ptr();
    // SAFETY (whole body): group block i < nb, bytes i * GROUP + 0..GROUP,
    // lies inside `g`, and activation block i, bytes i * Q8K + 0..Q8K,
    // inside each `a[b]` (nb is clamped to all); every read below is such
    // a block plus an offset and length inside it (the last activation
    // read, 8 bytes at 4 + 64 * 3 + 32 + 24, ends at 260; bsums 260..292),
    // or 8 bytes of a 64-byte `Values` at 8s (s < 8), or a whole HALF_IDX
    // entry. Features: its own.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m3 = _mm256_set1_epi8(3);
        let m30 = _mm256_set1_epi8(0x30);
        let pf = Prefetch::plan(Q4_AHEAD_AVX2, GROUP);
        let mut acc = [_mm256_setzero_ps(); B];
        let (mut sc, mut mn) = (Values([0; 64]), Values([0; 64]));
        for i in 0..nb {
            let gp = gp0.add(i * GROUP);
            let y = |b: usize| a[b].as_ptr().add(i * Q8K);
            pf.at(gp, GROUP);
            // The 128 six-bit values (see `q4_k_x8`): scales (8s + r) and
            // mins (8r + s), high bit pairs moved to bits 4-5.
            let (n0, n1, hi) = (
                ld32(gp.add(SCALES)),
                ld32(gp.add(SCALES + 32)),
                ld32(gp.add(SCALES + 64)),
            );
            let v = [
                _mm256_or_si256(
                    _mm256_and_si256(n0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(hi, m3)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(n1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(hi), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(n0), m4),
                    _mm256_and_si256(hi, m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(n1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(hi), m30),
                ),
            ];
            _mm256_store_si256(sc.0.as_mut_ptr() as *mut __m256i, v[0]);
            _mm256_store_si256(sc.0.as_mut_ptr().add(32) as *mut __m256i, v[1]);
            _mm256_store_si256(mn.0.as_mut_ptr() as *mut __m256i, v[2]);
            _mm256_store_si256(mn.0.as_mut_ptr().add(32) as *mut __m256i, v[3]);
            // Mins as i16, two rows (8 sub-blocks each) per vector.
            let mw: [__m256i; 4] =
                core::array::from_fn(|k| _mm256_cvtepu8_epi16(ld16(mn.0.as_ptr().add(16 * k))));
            let mut imin = [_mm256_setzero_si256(); B];
            for (b, imin) in imin.iter_mut().enumerate() {
                // The 8 sub-block sums of the activations, in both 128-bit lanes.
                let bs = ld32(y(b).add(260));
                let q8s = _mm_hadd_epi16(
                    _mm256_castsi256_si128(bs),
                    _mm256_extracti128_si256::<1>(bs),
                );
                let q8s = _mm256_broadcastsi128_si256(q8s);
                let x = mw.map(|m| _mm256_madd_epi16(m, q8s));
                // Lane 0: rows 0, 2, 4, 6; lane 1: rows 1, 3, 5, 7.
                let h =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(x[2], x[3]));
                *imin = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            }
            let mut isum = [[_mm256_setzero_si256(); 2]; B];
            for h in 0..2 {
                let idx = _mm256_load_si256(HALF_IDX.0[h].as_ptr() as *const __m256i);
                for j in 0..4 {
                    // Chunks 4j..4j + 4 hold sub-blocks 2j (low nibbles)
                    // and 2j + 1 (high): loaded once for both (a plain
                    // loop reloaded them; docs/speed.md).
                    let raw: [__m256i; 4] =
                        core::array::from_fn(|t| ld32(gp.add(QS + 64 * (4 * j + t) + 32 * h)));
                    for nib in 0..2 {
                        let s = 2 * j + nib;
                        // The 4 rows' scales, each in its four i16 lanes.
                        let sc16 = _mm256_shuffle_epi8(bq(sc.0.as_ptr().add(8 * s)), idx);
                        let mut p = [_mm256_setzero_si256(); B];
                        for (t, &q) in raw.iter().enumerate() {
                            let q = if nib == 0 {
                                q
                            } else {
                                _mm256_srli_epi16::<4>(q)
                            };
                            let q = _mm256_and_si256(q, m4);
                            for (b, p) in p.iter_mut().enumerate() {
                                // Each i16 lane sums 2 products per chunk, at
                                // most 4 * 2 * 15 * 128 = 15360 in magnitude.
                                let x = _mm256_maddubs_epi16(
                                    q,
                                    bq(y(b).add(4 + 64 * j + 32 * nib + 8 * t)),
                                );
                                *p = _mm256_add_epi16(*p, x);
                            }
                        }
                        for (b, isum) in isum.iter_mut().enumerate() {
                            isum[h] = _mm256_add_epi32(isum[h], _mm256_madd_epi16(p[b], sc16));
                        }
                    }
                }
            }
            let d = _mm256_cvtph_ps(ld16(gp.add(D)));
            let dmin = _mm256_cvtph_ps(ld16(gp.add(DMIN)));
            for b in 0..B {
                let s = _mm256_cvtepi32_ps(row_sums(isum[b]));
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
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6k_x8<const B: usize>(g: &[u8], a: [&[u8]; B], out: &mut [[f32; ROWS]; B]) {
    use q6_k_x8::{D, GROUP, HI, LO, SCALES};
    let nb = a.iter().fold(g.len() / GROUP, |n, a| n.min(a.len() / Q8K));
    let gp0 = g.as_ptr();
    // SAFETY (whole body): as in `dot_q4k_x8`, with Q6_K x8 group blocks:
    // every read is inside group block i (LO + 64 * 15 + 64 = HI, HI + 64
    // * 8 = GROUP, scales 16..144) or activation block i (the last 8 bytes
    // at 4 + 64 * 3 + 48 + 8 end at 260; bsums 260..292); Q6_SCALE_IDX
    // entries are whole (k < 8). Features: its own.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m30 = _mm256_set1_epi8(0x30);
        let pf = Prefetch::plan(PREFETCH_AHEAD, GROUP);
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            let gp = gp0.add(i * GROUP);
            let y = |b: usize| a[b].as_ptr().add(i * Q8K);
            pf.at(gp, GROUP);
            // Per token, sum over k of scale * bsum_k for each row (the
            // -32 offset, taken once).
            let mut off = [_mm256_setzero_si256(); B];
            for (b, off) in off.iter_mut().enumerate() {
                let bs = ld32(y(b).add(260));
                let x: [__m256i; 8] = core::array::from_fn(|r| {
                    _mm256_madd_epi16(_mm256_cvtepi8_epi16(ld16(gp.add(SCALES + 16 * r))), bs)
                });
                // Lane 0: the first halves of rows 0..4 (t0), 4..8 (t1);
                // lane 1: the second halves.
                let t0 =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(x[2], x[3]));
                let t1 =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(x[4], x[5]), _mm256_hadd_epi32(x[6], x[7]));
                *off = _mm256_add_epi32(
                    _mm256_permute2x128_si256::<0x20>(t0, t1),
                    _mm256_permute2x128_si256::<0x31>(t0, t1),
                );
            }
            let mut isum = [[_mm256_setzero_si256(); 2]; B];
            for h in 0..2 {
                // Scales of rows 4h..4h + 4, two rows interleaved per lane
                // (rows 4h, 4h + 1 in lane 0): sub-blocks 0..8, then 8..16.
                let (t, u) = (
                    ld32(gp.add(SCALES + 64 * h)),
                    ld32(gp.add(SCALES + 64 * h + 32)),
                );
                let (x, z) = (
                    _mm256_permute2x128_si256::<0x20>(t, u),
                    _mm256_permute2x128_si256::<0x31>(t, u),
                );
                let sw = [_mm256_unpacklo_epi8(x, z), _mm256_unpackhi_epi8(x, z)];
                for p in 0..4 {
                    let ld = |o: usize, c: usize| ld32(gp.add(o + 64 * c + 32 * h));
                    let l0 = [ld(LO, 2 * p), ld(LO, 2 * p + 1)];
                    let l1 = [ld(LO, 2 * p + 8), ld(LO, 2 * p + 9)];
                    let hb = [ld(HI, 2 * p), ld(HI, 2 * p + 1)];
                    for m in 0..4 {
                        let k = 4 * m + p;
                        let idx =
                            _mm256_load_si256(Q6_SCALE_IDX.0[k % 8].as_ptr() as *const __m256i);
                        let sc = _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(sw[k / 8], idx));
                        let q: [__m256i; 2] = core::array::from_fn(|t| {
                            let lo = match m {
                                0 => l0[t],
                                1 => l1[t],
                                2 => _mm256_srli_epi16::<4>(l0[t]),
                                _ => _mm256_srli_epi16::<4>(l1[t]),
                            };
                            let hi = match m {
                                0 => _mm256_slli_epi16::<4>(hb[t]),
                                1 => _mm256_slli_epi16::<2>(hb[t]),
                                2 => hb[t],
                                _ => _mm256_srli_epi16::<2>(hb[t]),
                            };
                            _mm256_or_si256(_mm256_and_si256(hi, m30), _mm256_and_si256(lo, m4))
                        });
                        for (b, isum) in isum.iter_mut().enumerate() {
                            let y0 = y(b).add(4 + 64 * m + 16 * p);
                            // Two maddubs of one sub-block summed in 16 bits
                            // (within -32256..=32004), then one madd by scale.
                            let pk = _mm256_add_epi16(
                                _mm256_maddubs_epi16(q[0], bq(y0)),
                                _mm256_maddubs_epi16(q[1], bq(y0.add(8))),
                            );
                            isum[h] = _mm256_add_epi32(isum[h], _mm256_madd_epi16(pk, sc));
                        }
                    }
                }
            }
            let d = _mm256_cvtph_ps(ld16(gp.add(D)));
            for b in 0..B {
                let s = _mm256_sub_epi32(row_sums(isum[b]), _mm256_slli_epi32::<5>(off[b]));
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

/// A row kernel over an x8 matrix (`$dot`: one row group, B tokens):
/// `out[b * n_rows + r] = dot(row r, activation row b)`, rows of `rb`
/// (original) bytes, `$w` tokens at a time, then one; compiled for
/// `$feat`; and its safe entry point `$safe`, which runs it where `$isa`
/// is available and `$fallback` (a lower level's entry) elsewhere.
macro_rules! x8_rows {
    ($safe:ident, $dot:ident, $feat:tt, $isa:expr, $w:literal, $fallback:path) => {
        pub(super) fn $safe(
            w: &[u8],
            rb: usize,
            acts: &[u8],
            ab: usize,
            n_batch: usize,
            out: &mut [f32],
        ) {
            /// # Safety
            /// The CPU must support every feature this function enables.
            #[target_feature(enable = $feat)]
            unsafe fn rows(
                w: &[u8],
                rb: usize,
                acts: &[u8],
                ab: usize,
                n_batch: usize,
                out: &mut [f32],
            ) {
                let Some(gb) = rb.checked_mul(ROWS).filter(|&gb| gb != 0) else {
                    return;
                };
                // Whole groups only: `w` is whole groups in every caller.
                let n_rows = w.len() / gb * ROWS;
                let mut put = |b: usize, g: usize, t: &[f32; ROWS]| {
                    if let Some(o) = out.get_mut(b * n_rows + g * ROWS..b * n_rows + (g + 1) * ROWS)
                    {
                        o.copy_from_slice(t);
                    }
                };
                for (g, grp) in w.chunks_exact(gb).enumerate() {
                    let mut b = 0;
                    while b + $w <= n_batch {
                        let mut t = [[0f32; ROWS]; $w];
                        // SAFETY: needs a subset of this function's features.
                        unsafe { $dot::<$w>(grp, act_rows::<$w>(acts, ab, b), &mut t) };
                        for (k, t) in t.iter().enumerate() {
                            put(b + k, g, t);
                        }
                        b += $w;
                    }
                    for b in b..n_batch {
                        let mut t = [[0f32; ROWS]; 1];
                        // SAFETY: as above.
                        unsafe { $dot::<1>(grp, act_rows::<1>(acts, ab, b), &mut t) };
                        put(b, g, &t[0]);
                    }
                }
            }
            if rb == 0 || ab == 0 || n_batch == 0 {
                return;
            }
            if $crate::quant::isa_available($isa) {
                // SAFETY: the CPU has every feature `rows` enables (checked).
                return unsafe { rows(w, rb, acts, ab, n_batch, out) };
            }
            $fallback(w, rb, acts, ab, n_batch, out)
        }
    };
}
pub(super) use x8_rows;

x8_rows!(
    q4k_x8_rows,
    dot_q4k_x8,
    "avx2,fma,f16c",
    super::Isa::Avx2,
    4,
    q4_k_x8::rows_scalar
);
x8_rows!(
    q6k_x8_rows,
    dot_q6k_x8,
    "avx2,fma,f16c",
    super::Isa::Avx2,
    4,
    q6_k_x8::rows_scalar
);
