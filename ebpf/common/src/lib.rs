//! Llamux: the `#[repr(C)]` records shared by the eBPF probes, the loader
//! and (later) the kernel module's advisor interface.
//!
//! Everything here is plain old data with explicit padding, so the byte
//! layout is the same on the BPF target and on x86_64.
#![no_std]

/// Longest path or file name an event carries (bytes, NUL included).
/// Longer paths are cut and flagged (EVF_PATH_CUT); decisions never depend
/// on this length (exec and open decisions are keyed by the file's inode).
pub const PATH_LEN: usize = 256;
/// Bytes of path the probes assemble from the dentry walk (NUL included).
pub const WALK_LEN: usize = 512;
/// Path components (mount crossings included) the dentry walk follows.
pub const WALK_DEPTH: usize = 40;

// ---- event flags (Event::flags) ----
/// `path` holds only the first PATH_LEN - 1 bytes of a longer path.
pub const EVF_PATH_CUT: u32 = 1;
/// The dentry walk gave up (deeper than WALK_DEPTH or longer than
/// WALK_LEN): `path` is only the tail of the file's path.
pub const EVF_PATH_HEAD_CUT: u32 = 2;
/// An LSM hook denied without asking: the policy fails closed and the
/// file's path cannot be shown whole (EV_HIT).
pub const EVF_UNREPRESENTABLE: u32 = 4;
/// The exec request's file fields (`file_uid`, `file_mode`) were read.
pub const EVF_FILE_INFO: u32 = 8;
/// The exec request's `dir_mode` (the file's directory) was read.
pub const EVF_DIR_INFO: u32 = 16;
/// `argv` holds the command line execve was given (sys_enter).
pub const EVF_ARGV: u32 = 32;
/// `argv` holds only the first ARGV_MAX_ARGS arguments or ARGV_LEN - 1
/// bytes of a longer command line (or an argument could not be read).
pub const EVF_ARGV_CUT: u32 = 64;
/// Longest path prefix a probe-side filter compares.
pub const PREFIX_LEN: usize = 64;
pub const COMM_LEN: usize = 16;
/// Bytes of command line an exec request carries (NUL included): the
/// arguments joined by spaces.
pub const ARGV_LEN: usize = 256;
/// Arguments the probe copies at most.
pub const ARGV_MAX_ARGS: usize = 8;
/// Ancestors past the parent whose comm an exec request carries
/// (`chain`: the grandparent, then its parent).
pub const CHAIN_LEN: usize = 2;

// ---- event kinds (Event::kind) ----
/// Sampled syscall: `a` = syscall nr, `b` = the process's syscalls so far.
pub const EV_SYSCALL: u32 = 1;
/// Sampled context switch of `pid` (the task switched out): `a` = its
/// runtime so far (ns), `b` = switches so far, `c` = of which involuntary
/// (preempted while runnable).
pub const EV_SCHED: u32 = 2;
/// sched_process_exec: `path` = file, `ppid`/`pcomm` = parent.
pub const EV_EXEC: u32 = 3;
/// sched_process_exit of a thread-group leader: `a` = syscalls, `b` = runtime ns.
pub const EV_EXIT: u32 = 4;
/// An LSM hook found no (live) decision for `key`: the loader should ask
/// the advisor. `a` = hook (HOOK_*), `b` = the default that was applied.
pub const EV_REQUEST: u32 = 5;
/// An LSM hook applied a decision (`a` = hook, `b` = action, `c` =
/// policy | answer << 32): sent to the hits ring buffer.
pub const EV_HIT: u32 = 6;
/// The kernel is applying a nice change (BPF-LSM task_setnice) to a task
/// that has a live syscall/sched decision: `pid`/`tid`/`comm` = the target,
/// `a` = its nice before, `b` = the new nice (both i64 bits), `c` = policy |
/// answer << 32, `ppid`/`pcomm` = the process asking, `key` = the decision's.
pub const EV_NICE: u32 = 7;
/// A tracepoint saw a live decision apply (sched_process_exec for exec
/// decisions, raw_syscalls/sys_enter for syscall/sched ones): `a` = the
/// key's hits so far (HitStat), `b` = action, `c` = policy | answer << 32.
/// At most one record per key per HIT_GAP_NS; the counter counts them all.
pub const EV_TP_HIT: u32 = 8;

/// Minimum ns between two EV_TP_HIT records of one key.
pub const HIT_GAP_NS: u64 = 1_000_000_000;

// ---- hooks (what a decision is for) ----
pub const HOOK_EXEC: u32 = 0;
pub const HOOK_OPEN: u32 = 1;
/// Decisions of syscall and sched policies (no LSM hook of their own).
pub const HOOK_SYSCALL: u32 = 2;
pub const HOOK_SCHED: u32 = 3;
/// LSM hooks with a HookConfig (exec, open).
pub const N_HOOKS: usize = 2;
/// All hook ids (Config::hit_key).
pub const N_ALL_HOOKS: usize = 4;

// ---- key kinds (HookConfig::key_kind, DecisionKey::kind) ----
/// The executed file's identity: `hash` = inode number, `dev` = its
/// super_block's s_dev, `gen` = i_generation (bprm->file->f_inode), so
/// every name of the same file (relative, `//`, `/./`, symlink, hard link)
/// meets the same decision.
pub const KEY_EXE: u32 = 1;
/// The process (tgid).
pub const KEY_PID: u32 = 2;
/// FNV-1a of the task's comm.
pub const KEY_COMM: u32 = 3;
/// The opened file's identity (file->f_inode), as KEY_EXE.
pub const KEY_FILE: u32 = 4;

// ---- actions (Decision::action, HookConfig::default_action) ----
pub const ACT_ALLOW: u32 = 0;
pub const ACT_DENY: u32 = 1;
/// Allowed, and recorded as a hit.
pub const ACT_AUDIT: u32 = 2;

// ---- stats counters (index into the STATS per-CPU array) ----
pub const ST_EVENTS: u32 = 0;
pub const ST_EVENTS_DROPPED: u32 = 1;
pub const ST_HITS: u32 = 2;
pub const ST_HITS_DROPPED: u32 = 3;
pub const ST_MISSES: u32 = 4;
pub const ST_DENIED: u32 = 5;
pub const ST_SYSCALLS: u32 = 6;
pub const ST_SWITCHES: u32 = 7;
pub const ST_REQUESTS_SUPPRESSED: u32 = 8;
pub const ST_EXPIRED: u32 = 9;
/// Decision hits counted by the tracepoints (all, not only the recorded).
pub const ST_TP_HITS: u32 = 10;
/// EV_TP_HIT records lost to a full ring.
pub const ST_TP_HITS_DROPPED: u32 = 11;
/// Nice changes of advised tasks seen by task_setnice.
pub const ST_NICE: u32 = 12;
pub const N_STATS: u32 = 13;
pub const STAT_NAMES: [&str; N_STATS as usize] = [
    "events",
    "events_dropped",
    "hits",
    "hits_dropped",
    "misses",
    "denied",
    "syscalls",
    "switches",
    "requests_suppressed",
    "expired",
    "tp_hits",
    "tp_hits_dropped",
    "nice_applied",
];

/// 64-bit FNV-1a; the probes and the loader must hash keys identically.
/// Stops at the first NUL.
#[inline(always)]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            break;
        }
        h = fnv1a_step(h, b);
        i += 1;
    }
    h
}

/// One byte of FNV-1a.
#[inline(always)]
pub fn fnv1a_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// One record from the probes to the loader (events ring buffer and hits
/// ring buffer).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub kind: u32,
    /// Thread-group id (the process).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// EVF_* bits.
    pub flags: u32,
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// KEY_EXE/KEY_FILE requests and hits: the inode's ctime (ns) when the
    /// hook ran; a decision made for an older ctime does not ALLOW.
    pub ctime_ns: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    /// Decision key for EV_REQUEST / EV_HIT.
    pub key: DecisionKey,
    pub comm: [u8; COMM_LEN],
    pub pcomm: [u8; COMM_LEN],
    pub path: [u8; PATH_LEN],
    /// Exec requests (bprm_check_security), with EVF_FILE_INFO: the
    /// file's owner (i_uid) and mode (i_mode, type bits included).
    pub file_uid: u32,
    pub file_mode: u32,
    /// With EVF_DIR_INFO: the i_mode of the file's directory (the
    /// parent dentry: world-writable, sticky).
    pub dir_mode: u32,
    pub _pad: u32,
    /// Comms of the parent's parent and of its parent (empty: none).
    pub chain: [[u8; COMM_LEN]; CHAIN_LEN],
    /// With EVF_ARGV: the arguments execve was given, joined by spaces
    /// (EVF_ARGV_CUT: cut).
    pub argv: [u8; ARGV_LEN],
}

impl Event {
    pub const fn zeroed() -> Self {
        Event {
            kind: 0,
            pid: 0,
            tid: 0,
            ppid: 0,
            uid: 0,
            flags: 0,
            ts_ns: 0,
            ctime_ns: 0,
            a: 0,
            b: 0,
            c: 0,
            key: DecisionKey::zeroed(),
            comm: [0; COMM_LEN],
            pcomm: [0; COMM_LEN],
            path: [0; PATH_LEN],
            file_uid: 0,
            file_mode: 0,
            dir_mode: 0,
            _pad: 0,
            chain: [[0; COMM_LEN]; CHAIN_LEN],
            argv: [0; ARGV_LEN],
        }
    }
}

/// Key of the pinned decisions map.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DecisionKey {
    pub hook: u32,
    pub kind: u32,
    /// KEY_PID: tgid; KEY_COMM: fnv1a(comm); KEY_EXE/KEY_FILE: i_ino.
    pub hash: u64,
    /// KEY_EXE/KEY_FILE: the inode's s_dev and i_generation (a new file
    /// that reuses a deleted one's inode number gets a new generation on
    /// tmpfs, ext4, xfs, btrfs); 0 for the other kinds.
    pub dev: u32,
    pub gen: u32,
}

impl DecisionKey {
    pub const fn zeroed() -> Self {
        DecisionKey {
            hook: 0,
            kind: 0,
            hash: 0,
            dev: 0,
            gen: 0,
        }
    }
    /// Keyed by a file's identity (inode), not by a name.
    pub const fn is_file(&self) -> bool {
        self.kind == KEY_EXE || self.kind == KEY_FILE
    }
}

/// Value of the pinned decisions map, written by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub action: u32,
    /// Index of the policy (in load order) that decided.
    pub policy: u32,
    /// CLOCK_MONOTONIC ns after which the decision is stale (0: never).
    pub expires_ns: u64,
    /// Index of the chosen answer in the policy's answer set.
    pub answer: u32,
    pub _pad: u32,
    /// KEY_EXE/KEY_FILE: the file's ctime (ns) the decision was made for.
    /// The hooks apply a DENY whatever the ctime, an ALLOW or AUDIT only
    /// while it is unchanged (a write, chmod, link... asks again).
    pub ctime_ns: u64,
}

/// How one LSM hook consults decisions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HookConfig {
    /// 0: the hook does nothing (allows).
    pub enabled: u32,
    pub key_kind: u32,
    /// Action on a miss (ACT_ALLOW = fail-open, ACT_DENY = fail-closed).
    pub default_action: u32,
    pub prefix_len: u32,
    /// Only paths starting with this are governed (empty: all).
    pub prefix: [u8; PREFIX_LEN],
    /// Minimum ns between two requests for the same key.
    pub request_gap_ns: u64,
}

/// Kernel structure offsets the loader reads from the running kernel's BTF
/// (the probes cannot use CO-RE relocations with aya 0.14).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    /// struct linux_binprm: filename (const char *).
    pub bprm_filename: u32,
    /// struct file: f_path.dentry.
    pub file_dentry: u32,
    /// struct dentry: d_name.name.
    pub dentry_name: u32,
    /// struct task_struct: real_parent, tgid, comm.
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    /// struct task_struct: pid (the thread id), static_prio (nice + 120).
    pub task_pid: u32,
    pub task_static_prio: u32,
    /// struct linux_binprm: file; struct file: f_inode, f_path.mnt.
    pub bprm_file: u32,
    pub file_inode: u32,
    pub file_mnt: u32,
    /// struct inode: i_ino, i_sb, i_generation, i_ctime_sec, i_ctime_nsec.
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_generation: u32,
    pub inode_ctime_sec: u32,
    pub inode_ctime_nsec: u32,
    /// struct super_block: s_dev.
    pub sb_dev: u32,
    /// struct dentry: d_parent, d_name.len.
    pub dentry_parent: u32,
    pub dentry_name_len: u32,
    /// struct vfsmount: mnt_root; struct mount: mnt, mnt_parent,
    /// mnt_mountpoint (the dentry walk crosses mounts).
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    /// struct task_struct: mm; struct mm_struct: exe_file.
    pub task_mm: u32,
    pub mm_exe_file: u32,
    /// struct linux_binprm: interp (== filename until a script's
    /// interpreter takes over: tells the first bprm_check of an exec).
    pub bprm_interp: u32,
    /// struct inode: i_uid (kuid_t), i_mode; struct dentry: d_inode.
    pub inode_uid: u32,
    pub inode_mode: u32,
    pub dentry_inode: u32,
    /// Keeps Config free of implicit padding.
    pub _reserved: u32,
}

/// The single entry of the CONFIG array map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Events from this tgid are not reported (the loader itself).
    pub loader_tgid: u32,
    /// Report one syscall event per process every N syscalls (0: none).
    pub syscall_sample: u32,
    /// Report one sched event per task every N switches out (0: none).
    pub sched_sample: u32,
    /// Report exec/exit events (0/1).
    pub exec_events: u32,
    pub hooks: [HookConfig; N_HOOKS],
    /// Key kind of the loaded policy of each hook id (0: none): which
    /// decisions the tracepoints look up to count hits.
    pub hit_key: [u32; N_ALL_HOOKS],
    pub off: Offsets,
}

/// Hits of one decision key seen by the tracepoints (HITCOUNT map).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct HitStat {
    pub hits: u64,
    /// When the last EV_TP_HIT record of this key was sent.
    pub last_record_ns: u64,
}

/// Per-CPU scratch of the dentry walk: the path is assembled backwards
/// from the file to the root in `buf[..WALK_LEN]`; the rest is slack so
/// that a masked offset plus a masked length stays inside the value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkBuf {
    pub buf: [u8; 2 * WALK_LEN],
}

/// The command line of a task's execve in progress (ARGV map, by tid),
/// copied at sys_enter: `buf[..ARGV_LEN]` holds the arguments joined by
/// spaces, the rest is slack for masked writes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArgvBuf {
    /// EVF_ARGV, EVF_ARGV_CUT.
    pub flags: u32,
    /// Write position (the probe's, kept in the value for the verifier).
    pub pos: u32,
    pub buf: [u8; 2 * ARGV_LEN],
}

/// Per-task scheduler accounting (SCHED map, by tid).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SchedStat {
    pub last_in_ns: u64,
    pub runtime_ns: u64,
    pub switches: u64,
    pub involuntary: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are #[repr(C)], made only of integers and
    // integer arrays with explicit padding fields: every bit pattern is a
    // valid value and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DecisionKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Decision {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SchedStat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HitStat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WalkBuf {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ArgvBuf {}
}

// Layout checks: the same sizes on the BPF target and on x86_64.
const _: () = assert!(core::mem::size_of::<DecisionKey>() == 24);
const _: () = assert!(core::mem::size_of::<Decision>() == 32);
const _: () =
    assert!(core::mem::size_of::<Event>() == 120 + PATH_LEN + 16 + CHAIN_LEN * COMM_LEN + ARGV_LEN);
const _: () =
    assert!(core::mem::size_of::<Config>() == 16 + 2 * (16 + PREFIX_LEN + 8) + 16 + 4 * 30);
const _: () = assert!(ARGV_LEN.is_power_of_two());
const _: () = assert!(WALK_LEN.is_power_of_two() && PATH_LEN < WALK_LEN);
const _: () = assert!(core::mem::size_of::<HitStat>() == 16);
const _: () = assert!(core::mem::size_of::<HookConfig>() == 16 + PREFIX_LEN + 8);
