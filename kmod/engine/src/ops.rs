//! The non-matmul operations of a LLaMA forward pass, on slices, matching
//! ggml's CPU code operation by operation (its scalar code; on AVX2 its
//! vector SiLU, as llama.cpp there). Nothing here allocates.
//!
//! Transcendentals go through [`math`].

use core::fmt;

use crate::quant::{self, GgmlType, Isa, QuantError};

/// Why an op refused its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpError {
    Quant(QuantError),
    /// A buffer's length is not what the shapes imply.
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A parameter outside what the op supports.
    BadParam(&'static str),
}

impl From<QuantError> for OpError {
    fn from(e: QuantError) -> Self {
        OpError::Quant(e)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Quant(e) => e.fmt(f),
            OpError::Length {
                what,
                expected,
                actual,
            } => {
                write!(f, "{what}: expected {expected} elements, got {actual}")
            }
            OpError::BadParam(p) => write!(f, "bad parameter: {p}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OpError {}

/// Every transcendental the ops use, in one place. ggml's scalar code calls
/// glibc's `expf`/`cosf`/`sinf`/`powf`, which evaluate in double and are
/// nearly correctly rounded. libm's f32 routines are not: they miss glibc by
/// 1 ulp on ~10% of softmax arguments and on LLaMA-2's RoPE theta scale
/// powf(1e4, -2/128), which skews every angle. So these evaluate libm's f64
/// routines and round once (correctly rounded but for rare double-rounding
/// cases). On the ops' inputs that equals glibc except ~0.06% (exp), ~0.1%
/// (pow) and ~1.3% (cos, sin: glibc's are 0.56-ulp routines) by 1 ulp
/// (tests/ops.rs). Bit-exact would need a port of glibc's routines (and
/// ggml's AVX2 `ggml_v_expf` for its SIMD softmax and SiLU): it goes here.
pub mod math {
    /// e^x.
    #[inline]
    pub fn expf(x: f32) -> f32 {
        libm::exp(x as f64) as f32
    }
    /// cos x (radians).
    #[inline]
    pub fn cosf(x: f32) -> f32 {
        libm::cos(x as f64) as f32
    }
    /// sin x (radians).
    #[inline]
    pub fn sinf(x: f32) -> f32 {
        libm::sin(x as f64) as f32
    }
    /// x^y.
    #[inline]
    pub fn powf(x: f32, y: f32) -> f32 {
        libm::pow(x as f64, y as f64) as f32
    }
    /// Correctly rounded, so it equals C's sqrtf.
    #[inline]
    pub fn sqrtf(x: f32) -> f32 {
        libm::sqrtf(x)
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), OpError> {
    if expected == actual {
        Ok(())
    } else {
        Err(OpError::Length {
            what,
            expected,
            actual,
        })
    }
}

/// Embedding lookup (ggml's get_rows): dequantizes row `token` of `table`,
/// a matrix of `out.len()` columns of type `ty`, into `out`.
pub fn embedding_row(
    table: &[u8],
    ty: GgmlType,
    token: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    let n_embd = out.len();
    let rb = ty
        .row_bytes(n_embd as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or(QuantError::PartialBlock { ty, n: n_embd })?;
    if rb == 0 || !table.len().is_multiple_of(rb) {
        return Err(OpError::Length {
            what: "embedding table bytes (whole rows)",
            expected: rb,
            actual: table.len(),
        });
    }
    let n_rows = table.len() / rb;
    if token >= n_rows {
        return Err(QuantError::RowRange {
            start: token,
            end: token + 1,
            n_rows,
        }
        .into());
    }
    quant::dequantize_row(ty, &table[token * rb..(token + 1) * rb], out)?;
    Ok(())
}

/// 1 / sqrt(mean(x^2) + eps) as ggml_compute_forward_rms_norm_f32 computes
/// it: f32 squares summed in f64, the mean rounded to f32.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut sum = 0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len() as f64) as f32;
    1.0 / math::sqrtf(mean + eps)
}

/// RMSNorm without weight: `out = x / sqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &[f32], eps: f32, out: &mut [f32]) -> Result<(), OpError> {
    check_len("rms_norm out", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let scale = rms_scale(x, eps);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * scale;
    }
    Ok(())
}

/// RMSNorm then the norm weight, as llama.cpp builds it (ggml_rms_norm then
/// ggml_mul): `out[i] = (x[i] * scale) * weight[i]`, two roundings.
pub fn rms_norm_mul(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) -> Result<(), OpError> {
    check_len("rms_norm_mul weight", x.len(), weight.len())?;
    check_len("rms_norm_mul out", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let scale = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = (v * scale) * w;
    }
    Ok(())
}

/// cos/sin table for RoPE at position `pos` (ggml_rope_cache_init without
/// YaRN): `cache[2i] = cos(theta_i)`, `cache[2i + 1] = sin(theta_i)` with
/// `theta_0 = pos * freq_scale` and `theta_{i+1} = theta_i * base^(-2/n_dims)`
/// multiplied in f32, as ggml does. `cache.len()` is `n_dims`, even.
pub fn rope_cache(
    pos: usize,
    n_dims: usize,
    freq_base: f32,
    freq_scale: f32,
    cache: &mut [f32],
) -> Result<(), OpError> {
    if n_dims == 0 || !n_dims.is_multiple_of(2) {
        return Err(OpError::BadParam("rope n_dims must be even and > 0"));
    }
    check_len("rope cache", n_dims, cache.len())?;
    let theta_scale = math::powf(freq_base, -2.0 / n_dims as f32);
    let mut theta = pos as f32;
    for cs in cache.as_chunks_mut::<2>().0 {
        let t = freq_scale * theta;
        *cs = [math::cosf(t), math::sinf(t)];
        theta *= theta_scale;
    }
    Ok(())
}

/// RoPE, normal (LLaMA) mode: in each head of `head_dim` values of `x`,
/// rotates the adjacent pairs `(x[2i], x[2i+1])` for `2i < n_dims` by the
/// angles of `cache` (from [`rope_cache`]); values past `n_dims` stay.
pub fn rope_normal(x: &mut [f32], head_dim: usize, cache: &[f32]) -> Result<(), OpError> {
    let n_dims = cache.len();
    if head_dim == 0 || n_dims > head_dim || !n_dims.is_multiple_of(2) {
        return Err(OpError::BadParam(
            "rope needs an even n_dims <= head_dim > 0",
        ));
    }
    if !x.len().is_multiple_of(head_dim) {
        return Err(OpError::Length {
            what: "rope x (whole heads)",
            expected: x.len() / head_dim * head_dim,
            actual: x.len(),
        });
    }
    let cs = cache.as_chunks::<2>().0;
    for head in x.chunks_exact_mut(head_dim) {
        for (p, &[cos, sin]) in head[..n_dims].as_chunks_mut::<2>().0.iter_mut().zip(cs) {
            let [x0, x1] = *p;
            *p = [x0 * cos - x1 * sin, x0 * sin + x1 * cos];
        }
    }
    Ok(())
}

/// Softmax of `x * scale`, in place, as ggml_compute_forward_soft_max_f32:
/// subtract the max, `expf`, sum in f64, multiply by `(float)(1.0 / sum)`.
/// Masked (-inf) positions contribute exactly 0, so attention may pass only
/// the unmasked prefix and get the same bits. (Scalar on every CPU: ggml's
/// AVX2 softmax takes its vector expf only for whole groups of 8 of its
/// padded KV length, so matching llama.cpp's bits needs the scalar one.)
pub fn soft_max(x: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in x.iter_mut() {
        *v *= scale;
        max = if max > *v { max } else { *v };
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = math::expf(*v - max);
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SiLU as ggml's scalar `ggml_silu_f32`: `x / (1 + expf(-x))`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + math::expf(-x))
}

/// SiLU in place: ggml's vector `ggml_v_silu` on AVX2, else [`silu`].
pub fn silu_in_place(x: &mut [f32]) {
    silu_in_place_isa(quant::isa(), x)
}

/// [`silu_in_place`] on `isa` (scalar if this CPU lacks it).
pub fn silu_in_place_isa(isa: Isa, x: &mut [f32]) {
    if !quant::silu_simd(isa, x) {
        for v in x {
            *v = silu(*v);
        }
    }
}

/// SwiGLU for the LLaMA FFN, in place: `gate[i] = silu(gate[i]) * up[i]`
/// (ggml_vec_swiglu_f32; same bits as [`silu_in_place`] then a multiply).
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) -> Result<(), OpError> {
    swiglu_in_place_isa(quant::isa(), gate, up)
}

/// [`swiglu_in_place`] on `isa` (scalar if this CPU lacks it).
pub fn swiglu_in_place_isa(isa: Isa, gate: &mut [f32], up: &[f32]) -> Result<(), OpError> {
    check_len("swiglu up", gate.len(), up.len())?;
    if !quant::swiglu_simd(isa, gate, up) {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = silu(*g) * u;
        }
    }
    Ok(())
}
