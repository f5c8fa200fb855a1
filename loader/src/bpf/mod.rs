//! Policy commands: load (validate, attach, relay events to the advisor,
//! write decisions to the pinned map), unload, status.
//!
//! Layout on a running system:
//!   /sys/fs/bpf/llamux/LLAMUX_*      pinned maps (decisions, config, stats...)
//!   /sys/fs/bpf/llamux/link_*        pinned program links (with --detach)
//!   $LLAMUX_RUN_DIR (/run/llamux)/state.json   loader pid, policies
//!   .../relay.json                  relay counters, rewritten every second
//!   .../trace.jsonl                 decisions and hits (`llamux trace`)
//!
//! bpffs.rs: the pin folder; probes.rs: the object, its config, attaching;
//! state.rs: state.json; status.rs: unload and status; the relay that runs
//! while policies are loaded is crate::relay.

mod advise_cmd;
mod bpffs;
mod probes;
mod state;
mod status;

use anyhow::{anyhow, bail, Context as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use aya::{Ebpf, EbpfLoader};

use crate::fsafe;
use crate::policy::{self, Hook, Policy};
use crate::policy_advise::AdvisorChoice;
use crate::trace;

pub use advise_cmd::advise_cmd;
pub use bpffs::PIN_DIR;
pub use probes::{build_config, write_config, Attached};
pub use state::state_path;
pub use status::{default_sigpipe, status, unload};

pub struct LoadOpts {
    pub policies: Vec<PathBuf>,
    pub model: Option<PathBuf>,
    pub detach: bool,
    pub bpf_obj: Option<PathBuf>,
    pub threads: Option<usize>,
    pub ctx: usize,
    pub advisor: AdvisorChoice,
}

/// What `load` put into the kernel: the object (its programs detach when
/// it drops), the pinned maps and the attached programs.
pub struct Loaded {
    pub bpf: Ebpf,
    pub map_pins: Vec<PathBuf>,
    pub att: Attached,
}

pub fn validate(paths: &[PathBuf]) -> anyhow::Result<Vec<Policy>> {
    let mut out: Vec<Policy> = Vec::new();
    for p in paths {
        let pol = policy::load(p).map_err(|e| anyhow!("{e}"))?;
        if out.iter().any(|q| q.name == pol.name) {
            return Err(anyhow!(
                "{}: policy name `{}` is used twice",
                p.display(),
                pol.name
            ));
        }
        if matches!(pol.hook, Hook::Exec | Hook::Open) && out.iter().any(|q| q.hook == pol.hook) {
            return Err(anyhow!(
                "{}: only one {} policy can be loaded at a time",
                p.display(),
                pol.hook.name()
            ));
        }
        out.push(pol);
    }
    if out.is_empty() {
        bail!("no policy given");
    }
    Ok(out)
}

pub fn load(opts: LoadOpts) -> anyhow::Result<()> {
    let pols = validate(&opts.policies)?;
    if opts.model.is_none() && opts.advisor == AdvisorChoice::User {
        bail!("--advisor user needs --model");
    }
    if opts.model.is_none() && !crate::policy_advise::kernel_available() {
        bail!("no --model given and the kernel module's advisor is not available (insmod llamux.ko model=...)");
    }
    if let Some(st) = state::read_state() {
        let pid = state::state_pid(&st);
        if state::pid_alive(pid) {
            bail!("policies already loaded by pid {pid}: run `llamux unload` first");
        }
    }
    let obj = probes::bpf_object(opts.bpf_obj.as_deref())?;
    // Check the model before touching the kernel.
    if let Some(model) = &opts.model {
        let _ = crate::engine_cmds::parse(model)?;
    }
    bpffs::ensure_bpffs()?;
    bpffs::bump_memlock();
    bpffs::check_pin_dir()?;
    if Path::new(PIN_DIR).exists() {
        // Leftovers of a loader that died (the folder is ours alone).
        bpffs::remove_pins();
    }
    fsafe::private_dir(Path::new(PIN_DIR), 0o700).map_err(bpffs::pin_dir_refused)?;
    fsafe::private_dir(&trace::run_dir(), 0o755).context("run folder")?;
    let t0 = Instant::now();
    let mut loaded = match load_and_attach(&obj, &pols, opts.detach) {
        Ok(x) => x,
        Err(e) => {
            bpffs::remove_pins();
            return Err(e);
        }
    };
    eprintln!(
        "llamux: attached {} in {:.0} ms: {}",
        pols.iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        t0.elapsed().as_secs_f64() * 1000.0,
        loaded.att.programs.join(", ")
    );
    if opts.detach {
        return detach(loaded, &pols, &opts);
    }
    relay(&mut loaded, &pols, &opts, None)
}

fn load_and_attach(obj: &[u8], pols: &[Policy], pin_links: bool) -> anyhow::Result<Loaded> {
    let mut bpf = EbpfLoader::new()
        .load(obj)
        .map_err(|e| anyhow!("load BPF object: {e:#}"))?;
    // The config must be valid before any program runs.
    write_config(&mut bpf, build_config(pols, std::process::id())?)?;
    let map_pins = bpffs::pin_maps(&bpf)?;
    let att = probes::attach(&mut bpf, pols, pin_links)?;
    Ok(Loaded { bpf, map_pins, att })
}

/// --detach: forks now (no threads exist yet); the parent waits for the
/// child's relay to be ready and returns, the child relays until stopped.
fn detach(mut loaded: Loaded, pols: &[Policy], opts: &LoadOpts) -> anyhow::Result<()> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe failed");
    }
    // SAFETY: the process is single-threaded here (no pool yet), so the
    // child may keep running Rust code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid > 0 {
        // SAFETY: closing our copy of the write end; reading one byte
        // into a valid buffer.
        unsafe { libc::close(fds[1]) };
        let mut b = [0u8; 1];
        // SAFETY: as above.
        let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        std::mem::forget(loaded); // the child owns the programs now
        if n == 1 && b[0] == b'k' {
            println!("llamux: policies loaded, relay running as pid {pid}");
            return Ok(());
        }
        bail!("relay (pid {pid}) failed to start");
    }
    // SAFETY: child: close the read end, start a new session.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    // A daemon must not keep the caller's stdout/stderr open (a shell's
    // `$(llamux load --detach)` would wait for it forever): log to a file.
    let logp = trace::run_dir().join("relay.log");
    if let Ok(f) = fsafe::open_private(&logp, true) {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors of this process;
        // `f` stays open until the dups are made. /dev/null for stdin.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::close(null);
            }
        }
    }
    let r = relay(&mut loaded, pols, opts, Some(fds[1]));
    if let Err(e) = &r {
        eprintln!("llamux: relay: {e:#}");
    }
    std::process::exit(if r.is_ok() { 0 } else { 1 });
}

/// Runs the relay until a signal stops it, then removes every pin and the
/// state file (the programs detach when `loaded` drops).
fn relay(
    loaded: &mut Loaded,
    pols: &[Policy],
    opts: &LoadOpts,
    ready_fd: Option<i32>,
) -> anyhow::Result<()> {
    let r = crate::relay::run(loaded, pols, opts, ready_fd);
    bpffs::remove_pins();
    let _ = std::fs::remove_file(state_path());
    r
}
