//! Policy commands: load (validate, attach, relay events to the advisor,
//! write decisions to the pinned map), unload, status.
//!
//! Layout on a running system:
//!   /sys/fs/bpf/llamux/LLAMUX_*      pinned maps (decisions, config, stats...)
//!   /sys/fs/bpf/llamux/link_*        pinned program links (with --detach)
//!   $LLAMUX_RUN_DIR (/run/llamux)/state.json   loader pid, policies
//!   .../relay.json                  relay counters, rewritten every second
//!   .../trace.jsonl                 decisions and hits (`llamux trace`)

use std::collections::{HashMap as StdMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::{Lsm, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use llamux_common as c;
use serde_json::{json, Map as JMap, Value};

use crate::bpf_btf;
use crate::event::{self, cstr, hook_name};
use crate::fsafe;
use crate::policy::{self, Action, Hook, Policy};
use crate::policy_advise::{Advise, AdvisorChoice, AutoAdvisor};
use crate::trace::{self, TraceWriter};
use llamux::policy_template::Format;
use llamux::render::terminal as esc;

pub const PIN_DIR: &str = "/sys/fs/bpf/llamux";

pub struct LoadOpts {
    pub policies: Vec<PathBuf>,
    pub model: Option<PathBuf>,
    pub detach: bool,
    pub bpf_obj: Option<PathBuf>,
    pub threads: Option<usize>,
    pub ctx: usize,
    pub advisor: AdvisorChoice,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn state_path() -> PathBuf {
    trace::run_dir().join("state.json")
}

fn read_state() -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(state_path()).ok()?).ok()
}

/// Mounts bpffs on /sys/fs/bpf when it is not there yet, root-only (mode
/// 0700: the default 1777 lets any user make /sys/fs/bpf/llamux first).
fn ensure_bpffs() -> Result<(), String> {
    let mut st: libc::statfs = unsafe_zeroed_statfs();
    let p = c"/sys/fs/bpf";
    // SAFETY: p is a NUL-terminated path, st a valid out-buffer.
    let r = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    if r == 0 && st.f_type == 0xcafe4a11 {
        return Ok(());
    }
    std::fs::create_dir_all("/sys/fs/bpf").map_err(|e| format!("/sys/fs/bpf: {e}"))?;
    // SAFETY: all arguments are NUL-terminated strings or null data.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            p.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(format!(
            "mount bpffs on /sys/fs/bpf: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn unsafe_zeroed_statfs() -> libc::statfs {
    // SAFETY: statfs is a plain C struct of integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn bump_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: r is a valid rlimit; failure only matters on pre-5.11 kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

struct StderrLog;
impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("llamux[bpf] {}", r.args());
    }
    fn flush(&self) {}
}

pub fn validate(paths: &[PathBuf]) -> Result<Vec<Policy>, String> {
    let mut out: Vec<Policy> = Vec::new();
    for p in paths {
        let pol = policy::load(p).map_err(|e| e.to_string())?;
        if out.iter().any(|q| q.name == pol.name) {
            return Err(format!(
                "{}: policy name `{}` is used twice",
                p.display(),
                pol.name
            ));
        }
        if matches!(pol.hook, Hook::Exec | Hook::Open) && out.iter().any(|q| q.hook == pol.hook) {
            return Err(format!(
                "{}: only one {} policy can be loaded at a time",
                p.display(),
                pol.hook.name()
            ));
        }
        out.push(pol);
    }
    if out.is_empty() {
        return Err("no policy given".into());
    }
    Ok(out)
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

fn build_config(pols: &[Policy], loader_tgid: u32) -> Result<c::Config, String> {
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

fn write_config(bpf: &mut Ebpf, cfg: c::Config) -> Result<(), String> {
    let map = bpf
        .map_mut("LLAMUX_CONFIG")
        .ok_or("BPF object has no LLAMUX_CONFIG map")?;
    let mut a: aya::maps::Array<&mut MapData, c::Config> =
        aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    a.set(0, cfg, 0).map_err(|e| format!("write config: {e}"))
}

struct Attached {
    /// Links pinned under PIN_DIR (removed on exit).
    pins: Vec<PathBuf>,
    programs: Vec<String>,
}

fn attach(bpf: &mut Ebpf, pols: &[Policy], pin_links: bool) -> Result<Attached, String> {
    let mut tps: Vec<(&str, &str, &str)> = vec![
        ("llamux_exec", "sched", "sched_process_exec"),
        ("llamux_exit", "sched", "sched_process_exit"),
    ];
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
    for (prog, cat, name) in tps {
        let tp: &mut TracePoint = bpf
            .program_mut(prog)
            .ok_or_else(|| format!("BPF object has no program {prog}"))?
            .try_into()
            .map_err(|e| format!("{prog}: {e}"))?;
        tp.load().map_err(|e| format!("load {prog}: {e:#}"))?;
        let id = tp
            .attach(cat, name)
            .map_err(|e| format!("attach {prog} to {cat}/{name}: {e:#}"))?;
        if pin_links {
            let link: FdLink = tp
                .take_link(id)
                .map_err(|e| e.to_string())?
                .try_into()
                .map_err(|e| format!("{prog}: link: {e}"))?;
            let path = Path::new(PIN_DIR).join(format!("link_{prog}"));
            let pinned = link
                .pin(&path)
                .map_err(|e| format!("pin {}: {e}", path.display()))?;
            std::mem::forget(pinned); // the pin holds the link
            out.pins.push(path);
        }
        out.programs.push(format!("tracepoint/{cat}/{name}"));
    }
    if !lsms.is_empty() {
        let btf = Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
        for (prog, hook) in lsms {
            let p: &mut Lsm = bpf
                .program_mut(prog)
                .ok_or_else(|| format!("BPF object has no program {prog}"))?
                .try_into()
                .map_err(|e| format!("{prog}: {e}"))?;
            p.load(hook, &btf)
                .map_err(|e| format!("load {prog}: {e:#}"))?;
            let id = p
                .attach()
                .map_err(|e| format!("attach {prog} to lsm/{hook}: {e:#} (is `bpf` in lsm=?)"))?;
            if pin_links {
                let link: FdLink = p.take_link(id).map_err(|e| e.to_string())?.into();
                let path = Path::new(PIN_DIR).join(format!("link_{prog}"));
                let pinned = link
                    .pin(&path)
                    .map_err(|e| format!("pin {}: {e}", path.display()))?;
                std::mem::forget(pinned);
                out.pins.push(path);
            }
            out.programs.push(format!("lsm/{hook}"));
        }
    }
    Ok(out)
}

fn pin_maps(bpf: &Ebpf) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for (name, map) in bpf.maps() {
        if !name.starts_with("LLAMUX_") {
            continue; // aya-log's own maps
        }
        let path = Path::new(PIN_DIR).join(name);
        map.pin(&path)
            .map_err(|e| format!("pin {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// The BPF object to load into the kernel: only a file owned by root (or
/// us) that nobody else can write (fsafe::read_trusted), from --bpf-obj,
/// $LLAMUX_BPF_OBJ or the first trusted of the usual places.
fn bpf_object(opts: &LoadOpts) -> Result<Vec<u8>, String> {
    if let Some(p) = &opts.bpf_obj {
        return fsafe::read_trusted(p).map_err(|e| format!("--bpf-obj {e}"));
    }
    if let Some(p) = std::env::var_os("LLAMUX_BPF_OBJ") {
        return fsafe::read_trusted(Path::new(&p)).map_err(|e| format!("LLAMUX_BPF_OBJ: {e}"));
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
                eprintln!("llamux: not loading {e}");
                refused.push(e);
            }
        }
    }
    Err(format!(
        "no trusted BPF object (looked in {}{}): run ebpf/build.sh or pass --bpf-obj FILE (owned by root, not writable by others)",
        cands.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) }
    ))
}

/// Per-policy runtime state in the relay.
struct Live {
    pol: Policy,
    handle: usize,
    tokens: f64,
    last_refill: Instant,
    /// Keys decided and still live (loader-side dedupe for syscall/sched).
    decided: StdMap<u64, u64>,
    rate_limited: u64,
    decisions: u64,
}

struct Job {
    policy: usize,
    /// The probe's key of an LSM request (exec/open: the file's inode);
    /// None: computed from the event (pid, comm).
    key: Option<c::DecisionKey>,
    /// The file's ctime the request saw (inode keys).
    ctime_ns: u64,
    event: JMap<String, Value>,
    summary: String,
    ts_ns: u64,
    pid: u32,
}

#[derive(Default)]
struct Counters {
    events: u64,
    hits: u64,
    requests: u64,
    queued: u64,
    queue_dropped: u64,
    decisions: u64,
    errors: u64,
    filtered: u64,
}

fn event_fields(e: &c::Event, hook: Hook, rate: f64, first_seen_ns: u64) -> JMap<String, Value> {
    event::fields(e, hook, rate, first_seen_ns, trace::now_unix())
}

pub fn load(opts: LoadOpts) -> Result<(), String> {
    let pols = validate(&opts.policies)?;
    let model = opts.model.clone();
    if model.is_none() && opts.advisor == AdvisorChoice::User {
        return Err("--advisor user needs --model".into());
    }
    if model.is_none() && !crate::policy_advise::kernel_available() {
        return Err("no --model given and the kernel module's advisor is not available (insmod llamux.ko model=...)".into());
    }
    if let Some(st) = read_state() {
        let pid = st.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
        if pid_alive(pid) {
            return Err(format!(
                "policies already loaded by pid {pid}: run `llamux unload` first"
            ));
        }
    }
    let obj = bpf_object(&opts)?;
    // Check the model before touching the kernel.
    if let Some(model) = &model {
        let _ = crate::engine_cmds::parse(model)?;
    }
    ensure_bpffs()?;
    bump_memlock();
    check_pin_dir()?;
    if Path::new(PIN_DIR).exists() {
        // Leftovers of a loader that died (the folder is ours alone).
        remove_pins();
    }
    fsafe::private_dir(Path::new(PIN_DIR), 0o700).map_err(pin_dir_refused)?;
    fsafe::private_dir(&trace::run_dir(), 0o755).map_err(|e| format!("run folder: {e}"))?;
    let t0 = Instant::now();
    let res = (|| {
        let mut bpf = EbpfLoader::new()
            .load(&obj)
            .map_err(|e| format!("load BPF object: {e:#}"))?;
        // The config must be valid before any program runs.
        write_config(&mut bpf, build_config(&pols, std::process::id())?)?;
        let maps = pin_maps(&bpf)?;
        let att = attach(&mut bpf, &pols, opts.detach)?;
        Ok::<_, String>((bpf, maps, att))
    })();
    let (mut bpf, map_pins, att) = match res {
        Ok(x) => x,
        Err(e) => {
            remove_pins();
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
        att.programs.join(", ")
    );

    // With --detach: fork now (no threads exist yet), the parent waits for
    // the child to be ready and exits.
    if opts.detach {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid 2-int array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err("pipe failed".into());
        }
        // SAFETY: the process is single-threaded here (no pool yet), so the
        // child may keep running Rust code after fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid > 0 {
            // SAFETY: closing our copy of the write end; reading one byte
            // into a valid buffer.
            unsafe { libc::close(fds[1]) };
            let mut b = [0u8; 1];
            // SAFETY: as above.
            let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
            if n == 1 && b[0] == b'k' {
                println!("llamux: policies loaded, relay running as pid {pid}");
                std::mem::forget(bpf); // the child owns the programs now
                return Ok(());
            }
            std::mem::forget(bpf);
            return Err(format!("relay (pid {pid}) failed to start"));
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
        let r = relay(
            &mut bpf,
            &pols,
            &opts,
            model.as_deref(),
            &map_pins,
            &att,
            Some(fds[1]),
        );
        if let Err(e) = &r {
            eprintln!("llamux: relay: {e}");
        }
        std::process::exit(if r.is_ok() { 0 } else { 1 });
    }
    relay(
        &mut bpf,
        &pols,
        &opts,
        model.as_deref(),
        &map_pins,
        &att,
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn relay(
    bpf: &mut Ebpf,
    pols: &[Policy],
    opts: &LoadOpts,
    model: Option<&Path>,
    map_pins: &[PathBuf],
    att: &Attached,
    ready_fd: Option<i32>,
) -> Result<(), String> {
    let me = std::process::id();
    let r = relay_inner(bpf, pols, opts, model, map_pins, att, ready_fd, me);
    // Clean exit: programs detach when `bpf` drops; remove every pin.
    remove_pins();
    let _ = std::fs::remove_file(state_path());
    r
}

#[allow(clippy::too_many_arguments)]
fn relay_inner(
    bpf: &mut Ebpf,
    pols: &[Policy],
    opts: &LoadOpts,
    model: Option<&Path>,
    map_pins: &[PathBuf],
    att: &Attached,
    ready_fd: Option<i32>,
    me: u32,
) -> Result<(), String> {
    write_config(bpf, build_config(pols, me)?)?;
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let mut logger = aya_log::EbpfLogger::init_with_logger(bpf, StderrLog).ok();

    let t0 = Instant::now();
    // One worker thread unless asked: the relay shares the CPUs with the
    // workload it watches, and a pool spinning on a busy CPU is slower.
    let mut adv = AutoAdvisor::new(opts.advisor, model, opts.threads.or(Some(1)), opts.ctx)?;
    let mut live = Vec::new();
    for p in pols {
        let handle = adv.add_policy(p)?;
        live.push(Live {
            pol: p.clone(),
            handle,
            tokens: p.rate_limit as f64,
            last_refill: Instant::now(),
            decided: StdMap::new(),
            rate_limited: 0,
            decisions: 0,
        });
    }
    let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut tw = TraceWriter::create()?;
    let state = json!({
        "pid": me,
        "started": trace::now_unix(),
        "advisor": adv.name(),
        "model": model.map(|m| m.display().to_string()).unwrap_or_else(|| "kernel module's model".into()),
        "policies": pols.iter().map(|p| json!({"name": p.name, "description": p.description, "file": p.file.display().to_string(), "hook": p.hook.name(),
            "key": p.key.name(), "default": if p.default_deny {"deny"} else {"allow"}, "ttl": p.ttl_s, "rate_limit": p.rate_limit})).collect::<Vec<_>>(),
        "programs": att.programs,
        "pins": map_pins.iter().chain(att.pins.iter()).map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "detached": opts.detach,
        "prefill_ms": prefill_ms,
    });
    fsafe::write_private(
        &state_path(),
        serde_json::to_string_pretty(&state)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    eprintln!(
        "llamux: advisor ready ({}, prefixes prefilled in {prefill_ms:.0} ms); relaying",
        adv.name()
    );
    if let Some(fd) = ready_fd {
        // SAFETY: fd is the pipe's write end, owned by this process.
        unsafe {
            libc::write(fd, b"k".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }

    let mut events = RingBuf::try_from(
        bpf.take_map("LLAMUX_EVENTS")
            .ok_or("no LLAMUX_EVENTS map")?,
    )
    .map_err(|e| e.to_string())?;
    let mut requests = RingBuf::try_from(
        bpf.take_map("LLAMUX_REQUESTS")
            .ok_or("no LLAMUX_REQUESTS map")?,
    )
    .map_err(|e| e.to_string())?;
    let mut hits = RingBuf::try_from(bpf.take_map("LLAMUX_HITS").ok_or("no LLAMUX_HITS map")?)
        .map_err(|e| e.to_string())?;
    let mut decisions: BpfHashMap<MapData, c::DecisionKey, c::Decision> = BpfHashMap::try_from(
        bpf.take_map("LLAMUX_DECISIONS")
            .ok_or("no LLAMUX_DECISIONS map")?,
    )
    .map_err(|e| e.to_string())?;
    let hitcount: BpfHashMap<MapData, c::DecisionKey, c::HitStat> = BpfHashMap::try_from(
        bpf.take_map("LLAMUX_HITCOUNT")
            .ok_or("no LLAMUX_HITCOUNT map")?,
    )
    .map_err(|e| e.to_string())?;
    // Decision key -> (policy, key as shown), for the hit counters.
    let mut names: StdMap<c::DecisionKey, (String, String)> = StdMap::new();

    let mut cnt = Counters::default();
    // Decision requests from the LSM hooks gate enforcement: they go first.
    let mut urgent: VecDeque<Job> = VecDeque::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut inflight: HashSet<(usize, c::DecisionKey)> = HashSet::new();
    // The policy whose queued events go next (`pop_fair`).
    let mut next_policy = 0usize;
    // syscall rate per pid: (count, ts_ns) of the previous sample
    let mut last_sys: StdMap<u32, (u64, u64)> = StdMap::new();
    let mut first_seen: StdMap<u32, u64> = StdMap::new();
    let mut last_status = Instant::now();
    const QUEUE_MAX: usize = 512;

    while !STOP.load(Ordering::SeqCst) {
        let mut got = 0;
        // Drain the event ring (bounded per round, so hits and the queue
        // keep moving under a flood).
        while got < 4096 {
            // Requests (their own ring) before observation events.
            let Some(item) = requests.next().or_else(|| events.next()) else {
                break;
            };
            got += 1;
            let Some(e) = event::decode(&item) else {
                continue;
            };
            drop(item);
            cnt.events += 1;
            match e.kind {
                c::EV_REQUEST => {
                    cnt.requests += 1;
                    let hook = if e.a as u32 == c::HOOK_EXEC {
                        Hook::Exec
                    } else {
                        Hook::Open
                    };
                    if let Some(i) = live.iter().position(|l| l.pol.hook == hook) {
                        let ev = event_fields(&e, hook, 0.0, 0);
                        let summary =
                            format!("pid {} {} {}", e.pid, cstr(&e.comm), event::path_text(&e));
                        push_job(
                            &mut urgent,
                            &mut inflight,
                            &mut cnt,
                            QUEUE_MAX,
                            i,
                            e.key,
                            ev,
                            summary,
                            &e,
                        );
                    }
                }
                c::EV_SYSCALL => {
                    let prev = last_sys.insert(e.pid, (e.b, e.ts_ns));
                    let Some((pc, pt)) = prev else { continue };
                    let dt = e.ts_ns.saturating_sub(pt) as f64 / 1e9;
                    if dt <= 0.0 {
                        continue;
                    }
                    let rate = e.b.saturating_sub(pc) as f64 / dt;
                    for (i, l) in live.iter().enumerate() {
                        if l.pol.hook != Hook::Syscall {
                            continue;
                        }
                        if rate < l.pol.min_rate
                            || l.pol.exclude_comm.iter().any(|x| *x == cstr(&e.comm))
                        {
                            cnt.filtered += 1;
                            continue;
                        }
                        let ev = event_fields(&e, Hook::Syscall, rate, 0);
                        let Ok((key, _)) = l.pol.key_of(&ev) else {
                            continue;
                        };
                        if l.decided
                            .get(&key.hash)
                            .is_some_and(|&exp| exp == 0 || exp > mono_ns())
                        {
                            continue;
                        }
                        let summary =
                            format!("pid {} {} {:.0} syscalls/s", e.pid, cstr(&e.comm), rate);
                        push_job(
                            &mut queue,
                            &mut inflight,
                            &mut cnt,
                            QUEUE_MAX,
                            i,
                            key,
                            ev,
                            summary,
                            &e,
                        );
                    }
                }
                c::EV_SCHED => {
                    let fs = *first_seen
                        .entry(e.tid)
                        .or_insert(e.ts_ns.saturating_sub(e.a));
                    for (i, l) in live.iter().enumerate() {
                        if l.pol.hook != Hook::Sched {
                            continue;
                        }
                        if l.pol.exclude_comm.iter().any(|x| *x == cstr(&e.comm)) {
                            cnt.filtered += 1;
                            continue;
                        }
                        let ev = event_fields(&e, Hook::Sched, 0.0, fs);
                        let Ok((key, _)) = l.pol.key_of(&ev) else {
                            continue;
                        };
                        if l.decided
                            .get(&key.hash)
                            .is_some_and(|&exp| exp == 0 || exp > mono_ns())
                        {
                            continue;
                        }
                        let summary = format!(
                            "pid {} {} runtime {} ms, {} switches ({}% involuntary)",
                            e.pid,
                            cstr(&e.comm),
                            e.a / 1_000_000,
                            e.b,
                            ev["involuntary_pct"]
                        );
                        push_job(
                            &mut queue,
                            &mut inflight,
                            &mut cnt,
                            QUEUE_MAX,
                            i,
                            key,
                            ev,
                            summary,
                            &e,
                        );
                    }
                }
                c::EV_EXIT => {
                    last_sys.remove(&e.pid);
                    first_seen.remove(&e.tid);
                }
                _ => {}
            }
        }
        // Decision hits (LSM and tracepoints) and applied nice changes.
        while let Some(item) = hits.next() {
            let Some(e) = event::decode(&item) else {
                continue;
            };
            drop(item);
            cnt.hits += 1;
            let hook_pol = || {
                live.iter()
                    .find(|l| l.pol.hook.id() == e.key.hook)
                    .map(|l| l.pol.name.clone())
            };
            let pol = live
                .get((e.c & 0xffff_ffff) as usize)
                .map(|l| l.pol.name.clone())
                .or_else(hook_pol)
                .unwrap_or_default();
            let mut rec = event::hit_json(&e, &pol, trace::now_unix());
            // An inode-keyed hit is shown under the name it was decided for.
            if let (Some((_, shown)), true) = (names.get(&e.key), e.key.is_file()) {
                rec["key"] = json!(shown);
            }
            tw.write(&rec);
        }
        if let Some(l) = logger.as_mut() {
            l.flush();
        }
        // Advise: as many queued events as the policies' rate limits allow.
        let budget = Instant::now() + Duration::from_millis(200);
        while Instant::now() < budget {
            let Some(job) = urgent
                .pop_front()
                .or_else(|| pop_fair(&mut queue, &mut next_policy, live.len()))
            else {
                break;
            };
            let l = &mut live[job.policy];
            let el = l.last_refill.elapsed().as_secs_f64();
            l.last_refill = Instant::now();
            l.tokens = (l.tokens + el * l.pol.rate_limit as f64).min(l.pol.rate_limit as f64);
            let (key, shown) = match (job.key, l.pol.key_of(&job.event)) {
                // Exec and open requests: the probe's inode key, shown by
                // the name the hook saw.
                (Some(k), Ok((_, shown))) if k.is_file() => (k, shown),
                (_, Ok(k)) => k,
                (_, Err(_)) => continue,
            };
            inflight.remove(&(job.policy, key));
            if l.tokens < 1.0 {
                l.rate_limited += 1;
                tw.write(&json!({"type": "drop", "time": trace::now_unix(), "policy": l.pol.name, "reason": "rate_limit", "key": shown}));
                continue;
            }
            l.tokens -= 1.0;
            // The advisor renders the event in its prompt format (a chat
            // template in user space) and scores it.
            let (text, a) = match adv.advise_event(l.handle, &job.event) {
                Ok(r) => r,
                Err(e) => {
                    cnt.errors += 1;
                    eprintln!("llamux: advise ({}): {e}", l.pol.name);
                    continue;
                }
            };
            let now = mono_ns();
            // Calibration: the answers' biases (chat prompts), and under the
            // policy's margin the default applies ("uncertain").
            let v = l
                .pol
                .decide(&a.scores, adv.format(l.handle) != Format::Plain);
            let ans = &l.pol.answers[v.best];
            let expires = policy::expiry_ns(now, l.pol.ttl_s);
            let d = c::Decision {
                action: v.action.code(),
                policy: job.policy as u32,
                expires_ns: expires,
                answer: v.best as u32,
                _pad: 0,
                ctime_ns: job.ctime_ns,
            };
            let mut applied = String::new();
            if let Err(e) = decisions.insert(key, d, 0) {
                cnt.errors += 1;
                applied = format!("map write failed: {e}");
            }
            if let Action::Renice(n) = v.action {
                // SAFETY: plain syscall on a pid; failure is reported.
                let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, job.pid, n) };
                applied = if r == 0 {
                    format!("nice {n}")
                } else {
                    format!("renice failed: {}", std::io::Error::last_os_error())
                };
            }
            l.decided.insert(key.hash, expires);
            names.insert(key, (l.pol.name.clone(), shown.clone()));
            l.decisions += 1;
            cnt.decisions += 1;
            let scores: JMap<String, Value> = l
                .pol
                .answers
                .iter()
                .zip(&a.scores)
                .map(|(an, s)| (an.text.clone(), json!(s)))
                .collect();
            tw.write(&json!({
                "type": "decision", "time": trace::now_unix(), "policy": l.pol.name, "hook": l.pol.hook.name(),
                "key": shown, "key_hash": format!("{:016x}", key.hash), "file_id": event::file_id(&key), "pid": job.pid, "summary": job.summary,
                "event": job.event, "prompt": text, "answer": ans.text, "answer_index": v.best,
                "action": v.action.name(), "uncertain": v.uncertain, "margin": v.margin, "applied": applied, "scores": scores, "score_list": a.scores,
                "latency_us": a.latency_us, "e2e_us": now.saturating_sub(job.ts_ns) / 1000,
                "event_tokens": a.event_tokens, "advisor": adv.name(), "ttl": l.pol.ttl_s,
            }));
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            let st = json!({"pid": me, "time": trace::now_unix(), "events": cnt.events, "hits": cnt.hits, "requests": cnt.requests,
                "queued": cnt.queued, "queue_len": queue.len() + urgent.len(), "queue_dropped": cnt.queue_dropped, "decisions": cnt.decisions,
                "errors": cnt.errors, "filtered": cnt.filtered,
                "policies": live.iter().map(|l| json!({"name": l.pol.name, "decisions": l.decisions, "rate_limited": l.rate_limited})).collect::<Vec<_>>(),
                "decision_hits": decision_hits(&hitcount, &names)});
            let _ = fsafe::write_private(
                &trace::run_dir().join("relay.json"),
                st.to_string().as_bytes(),
            );
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "llamux: stopping ({} events, {} decisions)",
        cnt.events, cnt.decisions
    );
    Ok(())
}

/// The tracepoints' per-decision hit counters (HITCOUNT), most hit first.
fn decision_hits(
    m: &BpfHashMap<MapData, c::DecisionKey, c::HitStat>,
    names: &StdMap<c::DecisionKey, (String, String)>,
) -> Vec<Value> {
    let mut v: Vec<(c::DecisionKey, u64)> = m.iter().flatten().map(|(k, h)| (k, h.hits)).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v.truncate(64);
    v.iter()
        .map(|(k, n)| {
            let (pol, shown) = names.get(k).cloned().unwrap_or_else(|| {
                (
                    String::new(),
                    format!("{}:{:016x}", hook_name(k.hook), k.hash),
                )
            });
            json!({"policy": pol, "hook": hook_name(k.hook), "key": shown, "hits": n})
        })
        .collect()
}

/// The next observation job, the policies taking turns (FIFO within
/// each): with decisions taking seconds under emulation, a flood of one
/// policy's events queued first must not starve the others'.
fn pop_fair(q: &mut VecDeque<Job>, next: &mut usize, n_policies: usize) -> Option<Job> {
    let n = n_policies.max(1);
    let i = (0..q.len()).min_by_key(|&i| ((q[i].policy % n + n - *next % n) % n, i))?;
    let job = q.remove(i)?;
    *next = (job.policy + 1) % n;
    Some(job)
}

#[allow(clippy::too_many_arguments)]
fn push_job(
    q: &mut VecDeque<Job>,
    inflight: &mut HashSet<(usize, c::DecisionKey)>,
    cnt: &mut Counters,
    max: usize,
    policy: usize,
    key: c::DecisionKey,
    event: JMap<String, Value>,
    summary: String,
    e: &c::Event,
) {
    if !inflight.insert((policy, key)) {
        return; // already queued
    }
    if q.len() >= max {
        inflight.remove(&(policy, key));
        cnt.queue_dropped += 1;
        return;
    }
    cnt.queued += 1;
    let (key, ctime_ns) = if key.is_file() {
        (Some(key), e.ctime_ns)
    } else {
        (None, 0)
    };
    q.push_back(Job {
        policy,
        key,
        ctime_ns,
        event,
        summary,
        ts_ns: e.ts_ns,
        pid: e.pid,
    });
}

/// The message for a pin folder that is not ours alone.
fn pin_dir_refused(why: String) -> String {
    format!(
        "refusing {PIN_DIR}: {why}. Another user may have made it to block or spoof llamux; \
         remove it (rm -r {PIN_DIR}) and mount bpffs root-only (mount -t bpf -o mode=0700 bpf /sys/fs/bpf)"
    )
}

/// An existing pin folder must be ours (root-owned, 0700 as we make it).
fn check_pin_dir() -> Result<(), String> {
    match std::fs::symlink_metadata(PIN_DIR) {
        Ok(_) => fsafe::private_dir(Path::new(PIN_DIR), 0o700).map_err(pin_dir_refused),
        Err(_) => Ok(()),
    }
}

fn remove_pins() {
    if let Ok(rd) = std::fs::read_dir(PIN_DIR) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(PIN_DIR);
}

/// Policies, pins and the run files are root's (0600/0700): another user
/// cannot see them, so would wrongly hear "nothing loaded".
fn need_root(what: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{what} needs root: the policies, pins and {} are root's",
            trace::run_dir().display()
        ));
    }
    Ok(())
}

pub fn unload() -> Result<(), String> {
    need_root("llamux unload")?;
    let mut did = Vec::new();
    if let Some(st) = read_state() {
        let pid = st.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
        if pid_alive(pid) {
            // SAFETY: sending SIGTERM to the loader recorded in the state file.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
                // reap it when it is our child (not the case with --detach)
                // SAFETY: non-blocking waitpid on a pid.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
            if pid_alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            did.push(format!("stopped relay pid {pid}"));
        }
        let _ = std::fs::remove_file(state_path());
    }
    if Path::new(PIN_DIR).exists() {
        check_pin_dir()?;
        let n = std::fs::read_dir(PIN_DIR).map(|r| r.count()).unwrap_or(0);
        remove_pins();
        if Path::new(PIN_DIR).exists() {
            return Err(format!("could not remove {PIN_DIR}"));
        }
        did.push(format!("removed {n} pins"));
    }
    let _ = std::fs::remove_file(trace::run_dir().join("relay.json"));
    if did.is_empty() {
        println!("llamux: nothing loaded");
    } else {
        println!("llamux: unloaded ({})", did.join(", "));
    }
    Ok(())
}

fn pinned(name: &str) -> Result<Map, String> {
    let p = Path::new(PIN_DIR).join(name);
    let md = MapData::from_pin(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Map::from_map_data(md).map_err(|e| format!("{}: {e}", p.display()))
}

/// Exit quietly when the reader of our stdout goes away (`| grep -q`).
pub fn default_sigpipe() {
    // SAFETY: restores the default disposition of SIGPIPE; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

pub fn status(json_out: bool) -> Result<(), String> {
    default_sigpipe();
    need_root("llamux status")?;
    let st = read_state();
    let pid = st
        .as_ref()
        .and_then(|s| s.get("pid"))
        .and_then(Value::as_i64)
        .unwrap_or(0) as i32;
    let alive = pid_alive(pid);
    let relay: Option<Value> = std::fs::read_to_string(trace::run_dir().join("relay.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let mut stats = JMap::new();
    let mut n_decisions = None;
    let pin_problem = check_pin_dir().err();
    if Path::new(PIN_DIR).exists() && pin_problem.is_none() {
        if let Ok(m) = pinned("LLAMUX_STATS") {
            if let Ok(a) = PerCpuArray::<_, u64>::try_from(m) {
                for (i, name) in c::STAT_NAMES.iter().enumerate() {
                    let v: u64 = a.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
                    stats.insert(name.to_string(), json!(v));
                }
            }
        }
        if let Ok(m) = pinned("LLAMUX_DECISIONS") {
            if let Ok(h) = BpfHashMap::<_, c::DecisionKey, c::Decision>::try_from(m) {
                n_decisions = Some(h.keys().count());
            }
        }
    }
    let pins: Vec<String> = std::fs::read_dir(PIN_DIR)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let out = json!({
        "loaded": alive || !pins.is_empty(),
        "relay_pid": if alive { json!(pid) } else { Value::Null },
        "state": st, "relay": relay, "probe_stats": stats, "decisions_in_map": n_decisions, "pins": pins,
        "pin_dir_problem": pin_problem,
    });
    if json_out {
        println!("{out}");
        return Ok(());
    }
    if let Some(p) = out["pin_dir_problem"].as_str() {
        println!("warning: {}", esc(p));
    }
    if !out["loaded"].as_bool().unwrap_or(false) {
        println!("llamux: no policy loaded");
        return Ok(());
    }
    if let Some(st) = &st {
        println!(
            "relay: pid {pid} ({}), advisor {}",
            if alive { "running" } else { "NOT running" },
            esc(st["advisor"].as_str().unwrap_or("?"))
        );
        for p in st["policies"].as_array().into_iter().flatten() {
            println!(
                "policy {:<16} hook {:<8} key {:<5} default {:<5} ttl {}s rate {}/s  ({})",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["hook"].as_str().unwrap_or("")),
                esc(p["key"].as_str().unwrap_or("")),
                esc(p["default"].as_str().unwrap_or("")),
                p["ttl"],
                p["rate_limit"],
                esc(p["file"].as_str().unwrap_or(""))
            );
        }
        println!(
            "programs: {}",
            esc(&st["programs"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default())
        );
    }
    println!("pins: {}", esc(&pins.join(" ")));
    println!(
        "decisions in map: {}",
        n_decisions.map_or("?".into(), |n| n.to_string())
    );
    println!(
        "probe counters: {}",
        stats
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(r) = relay {
        println!(
            "relay counters: events={} requests={} decisions={} hits={} queue_dropped={} errors={}",
            r["events"], r["requests"], r["decisions"], r["hits"], r["queue_dropped"], r["errors"]
        );
        let dh: Vec<String> = r["decision_hits"]
            .as_array()
            .into_iter()
            .flatten()
            .take(20)
            .map(|h| {
                format!(
                    "{} {}={}",
                    esc(h["policy"].as_str().unwrap_or("")),
                    esc(h["key"].as_str().unwrap_or("")),
                    h["hits"]
                )
            })
            .collect();
        println!(
            "decision hits (tracepoints): {}",
            if dh.is_empty() {
                "none".into()
            } else {
                dh.join(", ")
            }
        );
    }
    Ok(())
}

/// `llamux advise`: the decision for one event, computed in user space
/// (or by the kernel module's advisor with `--advisor kernel|auto`).
pub fn advise_cmd(
    model: Option<&Path>,
    advisor: AdvisorChoice,
    policy_file: &Path,
    event_json: &str,
    threads: Option<usize>,
    ctx: usize,
    json_out: bool,
) -> Result<(), String> {
    default_sigpipe();
    let pol = policy::load(policy_file).map_err(|e| e.to_string())?;
    let ev: Value =
        serde_json::from_str(event_json).map_err(|e| format!("--event: not JSON: {e}"))?;
    let Value::Object(ev) = ev else {
        return Err("--event: expected a JSON object".into());
    };
    pol.render(&ev)?;
    let (key, shown) = pol
        .key_of(&ev)
        .unwrap_or((c::DecisionKey::zeroed(), String::new()));
    let mut adv = AutoAdvisor::new(advisor, model, threads, ctx)?;
    let h = adv.add_policy(&pol)?;
    let (text, a) = adv.advise_event(h, &ev)?;
    let v = pol.decide(&a.scores, adv.format(h) != Format::Plain);
    let ans = &pol.answers[v.best];
    let scores: JMap<String, Value> = pol
        .answers
        .iter()
        .zip(&a.scores)
        .map(|(an, s)| (an.text.clone(), json!(s)))
        .collect();
    if json_out {
        println!(
            "{}",
            json!({"policy": pol.name, "key": shown, "key_hash": format!("{:016x}", key.hash), "prompt": text,
                "answer": ans.text, "answer_index": v.best, "action": v.action.name(), "uncertain": v.uncertain, "margin": v.margin,
                "scores": scores, "score_list": a.scores,
                "latency_us": a.latency_us, "event_tokens": a.event_tokens, "prefix_tokens": a.prefix_tokens, "advisor": adv.name()})
        );
    } else {
        println!("policy {}: {}", pol.name, esc(&shown));
        for (an, s) in pol.answers.iter().zip(&a.scores) {
            println!(
                "  {:<12} {:>10.4}  {}",
                format!("{:?}", an.text),
                s,
                an.action.name()
            );
        }
        let unsure = if v.uncertain {
            format!(
                ", uncertain: margin {:.2} < {:.2}, the default applies",
                v.margin, pol.margin
            )
        } else {
            String::new()
        };
        println!(
            "answer {:?} -> {}{unsure} ({:.1} ms, {} advisor)",
            ans.text,
            v.action.name(),
            a.latency_us as f64 / 1000.0,
            adv.name()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_take_turns_in_the_queue() {
        let job = |policy, pid| Job {
            policy,
            key: None,
            ctime_ns: 0,
            event: JMap::new(),
            summary: String::new(),
            ts_ns: 0,
            pid,
        };
        // Policy 0 floods first; policy 2's event arrives last.
        let mut q: VecDeque<Job> = [(0, 1), (0, 2), (0, 3), (1, 4), (0, 5), (2, 6)]
            .map(|(p, pid)| job(p, pid))
            .into();
        let mut next = 0;
        let order: Vec<u32> = std::iter::from_fn(|| pop_fair(&mut q, &mut next, 3))
            .map(|j| j.pid)
            .collect();
        assert_eq!(order, [1, 4, 6, 2, 3, 5]);
        assert!(pop_fair(&mut q, &mut next, 3).is_none());
    }

    #[test]
    fn nice_record_keeps_negative_values_and_the_caller() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_NICE;
        e.pid = 42;
        e.tid = 43;
        e.ppid = 7;
        e.comm[..2].copy_from_slice(b"dd");
        e.pcomm[..6].copy_from_slice(b"renice");
        e.a = -3i64 as u64;
        e.b = 5;
        e.c = 1u64 << 32;
        e.key = c::DecisionKey {
            hook: c::HOOK_SCHED,
            kind: c::KEY_PID,
            hash: 42,
            dev: 0,
            gen: 0,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(r["type"], "applied");
        assert_eq!(r["key"], "pid:42");
        assert_eq!(
            (r["nice_old"].as_i64(), r["nice_new"].as_i64()),
            (Some(-3), Some(5))
        );
        assert_eq!(
            (r["by_pid"].as_u64(), r["by_comm"].as_str()),
            (Some(7), Some("renice"))
        );
        assert_eq!(
            (r["hook"].as_str(), r["answer_index"].as_u64()),
            (Some("sched"), Some(1))
        );
    }

    #[test]
    fn tracepoint_hit_record_names_its_probe_and_count() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_TP_HIT;
        e.a = 1234;
        e.b = c::ACT_ALLOW as u64;
        e.path[..9].copy_from_slice(b"/tmp/tool");
        e.key = c::DecisionKey {
            hook: c::HOOK_EXEC,
            kind: c::KEY_EXE,
            hash: 7,
            dev: 1,
            gen: 2,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (r["type"].as_str(), r["key"].as_str()),
            (Some("hit"), Some("exe:/tmp/tool"))
        );
        assert_eq!(r["probe"], "tracepoint/sched/sched_process_exec");
        assert_eq!(r["hits"].as_u64(), Some(1234));
        e.key = c::DecisionKey {
            hook: c::HOOK_SCHED,
            kind: c::KEY_PID,
            hash: 9,
            dev: 0,
            gen: 0,
        };
        assert_eq!(
            event::hit_json(&e, "", 0.0)["probe"],
            "tracepoint/raw_syscalls/sys_enter"
        );
        assert_eq!(event::hit_json(&e, "", 0.0)["key"], "pid:9");
        assert!(trace::human(&event::hit_json(&e, "", 0.0)).contains("1234 hits"));
        // A pid-keyed open hit from sys_enter carries the path the task opened.
        e.key = c::DecisionKey {
            hook: c::HOOK_OPEN,
            kind: c::KEY_PID,
            hash: 8,
            dev: 0,
            gen: 0,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (r["key"].as_str(), r["path"].as_str()),
            (Some("pid:8"), Some("/tmp/tool"))
        );
        assert_eq!(r["probe"], "tracepoint/raw_syscalls/sys_enter");
        assert!(r.get("file_id").is_none());
        // An inode-keyed open hit (file_open) names the file and its identity.
        e.kind = c::EV_HIT;
        e.a = c::HOOK_OPEN as u64;
        e.key = c::DecisionKey {
            hook: c::HOOK_OPEN,
            kind: c::KEY_FILE,
            hash: 8,
            dev: 1,
            gen: 3,
        };
        let r = event::hit_json(&e, "", 0.0);
        assert_eq!(
            (
                r["key"].as_str(),
                r["file_id"].as_str(),
                r["probe"].as_str()
            ),
            (Some("file:tool"), Some("1:8:3"), Some("lsm/file_open"))
        );
    }
}
