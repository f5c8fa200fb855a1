//! The probes' object: finding a trusted one, its config map, and
//! attaching the programs the loaded policies need.

use anyhow::{anyhow, Context as _};
use std::path::{Path, PathBuf};

use aya::maps::MapData;
use aya::programs::links::FdLink;
use aya::programs::{Lsm, TracePoint};
use aya::{Btf, Ebpf};
use llamux_common as c;

use super::bpffs::PIN_DIR;
use crate::bpf_btf;
use crate::fsafe;
use crate::policy::{self, Action, Hook, Policy};

/// The BPF object to load into the kernel: only a file owned by root (or
/// us) that nobody else can write (fsafe::read_trusted), from --bpf-obj,
/// $LLAMUX_BPF_OBJ or the first trusted of the usual places.
pub fn bpf_object(given: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    if let Some(p) = given {
        return fsafe::read_trusted(p).map_err(|e| anyhow!("--bpf-obj {e:#}"));
    }
    if let Some(p) = std::env::var_os("LLAMUX_BPF_OBJ") {
        return fsafe::read_trusted(Path::new(&p)).map_err(|e| anyhow!("LLAMUX_BPF_OBJ: {e:#}"));
    }
    // Next to the binary, the system location, the build cache, the tree.
    let mut cands = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            cands.push(d.join("llamux-probes.o"));
        }
    }
    cands.push(PathBuf::from("/usr/lib/llamux/llamux-probes.o"));
    if let Some(h) = std::env::var_os("HOME") {
        cands.push(PathBuf::from(h).join(".cache/llamux/bpf/llamux-probes.o"));
    }
    cands.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/bpf/llamux-probes.o"
    )));
    let mut refused = Vec::new();
    for p in &cands {
        if !p.exists() {
            continue;
        }
        match fsafe::read_trusted(p) {
            Ok(b) => return Ok(b),
            Err(e) => {
                let e = format!("{e:#}");
                eprintln!("llamux: not loading {e}");
                refused.push(e);
            }
        }
    }
    Err(anyhow!(
        "no trusted BPF object (looked in {}{}): run ebpf/build.sh or pass --bpf-obj FILE (owned by root, not writable by others)",
        cands.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) }
    ))
}

fn hook_config(p: Option<&Policy>) -> c::HookConfig {
    let mut h = c::HookConfig {
        enabled: 0,
        key_kind: 0,
        default_action: c::ACT_ALLOW,
        prefix_len: 0,
        prefix: [0; c::PREFIX_LEN],
        request_gap_ns: 1_000_000_000,
    };
    if let Some(p) = p {
        h.enabled = 1;
        h.key_kind = p.key.id();
        h.default_action = if p.default_deny {
            c::ACT_DENY
        } else {
            c::ACT_ALLOW
        };
        let b = p.path_prefix.as_bytes();
        h.prefix[..b.len()].copy_from_slice(b);
        h.prefix_len = b.len() as u32;
    }
    h
}

/// The probes' configuration for these policies; `loader_tgid` is the
/// process whose own events the probes skip.
pub fn build_config(pols: &[Policy], loader_tgid: u32) -> anyhow::Result<c::Config> {
    let of = |hook| pols.iter().find(|p| p.hook == hook);
    Ok(c::Config {
        loader_tgid,
        syscall_sample: of(Hook::Syscall).map_or(0, |p| p.sample),
        sched_sample: of(Hook::Sched).map_or(0, |p| p.sample),
        exec_events: 1,
        hooks: [hook_config(of(Hook::Exec)), hook_config(of(Hook::Open))],
        hit_key: [Hook::Exec, Hook::Open, Hook::Syscall, Hook::Sched]
            .map(|h| of(h).map_or(0, |p| p.key.id())),
        off: bpf_btf::kernel_offsets()?,
    })
}

pub fn write_config(bpf: &mut Ebpf, cfg: c::Config) -> anyhow::Result<()> {
    let map = bpf
        .map_mut("LLAMUX_CONFIG")
        .context("BPF object has no LLAMUX_CONFIG map")?;
    let mut a: aya::maps::Array<&mut MapData, c::Config> =
        aya::maps::Array::try_from(map).map_err(|e| anyhow!("{e}"))?;
    a.set(0, cfg, 0).map_err(|e| anyhow!("write config: {e}"))
}

pub struct Attached {
    /// Links pinned under PIN_DIR (removed on exit).
    pub pins: Vec<PathBuf>,
    pub programs: Vec<String>,
}

/// Loads and attaches the programs the policies need; with `pin_links`
/// their links are pinned so they outlive this process's descriptors.
pub fn attach(bpf: &mut Ebpf, pols: &[Policy], pin_links: bool) -> anyhow::Result<Attached> {
    let mut tps: Vec<(&str, &str, &str)> = vec![
        ("llamux_exec", "sched", "sched_process_exec"),
        ("llamux_exit", "sched", "sched_process_exit"),
    ];
    // The exec guard's argv, copied at execve/execveat (optional: a kernel
    // without syscall tracepoints only loses the argv field).
    let mut optional: Vec<(&str, &str, &str)> = Vec::new();
    if pols.iter().any(|p| p.hook == Hook::Exec) {
        optional.push(("llamux_execve", "syscalls", "sys_enter_execve"));
        optional.push(("llamux_execveat", "syscalls", "sys_enter_execveat"));
    }
    // sys_enter also records the hits of sched decisions and of pid- or
    // comm-keyed open ones (file_open counts the inode-keyed ones).
    if pols.iter().any(|p| {
        matches!(p.hook, Hook::Syscall | Hook::Sched)
            || p.hook == Hook::Open && p.key != policy::KeyKind::File
    }) {
        tps.push(("llamux_sys_enter", "raw_syscalls", "sys_enter"));
    }
    if pols.iter().any(|p| p.hook == Hook::Sched) {
        tps.push(("llamux_sched_switch", "sched", "sched_switch"));
    }
    let mut lsms: Vec<(&str, &str)> = Vec::new();
    if pols.iter().any(|p| p.hook == Hook::Exec) {
        lsms.push(("llamux_bprm_check", "bprm_check_security"));
    }
    if pols.iter().any(|p| p.hook == Hook::Open) {
        lsms.push(("llamux_file_open", "file_open"));
    }
    // Records the nice changes the kernel applies to advised tasks.
    if pols.iter().any(|p| {
        p.answers
            .iter()
            .any(|a| matches!(a.action, Action::Renice(_)))
    }) {
        lsms.push(("llamux_task_setnice", "task_setnice"));
    }
    let mut out = Attached {
        pins: Vec::new(),
        programs: Vec::new(),
    };
    let n_required = tps.len();
    tps.extend(optional);
    for (i, (prog, cat, name)) in tps.into_iter().enumerate() {
        let tp: &mut TracePoint = bpf
            .program_mut(prog)
            .with_context(|| format!("BPF object has no program {prog}"))?
            .try_into()
            .map_err(|e| anyhow!("{prog}: {e}"))?;
        tp.load().map_err(|e| anyhow!("load {prog}: {e:#}"))?;
        let id = match tp.attach(cat, name) {
            Ok(id) => id,
            Err(e) if i >= n_required => {
                eprintln!(
                    "llamux: attach {prog} to {cat}/{name}: {e:#}; exec events go without argv"
                );
                continue;
            }
            Err(e) => return Err(anyhow!("attach {prog} to {cat}/{name}: {e:#}")),
        };
        if pin_links {
            let link: FdLink = tp
                .take_link(id)
                .map_err(|e| anyhow!("{e}"))?
                .try_into()
                .map_err(|e| anyhow!("{prog}: link: {e}"))?;
            out.pins.push(pin_link(link, prog)?);
        }
        out.programs.push(format!("tracepoint/{cat}/{name}"));
    }
    if !lsms.is_empty() {
        let btf = Btf::from_sys_fs().map_err(|e| anyhow!("kernel BTF: {e}"))?;
        for (prog, hook) in lsms {
            let p: &mut Lsm = bpf
                .program_mut(prog)
                .with_context(|| format!("BPF object has no program {prog}"))?
                .try_into()
                .map_err(|e| anyhow!("{prog}: {e}"))?;
            p.load(hook, &btf)
                .map_err(|e| anyhow!("load {prog}: {e:#}"))?;
            let id = p
                .attach()
                .map_err(|e| anyhow!("attach {prog} to lsm/{hook}: {e:#} (is `bpf` in lsm=?)"))?;
            if pin_links {
                let link: FdLink = p.take_link(id).map_err(|e| anyhow!("{e}"))?.into();
                out.pins.push(pin_link(link, prog)?);
            }
            out.programs.push(format!("lsm/{hook}"));
        }
    }
    Ok(out)
}

/// Pins a program's link as PIN_DIR/link_PROG; the pin then holds it.
fn pin_link(link: FdLink, prog: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(PIN_DIR).join(format!("link_{prog}"));
    let pinned = link
        .pin(&path)
        .map_err(|e| anyhow!("pin {}: {e}", path.display()))?;
    std::mem::forget(pinned); // the pin holds the link
    Ok(path)
}
