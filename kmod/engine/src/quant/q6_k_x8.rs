//! Q6_K x8: a Q6_K matrix repacked in place 8 rows at a time, like
//! `q4_k_x8`: rows in the lanes, the activation broadcast once for 8 rows,
//! two maddubs results of a 16-value sub-block summed in 16 bits before
//! one madd with the 8 rows' scales, the `-32` offset taken once per block
//! through the activation's `bsums`.
//!
//! Block i of row group g takes the bytes of the 8 original blocks,
//! `GROUP` = 8 x 210, at `(g * nb + i) * GROUP`; q is a 6-bit quant
//! (0..64, the value is `d * scale * (q - 32)`):
//!
//! | bytes      | content |
//! |------------|---------|
//! | 0..16      | d of rows 0..8 (f16) |
//! | 16..144    | scales (i8): row r, sub-block k at 16r + k |
//! | 144..1168  | low 4 bits: chunk c (64 bytes, c < 16) holds, for each row, 8 bytes: q of values 8c + b in the low nibble, of 128 + 8c + b in the high |
//! | 1168..1680 | high 2 bits: chunk c (c < 8), for each row, 8 bytes: bits 2m..2m + 2 hold those of value 8c + b + 64m |

use super::q6_k::BlockQ6K;
use super::q8_k::{self, BlockQ8K};
use super::x8::{self, f16_at, fma};
use super::{GgmlType, QuantError, QK_K};

pub use super::x8::ROWS;
const BLOCK: usize = 210;
/// Bytes of one block of a row group.
pub const GROUP: usize = ROWS * BLOCK;
pub(super) const D: usize = 0;
pub(super) const SCALES: usize = 16;
pub(super) const LO: usize = 144;
pub(super) const HI: usize = 1168;

/// Packs 8 blocks (rows 0..8 of one block column) into one group block.
fn pack(src: &[[u8; BLOCK]; ROWS], dst: &mut [u8; GROUP]) {
    for (r, b) in src.iter().enumerate() {
        let b = BlockQ6K::from_bytes(b);
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
        for (k, &s) in b.scales.iter().enumerate() {
            dst[SCALES + 16 * r + k] = s as u8;
        }
        let q = b.unpack().map(|q| (q + 32) as u8);
        for c in 0..16 {
            for i in 0..8 {
                let v = 8 * c + i;
                dst[LO + 64 * c + 8 * r + i] = (q[v] & 0xF) | (q[v + 128] & 0xF) << 4;
            }
        }
        for c in 0..8 {
            for i in 0..8 {
                let v = 8 * c + i;
                dst[HI + 64 * c + 8 * r + i] = q[v] >> 4
                    | (q[v + 64] >> 4) << 2
                    | (q[v + 128] >> 4) << 4
                    | (q[v + 192] >> 4) << 6;
            }
        }
    }
}

/// The 256 quants (0..64) of row r, in value order.
fn quants(g: &[u8; GROUP], r: usize) -> [u8; QK_K] {
    core::array::from_fn(|v| {
        let (c, i) = ((v % 128) / 8, v % 8);
        let lo = g[LO + 64 * c + 8 * r + i] >> (4 * (v / 128)) & 0xF;
        let hi = g[HI + 64 * (c % 8) + 8 * r + i] >> (2 * (v / 64)) & 3;
        lo | hi << 4
    })
}

/// Row r's original 210-byte block, back from a group block.
pub fn unpack(g: &[u8; GROUP], r: usize) -> [u8; BLOCK] {
    let q = quants(g, r);
    let mut b = [0u8; BLOCK];
    // ggml's layout (see `BlockQ6K`): per 128-value half h, value
    // l + 32i + 128h in ql[64h + l + 32(i & 1)] (nibble i / 2) and qh[32h + l]
    // (bits 2i..2i + 2).
    for h in 0..2 {
        for l in 0..32 {
            let v: [u8; 4] = core::array::from_fn(|i| q[128 * h + l + 32 * i]);
            b[64 * h + l] = (v[0] & 0xF) | (v[2] & 0xF) << 4;
            b[64 * h + l + 32] = (v[1] & 0xF) | (v[3] & 0xF) << 4;
            b[128 + 32 * h + l] =
                v[0] >> 4 | (v[1] >> 4) << 2 | (v[2] >> 4) << 4 | (v[3] >> 4) << 6;
        }
    }
    b[192..208].copy_from_slice(&g[SCALES + 16 * r..SCALES + 16 * r + 16]);
    b[208..210].copy_from_slice(&g[D + 2 * r..D + 2 * r + 2]);
    b
}

/// Repacks a row-major Q6_K matrix of `rows` (a multiple of 8) rows of
/// `cols` values in place; `tmp` holds 8 rows (`8 * cols / 256 * 210`
/// bytes).
pub fn repack(data: &mut [u8], rows: usize, cols: usize, tmp: &mut [u8]) -> Result<(), QuantError> {
    x8::repack(GgmlType::Q6K, data, rows, cols, tmp, |slab, rb, i, dst| {
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
    x8::unrepack(GgmlType::Q6K, data, rows, cols, tmp, |g, r, out| {
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
        for (r, acc) in acc.iter_mut().enumerate() {
            let q = quants(g, r);
            let mut isum = 0i32;
            for (k, (q, ys)) in q
                .as_chunks::<16>()
                .0
                .iter()
                .zip(y.qs.as_chunks::<16>().0)
                .enumerate()
            {
                let p: i32 = q.iter().zip(ys).map(|(&q, &y)| q as i32 * y as i32).sum();
                let sc = g[SCALES + 16 * r + k] as i8 as i32;
                isum += sc * (p - 32 * y.bsums[k] as i32);
            }
            let d = f16_at(g, D + 2 * r) * y.d;
            *acc = fma(d, isum as f32, *acc);
        }
    }
    *out = acc;
}

/// `out[b * n_rows + r] = dot(row r, activation row b)` over a Q6_K x8
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
