//! Q8_K: the activation format of the k-quant dot products.
//! 256 values per block, `value = d * q`, plus the sums of each 16 quants.

use core::mem::size_of;

use super::{ActFormat, Format, GgmlType, QK_K};

/// ggml's `block_q8_K`: `d` is a full f32, `bsums[j]` = sum of `qs[16j..16j+16]`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

pub(super) const BYTES: usize = 292;
const _: () = assert!(size_of::<BlockQ8K>() == BYTES && GgmlType::Q8K.block_bytes() == BYTES);

/// ggml's `nearest_int`: round to nearest, ties to even, for |x| < 2^22
/// (the magic constant puts the integer in the low mantissa bits).
#[inline(always)]
pub(super) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12582912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

impl BlockQ8K {
    pub fn from_bytes(b: &[u8; BYTES]) -> Self {
        Self {
            d: f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            qs: core::array::from_fn(|i| b[4 + i] as i8),
            bsums: core::array::from_fn(|j| i16::from_le_bytes([b[260 + 2 * j], b[261 + 2 * j]])),
        }
    }

    pub fn to_bytes(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[..4].copy_from_slice(&self.d.to_le_bytes());
        for (o, q) in b[4..260].iter_mut().zip(&self.qs) {
            *o = *q as u8;
        }
        for (o, s) in b[260..].as_chunks_mut::<2>().0.iter_mut().zip(&self.bsums) {
            *o = s.to_le_bytes();
        }
        b
    }

    /// ggml's `quantize_row_q8_K_ref` for one block (also what ggml's x86
    /// CPU backend runs). The scale comes from the element of largest
    /// magnitude, with its sign: `iscale = -127 / max`. One difference:
    /// ggml leaves `bsums` unwritten for an all-zero block; here they are 0.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            return Self {
                d: 0.0,
                qs: [0; QK_K],
                bsums: [0; QK_K / 16],
            };
        }
        let iscale = -127.0 / max;
        // `as i8` wraps like C's conversion; nearest_int stays >= -127 here.
        let qs: [i8; QK_K] = core::array::from_fn(|j| nearest_int(iscale * x[j]).min(127) as i8);
        let bsums =
            core::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
        Self {
            d: 1.0 / iscale,
            qs,
            bsums,
        }
    }
}

impl Format for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8K;

    /// ggml's `dequantize_row_q8_K`.
    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (b, y) in src
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<QK_K>().0)
        {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            for (y, q) in y.iter_mut().zip(&b[4..260]) {
                *y = d * (*q as i8) as f32;
            }
        }
    }
}

impl ActFormat for BlockQ8K {
    fn quantize(x: &[f32], out: &mut [u8]) {
        for (x, o) in x
            .as_chunks::<QK_K>()
            .0
            .iter()
            .zip(out.as_chunks_mut::<BYTES>().0)
        {
            *o = BlockQ8K::quantize(x).to_bytes();
        }
    }
}
