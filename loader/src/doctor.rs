//! `llamux doctor`: can this machine run Llamux? Checks the running kernel
//! (version, CONFIG_RUST and module loading for llamux.ko, BPF LSM and the
//! active LSM list, BTF, bpffs, module signing and lockdown), the CPU's
//! kernels, memory against a model's needs and the module's state. Every
//! line is ok, warn or fail with what to do.
//!
//! Everything is read from files (/proc, /sys, /boot) under a root that
//! `LLAMUX_DOCTOR_ROOT` can move, so tests can give it a made-up machine.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::engine_cmds::Res;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do (warn and fail).
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// The machine as files.
struct Sys {
    root: PathBuf,
}

impl Sys {
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(p)).ok()
    }

    fn exists(&self, p: &str) -> bool {
        self.path(p).exists()
    }
}

/// The kernel's build configuration: where it came from and its lines.
struct Config {
    source: String,
    text: String,
}

impl Config {
    /// `Some(value)` of CONFIG_`name` ("y", "m", a string...), None when
    /// not set.
    fn get(&self, name: &str) -> Option<&str> {
        let key = format!("CONFIG_{name}=");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map(|v| v.trim_matches('"'))
    }

    fn is_y(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }
}

/// /boot/config-RELEASE, else /proc/config.gz (through `gzip -dc`).
fn read_config(sys: &Sys, release: &str) -> Option<Config> {
    let boot = format!("/boot/config-{release}");
    if let Some(text) = sys.read(&boot) {
        return Some(Config { source: boot, text });
    }
    let gz = sys.path("/proc/config.gz");
    // Reading /proc/config.gz through std::fs first: a plain read that
    // fails (absent file) keeps gzip from running at all.
    std::fs::metadata(&gz).ok()?;
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(Config {
        source: "/proc/config.gz".into(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// (major, minor) of a release string such as "6.12.118-amd64".
fn version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The value of `key=` on the kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn kernel_checks(sys: &Sys, out: &mut Vec<Check>) {
    let release = sys
        .read("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cmdline = sys.read("/proc/cmdline").unwrap_or_default();
    out.push(match version(&release) {
        Some((6, 12)) => ok("kernel", format!("Linux {release}: the series llamux.ko is built and tested on")),
        Some(v) if v > (6, 12) => warn(
            "kernel",
            format!("Linux {release}: newer than 6.12, the series llamux.ko is built and tested on"),
            "the eBPF policies and user-space advisor should work; the module's Rust-for-Linux calls may not build: use a 6.12 kernel for the module",
        ),
        Some(_) => fail(
            "kernel",
            format!("Linux {release}: older than 6.12"),
            "boot a 6.12 kernel with CONFIG_RUST for the module (the BPF LSM needs 5.7 at least)",
        ),
        None => warn("kernel", "could not read the kernel release (/proc/sys/kernel/osrelease)", "check that /proc is mounted"),
    });

    let config = read_config(sys, &release);
    let Some(cfg) = config else {
        out.push(warn(
            "config",
            format!("no kernel configuration found (/boot/config-{release}, /proc/config.gz)"),
            "the checks below that need it are skipped; install the kernel's config or enable CONFIG_IKCONFIG_PROC",
        ));
        module_runtime_checks(sys, &cmdline, None, out);
        lsm_checks(sys, &cmdline, None, out);
        return;
    };
    out.push(ok("config", format!("read from {}", cfg.source)));

    // The module: Rust support and module loading.
    out.push(if cfg.is_y("RUST") {
        ok("rust", "CONFIG_RUST=y: the kernel can host a Rust module")
    } else {
        fail(
            "rust",
            "CONFIG_RUST is not set: this kernel cannot host llamux.ko",
            "build a kernel with CONFIG_RUST=y (see tests/guest/build-kernel.sh), or run the policies with the user-space advisor: `llamux load -m MODEL POLICY...`",
        )
    });
    module_runtime_checks(sys, &cmdline, Some(&cfg), out);
    lsm_checks(sys, &cmdline, Some(&cfg), out);
}

fn module_runtime_checks(sys: &Sys, cmdline: &str, cfg: Option<&Config>, out: &mut Vec<Check>) {
    let modules = cfg
        .map(|c| c.is_y("MODULES"))
        .unwrap_or_else(|| sys.exists("/proc/modules"));
    if !modules {
        out.push(fail(
            "modules",
            "no loadable module support (CONFIG_MODULES is not set): llamux.ko cannot be loaded",
            "use a kernel with CONFIG_MODULES=y, or run the policies with the user-space advisor: `llamux load -m MODEL POLICY...`",
        ));
    } else if cmdline.split_whitespace().any(|w| w == "nomodule") {
        out.push(warn(
            "modules",
            "the kernel command line has `nomodule`",
            "remove `nomodule` from the boot command line to load llamux.ko",
        ));
    } else {
        out.push(ok("modules", "loadable modules are supported"));
        let enforced = sys
            .read("/sys/module/module/parameters/sig_enforce")
            .is_some_and(|v| v.trim() == "Y")
            || cfg.is_some_and(|c| c.is_y("MODULE_SIG_FORCE"))
            || cmdline_value(cmdline, "module.sig_enforce")
                .is_some_and(|v| v == "1" || v == "Y" || v == "y");
        out.push(if enforced {
            warn(
                "module-signing",
                "module signatures are enforced: an unsigned llamux.ko is refused",
                "sign llamux.ko with a key the kernel trusts (scripts/sign-file, or DKMS with an enrolled MOK)",
            )
        } else {
            ok("module-signing", "unsigned modules may load (signatures not enforced)")
        });
    }
    // Lockdown: integrity refuses unsigned modules, confidentiality also
    // BPF reads of kernel memory, which the probes make.
    let mode = sys
        .read("/sys/kernel/security/lockdown")
        .and_then(|s| {
            s.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .or_else(|| cmdline_value(cmdline, "lockdown").map(str::to_string))
        .or_else(|| {
            let c = cfg?;
            if c.is_y("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") {
                Some("confidentiality".into())
            } else if c.is_y("LOCK_DOWN_KERNEL_FORCE_INTEGRITY") {
                Some("integrity".into())
            } else {
                None
            }
        });
    out.push(match mode.as_deref() {
        None | Some("none") => ok("lockdown", "kernel lockdown is off"),
        Some("integrity") => warn(
            "lockdown",
            "kernel lockdown: integrity (unsigned modules are refused; BPF may not write user memory)",
            "sign llamux.ko with a key the kernel trusts; the eBPF policies are not affected",
        ),
        Some(m) => fail(
            "lockdown",
            format!("kernel lockdown: {m} (BPF programs may not read kernel memory, unsigned modules are refused)"),
            "boot with lockdown=integrity or none (the probes read kernel memory)",
        ),
    });
}

fn lsm_checks(sys: &Sys, cmdline: &str, cfg: Option<&Config>, out: &mut Vec<Check>) {
    match cfg {
        Some(c) if !c.is_y("BPF_SYSCALL") => out.push(fail(
            "bpf",
            "CONFIG_BPF_SYSCALL is not set: no eBPF at all",
            "use a kernel with CONFIG_BPF_SYSCALL=y",
        )),
        Some(c) if !c.is_y("BPF_LSM") => out.push(fail(
            "bpf-lsm",
            "CONFIG_BPF_LSM is not set: the exec and open guards cannot enforce",
            "use a kernel with CONFIG_BPF_LSM=y (and bpf in lsm=)",
        )),
        _ => {
            // The active list; else the boot-time one (lsm= or CONFIG_LSM).
            let (list, source) = if let Some(l) = sys.read("/sys/kernel/security/lsm") {
                (Some(l.trim().to_string()), "/sys/kernel/security/lsm")
            } else if let Some(l) = cmdline_value(cmdline, "lsm") {
                (
                    Some(l.to_string()),
                    "lsm= on the kernel command line (securityfs is not mounted)",
                )
            } else if let Some(l) = cfg.and_then(|c| c.get("LSM")) {
                (
                    Some(l.to_string()),
                    "CONFIG_LSM, no lsm= on the command line (securityfs is not mounted)",
                )
            } else {
                (None, "")
            };
            out.push(match list {
                Some(l) if l.split(',').any(|x| x.trim() == "bpf") => ok("bpf-lsm", format!("bpf is an active LSM ({l}; from {source})")),
                Some(l) => fail(
                    "bpf-lsm",
                    format!("bpf is not among the active LSMs ({l}; from {source}): the exec and open guards cannot enforce"),
                    format!("add bpf to lsm= on the kernel command line, e.g. lsm={l},bpf"),
                ),
                None => warn(
                    "bpf-lsm",
                    "could not read the active LSM list (/sys/kernel/security/lsm)",
                    "mount securityfs: mount -t securityfs securityfs /sys/kernel/security",
                ),
            });
        }
    }
    out.push(if sys.exists("/sys/kernel/btf/vmlinux") {
        ok(
            "btf",
            "/sys/kernel/btf/vmlinux is there (the probes are CO-RE)",
        )
    } else {
        fail(
            "btf",
            "no kernel BTF (/sys/kernel/btf/vmlinux)",
            "use a kernel with CONFIG_DEBUG_INFO_BTF=y",
        )
    });
    let bpffs = sys.read("/proc/mounts").is_some_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    });
    out.push(if bpffs {
        ok("bpffs", "a bpf filesystem is mounted")
    } else {
        warn(
            "bpffs",
            "no bpf filesystem mounted",
            "`llamux load` mounts one on /sys/fs/bpf (as root); or: mount -t bpf bpf /sys/fs/bpf",
        )
    });
}

fn cpu_check(out: &mut Vec<Check>) {
    use llamux_engine::quant::{isa_available, Isa};
    let levels: Vec<&str> = [Isa::Avx512, Isa::Avx2, Isa::Scalar]
        .into_iter()
        .filter(|&i| isa_available(i))
        .map(Isa::name)
        .collect();
    out.push(if isa_available(Isa::Avx2) {
        ok(
            "cpu",
            format!("kernels: {} (best first)", levels.join(", ")),
        )
    } else {
        warn(
            "cpu",
            "kernels: scalar only (no AVX2/FMA/F16C)",
            "expect several times slower inference; the module uses the same kernels",
        )
    });
}

/// Bytes of MemAvailable in /proc/meminfo.
fn mem_available(sys: &Sys) -> Option<u64> {
    let m = sys.read("/proc/meminfo")?;
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn model_check(sys: &Sys, model: &Path, ctx: usize, out: &mut Vec<Check>) {
    let (g, m) = match crate::engine_cmds::parse(model).and_then(|g| {
        let m = llamux_engine::model::Model::from_gguf(&g)
            .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        llamux_engine::tokenizer::Tokenizer::from_gguf(&g)
            .map_err(|e| anyhow::anyhow!("{}: tokenizer: {e}", model.display()))?;
        Ok((g, m))
    }) {
        Ok(x) => x,
        Err(e) => {
            out.push(fail(
                "model",
                format!("{e:#}"),
                "give a GGUF model the engine supports (`llamux info -m MODEL` says why not)",
            ));
            return;
        }
    };
    let file = std::fs::metadata(model)
        .map(|md| md.len())
        .unwrap_or(0)
        .max(g.data_offset + m.weight_bytes() as u64);
    let kv = 2 * m.hp.n_layer as u64 * m.hp.kv_dim() as u64 * 4 * ctx as u64;
    let need = file + kv;
    let mib = |b: u64| b >> 20;
    let detail = format!(
        "{}: {} MiB of file + {} MiB KV cache (f32, {ctx} positions) = {} MiB",
        model.display(),
        mib(file),
        mib(kv),
        mib(need)
    );
    out.push(match mem_available(sys) {
        None => warn(
            "memory",
            format!("{detail}; MemAvailable unknown"),
            "check /proc/meminfo",
        ),
        Some(avail) if need > avail => fail(
            "memory",
            format!("{detail}, more than the {} MiB available", mib(avail)),
            "free memory, use a smaller quantization, or --kv-f16 / a smaller --ctx",
        ),
        Some(avail) if need > avail / 10 * 8 => warn(
            "memory",
            format!("{detail}, over 80% of the {} MiB available", mib(avail)),
            "other work will compete for memory: free some or use a smaller model",
        ),
        Some(avail) => ok(
            "memory",
            format!("{detail} of {} MiB available", mib(avail)),
        ),
    });
}

fn module_state(sys: &Sys, out: &mut Vec<Check>) {
    match std::fs::read_to_string(sys.path("/proc/llamux/status")) {
        Ok(s) => {
            let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':').map(|v| v.trim().to_string()));
            let version = s.lines().next().unwrap_or("llamux").trim().to_string();
            out.push(match field("model_loaded").as_deref() {
                Some("yes") => ok("module", format!("{version} loaded, model {}", field("model_path").unwrap_or_default())),
                _ => warn("module", format!("{version} loaded without a model"), "write a model path to /proc/llamux/load"),
            });
        }
        Err(e) if sys.exists("/proc/llamux") => {
            let fix = if e.kind() == std::io::ErrorKind::PermissionDenied { "run as root to read it" } else { "see dmesg" };
            out.push(warn("module", format!("llamux.ko is loaded; /proc/llamux/status: {e}"), fix))
        }
        Err(_) => out.push(warn(
            "module",
            "llamux.ko is not loaded",
            "insmod llamux.ko model=FILE where the kernel can host it; otherwise the user-space advisor runs the policies",
        )),
    }
}

pub fn run_checks(model: Option<&Path>, ctx: usize) -> Vec<Check> {
    let root = std::env::var_os("LLAMUX_DOCTOR_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let sys = Sys { root };
    let mut out = Vec::new();
    kernel_checks(&sys, &mut out);
    cpu_check(&mut out);
    match model {
        Some(m) => model_check(&sys, m, ctx, &mut out),
        None => out.push(match mem_available(&sys) {
            Some(a) => ok(
                "memory",
                format!(
                    "{} MiB available (give -m MODEL to check a model's needs)",
                    a >> 20
                ),
            ),
            None => warn("memory", "MemAvailable unknown", "check /proc/meminfo"),
        }),
    }
    module_state(&sys, &mut out);
    out
}

/// Prints the checks; an error (exit 1) when any failed.
pub fn doctor(model: Option<&Path>, ctx: usize, json_out: bool) -> Res {
    let checks = run_checks(model, ctx);
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let (n_ok, n_warn, n_fail) = (count(Status::Ok), count(Status::Warn), count(Status::Fail));
    if json_out {
        let v = json!({
            "checks": checks.iter().map(|c| json!({
                "check": c.name, "status": c.status.name(), "detail": c.detail, "fix": c.fix,
            })).collect::<Vec<_>>(),
            "ok": n_ok, "warn": n_warn, "fail": n_fail,
        });
        println!("{v}");
    } else {
        for c in &checks {
            println!("{:<4}  {:<15} {}", c.status.name(), c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("      {:<15} -> {f}", "");
            }
        }
        println!("{n_ok} ok, {n_warn} warn, {n_fail} fail");
    }
    if n_fail > 0 {
        anyhow::bail!("{n_fail} check(s) failed");
    }
    Ok(())
}
