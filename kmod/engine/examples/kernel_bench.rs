//! Throughput of one matmul kernel on a random matrix, in weight GB/s:
//! `cargo run --release --example kernel_bench -- TYPE MiB BATCH [REPS [ISA]]`
//! (TYPE q4k|q6k|q5k|q8_0|f16, or q4kx8|q6kx8 repacked; MiB 1 fits the caches, 1024 streams from
//! memory; ISA scalar|avx2|avx512 caps the kernels, default the best).
//! `KB_COLS=n` sets the row length (default 5120). With `KB_FILE=path` the
//! matrix is written there and multiplied from a read-only shared mapping
//! of it (page cache, as `llamux --isa avx2` maps a model); without it
//! the matrix sits in anonymous huge pages, as `llamux` reads a model for
//! the AVX-512 kernels. `KB_THREADS=n` splits the
//! rows over n threads.
use llamux_engine::quant::{
    act_row_bytes, isa, matmul_rows, matmul_rows_with, quantize_acts_batch, repack_x8, set_max_isa,
    GgmlType, Isa, Layout,
};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let x8 = matches!(a.get(1).map(|s| s.as_str()), Some("q4kx8" | "q6kx8"));
    let ty = match a.get(1).map(|s| s.as_str()).unwrap_or("q4k") {
        "q6k" | "q6kx8" => GgmlType::Q6K,
        "q5k" => GgmlType::Q5K,
        "q8_0" => GgmlType::Q8_0,
        "f16" => GgmlType::F16,
        _ => GgmlType::Q4K,
    };
    let mib: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let nb: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    match a.get(5).map(|s| s.as_str()) {
        Some("scalar") => set_max_isa(Isa::Scalar),
        Some("avx2") => set_max_isa(Isa::Avx2),
        _ => {}
    }
    // KB_COLS: values per row (default 5120, CodeLlama-13B's n_embd).
    let n_cols: usize = std::env::var("KB_COLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5120);
    let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
    let n_rows = (mib * (1 << 20) as f64) as usize / rb / 8 * 8;
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut w: Vec<u8> = (0..n_rows * rb).map(|_| rnd() as u8).collect();
    // Sane f16 scales: 0x2000-ish (small positive) in every block's d/dmin.
    let bb = ty.block_bytes();
    let doff: &[usize] = match ty {
        GgmlType::Q6K => &[208],
        GgmlType::Q8_0 => &[0],
        GgmlType::F16 => &[],
        _ => &[0, 2],
    };
    for blk in w.chunks_exact_mut(bb) {
        for &o in doff {
            blk[o] = 0;
            blk[o + 1] = 0x20;
        }
    }
    let plain = x8.then(|| w.clone());
    if x8 {
        let mut tmp = vec![0u8; 8 * rb];
        repack_x8(ty, &mut w, n_rows, n_cols, &mut tmp).unwrap();
    }
    let mapped = std::env::var_os("KB_FILE").map(|p| {
        std::fs::write(&p, &w).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        map(&f, w.len())
    });
    let w: &[u8] = match mapped {
        Some(m) => m,
        None => anon_huge(&w),
    };
    let x: Vec<f32> = (0..n_cols * nb)
        .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let ab = act_row_bytes(ty, n_cols).unwrap();
    let mut acts = vec![0u8; ab * nb];
    quantize_acts_batch(ty, &x, n_cols, &mut acts).unwrap();
    let mut out = vec![0f32; n_rows * nb];
    // KB_THREADS: rows split in that many contiguous ranges (multiples of
    // 8), one thread each, as the engine's pool splits a matmul.
    let threads: usize = std::env::var("KB_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per = n_rows.div_ceil(threads).next_multiple_of(8);
    let mul = |r: std::ops::Range<usize>, out: &mut [f32]| {
        let layout = if x8 { Layout::X8 } else { Layout::Rows };
        matmul_rows_with(isa(), layout, w, ty, n_cols, r, &acts, nb, out).unwrap();
    };
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        if threads == 1 {
            mul(0..n_rows, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
            continue;
        }
        // Token-major per range: with several threads and tokens, each
        // range's results stay together (the sum is unchanged).
        std::thread::scope(|sc| {
            for (k, o) in out.chunks_mut(per * nb).enumerate() {
                let r0 = k * per;
                sc.spawn(move || mul(r0..r0 + o.len() / nb, o));
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    if let Some(p) = &plain {
        // The repacked kernel against the row-major one on the same rows.
        let mut want = vec![0f32; n_rows * nb];
        matmul_rows(p, ty, n_cols, 0..n_rows, &acts, nb, &mut want).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = out
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("x8 vs row-major: max |diff| {err:.3e} (max |value| {scale:.3e})");
    }
    let sum: f32 = out.iter().sum();
    println!(
        "{:?} {} {} MiB batch {}: {:.2} GB/s weights, {:.2} ns/block/token (sum {sum})",
        ty,
        isa().name(),
        mib,
        nb,
        w.len() as f64 / best / 1e9,
        best * 1e9 / (w.len() / bb) as f64 / nb as f64
    );
}

/// A copy of `w` in a fresh anonymous mapping advised for huge pages
/// (leaked): with 4 KiB pages the kernels stream measurably slower.
fn anon_huge(w: &[u8]) -> &'static [u8] {
    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
    }
    const PROT_RW: i32 = 3;
    const MAP_PRIVATE_ANON: i32 = 0x22;
    const MADV_HUGEPAGE: i32 = 14;
    // SAFETY: a fresh private mapping of w.len() bytes that nothing else
    // references; it is never unmapped, so the slice lives forever.
    unsafe {
        let p = mmap(
            std::ptr::null_mut(),
            w.len().max(1),
            PROT_RW,
            MAP_PRIVATE_ANON,
            -1,
            0,
        );
        assert!(p as isize != -1, "mmap failed");
        madvise(p, w.len(), MADV_HUGEPAGE);
        let m = std::slice::from_raw_parts_mut(p, w.len());
        m.copy_from_slice(w);
        m
    }
}

/// A read-only shared mapping of the first `len` bytes of `f` (leaked).
fn map(f: &std::fs::File, len: usize) -> &'static [u8] {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    }
    const PROT_READ: i32 = 1;
    const MAP_SHARED: i32 = 1;
    // SAFETY: a fresh mapping of a file this process wrote and no one
    // truncates; it is never unmapped, so the slice lives forever.
    unsafe {
        let p = mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ,
            MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert!(p as isize != -1, "mmap failed");
        std::slice::from_raw_parts(p, len)
    }
}
