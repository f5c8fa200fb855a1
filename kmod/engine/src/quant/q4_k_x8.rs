//! Q4_K x8: a Q4_K matrix repacked in place, 8 rows at a time, so one
//! SIMD kernel computes 8 rows at once with rows in the lanes: the
//! activation is broadcast once for 8 rows, four vpdpbusd sum a
//! sub-block in 32-bit lanes before one vpdpwssd with the 8 rows' scales,
//! and no row ends with a horizontal sum. (llama.cpp's CPU backend
//! repacks Q4_K for the same reasons; this layout is Llamux's own.)
//!
//! Block i of row group g (rows 8g..8g + 8) takes the bytes of the 8
//! original blocks, `GROUP` = 8 x 144, at `(g * nb + i) * GROUP`:
//!
//! | bytes     | content |
//! |-----------|---------|
//! | 0..16     | d of rows 0..8 (f16) |
//! | 16..32    | dmin of rows 0..8 (f16) |
//! | 32..128   | 128 six-bit values: scale of row r, sub-block s at index 8s + r, min at 64 + 8r + s; low nibbles of values k and k + 64 in byte k, high bit pairs of k, k + 32, k + 64, k + 96 in byte 64 + k |
//! | 128..1152 | quants: chunk c (64 bytes) holds bytes 8c..8c + 8 of each row's `qs`, row after row |
//!
//! The integers of every block dot are exact, so results differ from the
//! row-major kernels only in float rounding (one FMA chain per row).

use super::q4_k::BlockQ4K;
use super::q8_k::{self, BlockQ8K};
use super::x8::{self, f16_at, fma};
use super::{scales_mins_k4, GgmlType, QuantError, QK_K};

pub use super::x8::ROWS;
const BLOCK: usize = 144;
/// Bytes of one block of a row group.
pub const GROUP: usize = ROWS * BLOCK;
pub(super) const D: usize = 0;
pub(super) const DMIN: usize = 16;
pub(super) const SCALES: usize = 32;
pub(super) const QS: usize = 128;

/// Index of row r's scale for sub-block s among the 128 six-bit values.
const fn scale_index(r: usize, s: usize) -> usize {
    8 * s + r
}

/// Index of row r's min for sub-block s.
const fn min_index(r: usize, s: usize) -> usize {
    64 + 8 * r + s
}

/// Packs 8 blocks (rows 0..8 of one block column) into one group block.
fn pack(src: &[[u8; BLOCK]; ROWS], dst: &mut [u8; GROUP]) {
    let mut v = [0u8; 128];
    for (r, b) in src.iter().enumerate() {
        let b = BlockQ4K::from_bytes(b);
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
        dst[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&b.dmin.to_bits().to_le_bytes());
        let (sc, m) = scales_mins_k4(&b.scales);
        for s in 0..8 {
            v[scale_index(r, s)] = sc[s];
            v[min_index(r, s)] = m[s];
        }
        for c in 0..QK_K / 2 / 8 {
            let o = QS + 64 * c + 8 * r;
            dst[o..o + 8].copy_from_slice(&b.qs[8 * c..8 * c + 8]);
        }
    }
    for k in 0..64 {
        dst[SCALES + k] = (v[k] & 0xF) | (v[k + 64] & 0xF) << 4;
    }
    for k in 0..32 {
        dst[SCALES + 64 + k] =
            v[k] >> 4 | (v[k + 32] >> 4) << 2 | (v[k + 64] >> 4) << 4 | (v[k + 96] >> 4) << 6;
    }
}

/// The 128 six-bit scale and min values of a group block.
fn values(g: &[u8; GROUP]) -> [u8; 128] {
    core::array::from_fn(|k| {
        let lo = g[SCALES + k % 64] >> (4 * (k / 64)) & 0xF;
        let hi = g[SCALES + 64 + k % 32] >> (2 * (k / 32)) & 3;
        lo | hi << 4
    })
}

/// Row r's original 144-byte block, back from a group block.
pub fn unpack(g: &[u8; GROUP], r: usize) -> [u8; BLOCK] {
    let v = values(g);
    let (sc, m): ([u8; 8], [u8; 8]) = (
        core::array::from_fn(|s| v[scale_index(r, s)]),
        core::array::from_fn(|s| v[min_index(r, s)]),
    );
    let mut b = [0u8; BLOCK];
    b[0..2].copy_from_slice(&g[D + 2 * r..D + 2 * r + 2]);
    b[2..4].copy_from_slice(&g[DMIN + 2 * r..DMIN + 2 * r + 2]);
    // ggml's 12-byte packing (the inverse of `scales_mins_k4`).
    for j in 0..4 {
        b[4 + j] = sc[j] | (sc[j + 4] >> 4) << 6;
        b[8 + j] = m[j] | (m[j + 4] >> 4) << 6;
        b[12 + j] = (sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4;
    }
    for c in 0..QK_K / 2 / 8 {
        let o = QS + 64 * c + 8 * r;
        b[16 + 8 * c..16 + 8 * c + 8].copy_from_slice(&g[o..o + 8]);
    }
    b
}

/// Repacks a row-major Q4_K matrix of `rows` (a multiple of 8) rows of
/// `cols` values in place; `tmp` holds 8 rows (`8 * cols / 256 * 144`
/// bytes).
pub fn repack(data: &mut [u8], rows: usize, cols: usize, tmp: &mut [u8]) -> Result<(), QuantError> {
    x8::repack(GgmlType::Q4K, data, rows, cols, tmp, |slab, rb, i, dst| {
        pack(
            &core::array::from_fn(|r| x8::slab_block::<BLOCK>(slab, rb, r, i)),
            dst,
        )
    })
}

/// The inverse of [`repack`].
pub fn unrepack(
    data: &mut [u8],
    rows: usize,
    cols: usize,
    tmp: &mut [u8],
) -> Result<(), QuantError> {
    x8::unrepack(GgmlType::Q4K, data, rows, cols, tmp, |g, r, out| {
        out.copy_from_slice(&unpack(g, r))
    })
}

/// The 8 dots of one row group (`nb` group blocks) with activation row
/// `a`: the scalar reference of the SIMD kernel, the same integers and
/// float operations per row (`out[r]`).
pub fn vec_dot_group(g: &[u8], a: &[u8], out: &mut [f32; ROWS]) {
    let mut acc = [0f32; ROWS];
    for (g, y) in g
        .as_chunks::<GROUP>()
        .0
        .iter()
        .zip(a.as_chunks::<{ q8_k::BYTES }>().0)
    {
        let y = BlockQ8K::from_bytes(y);
        let v = values(g);
        // Chunk c: bytes 8c..8c + 8 of each row's qs.
        let chunks: &[[u8; 64]; 16] = g[QS..]
            .as_chunks::<64>()
            .0
            .try_into()
            .unwrap_or(&[[0; 64]; 16]);
        for (r, acc) in acc.iter_mut().enumerate() {
            let (mut isum, mut imin) = (0i32, 0i32);
            for (s, ys) in y.qs.as_chunks::<32>().0.iter().enumerate() {
                let (j, high) = (s / 2, s % 2 == 1);
                let mut p = 0i32;
                for (l, &yq) in ys.iter().enumerate() {
                    let q = chunks[(4 * j + l / 8) % 16][(8 * r + l % 8) % 64];
                    let q = if high { q >> 4 } else { q & 0xF };
                    p += q as i32 * yq as i32;
                }
                isum += v[scale_index(r, s)] as i32 * p;
                imin +=
                    v[min_index(r, s)] as i32 * (y.bsums[2 * s] as i32 + y.bsums[2 * s + 1] as i32);
            }
            let d = f16_at(g, D + 2 * r) * y.d;
            let dmin = f16_at(g, DMIN + 2 * r) * y.d;
            *acc = fma(d, isum as f32, *acc);
            *acc = fma(-dmin, imin as f32, *acc);
        }
    }
    *out = acc;
}

/// `out[b * n_rows + r] = dot(row r, activation row b)` over a Q4_K x8
/// matrix of rows of `rb` (original) bytes, by `vec_dot_group`.
pub(super) fn rows_scalar(
    w: &[u8],
    rb: usize,
    acts: &[u8],
    ab: usize,
    n_batch: usize,
    out: &mut [f32],
) {
    x8::rows_scalar(vec_dot_group, w, rb, acts, ab, n_batch, out)
}
