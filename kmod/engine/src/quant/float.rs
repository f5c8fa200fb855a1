//! F32 and F16: plain little-endian floats.
//!
//! ggml's scalar `ggml_vec_dot_f32` / `ggml_vec_dot_f16` sum the f32 products
//! in `ggml_float` (double); these do the same. (Its SIMD builds accumulate
//! in f32 vectors instead: that belongs with the SIMD kernels.)

use half::f16;

use super::{ActFormat, Format, GgmlType, WeightFormat};

impl Format for f32 {
    const TYPE: GgmlType = GgmlType::F32;

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (y, b) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
            *y = f32::from_le_bytes(*b);
        }
    }
}

impl ActFormat for f32 {
    fn quantize(x: &[f32], out: &mut [u8]) {
        for (b, v) in out.as_chunks_mut::<4>().0.iter_mut().zip(x) {
            *b = v.to_le_bytes();
        }
    }
}

impl WeightFormat for f32 {
    type Act = f32;

    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0f64;
        for (x, y) in w.as_chunks::<4>().0.iter().zip(a.as_chunks::<4>().0) {
            sum += (f32::from_le_bytes(*x) * f32::from_le_bytes(*y)) as f64;
        }
        sum as f32
    }
}

/// Exact f16 -> f32, like F16C's vcvtph2ps (NaNs come out quiet). `half`
/// has this too, but without F16C at compile time its fallback is several
/// times slower, and this sits in the F16 dot product's inner loop.
#[inline(always)]
pub(super) fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let mag = if exp == 0x1f {
        0x7f80_0000 | (man << 13) | if man != 0 { 0x0040_0000 } else { 0 }
    } else if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        (man as f32 * (1.0 / 16_777_216.0)).to_bits()
    } else {
        ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(sign | mag)
}

#[inline(always)]
fn f16_to_f32(b: [u8; 2]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes(b))
}

impl Format for f16 {
    const TYPE: GgmlType = GgmlType::F16;

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (y, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
            *y = f16_to_f32(*b);
        }
    }
}

impl ActFormat for f16 {
    /// Round to nearest even, like ggml's `GGML_FP32_TO_FP16`.
    fn quantize(x: &[f32], out: &mut [u8]) {
        for (b, v) in out.as_chunks_mut::<2>().0.iter_mut().zip(x) {
            *b = f16::from_f32(*v).to_bits().to_le_bytes();
        }
    }
}

impl WeightFormat for f16 {
    type Act = f16;

    fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
        // The f32 product of two halves is exact; only the sum rounds.
        let mut sum = 0f64;
        for (x, y) in w.as_chunks::<2>().0.iter().zip(a.as_chunks::<2>().0) {
            sum += (f16_to_f32(*x) * f16_to_f32(*y)) as f64;
        }
        sum as f32
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn f16_conversion_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            assert_eq!(
                super::f16_bits_to_f32(h).to_bits(),
                want.to_bits(),
                "{h:#06x}"
            );
        }
    }
}
