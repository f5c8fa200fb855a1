//! Q5_K: like Q4_K with a fifth bit per value from `qh`; q in 0..32.

use core::mem::size_of;

use half::f16;

use super::q8_k::{self, BlockQ8K};
use super::{f16_le, scales_mins_k4, Format, GgmlType, WeightFormat, QK_K};

/// ggml's `block_q5_K`. Low 4 bits as in Q4_K; bit 4 of value `64k + l`
/// (l < 32) is bit `2k` of `qh[l]`, of value `64k + 32 + l` bit `2k + 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

const BYTES: usize = 176;
const _: () = assert!(size_of::<BlockQ5K>() == BYTES && GgmlType::Q5K.block_bytes() == BYTES);

impl BlockQ5K {
    pub fn from_bytes(b: &[u8; BYTES]) -> Self {
        Self {
            d: f16_le(b, 0),
            dmin: f16_le(b, 2),
            scales: core::array::from_fn(|i| b[4 + i]),
            qh: core::array::from_fn(|i| b[16 + i]),
            qs: core::array::from_fn(|i| b[48 + i]),
        }
    }

    pub fn to_bytes(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[0..2].copy_from_slice(&self.d.to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&self.dmin.to_bits().to_le_bytes());
        b[4..16].copy_from_slice(&self.scales);
        b[16..48].copy_from_slice(&self.qh);
        b[48..].copy_from_slice(&self.qs);
        b
    }

    /// The 256 quants, 0..32 each, in value order.
    #[inline(always)]
    fn unpack(&self) -> [u8; QK_K] {
        let mut q = [0u8; QK_K];
        for j in 0..QK_K / 64 {
            for l in 0..32 {
                let (ql, qh) = (self.qs[32 * j + l], self.qh[l]);
                q[64 * j + l] = (ql & 0xF) | (((qh >> (2 * j)) & 1) << 4);
                q[64 * j + 32 + l] = (ql >> 4) | (((qh >> (2 * j + 1)) & 1) << 4);
            }
        }
        q
    }
}

impl Format for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;

    /// ggml's `dequantize_row_q5_K`.
    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (b, y) in src
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<QK_K>().0)
        {
            let b = BlockQ5K::from_bytes(b);
            let d = b.d.to_f32();
            let min = b.dmin.to_f32();
            let (sc, m) = scales_mins_k4(&b.scales);
            let q = b.unpack();
            for (j, (y, q)) in y.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
                let (dl, ml) = (d * sc[j] as f32, min * m[j] as f32);
                for (y, &q) in y.iter_mut().zip(q) {
                    *y = dl * q as f32 - ml;
                }
            }
        }
    }
}

impl WeightFormat for BlockQ5K {
    type Act = BlockQ8K;

    /// ggml's `ggml_vec_dot_q5_K_q8_K_generic` (same structure as Q4_K).
    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0f32;
        for (x, y) in w
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(a.as_chunks::<{ q8_k::BYTES }>().0)
        {
            let x = BlockQ5K::from_bytes(x);
            let y = BlockQ8K::from_bytes(y);
            let aux8 = x.unpack();
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
