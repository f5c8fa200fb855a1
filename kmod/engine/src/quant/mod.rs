//! Tensor element types of GGUF files, their block layouts and kernels.
//!
//! One file per format holds its `#[repr(C)]` block type (the exact ggml
//! layout, size checked at compile time) and its scalar reference kernels,
//! written to follow ggml's scalar code operation by operation so results
//! match ggml's numerics. `matmul` holds the API the model calls and the one
//! dispatch point (`row_kernels`) where the kernels of the instruction set
//! chosen by `cpu` (AVX2 kernels in `avx2`, or the scalar reference) are
//! picked. `q4_k_x8` and `q6_k_x8` are a second layout for Q4_K and Q6_K
//! matrices (8 rows interleaved, repacked at load) with their own kernels
//! (`avx2_x8`, `avx512`, and scalar references beside the layouts).
//!
//! Data arrives as `&[u8]` (GGUF tensors are only 32-byte aligned), so blocks
//! are decoded with `from_le_bytes`: no alignment assumptions, and no unsafe
//! in the scalar kernels. The AVX2 kernels (`avx2`) use unaligned loads from
//! bounds-checked slices; `cpu` detects the CPU once and `set_simd(false)`
//! forces the scalar reference.

use core::fmt;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_x8;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod cpu;
mod float;
mod matmul;
mod q4_k;
pub mod q4_k_x8;
mod q5_k;
mod q6_k;
pub mod q6_k_x8;
mod q8_0;
mod q8_k;
mod vec;
mod x8;

pub use cpu::{isa, isa_available, set_max_isa, set_simd, Isa};
pub use matmul::{
    act_row_bytes, act_type, dequantize_row, fastest_isa, matmul_rows, matmul_rows_isa,
    matmul_rows_with, matvec_rows, quantize_acts, quantize_acts_batch, quantize_acts_isa,
    repack_x8, vec_dot, vec_dot_isa,
};
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_k::BlockQ8K;
pub use vec::{axpy_f16, axpy_f32, dot_f16, dot_f32, f32_to_f16, silu_simd, swiglu_simd};

/// ggml's tensor type ids, as stored in GGUF tensor infos.
/// Only types the engine can compute with get a variant; others are
/// rejected by the reader with `GgufError::UnsupportedType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
}

/// How a weight matrix's bytes are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Rows back to back, as in a GGUF file.
    Rows,
    /// Repacked 8 rows at a time (`q4_k_x8`, `q6_k_x8`): Q4_K or Q6_K.
    X8,
}

/// Values per k-quant super-block.
pub const QK_K: usize = 256;
/// Values per Q8_0 block.
pub const QK8_0: usize = 32;

impl GgmlType {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::F32,
            1 => Self::F16,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
        }
    }

    /// Values per block.
    pub const fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q8_0 => QK8_0,
            Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => QK_K,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
        }
    }

    /// Bytes of a row of `n` values, or None when `n` is not a whole number
    /// of blocks or the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !n.is_multiple_of(bl) {
            return None;
        }
        (n / bl).checked_mul(self.block_bytes() as u64)
    }
}

/// Why a quant kernel refused its arguments. Nothing here panics on input:
/// every length is checked against the shapes before any work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// `ty` cannot be used for `op` (Q8_K is only an activation format).
    Unsupported { ty: GgmlType, op: &'static str },
    /// `n` values are not a whole number of `ty` blocks.
    PartialBlock { ty: GgmlType, n: usize },
    /// A buffer's length is not what the shapes imply.
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// Rows `start..end` are not inside a matrix of `n_rows` rows.
    RowRange {
        start: usize,
        end: usize,
        n_rows: usize,
    },
    /// A size computed from the shapes does not fit in `usize`.
    Overflow,
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unsupported { ty, op } => write!(f, "{op} is not supported for {}", ty.name()),
            Self::PartialBlock { ty, n } => {
                write!(
                    f,
                    "{n} values are not a whole number of {} blocks ({} values each)",
                    ty.name(),
                    ty.block_len()
                )
            }
            Self::Length {
                what,
                expected,
                actual,
            } => {
                write!(f, "{what}: expected {expected} elements, got {actual}")
            }
            Self::RowRange { start, end, n_rows } => {
                write!(
                    f,
                    "rows {start}..{end} are not inside a matrix of {n_rows} rows"
                )
            }
            Self::Overflow => write!(f, "size overflow"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for QuantError {}

/// A tensor element format, row-level scalar reference kernels.
///
/// Implemented by the block types (and by `f32` and `half::f16` for the plain
/// float formats). Callers pass whole blocks; the public functions of this
/// module check lengths before calling these.
pub trait Format {
    const TYPE: GgmlType;
    /// Values per block.
    const BLOCK_LEN: usize = Self::TYPE.block_len();
    /// Bytes per block.
    const BLOCK_BYTES: usize = Self::TYPE.block_bytes();

    /// Decodes `src` (whole blocks) into `dst` (exactly their values).
    fn dequantize(src: &[u8], dst: &mut [f32]);
}

/// A format the engine multiplies weights in.
pub trait WeightFormat: Format {
    /// The format ggml quantizes activations to for this weight type
    /// (its `vec_dot_type`).
    type Act: ActFormat;

    /// Dot product of one weight row with one activation row holding the
    /// same number of values, in ggml's scalar accumulation order.
    fn vec_dot(w: &[u8], a: &[u8]) -> f32;
}

/// A format activations are converted to before a dot product.
pub trait ActFormat: Format {
    /// Encodes `x` (whole blocks) into `out` (exactly their bytes).
    fn quantize(x: &[f32], out: &mut [u8]);
}

/// Reads the little-endian IEEE half at `b[at..at + 2]`.
#[inline(always)]
fn f16_le(b: &[u8], at: usize) -> half::f16 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// ggml's `MAX(a, b)` macro (`a > b ? a : b`), kept for its NaN behaviour.
#[inline(always)]
fn max_c(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Unpacks the eight 6-bit scales and mins of a Q4_K/Q5_K super-block
/// (ggml's `get_scale_min_k4` for j = 0..8).
#[inline(always)]
fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
        m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
    (sc, m)
}
