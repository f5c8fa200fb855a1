//! Q4_K: 256 values per super-block, 8 sub-blocks of 32 with 6-bit scales
//! and mins; `value = d * sc * q - dmin * m`, q in 0..16.

use core::mem::size_of;

use half::f16;

use super::q8_k::{self, BlockQ8K};
use super::{f16_le, scales_mins_k4, Format, GgmlType, WeightFormat, QK_K};

/// ggml's `block_q4_K`. `qs` holds 64 values per 32 bytes: low nibbles are
/// values 0..32 of the pair of sub-blocks, high nibbles values 32..64.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

const BYTES: usize = 144;
const _: () = assert!(size_of::<BlockQ4K>() == BYTES && GgmlType::Q4K.block_bytes() == BYTES);

impl BlockQ4K {
    pub fn from_bytes(b: &[u8; BYTES]) -> Self {
        Self {
            d: f16_le(b, 0),
            dmin: f16_le(b, 2),
            scales: core::array::from_fn(|i| b[4 + i]),
            qs: core::array::from_fn(|i| b[16 + i]),
        }
    }

    pub fn to_bytes(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[0..2].copy_from_slice(&self.d.to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&self.dmin.to_bits().to_le_bytes());
        b[4..16].copy_from_slice(&self.scales);
        b[16..].copy_from_slice(&self.qs);
        b
    }
}

impl Format for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;

    /// ggml's `dequantize_row_q4_K`.
    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (b, y) in src
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<QK_K>().0)
        {
            let b = BlockQ4K::from_bytes(b);
            let d = b.d.to_f32();
            let min = b.dmin.to_f32();
            let (sc, m) = scales_mins_k4(&b.scales);
            for j in 0..QK_K / 64 {
                let (d1, m1) = (d * sc[2 * j] as f32, min * m[2 * j] as f32);
                let (d2, m2) = (d * sc[2 * j + 1] as f32, min * m[2 * j + 1] as f32);
                let q = &b.qs[32 * j..32 * j + 32];
                let y = &mut y[64 * j..64 * j + 64];
                for l in 0..32 {
                    y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                    y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }
    }
}

impl WeightFormat for BlockQ4K {
    type Act = BlockQ8K;

    /// ggml's `ggml_vec_dot_q4_K_q8_K_generic`: integer sums per sub-block
    /// with the scale applied as an integer, in 8 lanes; the mins folded in
    /// once per super-block through `bsums`; float only per super-block.
    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0f32;
        for (x, y) in w
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(a.as_chunks::<{ q8_k::BYTES }>().0)
        {
            let x = BlockQ4K::from_bytes(x);
            let y = BlockQ8K::from_bytes(y);
            let mut aux8 = [0i8; QK_K];
            for j in 0..QK_K / 64 {
                for l in 0..32 {
                    aux8[64 * j + l] = (x.qs[32 * j + l] & 0xF) as i8;
                    aux8[64 * j + 32 + l] = (x.qs[32 * j + l] >> 4) as i8;
                }
            }
            let (scales, mins) = scales_mins_k4(&x.scales);
            let mut sumi = 0i32;
            for j in 0..QK_K / 16 {
                sumi += y.bsums[j] as i32 * mins[j / 2] as i32;
            }
            let mut aux32 = [0i32; 8];
            for (j, &scale) in scales.iter().enumerate() {
                for g in 0..4 {
                    let o = 32 * j + 8 * g;
                    for l in 0..8 {
                        aux32[l] += scale as i32 * (y.qs[o + l] as i32 * aux8[o + l] as i32);
                    }
                }
            }
            let d = x.d.to_f32() * y.d;
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
            let dmin = x.dmin.to_f32() * y.d;
            sumf -= dmin * sumi as f32;
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }
}
