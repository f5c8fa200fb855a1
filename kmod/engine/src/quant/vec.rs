//! f32 vector helpers for attention (dot, axpy; f16 variants for an f16 KV
//! cache), on the selected instruction set.

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::cpu::{isa, Isa};
use super::float::f16_bits_to_f32;

/// `sum a[i] * b[i]` over the shorter length.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa().has_avx2() {
        // SAFETY: `isa()` returns an AVX2 level only when the CPU supports it.
        return unsafe { avx2::dot_f32(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `sum a[i] * f16(b[i])` (b as raw half bits).
#[inline]
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa().has_avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { avx2::dot_f32_f16(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * f16_bits_to_f32(*y)).sum()
}

/// `o[i] += s * v[i]`.
#[inline]
pub fn axpy_f32(o: &mut [f32], s: f32, v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa().has_avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { avx2::axpy_f32(o, s, v) };
    }
    o.iter_mut().zip(v).for_each(|(o, v)| *o += s * v);
}

/// `o[i] += s * f16(v[i])`.
#[inline]
pub fn axpy_f16(o: &mut [f32], s: f32, v: &[u16]) {
    #[cfg(target_arch = "x86_64")]
    if isa().has_avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { avx2::axpy_f16(o, s, v) };
    }
    o.iter_mut()
        .zip(v)
        .for_each(|(o, v)| *o += s * f16_bits_to_f32(*v));
}

/// `x[i] = silu(x[i])` by ggml's AVX2 `ggml_v_silu` (vector expf) when
/// `isa` is Avx2 and this CPU has it; otherwise false, `x` untouched.
pub fn silu_simd(isa: Isa, x: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::usable(isa).has_avx2() {
        // SAFETY: `usable` returns an AVX2 level only when the CPU supports it.
        unsafe { avx2::silu_f32(x) };
        return true;
    }
    let _ = (isa, x);
    false
}

/// `g[i] = silu(g[i]) * up[i]` (ggml's AVX2 `ggml_vec_swiglu_f32`), as
/// [`silu_simd`].
pub fn swiglu_simd(isa: Isa, g: &mut [f32], up: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::usable(isa).has_avx2() {
        // SAFETY: as in `silu_simd`.
        unsafe { avx2::swiglu_f32(g, up) };
        return true;
    }
    let _ = (isa, g, up);
    false
}

/// `dst[i] = f16 bits of src[i]` (round to nearest even, as
/// `half::f16::from_f32`), by F16C when the CPU has it.
pub fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if isa().has_avx2() {
        // SAFETY: `isa()` returns an AVX2 level only when the CPU supports it.
        return unsafe { avx2::f32_to_f16(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_f32(*s).to_bits();
    }
}
