//! `llamux doctor`: on this machine (each line checked against what the
//! machine's own files say), and on made-up machines (LLAMUX_DOCTOR_ROOT)
//! for the lines this one cannot show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    root().join("tests/models/tiny-q4_k_m.gguf")
}

/// check -> (status, detail, fix)
type Checks = BTreeMap<String, (String, String, Option<String>)>;

/// Runs doctor --json; (exit code, checks).
fn doctor(sysroot: Option<&Path>, extra: &[&str]) -> (i32, Checks) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llamux"));
    c.args(["doctor", "--json"]).args(extra);
    if let Some(r) = sysroot {
        c.env("LLAMUX_DOCTOR_ROOT", r);
    }
    let o = c.output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!e.contains("panicked"), "{e}");
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&o.stdout)));
    let mut m = BTreeMap::new();
    for c in v["checks"].as_array().unwrap() {
        let st = c["status"].as_str().unwrap().to_string();
        assert!(["ok", "warn", "fail"].contains(&st.as_str()), "{c}");
        let detail = c["detail"].as_str().unwrap().to_string();
        assert!(!detail.is_empty(), "{c}");
        let fix = c["fix"].as_str().map(str::to_string);
        assert_eq!(
            fix.is_some(),
            st != "ok",
            "warn and fail say what to do: {c}"
        );
        m.insert(c["check"].as_str().unwrap().to_string(), (st, detail, fix));
    }
    let n_fail = m.values().filter(|c| c.0 == "fail").count();
    assert_eq!(v["fail"].as_u64().unwrap() as usize, n_fail);
    (o.status.code().unwrap(), m)
}

fn status<'a>(m: &'a BTreeMap<String, (String, String, Option<String>)>, k: &str) -> &'a str {
    &m.get(k)
        .unwrap_or_else(|| panic!("no {k} check in {m:?}"))
        .0
}

/// This kernel's configuration, read the way an administrator would.
fn host_config() -> Option<String> {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    if let Ok(t) = std::fs::read_to_string(format!("/boot/config-{}", rel.trim())) {
        return Some(t);
    }
    let o = Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn doctor_on_this_machine() {
    let (code, m) = doctor(None, &["-m", model().to_str().unwrap()]);
    let any_fail = m.values().any(|c| c.0 == "fail");
    assert_eq!(code, if any_fail { 1 } else { 0 });

    if let Some(cfg) = host_config() {
        let y = |k: &str| cfg.lines().any(|l| l == format!("CONFIG_{k}=y"));
        assert_eq!(status(&m, "rust") == "ok", y("RUST"), "{m:?}");
        // This host: no CONFIG_RUST, no module loading.
        assert_eq!(status(&m, "modules") == "fail", !y("MODULES"), "{m:?}");
        if !y("BPF_LSM") {
            assert_eq!(status(&m, "bpf-lsm"), "fail");
        }
    }
    // The active LSM list, when securityfs shows it; else the boot log.
    let bpf_active = match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(l) => Some(l.trim().split(',').any(|x| x == "bpf")),
        Err(_) => Command::new("dmesg")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let log = String::from_utf8_lossy(&o.stdout).into_owned();
                log.contains("LSM: initializing")
                    .then(|| log.contains("LSM support for eBPF active"))
            }),
    };
    if let Some(active) = bpf_active {
        assert_eq!(
            status(&m, "bpf-lsm") == "ok",
            active,
            "bpf LSM active: {active}; {m:?}"
        );
    }
    assert_eq!(
        status(&m, "btf") == "ok",
        Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    let bpffs = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"));
    assert_eq!(status(&m, "bpffs"), if bpffs { "ok" } else { "warn" });
    let cpu = &m["cpu"].1;
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c");
        assert_eq!(cpu.contains("avx2"), avx2, "{cpu}");
        if !std::arch::is_x86_feature_detected!("avx512f") {
            assert!(!cpu.contains("avx512"), "{cpu}");
        }
    }
    assert!(cpu.contains("scalar"), "{cpu}");
    assert_eq!(status(&m, "memory"), "ok", "a 1.5 MB model fits");
    assert_eq!(
        status(&m, "module") == "ok",
        Path::new("/proc/llamux/status").exists()
    );
}

/// A machine as files under a temporary root.
struct FakeSys {
    dir: PathBuf,
}

impl FakeSys {
    /// A machine that can run everything: 6.12 with Rust, modules, the BPF
    /// LSM active, BTF, bpffs, no lockdown, 8 GB free, the module loaded.
    fn healthy(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("llamux-doctor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = FakeSys { dir };
        s.put("proc/sys/kernel/osrelease", "6.12.118-llamux\n");
        s.put(
            "boot/config-6.12.118-llamux",
            "CONFIG_RUST=y\nCONFIG_MODULES=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_LSM=y\nCONFIG_LSM=\"lockdown,bpf\"\n",
        );
        s.put("proc/cmdline", "root=/dev/vda console=ttyS0\n");
        s.put("sys/kernel/security/lsm", "lockdown,capability,bpf");
        s.put(
            "sys/kernel/security/lockdown",
            "[none] integrity confidentiality\n",
        );
        s.put("sys/module/module/parameters/sig_enforce", "N\n");
        s.put("sys/kernel/btf/vmlinux", "");
        s.put(
            "proc/mounts",
            "proc /proc proc rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime,mode=700 0 0\n",
        );
        s.put(
            "proc/meminfo",
            "MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n",
        );
        s.put("proc/modules", "llamux 1 0 - Live 0x0\n");
        s.put(
            "proc/llamux/status",
            "llamux 0.1.0\nmodel_loaded: yes\nmodel_path: /m.gguf\n",
        );
        s
    }

    fn put(&self, p: &str, text: &str) {
        let f = self.dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    fn rm(&self, p: &str) {
        std::fs::remove_file(self.dir.join(p)).unwrap();
    }

    fn run(&self, extra: &[&str]) -> (i32, Checks) {
        doctor(Some(&self.dir), extra)
    }
}

impl Drop for FakeSys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn doctor_on_made_up_machines() {
    let s = FakeSys::healthy("healthy");
    let (code, m) = s.run(&["-m", model().to_str().unwrap()]);
    for k in [
        "kernel",
        "config",
        "rust",
        "modules",
        "module-signing",
        "lockdown",
        "bpf-lsm",
        "btf",
        "bpffs",
        "memory",
        "module",
    ] {
        assert_eq!(status(&m, k), "ok", "{k}: {m:?}");
    }
    assert_eq!(code, 0);

    // Each fault alone, and what the line says.
    let case = |name: &str,
                f: &dyn Fn(&FakeSys),
                extra: &[&str],
                check: &str,
                want: &str,
                fix_has: &str| {
        let s = FakeSys::healthy(name);
        f(&s);
        let (code, m) = s.run(extra);
        let (st, detail, fix) = &m[check];
        assert_eq!(st, want, "{name}: {check}: {detail}");
        assert!(
            fix.as_deref().unwrap_or("").contains(fix_has),
            "{name}: {fix:?}"
        );
        assert_eq!(
            code,
            if m.values().any(|c| c.0 == "fail") {
                1
            } else {
                0
            },
            "{name}"
        );
    };
    case(
        "no-bpf-lsm",
        &|s| s.put("sys/kernel/security/lsm", "lockdown,capability,landlock"),
        &[],
        "bpf-lsm",
        "fail",
        "lsm=lockdown,capability,landlock,bpf",
    );
    case(
        "no-rust",
        &|s| {
            s.put(
                "boot/config-6.12.118-llamux",
                "CONFIG_MODULES=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_LSM=y\n",
            )
        },
        &[],
        "rust",
        "fail",
        "CONFIG_RUST=y",
    );
    case(
        "no-modules",
        &|s| {
            s.put(
                "boot/config-6.12.118-llamux",
                "CONFIG_RUST=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_LSM=y\n",
            )
        },
        &[],
        "modules",
        "fail",
        "CONFIG_MODULES=y",
    );
    case(
        "no-bpf-lsm-config",
        &|s| {
            s.put(
                "boot/config-6.12.118-llamux",
                "CONFIG_RUST=y\nCONFIG_MODULES=y\nCONFIG_BPF_SYSCALL=y\n",
            )
        },
        &[],
        "bpf-lsm",
        "fail",
        "CONFIG_BPF_LSM=y",
    );
    case(
        "old-kernel",
        &|s| s.put("proc/sys/kernel/osrelease", "6.6.0\n"),
        &[],
        "kernel",
        "fail",
        "6.12",
    );
    case(
        "sig-enforce",
        &|s| s.put("sys/module/module/parameters/sig_enforce", "Y\n"),
        &[],
        "module-signing",
        "warn",
        "sign",
    );
    case(
        "lockdown-conf",
        &|s| {
            s.put(
                "sys/kernel/security/lockdown",
                "none integrity [confidentiality]\n",
            )
        },
        &[],
        "lockdown",
        "fail",
        "lockdown=",
    );
    case(
        "no-btf",
        &|s| s.rm("sys/kernel/btf/vmlinux"),
        &[],
        "btf",
        "fail",
        "DEBUG_INFO_BTF",
    );
    case(
        "no-bpffs",
        &|s| s.put("proc/mounts", "proc /proc proc rw 0 0\n"),
        &[],
        "bpffs",
        "warn",
        "mount -t bpf",
    );
    case(
        "no-model-loaded",
        &|s| s.put("proc/llamux/status", "llamux 0.1.0\nmodel_loaded: no\n"),
        &[],
        "module",
        "warn",
        "/proc/llamux/load",
    );
    case(
        "not-loaded",
        &|s| std::fs::remove_dir_all(s.dir.join("proc/llamux")).unwrap(),
        &[],
        "module",
        "warn",
        "insmod",
    );
    let m = model();
    case(
        "small-memory",
        &|s| s.put("proc/meminfo", "MemAvailable: 1000 kB\n"),
        &["-m", m.to_str().unwrap()],
        "memory",
        "fail",
        "smaller",
    );
    case(
        "bad-model",
        &|_| {},
        &["-m", "/dev/null"],
        "model",
        "fail",
        "llamux info",
    );
    // securityfs not mounted: the boot-time list from lsm= is used.
    let s = FakeSys::healthy("cmdline-lsm");
    s.rm("sys/kernel/security/lsm");
    s.put("proc/cmdline", "root=/dev/vda lsm=landlock,bpf\n");
    let (_, m) = s.run(&[]);
    assert_eq!(status(&m, "bpf-lsm"), "ok");
    assert!(
        m["bpf-lsm"].1.contains("lsm= on the kernel command line"),
        "{:?}",
        m["bpf-lsm"]
    );
    s.put("proc/cmdline", "root=/dev/vda lsm=landlock\n");
    assert_eq!(status(&s.run(&[]).1, "bpf-lsm"), "fail");
}
