//! `llamux bench --bandwidth --json` on a test model: every decode
//! repetition comes with a bandwidth measurement, and the share it reports
//! is that repetition's decode bytes/s over it.

use std::path::Path;
use std::process::Command;

#[test]
fn bench_reports_bandwidth_share_per_repetition() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("tests/models/tiny-q4_k_m.gguf");
    assert!(
        model.exists(),
        "{} missing: run tests/models/make.sh",
        model.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_llamux"))
        .args([
            "bench",
            "-t",
            "1",
            "-p",
            "0",
            "-n",
            "2",
            "-r",
            "3",
            "--bandwidth",
            "--json",
            "-m",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wbytes = v["weight_bytes"].as_f64().unwrap();
    assert!(wbytes > 1e6, "weight bytes {wbytes}");
    let tg = &v["tg"];
    let ts: Vec<f64> = tg["samples_ts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let bw = &tg["bandwidth"];
    let gbs: Vec<f64> = bw["samples_gbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let share: Vec<f64> = bw["samples_share"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!((ts.len(), gbs.len(), share.len()), (3, 3, 3));
    for ((t, g), s) in ts.iter().zip(&gbs).zip(&share) {
        // Any machine that runs the tests streams between 0.1 and 10000 GB/s.
        assert!(*g > 0.1 && *g < 1e4, "bandwidth {g} GB/s");
        let want = t * wbytes / 1e9 / g;
        assert!((s - want).abs() <= 1e-9 * want, "share {s}, want {want}");
    }
    let mut sorted = share.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(bw["median_share"].as_f64().unwrap(), sorted[1]);

    // Without the flag there is no bandwidth entry (and no 1 GiB buffer).
    let out = Command::new(env!("CARGO_BIN_EXE_llamux"))
        .args([
            "bench", "-t", "1", "-p", "1", "-n", "1", "-r", "1", "--json", "-m",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["tg"].get("bandwidth").is_none());
}

/// `layout` in bench's JSON: x8 (Q4_K/Q6_K repacked at load) wherever SIMD
/// kernels run, rows with `--no-repack` or the scalar kernels.
#[test]
fn bench_reports_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("tests/models/tiny-q4_k_m.gguf");
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_llamux"))
            .args(flags)
            .args([
                "bench", "-t", "1", "-p", "1", "-n", "1", "-r", "1", "--json", "-m",
            ])
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["isa"].as_str().unwrap().to_string(),
            v["layout"].as_str().unwrap().to_string(),
        )
    };
    let (isa, layout) = run(&[]);
    assert_eq!(
        layout,
        if isa == "scalar" { "rows" } else { "x8" },
        "kernels {isa}"
    );
    assert_eq!(run(&["--no-repack"]), (isa, "rows".to_string()));
    assert_eq!(
        run(&["--isa", "scalar"]),
        ("scalar".to_string(), "rows".to_string())
    );
}

/// `llamux bench --kernel` checks its setting before measuring anything:
/// flags that make no sense with it are refused by the parser, and on a
/// machine without llamux.ko (this one: nothing is ever loaded into the
/// host kernel) it names /proc/llamux and how to load the module.
#[test]
fn bench_kernel_refuses_without_the_module_and_with_bad_flags() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_llamux"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    if !Path::new("/proc/llamux").exists() {
        let o = run(&["--kernel", "-m", "/nonexistent.gguf"]);
        assert!(!o.status.success());
        assert!(
            err(&o).contains("/proc/llamux/status") && err(&o).contains("insmod"),
            "{}",
            err(&o)
        );
    }
    let o = run(&["--kernel", "--bandwidth", "-m", "x.gguf"]);
    assert!(
        !o.status.success() && err(&o).contains("--bandwidth"),
        "{}",
        err(&o)
    );
    let o = run(&["--rounds", "2", "-m", "x.gguf"]);
    assert!(
        !o.status.success() && err(&o).contains("--kernel"),
        "{}",
        err(&o)
    );
}
