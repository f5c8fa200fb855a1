//! Q8_0: 32 values per block, `value = d * q`.

use core::mem::size_of;

use half::f16;

use super::{f16_le, max_c, ActFormat, Format, GgmlType, WeightFormat, QK8_0};

/// ggml's `block_q8_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}

const BYTES: usize = 34;
const _: () = assert!(size_of::<BlockQ8_0>() == BYTES && GgmlType::Q8_0.block_bytes() == BYTES);

impl BlockQ8_0 {
    pub fn from_bytes(b: &[u8; BYTES]) -> Self {
        Self {
            d: f16_le(b, 0),
            qs: core::array::from_fn(|i| b[2 + i] as i8),
        }
    }

    pub fn to_bytes(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[..2].copy_from_slice(&self.d.to_bits().to_le_bytes());
        for (o, q) in b[2..].iter_mut().zip(&self.qs) {
            *o = *q as u8;
        }
        b
    }

    /// ggml's `quantize_row_q8_0_ref` for one block. (ggml's AVX2
    /// `quantize_row_q8_0` differs: it uses 127/amax and rounds ties to even.)
    pub fn quantize(x: &[f32; QK8_0]) -> Self {
        let mut amax = 0f32;
        for v in x {
            amax = max_c(amax, v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // roundf: halves away from zero. `as` saturates where C would be UB.
        Self {
            d: f16::from_f32(d),
            qs: core::array::from_fn(|j| libm::roundf(x[j] * id) as i8),
        }
    }
}

impl Format for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (b, y) in src
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<QK8_0>().0)
        {
            let b = BlockQ8_0::from_bytes(b);
            let d = b.d.to_f32();
            for (y, q) in y.iter_mut().zip(b.qs) {
                *y = q as f32 * d;
            }
        }
    }
}

impl ActFormat for BlockQ8_0 {
    fn quantize(x: &[f32], out: &mut [u8]) {
        for (x, o) in x
            .as_chunks::<QK8_0>()
            .0
            .iter()
            .zip(out.as_chunks_mut::<BYTES>().0)
        {
            *o = BlockQ8_0::quantize(x).to_bytes();
        }
    }
}

impl WeightFormat for BlockQ8_0 {
    type Act = BlockQ8_0;

    /// ggml's `ggml_vec_dot_q8_0_q8_0_generic`.
    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in w
            .as_chunks::<BYTES>()
            .0
            .iter()
            .zip(a.as_chunks::<BYTES>().0)
        {
            let mut sumi = 0i32;
            for j in 0..QK8_0 {
                sumi += (x[2 + j] as i8 as i32) * (y[2 + j] as i8 as i32);
            }
            sumf += sumi as f32 * (f16_le(x, 0).to_f32() * f16_le(y, 0).to_f32());
        }
        sumf
    }
}
