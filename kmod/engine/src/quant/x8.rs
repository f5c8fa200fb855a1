//! What the row-group layouts (`q4_k_x8`, `q6_k_x8`) share: a matrix is
//! repacked in place 8 rows at a time, each block column of 8 blocks into
//! one group block of the same bytes, and the scalar reference loops over
//! row groups.

use super::{GgmlType, QuantError, QK_K};

/// Rows per group.
pub const ROWS: usize = 8;

/// Blocks per row of a `rows` x `cols` matrix of `ty` (`block` bytes per
/// block) in `len` bytes, with a `tmp` of `tmp_len` bytes: an error unless
/// the layout takes it.
fn check(
    ty: GgmlType,
    len: usize,
    rows: usize,
    cols: usize,
    tmp_len: usize,
) -> Result<usize, QuantError> {
    let (nb, block) = (cols / QK_K, ty.block_bytes());
    if !cols.is_multiple_of(QK_K) {
        return Err(QuantError::PartialBlock { ty, n: cols });
    }
    let length = |what, expected: usize, actual| {
        Err(QuantError::Length {
            what,
            expected,
            actual,
        })
    };
    if !rows.is_multiple_of(ROWS) {
        return length(
            "x8 rows (a multiple of 8)",
            rows.next_multiple_of(ROWS),
            rows,
        );
    }
    if len != rows * nb * block {
        return length("x8 matrix", rows * nb * block, len);
    }
    if tmp_len < ROWS * nb * block {
        return length("x8 scratch", ROWS * nb * block, tmp_len);
    }
    Ok(nb)
}

/// Repacks `data` in place: group block i of each 8-row slab is
/// `pack(slab, i)`, the slab's rows (`nb` blocks each) read from a copy in
/// `tmp`.
pub(super) fn repack<const G: usize>(
    ty: GgmlType,
    data: &mut [u8],
    rows: usize,
    cols: usize,
    tmp: &mut [u8],
    pack: impl Fn(&[u8], usize, usize, &mut [u8; G]),
) -> Result<(), QuantError> {
    let nb = check(ty, data.len(), rows, cols, tmp.len())?;
    let rb = nb * ty.block_bytes();
    // No columns: nothing to move (and no zero chunk size to panic on).
    let Some(sb) = rb.checked_mul(ROWS).filter(|&sb| sb != 0) else {
        return Ok(());
    };
    for slab in data.chunks_exact_mut(sb) {
        let tmp = &mut tmp[..sb];
        tmp.copy_from_slice(slab);
        for (i, dst) in slab.as_chunks_mut::<G>().0.iter_mut().enumerate() {
            pack(tmp, rb, i, dst);
        }
    }
    Ok(())
}

/// The inverse of [`repack`]: `unpack(group block, r, out)` writes row r's
/// block.
pub(super) fn unrepack<const G: usize>(
    ty: GgmlType,
    data: &mut [u8],
    rows: usize,
    cols: usize,
    tmp: &mut [u8],
    unpack: impl Fn(&[u8; G], usize, &mut [u8]),
) -> Result<(), QuantError> {
    let nb = check(ty, data.len(), rows, cols, tmp.len())?;
    let (block, rb) = (ty.block_bytes(), nb * ty.block_bytes());
    for slab in data.chunks_exact_mut(ROWS * rb) {
        let tmp = &mut tmp[..ROWS * rb];
        tmp.copy_from_slice(slab);
        for (i, g) in tmp.as_chunks::<G>().0.iter().enumerate() {
            for r in 0..ROWS {
                let o = r * rb + i * block;
                unpack(g, r, &mut slab[o..o + block]);
            }
        }
    }
    Ok(())
}

/// Row r's block `i` in a slab of 8 rows of `rb` bytes, `B` bytes a block.
pub(super) fn slab_block<const B: usize>(slab: &[u8], rb: usize, r: usize, i: usize) -> [u8; B] {
    let o = r * rb + i * B;
    slab.get(o..o + B)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; B])
}

/// `a * b + c` rounded once, as an FMA instruction does (the product of
/// two f32 is exact in f64; the sum rounds to f64 and then to f32, which
/// can differ from one rounding only in ties far below the tolerance the
/// kernels are tested with).
pub(super) fn fma(a: f32, b: f32, c: f32) -> f32 {
    (a as f64 * b as f64 + c as f64) as f32
}

/// The f16 at byte `o` of a group block, as f32.
pub(super) fn f16_at(g: &[u8], o: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([g[o], g[o + 1]])).to_f32()
}

/// `out[b * n_rows + r] = dot(row r, activation row b)` over an x8 matrix
/// of rows of `rb` (original) bytes, by `dot` (one row group, 8 results).
pub(super) fn rows_scalar(
    dot: fn(&[u8], &[u8], &mut [f32; ROWS]),
    w: &[u8],
    rb: usize,
    acts: &[u8],
    ab: usize,
    n_batch: usize,
    out: &mut [f32],
) {
    let Some(gb) = rb.checked_mul(ROWS).filter(|&gb| gb != 0 && ab != 0) else {
        return;
    };
    // Whole groups only: `w` is whole groups in every caller.
    let n_rows = w.len() / gb * ROWS;
    for (g, grp) in w.chunks_exact(gb).enumerate() {
        for (b, a) in acts.chunks_exact(ab).take(n_batch).enumerate() {
            let mut t = [0f32; ROWS];
            dot(grp, a, &mut t);
            if let Some(o) = out.get_mut(b * n_rows + g * ROWS..b * n_rows + (g + 1) * ROWS) {
                o.copy_from_slice(&t);
            }
        }
    }
}
