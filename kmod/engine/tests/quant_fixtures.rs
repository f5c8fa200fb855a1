//! The quant kernels against reference vectors made by ggml's own code
//! (tests/fixtures/make-quant-vectors.py: libgguf = ggml's quantizer, gguf's
//! numpy dequantization = ggml's, and a verified port of ggml's Q8_K
//! quantizer).

use std::path::PathBuf;

use llamux_engine::quant::{
    self, act_row_bytes, dequantize_row, quantize_acts, vec_dot, BlockQ4K, BlockQ5K, BlockQ6K,
    BlockQ8K, BlockQ8_0, GgmlType,
};

struct Fixtures {
    dir: PathBuf,
    n_rows: usize,
    n_cols: usize,
}

impl Fixtures {
    fn load() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quant");
        let meta =
            std::fs::read_to_string(dir.join("meta.txt")).expect("tests/fixtures/quant/meta.txt");
        let field = |k: &str| -> usize {
            let line = meta.lines().find(|l| l.starts_with(k)).expect(k);
            line[k.len()..].trim().parse().unwrap()
        };
        Fixtures {
            n_rows: field("n_rows "),
            n_cols: field("n_cols "),
            dir,
        }
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let b = self.bytes(name);
        assert_eq!(b.len(), self.n_rows * self.n_cols * 4, "{name}");
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Rows of `name` holding `ty` data, checked to be whole rows.
    fn rows(&self, name: &str, ty: GgmlType) -> Vec<Vec<u8>> {
        let rb = ty.row_bytes(self.n_cols as u64).unwrap() as usize;
        let b = self.bytes(name);
        assert_eq!(b.len(), rb * self.n_rows, "{name}");
        b.chunks_exact(rb).map(<[u8]>::to_vec).collect()
    }
}

const WEIGHT_TYPES: [(GgmlType, &str); 5] = [
    (GgmlType::Q4K, "q4_k"),
    (GgmlType::Q5K, "q5_k"),
    (GgmlType::Q6K, "q6_k"),
    (GgmlType::Q8_0, "q8_0"),
    (GgmlType::F16, "f16"),
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn dequantize_is_bit_identical_to_ggml() {
    let fx = Fixtures::load();
    for (ty, name) in WEIGHT_TYPES {
        let want = fx.f32s(&format!("w.{name}.f32"));
        for (r, row) in fx.rows(&format!("w.{name}"), ty).iter().enumerate() {
            let mut got = vec![f32::NAN; fx.n_cols];
            dequantize_row(ty, row, &mut got).unwrap();
            let want = &want[r * fx.n_cols..(r + 1) * fx.n_cols];
            assert_eq!(bits(&got), bits(want), "{name} row {r}");
        }
    }
    // F32 is the identity on its bytes.
    let w = fx.f32s("w.f32");
    let mut got = vec![0f32; w.len()];
    dequantize_row(GgmlType::F32, &fx.bytes("w.f32"), &mut got).unwrap();
    assert_eq!(bits(&got), bits(&w));
}

#[test]
fn activation_quantizers_are_bit_identical_to_ggml() {
    let fx = Fixtures::load();
    for (src, wty, name) in [
        ("x", GgmlType::Q4K, "x.q8_k"), // Q8_K, via any k-quant weight type
        ("w", GgmlType::Q6K, "w.q8_k"),
        ("x", GgmlType::Q8_0, "x.q8_0"),
        ("x", GgmlType::F16, "x.f16"),
        ("x", GgmlType::F32, "x.f32"),
    ] {
        let x = fx.f32s(&format!("{src}.f32"));
        let want = fx.bytes(name);
        let ab = act_row_bytes(wty, fx.n_cols).unwrap();
        assert_eq!(want.len(), ab * fx.n_rows, "{name}");
        for r in 0..fx.n_rows {
            let mut got = vec![0xAAu8; ab];
            quantize_acts(wty, &x[r * fx.n_cols..(r + 1) * fx.n_cols], &mut got).unwrap();
            assert_eq!(got, want[r * ab..(r + 1) * ab], "{name} row {r}");
        }
    }
}

#[test]
fn block_types_round_trip_fixture_bytes() {
    let fx = Fixtures::load();
    let b = fx.bytes("w.q4_k");
    for c in b.as_chunks::<144>().0 {
        assert_eq!(&BlockQ4K::from_bytes(c).to_bytes(), c);
    }
    let b = fx.bytes("w.q5_k");
    for c in b.as_chunks::<176>().0 {
        assert_eq!(&BlockQ5K::from_bytes(c).to_bytes(), c);
    }
    let b = fx.bytes("w.q6_k");
    for c in b.as_chunks::<210>().0 {
        assert_eq!(&BlockQ6K::from_bytes(c).to_bytes(), c);
    }
    let b = fx.bytes("w.q8_0");
    for c in b.as_chunks::<34>().0 {
        assert_eq!(&BlockQ8_0::from_bytes(c).to_bytes(), c);
    }
    let b = fx.bytes("x.q8_k");
    for c in b.as_chunks::<292>().0 {
        let blk = BlockQ8K::from_bytes(c);
        assert_eq!(&blk.to_bytes(), c);
        // bsums really are the sums of 16 quants.
        for (j, s) in blk.bsums.iter().enumerate() {
            assert_eq!(
                *s as i32,
                blk.qs[16 * j..16 * j + 16]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>()
            );
        }
    }
}

/// Largest |x - dequant(quant(x))| over one activation block, per weight
/// type's activation format, as a multiple of what the format guarantees:
/// Q8_K: |d|/2 (d is exact f32); Q8_0: |d16| * (1/2 + 127 * 2^-11) (d is
/// rounded to f16 after the quants are chosen, and may underflow):
/// |d16| (1/2 + 128 * 2^-11) + 128 * 2^-25; F16: 2^-11 |x| + 2^-25; F32: 0.
/// Returns the bound for every value of the row.
fn act_error_bound(wty: GgmlType, x: &[f32], acts: &[u8]) -> Vec<f64> {
    match wty {
        GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => acts
            .as_chunks::<292>()
            .0
            .iter()
            .flat_map(|b| {
                let d = BlockQ8K::from_bytes(b).d.abs() as f64;
                std::iter::repeat_n(d * (0.5 + 1e-6), 256)
            })
            .collect(),
        GgmlType::Q8_0 => acts
            .as_chunks::<34>()
            .0
            .iter()
            .flat_map(|b| {
                let d = BlockQ8_0::from_bytes(b).d.to_f64().abs();
                std::iter::repeat_n(d * (0.5 + 128.0 / 2048.0) + 128.0 * 2f64.powi(-25), 32)
            })
            .collect(),
        GgmlType::F16 => x.iter().map(|v| v.abs() as f64 / 2048.0 + 3e-8).collect(),
        _ => vec![0.0; x.len()],
    }
}

/// Every weight row against every activation row, for every weight type:
///  (a) against the exact sum of the dequantized operands, the kernel may
///      only differ by float rounding: |dot - sum w*a| <= 1e-5 * sum |w*a|;
///  (b) against dequantize-then-dot with the original activations x, it may
///      also differ by the activation quantization, bounded value by value:
///      |dot - sum w*x| <= sum |w_i| * bound_i + 1e-5 * sum |w*x|,
///      and on plain rows (no outliers, no underflow) also
///      |dot - sum w*x| <= plain_tol * sum |w*x|.
/// Sums are in f64. Prints the largest errors seen (run with --nocapture).
/// Rows of the plain distributions (normal, weights-0.02, uniform; see
/// meta.txt: x rows are the kinds rotated by 3).
const PLAIN_W_ROWS: [usize; 3] = [0, 1, 2];
const PLAIN_X_ROWS: [usize; 3] = [15, 16, 17];

/// Stated tolerance of dot vs dequantize-then-f32-dot on plain rows,
/// relative to sum |w*x| (observed: about 7e-4, 5e-4, 2e-5, 4e-9).
fn plain_tol(wty: GgmlType) -> f64 {
    match wty {
        GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K | GgmlType::Q8_0 => 2e-3,
        GgmlType::F16 => 1e-4,
        _ => 1e-6,
    }
}

#[test]
fn dot_products_match_dequantized_sums() {
    let fx = Fixtures::load();
    let n = fx.n_cols;
    let x = fx.f32s("x.f32");
    let mut all = WEIGHT_TYPES.to_vec();
    all.push((GgmlType::F32, "f32"));
    for (wty, name) in all {
        let w_rows = fx.rows(&format!("w.{name}"), wty);
        let w_deq = if wty == GgmlType::F32 {
            fx.f32s("w.f32")
        } else {
            fx.f32s(&format!("w.{name}.f32"))
        };
        let ab = act_row_bytes(wty, n).unwrap();
        let (mut worst_a, mut worst_b, mut worst_rel, mut worst_plain) = (0f64, 0f64, 0f64, 0f64);
        for xr in 0..fx.n_rows {
            let xv = &x[xr * n..(xr + 1) * n];
            let mut acts = vec![0u8; ab];
            quantize_acts(wty, xv, &mut acts).unwrap();
            let act_ty = quant::act_type(wty).unwrap();
            let mut a_deq = vec![0f32; n];
            dequantize_row(act_ty, &acts, &mut a_deq).unwrap();
            let bound = act_error_bound(wty, xv, &acts);
            for (wr, w_row) in w_rows.iter().enumerate() {
                let wv = &w_deq[wr * n..(wr + 1) * n];
                let got = vec_dot(wty, n, w_row, &acts).unwrap() as f64;
                let (mut ex_a, mut abs_a, mut ex_b, mut abs_b, mut qerr) =
                    (0f64, 0f64, 0f64, 0f64, 0f64);
                for i in 0..n {
                    let (w, a, xi) = (wv[i] as f64, a_deq[i] as f64, xv[i] as f64);
                    ex_a += w * a;
                    abs_a += (w * a).abs();
                    ex_b += w * xi;
                    abs_b += (w * xi).abs();
                    qerr += w.abs() * bound[i];
                }
                let (err_a, err_b) = ((got - ex_a).abs(), (got - ex_b).abs());
                assert!(
                    err_a <= 1e-5 * abs_a,
                    "{name} w{wr} x{xr}: dot {got} vs exact {ex_a}: err {err_a:e} > 1e-5 * {abs_a:e}"
                );
                assert!(
                    err_b <= qerr + 1e-5 * abs_b,
                    "{name} w{wr} x{xr}: dot {got} vs f32 dot {ex_b}: err {err_b:e} > {qerr:e} + 1e-5 * {abs_b:e}"
                );
                if abs_a > 0.0 {
                    worst_a = worst_a.max(err_a / abs_a);
                }
                if abs_b > 0.0 {
                    worst_b = worst_b.max(err_b / abs_b);
                    if PLAIN_X_ROWS.contains(&xr) && PLAIN_W_ROWS.contains(&wr) {
                        worst_plain = worst_plain.max(err_b / abs_b);
                        assert!(
                            err_b <= plain_tol(wty) * abs_b,
                            "{name} w{wr} x{xr}: err {err_b:e} > {} * {abs_b:e}",
                            plain_tol(wty)
                        );
                    }
                    if qerr > 0.0 {
                        worst_rel = worst_rel.max(err_b / qerr);
                    }
                }
            }
        }
        println!(
            "{name}: max |dot - exact|/sum|w*a| = {worst_a:.2e}; max |dot - f32 dot|/sum|w*x| = {worst_b:.2e} \
             ({:.0}% of the quantization bound at most), {worst_plain:.2e} on plain rows",
            worst_rel * 100.0
        );
    }
}

/// The scalar kernels give the bits of ggml's scalar (`_generic`, no FMA
/// contraction) dot products, for every weight row x activation row.
#[test]
fn dot_products_are_bit_identical_to_ggml_scalar() {
    let fx = Fixtures::load();
    let n = fx.n_cols;
    let x = fx.f32s("x.f32");
    let mut all = WEIGHT_TYPES.to_vec();
    all.push((GgmlType::F32, "f32"));
    for (wty, name) in all {
        let w_rows = if wty == GgmlType::F32 {
            fx.bytes("w.f32")
                .chunks_exact(4 * n)
                .map(<[u8]>::to_vec)
                .collect()
        } else {
            fx.rows(&format!("w.{name}"), wty)
        };
        let want = fx.bytes(&format!("dot.{name}.f32"));
        assert_eq!(want.len(), fx.n_rows * fx.n_rows * 4);
        let ab = act_row_bytes(wty, n).unwrap();
        for xr in 0..fx.n_rows {
            let mut acts = vec![0u8; ab];
            quantize_acts(wty, &x[xr * n..(xr + 1) * n], &mut acts).unwrap();
            for (wr, w_row) in w_rows.iter().enumerate() {
                // The scalar reference; SIMD kernels are held to it in simd.rs.
                let got = quant::vec_dot_isa(quant::Isa::Scalar, wty, n, w_row, &acts).unwrap();
                let at = 4 * (wr * fx.n_rows + xr);
                let want = f32::from_le_bytes(want[at..at + 4].try_into().unwrap());
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{name} w{wr} x{xr}: {got} vs {want}"
                );
            }
        }
    }
}
