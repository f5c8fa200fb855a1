//! The API the model calls: dequantize a row, quantize activations, and
//! multiply a range of weight rows with one or several activation vectors.
//!
//! Shapes are checked on every call (a few integer operations) so no kernel
//! ever sees a short buffer. Nothing here allocates: the caller owns every
//! buffer, sized with [`GgmlType::row_bytes`] and [`act_row_bytes`].

use core::ops::Range;

use half::f16;

use super::cpu::{self, Isa};
use super::Layout;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx2_x8, avx512};
use super::{q4_k_x8, q6_k_x8, x8};
use super::{
    ActFormat, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, BlockQ8_0, Format, GgmlType, QuantError,
    WeightFormat,
};

/// Kernels for one weight type.
#[derive(Clone, Copy)]
struct RowKernels {
    act: GgmlType,
    vec_dot: DotFn,
    /// Many rows x many activation rows (see `rows_with`); None: loop
    /// over `vec_dot`.
    rows: Option<RowsFn>,
}

type RowsFn = fn(&[u8], usize, &[u8], usize, usize, &mut [f32]);
type DotFn = fn(&[u8], &[u8]) -> f32;

const fn kernels_of<W: WeightFormat>() -> RowKernels {
    RowKernels {
        act: <W::Act as Format>::TYPE,
        vec_dot: W::vec_dot,
        rows: None,
    }
}

/// `out[b * n_rows + i] = dot(row i of w, activation row b)` by `dot`, where
/// `n_rows = w.len() / rb`: token-major, so each token's outputs are one
/// contiguous run the caller can copy whole.
pub(super) fn rows_with(
    dot: fn(&[u8], &[u8]) -> f32,
    w: &[u8],
    rb: usize,
    acts: &[u8],
    ab: usize,
    n_batch: usize,
    out: &mut [f32],
) {
    if rb == 0 || ab == 0 || n_batch == 0 || w.len() < rb {
        return;
    }
    let n_rows = w.len() / rb;
    for (i, row) in w.chunks_exact(rb).enumerate() {
        for (o, a) in out.chunks_exact_mut(n_rows).zip(acts.chunks_exact(ab)) {
            o[i] = dot(row, a);
        }
    }
}

/// The one dispatch point for dot-product kernels: the scalar reference, or
/// the AVX2 versions (or their AVX-512 build) when `isa` asks for them and
/// the CPU has them (`usable`).
fn row_kernels(ty: GgmlType, isa: Isa) -> Result<RowKernels, QuantError> {
    #[cfg(target_arch = "x86_64")]
    if let isa @ (Isa::Avx2 | Isa::Avx512) = cpu::usable(isa) {
        // The AVX-512 build differs only in its multi-token row kernels.
        let wide = isa == Isa::Avx512;
        let (vec_dot, rows): (DotFn, RowsFn) = match ty {
            GgmlType::F32 => (
                avx2::f32s,
                if wide {
                    avx2::f32_rows_512
                } else {
                    avx2::f32_rows
                },
            ),
            GgmlType::F16 => (
                avx2::f16s,
                if wide {
                    avx2::f16_rows_512
                } else {
                    avx2::f16_rows
                },
            ),
            GgmlType::Q8_0 => (
                avx2::q8_0,
                if wide {
                    avx2::q8_0_rows_512
                } else {
                    avx2::q8_0_rows
                },
            ),
            GgmlType::Q4K => (
                avx2::q4k,
                if wide {
                    avx2::q4k_rows_512
                } else {
                    avx2::q4k_rows
                },
            ),
            GgmlType::Q5K => (
                avx2::q5k,
                if wide {
                    avx2::q5k_rows_512
                } else {
                    avx2::q5k_rows
                },
            ),
            GgmlType::Q6K => (
                avx2::q6k,
                if wide {
                    avx2::q6k_rows_512
                } else {
                    avx2::q6k_rows
                },
            ),
            GgmlType::Q8K => return row_kernels(ty, Isa::Scalar),
        };
        return Ok(RowKernels {
            act: row_kernels(ty, Isa::Scalar)?.act,
            vec_dot,
            rows: Some(rows),
        });
    }
    let _ = isa;
    Ok(match ty {
        GgmlType::F32 => kernels_of::<f32>(),
        GgmlType::F16 => kernels_of::<f16>(),
        GgmlType::Q8_0 => kernels_of::<BlockQ8_0>(),
        GgmlType::Q4K => kernels_of::<BlockQ4K>(),
        GgmlType::Q5K => kernels_of::<BlockQ5K>(),
        GgmlType::Q6K => kernels_of::<BlockQ6K>(),
        GgmlType::Q8K => {
            return Err(QuantError::Unsupported {
                ty,
                op: "matmul weights",
            })
        }
    })
}

fn dequantize_kernel(ty: GgmlType) -> fn(&[u8], &mut [f32]) {
    match ty {
        GgmlType::F32 => <f32 as Format>::dequantize,
        GgmlType::F16 => <f16 as Format>::dequantize,
        GgmlType::Q8_0 => BlockQ8_0::dequantize,
        GgmlType::Q4K => BlockQ4K::dequantize,
        GgmlType::Q5K => BlockQ5K::dequantize,
        GgmlType::Q6K => BlockQ6K::dequantize,
        GgmlType::Q8K => BlockQ8K::dequantize,
    }
}

/// Activation quantizers, by activation type (every `act` of `row_kernels`).
/// The AVX2 ones give the same bytes as the scalar reference.
fn act_quantizer(act: GgmlType, isa: Isa) -> fn(&[f32], &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if cpu::usable(isa).has_avx2() {
        match act {
            GgmlType::Q8_0 => return avx2::quant_q8_0,
            GgmlType::Q8K => return avx2::quant_q8k,
            GgmlType::F16 => return avx2::quant_f16,
            _ => {}
        }
    }
    let _ = isa;
    match act {
        GgmlType::F16 => <f16 as ActFormat>::quantize,
        GgmlType::Q8_0 => BlockQ8_0::quantize_row,
        GgmlType::Q8K => BlockQ8K::quantize_row,
        _ => <f32 as ActFormat>::quantize,
    }
}

// Inherent shims so the fn-pointer table reads cleanly.
impl BlockQ8_0 {
    fn quantize_row(x: &[f32], out: &mut [u8]) {
        <Self as ActFormat>::quantize(x, out)
    }
}
impl BlockQ8K {
    fn quantize_row(x: &[f32], out: &mut [u8]) {
        <Self as ActFormat>::quantize(x, out)
    }
}

/// Bytes of a row of `n` values of `ty`, as a usize.
fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    if !n.is_multiple_of(ty.block_len()) {
        return Err(QuantError::PartialBlock { ty, n });
    }
    (n / ty.block_len())
        .checked_mul(ty.block_bytes())
        .ok_or(QuantError::Overflow)
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), QuantError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantError::Length {
            what,
            expected,
            actual,
        })
    }
}

/// Decodes one row of `ty` from `src` into `dst`; `dst.len()` is the number
/// of values and `src` must hold exactly their bytes.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(
        "dequantize_row src bytes",
        row_bytes(ty, dst.len())?,
        src.len(),
    )?;
    dequantize_kernel(ty)(src, dst);
    Ok(())
}

/// The type activations are quantized to for weights of type `wty`
/// (ggml's `vec_dot_type`): Q8_K for the k-quants, Q8_0 for Q8_0, F16 for
/// F16, F32 for F32.
pub fn act_type(wty: GgmlType) -> Result<GgmlType, QuantError> {
    Ok(row_kernels(wty, Isa::Scalar)?.act)
}

/// Bytes of one activation vector of `n_cols` values quantized for `wty`.
pub fn act_row_bytes(wty: GgmlType, n_cols: usize) -> Result<usize, QuantError> {
    let act = act_type(wty)?;
    row_bytes(act, n_cols).map_err(|_| QuantError::PartialBlock { ty: wty, n: n_cols })
}

/// Quantizes one activation vector `x` for multiplication with weights of
/// type `wty`. `out.len()` must be `act_row_bytes(wty, x.len())`.
pub fn quantize_acts(wty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    quantize_acts_isa(cpu::isa(), wty, x, out)
}

/// [`quantize_acts`] on the kernels of `isa` (the scalar ones if this CPU
/// lacks it). The bytes are the same for every `isa`.
pub fn quantize_acts_isa(
    isa: Isa,
    wty: GgmlType,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), QuantError> {
    check_len(
        "quantize_acts out bytes",
        act_row_bytes(wty, x.len())?,
        out.len(),
    )?;
    act_quantizer(act_type(wty)?, isa)(x, out);
    Ok(())
}

/// Quantizes `x.len() / n_cols` activation vectors stored back to back;
/// `out` receives them back to back, `act_row_bytes(wty, n_cols)` each.
pub fn quantize_acts_batch(
    wty: GgmlType,
    x: &[f32],
    n_cols: usize,
    out: &mut [u8],
) -> Result<(), QuantError> {
    let ab = act_row_bytes(wty, n_cols)?;
    if n_cols == 0 || !x.len().is_multiple_of(n_cols) {
        return Err(QuantError::Length {
            what: "quantize_acts_batch x",
            expected: n_cols,
            actual: x.len(),
        });
    }
    let n_batch = x.len() / n_cols;
    check_len(
        "quantize_acts_batch out bytes",
        n_batch.checked_mul(ab).ok_or(QuantError::Overflow)?,
        out.len(),
    )?;
    let quantize = act_quantizer(act_type(wty)?, cpu::isa());
    for (x, o) in x.chunks_exact(n_cols).zip(out.chunks_exact_mut(ab)) {
        quantize(x, o);
    }
    Ok(())
}

/// Dot product of one weight row (`n_cols` values of `wty`) with one
/// activation vector quantized by [`quantize_acts`].
pub fn vec_dot(wty: GgmlType, n_cols: usize, w_row: &[u8], acts: &[u8]) -> Result<f32, QuantError> {
    vec_dot_isa(cpu::isa(), wty, n_cols, w_row, acts)
}

/// [`vec_dot`] on the kernels of `isa` (the scalar ones if this CPU lacks
/// it).
pub fn vec_dot_isa(
    isa: Isa,
    wty: GgmlType,
    n_cols: usize,
    w_row: &[u8],
    acts: &[u8],
) -> Result<f32, QuantError> {
    let k = row_kernels(wty, isa)?;
    check_len(
        "vec_dot weight row bytes",
        row_bytes(wty, n_cols)?,
        w_row.len(),
    )?;
    check_len(
        "vec_dot acts bytes",
        act_row_bytes(wty, n_cols)?,
        acts.len(),
    )?;
    Ok((k.vec_dot)(w_row, acts))
}

/// `out[i] = dot(row rows.start + i of w, acts)`.
///
/// `w` is the whole matrix: rows of `n_cols` values of `wty` back to back.
/// Computing a range of rows lets the caller split a matmul into pieces
/// (CPUs, short FPU sections); every piece gives the same bits as the whole.
pub fn matvec_rows(
    w: &[u8],
    wty: GgmlType,
    n_cols: usize,
    rows: Range<usize>,
    acts: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    matmul_rows(w, wty, n_cols, rows, acts, 1, out)
}

/// Several activation vectors at once (prefill): `acts` holds `n_batch`
/// vectors back to back, each `act_row_bytes(wty, n_cols)` bytes, and
/// `out[b * rows.len() + i] = dot(row rows.start + i, vector b)`: each
/// weight row is read once for the whole batch, and the results come token
/// by token (token-major), each a contiguous run. Bits equal `n_batch` calls
/// of [`matvec_rows`].
pub fn matmul_rows(
    w: &[u8],
    wty: GgmlType,
    n_cols: usize,
    rows: Range<usize>,
    acts: &[u8],
    n_batch: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    matmul_rows_isa(cpu::isa(), w, wty, n_cols, rows, acts, n_batch, out)
}

/// [`matmul_rows`] on the kernels of `isa` (the scalar ones if this CPU
/// lacks it).
#[allow(clippy::too_many_arguments)]
pub fn matmul_rows_isa(
    isa: Isa,
    w: &[u8],
    wty: GgmlType,
    n_cols: usize,
    rows: Range<usize>,
    acts: &[u8],
    n_batch: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    matmul_rows_with(isa, Layout::Rows, w, wty, n_cols, rows, acts, n_batch, out)
}

/// The level to run [`matmul_rows_with`] at for `wty` in `layout` on this
/// CPU: [`cpu::isa`], except Q6_K x8 on Intel, where the 256-bit kernel
/// is faster (512-bit integer work there issues on two ports, not three;
/// measured in docs/speed.md). Both give the x8 reference's bits.
pub fn fastest_isa(wty: GgmlType, layout: Layout) -> Isa {
    match cpu::isa() {
        Isa::Avx512 if layout == Layout::X8 && wty == GgmlType::Q6K && cpu::intel() => Isa::Avx2,
        isa => isa,
    }
}

/// [`matmul_rows_isa`] for a matrix in `layout`: row-major, or repacked by
/// [`repack_x8`] (then `rows` must start and end on a multiple of 8, and
/// results differ from the row-major kernels' only in float rounding; the
/// AVX-512 kernels run at that level, the layouts' scalar references
/// below it).
#[allow(clippy::too_many_arguments)]
pub fn matmul_rows_with(
    isa: Isa,
    layout: Layout,
    w: &[u8],
    wty: GgmlType,
    n_cols: usize,
    rows: Range<usize>,
    acts: &[u8],
    n_batch: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    let (rb, ab) = check_matmul(w.len(), wty, n_cols, &rows, acts.len(), n_batch, out.len())?;
    let f = match layout {
        Layout::Rows => {
            let k = row_kernels(wty, isa)?;
            k.rows.map_or(Kernel::Dot(k.vec_dot), Kernel::Rows)
        }
        Layout::X8 => {
            let x8 = x8::ROWS;
            let n_rows = w.len().checked_div(rb).unwrap_or(0);
            if !n_rows.is_multiple_of(x8)
                || !rows.start.is_multiple_of(x8)
                || !rows.end.is_multiple_of(x8)
            {
                return Err(QuantError::RowRange {
                    start: rows.start,
                    end: rows.end,
                    n_rows,
                });
            }
            Kernel::Rows(x8_kernel(wty, isa)?)
        }
    };
    if n_batch == 0 {
        return Ok(());
    }
    let w = weight_rows(w, rb, &rows)?;
    match f {
        Kernel::Rows(f) => f(w, rb, acts, ab, n_batch, out),
        Kernel::Dot(dot) => rows_with(dot, w, rb, acts, ab, n_batch, out),
    }
    Ok(())
}

/// What multiplies a range of rows: a row kernel, or a dot product looped.
enum Kernel {
    Rows(RowsFn),
    Dot(DotFn),
}

/// The row kernel of the x8 layout of `wty` at `isa`.
fn x8_kernel(wty: GgmlType, isa: Isa) -> Result<RowsFn, QuantError> {
    #[cfg(target_arch = "x86_64")]
    match (cpu::usable(isa), wty) {
        (Isa::Avx512, GgmlType::Q4K) => return Ok(avx512::q4k_x8_rows),
        (Isa::Avx512, GgmlType::Q6K) => return Ok(avx512::q6k_x8_rows),
        (Isa::Avx2, GgmlType::Q4K) => return Ok(avx2_x8::q4k_x8_rows),
        (Isa::Avx2, GgmlType::Q6K) => return Ok(avx2_x8::q6k_x8_rows),
        _ => {}
    }
    let _ = isa;
    match wty {
        GgmlType::Q4K => Ok(q4_k_x8::rows_scalar),
        GgmlType::Q6K => Ok(q6_k_x8::rows_scalar),
        ty => Err(QuantError::Unsupported {
            ty,
            op: "x8 layout",
        }),
    }
}

/// Checks a matmul's shapes (see [`matmul_rows`]); returns the bytes of a
/// weight row and of an activation row.
fn check_matmul(
    w_len: usize,
    wty: GgmlType,
    n_cols: usize,
    rows: &Range<usize>,
    acts_len: usize,
    n_batch: usize,
    out_len: usize,
) -> Result<(usize, usize), QuantError> {
    let rb = row_bytes(wty, n_cols)?;
    let ab = act_row_bytes(wty, n_cols)?;
    if rb == 0 {
        // n_cols == 0: a matrix of empty rows has no row count.
        return Err(QuantError::Length {
            what: "matmul n_cols",
            expected: 1,
            actual: 0,
        });
    }
    if !w_len.is_multiple_of(rb) {
        return Err(QuantError::Length {
            what: "matmul weight bytes (whole rows)",
            expected: w_len / rb * rb,
            actual: w_len,
        });
    }
    let n_rows = w_len / rb;
    if rows.start > rows.end || rows.end > n_rows {
        return Err(QuantError::RowRange {
            start: rows.start,
            end: rows.end,
            n_rows,
        });
    }
    check_len(
        "matmul acts bytes",
        n_batch.checked_mul(ab).ok_or(QuantError::Overflow)?,
        acts_len,
    )?;
    let n_out = rows
        .len()
        .checked_mul(n_batch)
        .ok_or(QuantError::Overflow)?;
    check_len("matmul out", n_out, out_len)?;
    Ok((rb, ab))
}

/// Rows `rows` of a matrix of `rb`-byte rows (checked by `check_matmul`).
fn weight_rows<'w>(w: &'w [u8], rb: usize, rows: &Range<usize>) -> Result<&'w [u8], QuantError> {
    w.get(rows.start * rb..rows.end * rb)
        .ok_or(QuantError::Overflow)
}

/// Repacks a row-major matrix of `ty` (Q4_K or Q6_K), `rows` (a multiple
/// of 8) rows of `n_cols` values, in place into its x8 layout
/// (`q4_k_x8`, `q6_k_x8`); `tmp` holds 8 rows.
pub fn repack_x8(
    ty: GgmlType,
    data: &mut [u8],
    rows: usize,
    n_cols: usize,
    tmp: &mut [u8],
) -> Result<(), QuantError> {
    match ty {
        GgmlType::Q4K => q4_k_x8::repack(data, rows, n_cols, tmp),
        GgmlType::Q6K => q6_k_x8::repack(data, rows, n_cols, tmp),
        ty => Err(QuantError::Unsupported {
            ty,
            op: "x8 layout",
        }),
    }
}
