//! The probes' `Event` records (ebpf/common) as the loader reads them from
//! the ring buffers: decoding and the fields they offer to policies.

use llamux_common as c;
use serde_json::{json, Map as JMap, Value};

use crate::policy::Hook;

/// One ring-buffer item as an `Event`; None when it is too short.
pub fn decode(item: &[u8]) -> Option<c::Event> {
    if item.len() < std::mem::size_of::<c::Event>() {
        return None;
    }
    // SAFETY: `item` holds at least size_of::<Event>() bytes; Event is
    // #[repr(C)] plain integers (every bit pattern valid), and
    // read_unaligned copes with the ring's 8-byte alignment.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) })
}

/// A NUL-terminated (or full) byte array as text.
pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(b)).into_owned()
}

/// Marks a path the probe could not carry whole (its text stays exact).
pub const CUT: &str = "\u{2026}[cut]";

/// The event's path as shown to the model and in the trace: a path longer
/// than the record ends with CUT, one whose head the dentry walk could not
/// reach starts with it.
pub fn path_text(e: &c::Event) -> String {
    let p = cstr(&e.path);
    if e.flags & c::EVF_PATH_HEAD_CUT != 0 {
        format!("{CUT}{p}")
    } else if e.flags & c::EVF_PATH_CUT != 0 {
        format!("{p}{CUT}")
    } else {
        p
    }
}

/// The file identity of an inode-keyed decision ("dev:ino:gen", hex dev
/// and gen), None for the other key kinds.
pub fn file_id(k: &c::DecisionKey) -> Option<String> {
    k.is_file()
        .then(|| format!("{:x}:{}:{:x}", k.dev, k.hash, k.gen))
}

/// The fields an event offers to `hook`'s prompt template: every one of
/// `hook.fields()`, and those of `hook.optional_fields()` the probe filled
/// (exec requests: `exec_context`). `rate`: syscalls/s since the previous
/// sample; `first_seen_ns`: when the task was first seen (sched); `now`:
/// Unix time.
pub fn fields(
    e: &c::Event,
    hook: Hook,
    rate: f64,
    first_seen_ns: u64,
    now: f64,
) -> JMap<String, Value> {
    let mut m = JMap::new();
    m.insert("pid".into(), json!(e.pid));
    m.insert("uid".into(), json!(e.uid));
    m.insert("comm".into(), json!(cstr(&e.comm)));
    m.insert("time".into(), json!(format!("{now:.3}")));
    match hook {
        Hook::Exec => {
            let path = path_text(e);
            m.insert(
                "exe".into(),
                json!(path.rsplit('/').next().unwrap_or("").to_string()),
            );
            m.insert("path".into(), json!(path));
            m.insert("ppid".into(), json!(e.ppid));
            m.insert("parent_comm".into(), json!(cstr(&e.pcomm)));
            exec_context(e, now, &mut m);
        }
        Hook::Open => {
            m.insert("path".into(), json!(path_text(e)));
        }
        Hook::Syscall => {
            m.insert("nr".into(), json!(e.a as i64));
            m.insert("count".into(), json!(e.b));
            m.insert("rate".into(), json!(rate.round() as u64));
        }
        Hook::Sched => {
            let runtime_ms = e.a / 1_000_000;
            let wall = e.ts_ns.saturating_sub(first_seen_ns).max(1);
            // Involuntary switches are a subset of all switches; clamp so
            // a bogus record cannot overflow.
            let inv_pct = (u128::from(e.c.min(e.b)) * 100)
                .checked_div(u128::from(e.b))
                .unwrap_or(0) as u64;
            m.insert("runtime_ms".into(), json!(runtime_ms));
            m.insert("switches".into(), json!(e.b));
            m.insert("involuntary".into(), json!(e.c));
            m.insert("involuntary_pct".into(), json!(inv_pct));
            m.insert(
                "cpu_pct".into(),
                json!(((e.a as f64 / wall as f64) * 100.0).min(100.0).round() as u64),
            );
        }
    }
    m
}

/// The optional exec fields an exec request carries when the probe read
/// them (each only with its flag: a missing one stays missing, and the
/// template's `{field?}` line is left out):
/// - `argv`: the command line (arguments joined by spaces; ends with CUT
///   when the probe cut it). Read at execve's entry: a process that
///   rewrites its argv from another thread during the exec can make it
///   differ from what runs; the decision binds to the file, not to argv.
/// - `file_uid`, `file_mode` (octal permission bits, "4755"), `file_age_s`
///   (now - the inode's ctime, seconds, 0 if in the future).
/// - `dir_world_writable`, `dir_sticky`: the file's directory's mode.
/// - `parent_chain`: "parent <- grandparent <- its parent" (comms).
pub fn exec_context(e: &c::Event, now: f64, m: &mut JMap<String, Value>) {
    if e.flags & c::EVF_ARGV != 0 {
        let mut a = cstr(&e.argv);
        if e.flags & c::EVF_ARGV_CUT != 0 {
            a.push_str(CUT);
        }
        m.insert("argv".into(), json!(a));
    }
    if e.flags & c::EVF_FILE_INFO != 0 {
        m.insert("file_uid".into(), json!(e.file_uid));
        m.insert(
            "file_mode".into(),
            json!(format!("{:04o}", e.file_mode & 0o7777)),
        );
        if e.ctime_ns != 0 {
            let age = (now - e.ctime_ns as f64 / 1e9).max(0.0).floor();
            m.insert("file_age_s".into(), json!(age as u64));
        }
    }
    if e.flags & c::EVF_DIR_INFO != 0 {
        m.insert("dir_world_writable".into(), json!(e.dir_mode & 0o002 != 0));
        m.insert("dir_sticky".into(), json!(e.dir_mode & 0o1000 != 0));
    }
    if e.chain[0][0] != 0 {
        let mut chain = cstr(&e.pcomm);
        for c in e.chain.iter().take_while(|c| c[0] != 0) {
            chain.push_str(" <- ");
            chain.push_str(&cstr(c));
        }
        m.insert("parent_chain".into(), json!(chain));
    }
}

/// The decision key as `trace` shows it ("exe:/tmp/x", "pid:42"): for
/// inode keys, the file's name or path as the hook saw it (the key itself
/// is the inode, `file_id`).
pub fn shown_key(e: &c::Event) -> String {
    match e.key.kind {
        c::KEY_PID => format!("pid:{}", e.key.hash),
        c::KEY_COMM => format!("comm:{}", cstr(&e.comm)),
        // The file name: file_open records it alone.
        c::KEY_FILE => format!(
            "file:{}",
            path_text(e).rsplit('/').next().unwrap_or_default()
        ),
        _ => format!("exe:{}", path_text(e)),
    }
}

pub fn hook_name(id: u32) -> &'static str {
    match id {
        c::HOOK_EXEC => "exec",
        c::HOOK_OPEN => "open",
        c::HOOK_SYSCALL => "syscall",
        _ => "sched",
    }
}

/// The trace record of one EV_HIT, EV_TP_HIT or EV_NICE from the hits ring
/// (`policy`: the name of the policy the decision belongs to).
pub fn hit_json(e: &c::Event, policy: &str, now: f64) -> Value {
    let action = match e.b as u32 {
        c::ACT_DENY => "deny",
        c::ACT_AUDIT => "audit",
        _ => "allow",
    };
    let mut r = json!({"time": now, "policy": policy, "key": shown_key(e), "key_hash": format!("{:016x}", e.key.hash),
        "pid": e.pid, "comm": cstr(&e.comm), "answer_index": e.c >> 32});
    let Some(m) = r.as_object_mut() else { return r };
    if let Some(id) = file_id(&e.key) {
        m.insert("file_id".into(), json!(id));
    }
    if e.flags & c::EVF_UNREPRESENTABLE != 0 {
        m.insert(
            "reason".into(),
            json!("path cut: a fail-closed policy denies what it cannot show"),
        );
    }
    match e.kind {
        c::EV_NICE => {
            m.insert("type".into(), json!("applied"));
            m.insert("hook".into(), json!(hook_name(e.key.hook)));
            m.insert("probe".into(), json!("lsm/task_setnice"));
            m.insert("tid".into(), json!(e.tid));
            m.insert("nice_old".into(), json!(e.a as i64));
            m.insert("nice_new".into(), json!(e.b as i64));
            m.insert("by_pid".into(), json!(e.ppid));
            m.insert("by_comm".into(), json!(cstr(&e.pcomm)));
        }
        c::EV_TP_HIT => {
            let probe = if e.key.hook == c::HOOK_EXEC {
                "tracepoint/sched/sched_process_exec"
            } else {
                "tracepoint/raw_syscalls/sys_enter"
            };
            m.insert("type".into(), json!("hit"));
            m.insert("hook".into(), json!(hook_name(e.key.hook)));
            m.insert("probe".into(), json!(probe));
            m.insert("hits".into(), json!(e.a));
            m.insert("action".into(), json!(action));
            m.insert("path".into(), json!(path_text(e)));
        }
        _ => {
            let hook = e.a as u32;
            m.insert("type".into(), json!("hit"));
            m.insert("hook".into(), json!(hook_name(hook)));
            m.insert(
                "probe".into(),
                json!(if hook == c::HOOK_EXEC {
                    "lsm/bprm_check_security"
                } else {
                    "lsm/file_open"
                }),
            );
            m.insert("action".into(), json!(action));
            m.insert("path".into(), json!(path_text(e)));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_offers_each_hooks_fields() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_EXEC;
        e.pid = 42;
        e.path[..9].copy_from_slice(b"/tmp/tool");
        e.comm[..2].copy_from_slice(b"sh");
        // SAFETY: Event is #[repr(C)] plain integers without implicit padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&e as *const c::Event).cast::<u8>(),
                std::mem::size_of::<c::Event>(),
            )
        };
        assert!(decode(&bytes[1..]).is_none());
        let d = decode(bytes).unwrap();
        let m = fields(&d, Hook::Exec, 0.0, 0, 1.0);
        assert_eq!(
            (m["pid"].as_u64(), m["path"].as_str(), m["exe"].as_str()),
            (Some(42), Some("/tmp/tool"), Some("tool"))
        );
        for h in [Hook::Exec, Hook::Open, Hook::Syscall, Hook::Sched] {
            // No flags: no optional field.
            let m = fields(&d, h, 1.0, 0, 1.0);
            let mut keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
            let mut want = h.fields().to_vec();
            keys.sort();
            want.sort();
            assert_eq!(keys, want, "{}", h.name());
        }
        let mut s = d;
        (s.a, s.b, s.c) = (u64::MAX, 3, u64::MAX);
        assert_eq!(fields(&s, Hook::Sched, 0.0, 0, 1.0)["involuntary_pct"], 100);
    }

    /// Each optional exec field appears with its flag only, as the probe
    /// filled it; a request with them all offers exactly the hook's fields
    /// and optional fields.
    #[test]
    fn exec_context_fields() {
        let mut e = c::Event::zeroed();
        e.kind = c::EV_REQUEST;
        e.pcomm[..4].copy_from_slice(b"bash");
        e.file_uid = 33;
        e.file_mode = 0o104755; // a regular setuid file
        e.dir_mode = 0o041777; // /tmp
        e.ctime_ns = 1_000_000_000_000;
        e.chain[0][..4].copy_from_slice(b"sshd");
        e.chain[1][..7].copy_from_slice(b"systemd");
        let a = b"/tmp/x -e /bin/sh\n<|im_start|>";
        e.argv[..a.len()].copy_from_slice(a);
        let m = fields(&e, Hook::Exec, 0.0, 0, 1500.9);
        // Without flags: only the chain (it needs none: empty is absent).
        assert!(m.get("argv").is_none() && m.get("file_uid").is_none());
        assert!(m.get("dir_world_writable").is_none());
        assert_eq!(m["parent_chain"], "bash <- sshd <- systemd");
        e.flags = c::EVF_ARGV | c::EVF_FILE_INFO | c::EVF_DIR_INFO;
        let m = fields(&e, Hook::Exec, 0.0, 0, 1500.9);
        // Exact in the fields (JSON), escaped on one line in the prompt.
        assert_eq!(m["argv"], "/tmp/x -e /bin/sh\n<|im_start|>");
        assert_eq!(
            crate::policy_template::render("{argv?}", &m).unwrap(),
            "/tmp/x -e /bin/sh\\n<|im_start|>"
        );
        assert_eq!(m["file_uid"], 33);
        assert_eq!(m["file_mode"], "4755");
        assert_eq!(m["file_age_s"], 500);
        assert_eq!(m["dir_world_writable"], true);
        assert_eq!(m["dir_sticky"], true);
        let mut keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        let mut want = Hook::Exec.fields().to_vec();
        want.extend(Hook::Exec.optional_fields());
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
        // A cut argv is marked; a ctime in the future is age 0; a private
        // directory is neither world-writable nor sticky.
        e.flags |= c::EVF_ARGV_CUT;
        e.ctime_ns = 3_000_000_000_000;
        e.dir_mode = 0o040700;
        e.chain[1][0] = 0;
        let m = fields(&e, Hook::Exec, 0.0, 0, 1500.9);
        assert!(m["argv"].as_str().unwrap().ends_with(CUT));
        assert_eq!(m["file_age_s"], 0);
        assert_eq!(
            (m["dir_world_writable"].as_bool(), m["dir_sticky"].as_bool()),
            (Some(false), Some(false))
        );
        assert_eq!(m["parent_chain"], "bash <- sshd");
    }

    #[test]
    fn cut_paths_are_marked() {
        let mut e = c::Event::zeroed();
        e.path.fill(b'a');
        e.path[0] = b'/';
        *e.path.last_mut().unwrap() = 0;
        assert_eq!(path_text(&e).len(), c::PATH_LEN - 1);
        e.flags = c::EVF_PATH_CUT;
        let p = fields(&e, Hook::Exec, 0.0, 0, 1.0)["path"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(p.starts_with("/aaa") && p.ends_with(CUT), "{p}");
        e.flags = c::EVF_PATH_HEAD_CUT | c::EVF_PATH_CUT;
        let p = path_text(&e);
        assert!(p.starts_with(CUT) && p.ends_with("aaa"), "{p}");
        e.key = c::DecisionKey {
            hook: c::HOOK_EXEC,
            kind: c::KEY_EXE,
            hash: 77,
            dev: 0x2a,
            gen: 0xbeef,
        };
        e.kind = c::EV_HIT;
        e.flags |= c::EVF_UNREPRESENTABLE;
        let h = hit_json(&e, "p", 0.0);
        assert_eq!(h["file_id"], "2a:77:beef");
        assert!(h["reason"].as_str().unwrap().contains("cut"));
        assert!(h["key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("exe:{CUT}")));
    }
}
