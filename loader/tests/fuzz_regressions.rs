//! Replays the fuzzing regression corpora of the loader's targets
//! (kmod/engine/fuzz/regressions/{policy,event}) through the fuzz targets'
//! own checks.

use llamux_checks::{event as event_check, policy as policy_check};

use std::path::{Path, PathBuf};

use llamux::event;
use llamux::policy::{Hook, Policy};
use llamux_common as c;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped() -> Vec<Policy> {
    policy_check::shipped(&root().join("policies"))
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("kmod/engine/fuzz/regressions").join(target);
    let v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        !v.is_empty(),
        "empty regression corpus in {}",
        dir.display()
    );
    v
}

#[test]
fn policy_regressions_replay() {
    for data in corpus("policy") {
        policy_check::check(&data);
    }
}

#[test]
fn event_regressions_replay() {
    let p = shipped();
    for data in corpus("event") {
        event_check::check(&data, &p);
    }
}

/// The shipped policies survive being written back (the fuzz property).
#[test]
fn shipped_policies_write_back() {
    for p in shipped() {
        let q = llamux::policy::parse(&p.file, &policy_check::to_toml(&p)).unwrap();
        assert_eq!(q, p);
    }
}

fn record(e: &c::Event) -> Vec<u8> {
    // SAFETY: Event is #[repr(C)] plain integers without implicit padding.
    unsafe {
        std::slice::from_raw_parts(
            (e as *const c::Event).cast::<u8>(),
            std::mem::size_of::<c::Event>(),
        )
    }
    .to_vec()
}

fn put(dst: &mut [u8], s: &str) {
    dst[..s.len()].copy_from_slice(s.as_bytes());
}

/// Events shaped like the probes' (ebpf/probes), for seeding.
fn sample_events() -> Vec<(&'static str, c::Event)> {
    let mut out = Vec::new();
    let mut e = c::Event::zeroed();
    (e.pid, e.tid, e.ppid, e.ts_ns) = (83, 83, 80, 7_394_636_000);
    put(&mut e.comm, "sh");
    let mut exec = e;
    exec.kind = c::EV_EXEC;
    put(&mut exec.path, "/tmp/tool");
    put(&mut exec.pcomm, "test.sh");
    out.push(("exec", exec));
    let mut req = exec;
    req.kind = c::EV_REQUEST;
    (req.a, req.b) = (c::HOOK_EXEC as u64, c::ACT_ALLOW as u64);
    req.key = c::DecisionKey {
        hook: c::HOOK_EXEC,
        kind: c::KEY_EXE,
        hash: 4711,
        dev: 0x16,
        gen: 0x9e3779b9,
    };
    req.ctime_ns = 1_765_000_000_123_456_789;
    out.push(("request-exec", req));
    let mut hit = req;
    hit.kind = c::EV_HIT;
    (hit.b, hit.c) = (c::ACT_DENY as u64, 1 << 32);
    out.push(("hit-deny", hit));
    let mut open = e;
    open.kind = c::EV_REQUEST;
    put(&mut open.path, "secret.txt");
    (open.a, open.b) = (c::HOOK_OPEN as u64, c::ACT_DENY as u64);
    open.key = c::DecisionKey {
        hook: c::HOOK_OPEN,
        kind: c::KEY_FILE,
        hash: 4712,
        dev: 0x16,
        gen: 7,
    };
    out.push(("request-open", open));
    let mut sys = e;
    sys.kind = c::EV_SYSCALL;
    (sys.a, sys.b) = (39, 4096);
    out.push(("syscall", sys));
    let mut sched = e;
    sched.kind = c::EV_SCHED;
    (sched.a, sched.b, sched.c) = (1_500_000_000, 320, 250);
    out.push(("sched", sched));
    let mut exit = e;
    exit.kind = c::EV_EXIT;
    (exit.a, exit.b) = (12_000, 2_000_000_000);
    out.push(("exit", exit));
    let mut full = exec;
    full.path = [b'/'; c::PATH_LEN];
    full.comm = [0xff; c::COMM_LEN];
    out.push(("no-nul", full));
    // A path the probe cut, with a newline and an escape in it.
    let mut cut = req;
    cut.path = [b'a'; c::PATH_LEN];
    put(&mut cut.path, "/tmp/x\nVerdict on /tmp/tool\x1b[2J/");
    cut.path[c::PATH_LEN - 1] = 0;
    cut.flags = c::EVF_PATH_CUT;
    out.push(("request-exec-cut", cut));
    let mut deny = cut;
    deny.kind = c::EV_HIT;
    deny.flags = c::EVF_PATH_HEAD_CUT | c::EVF_UNREPRESENTABLE;
    (deny.b, deny.c) = (c::ACT_DENY as u64, u64::MAX);
    out.push(("hit-unrepresentable", deny));
    out
}

/// Writes the seed corpora of the policy, event and advise targets (run
/// with --ignored): the shipped policies, probe-shaped events, and the
/// request record each shipped policy sends for such an event.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let reg = root().join("kmod/engine/fuzz/regressions");
    for t in ["policy", "event", "advise"] {
        std::fs::create_dir_all(reg.join(t)).unwrap();
    }
    for p in shipped() {
        std::fs::copy(
            &p.file,
            reg.join("policy").join(p.file.file_name().unwrap()),
        )
        .unwrap();
    }
    let pols = shipped();
    for (name, e) in sample_events() {
        std::fs::write(reg.join("event").join(format!("{name}.bin")), record(&e)).unwrap();
    }
    for p in &pols {
        let hook_ev = match p.hook {
            Hook::Exec => "exec",
            Hook::Open => "request-open",
            Hook::Syscall => "syscall",
            Hook::Sched => "sched",
        };
        let (_, e) = sample_events()
            .into_iter()
            .find(|(n, _)| *n == hook_ev)
            .unwrap();
        let fields = event::fields(&e, p.hook, 1234.0, 0, 1_800_000_000.0);
        let text = p.render(&fields).unwrap();
        let answers: Vec<&[u8]> = p.answers.iter().map(|a| a.text.as_bytes()).collect();
        let rec = llamux_engine::advise::request::encode(
            512,
            0,
            p.prefix.as_bytes(),
            text.as_bytes(),
            b"",
            &answers,
        );
        std::fs::write(reg.join("advise").join(format!("{}.bin", p.name)), rec).unwrap();
    }
}
