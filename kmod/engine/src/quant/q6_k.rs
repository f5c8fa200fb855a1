//! Q6_K: 256 values per super-block, 16 sub-blocks of 16 with signed 8-bit
//! scales; `value = d * scale * (q - 32)`, q in 0..64.

use core::mem::size_of;

use half::f16;

use super::q8_k::{self, BlockQ8K};
use super::{f16_le, Format, GgmlType, WeightFormat, QK_K};

/// ggml's `block_q6_K`. Per 128-value half (ql advances 64, qh 32): value
/// `l + 32i` (l < 32, i < 4) takes its low 4 bits from `ql[l + 32(i & 1)]`
/// (low nibble for i < 2, high for i >= 2) and its high 2 bits from bits
/// `2i..2i+2` of `qh[l]`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

const BYTES: usize = 210;
const _: () = assert!(size_of::<BlockQ6K>() == BYTES && GgmlType::Q6K.block_bytes() == BYTES);

impl BlockQ6K {
    pub fn from_bytes(b: &[u8; BYTES]) -> Self {
        Self {
            ql: core::array::from_fn(|i| b[i]),
            qh: core::array::from_fn(|i| b[128 + i]),
            scales: core::array::from_fn(|i| b[192 + i] as i8),
            d: f16_le(b, 208),
        }
    }

    pub fn to_bytes(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[..128].copy_from_slice(&self.ql);
        b[128..192].copy_from_slice(&self.qh);
        for (o, s) in b[192..208].iter_mut().zip(&self.scales) {
            *o = *s as u8;
        }
        b[208..].copy_from_slice(&self.d.to_bits().to_le_bytes());
        b
    }

    /// The 256 quants minus 32 (-32..32), in value order.
    #[inline(always)]
    pub(super) fn unpack(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for h in 0..QK_K / 128 {
            let (ql, qh) = (&self.ql[64 * h..64 * h + 64], &self.qh[32 * h..32 * h + 32]);
            let a = &mut a[128 * h..128 * h + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        a
    }
}

impl Format for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;

    /// ggml's `dequantize_row_q6_K`: `(d * scale) * q`, in that order.
    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (b, y) in src
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<QK_K>().0)
        {
            let b = BlockQ6K::from_bytes(b);
            let d = b.d.to_f32();
            let q = b.unpack();
            for (j, (y, q)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
                let ds = d * b.scales[j] as f32;
                for (y, &q) in y.iter_mut().zip(q) {
                    *y = ds * q as f32;
                }
            }
        }
    }
}

impl WeightFormat for BlockQ6K {
    type Act = BlockQ8K;

    /// ggml's `ggml_vec_dot_q6_K_q8_K_generic`.
    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0f32;
        for (x, y) in w
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(a.as_chunks::<{ q8_k::BYTES }>().0)
        {
            let x = BlockQ6K::from_bytes(x);
            let y = BlockQ8K::from_bytes(y);
            let aux8 = x.unpack();
            let mut aux32 = [0i32; 8];
            for (j, &scale) in x.scales.iter().enumerate() {
                for g in 0..2 {
                    let o = 16 * j + 8 * g;
                    for l in 0..8 {
                        aux32[l] += scale as i32 * (y.qs[o + l] as i32 * aux8[o + l] as i32);
                    }
                }
            }
            let d = x.d.to_f32() * y.d;
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }
}
