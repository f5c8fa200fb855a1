//! Llamux eBPF programs.
//!
//! Observation: tracepoints on raw_syscalls/sys_enter (per-process counts, a
//! sampled event stream), sched/sched_switch (per-task runtime and switches,
//! sampled), sched_process_exec/exit. All go to the EVENTS ring buffer; a
//! full ring drops the record and counts it (ST_EVENTS_DROPPED). High-rate
//! records are submitted with BPF_RB_NO_WAKEUP and the loader drains on a
//! timer; the loader's own process is never reported (no feedback loop).
//!
//! Enforcement: BPF-LSM bprm_check_security and file_open key exec and open
//! decisions by the file's identity (device, inode number, generation of
//! bprm->file / file->f_inode), so every name of one file meets the same
//! decision; the executed file's path shown to the model is rebuilt from
//! its dentries (crossing mounts), not taken from execve's argument. They
//! look the key up in the pinned DECISIONS map (written by the loader from the
//! advisor's answers), return -EPERM on a live DENY, and on a miss apply the
//! policy's default (fail-open or fail-closed) and ask for a decision with an
//! EV_REQUEST record (REQUESTS ring buffer). Every decision they apply is
//! recorded in the HITS ring buffer (EV_HIT).
//!
//! Decision hits outside the LSM hooks: sched_process_exec (exec-keyed
//! decisions) and raw_syscalls/sys_enter (syscall/sched decisions, and
//! open-keyed ones at open/openat/openat2/creat of the decided file) look the
//! running task up in DECISIONS, count every live hit per key (HITCOUNT)
//! and record at most one EV_TP_HIT per key per HIT_GAP_NS. BPF-LSM
//! task_setnice records (EV_NICE) every nice change the kernel applies to a
//! task with a live syscall/sched decision (the scheduler advisor's renice),
//! and always allows it.
//! Probes never wait for the model: decisions are computed ahead.
#![no_std]
#![no_main]
// Map keys and values are passed by reference on purpose: by value the
// argument is copied onto the 512-byte BPF stack first (an ArgvBuf alone
// does not fit).
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
    bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
    bpf_probe_read_user_str_bytes,
};
use aya_ebpf::macros::{lsm, map, tracepoint};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{LsmContext, TracePointContext};
use aya_ebpf::EbpfContext;
use aya_log_ebpf::info;
use llamux_common::*;

const EPERM: i32 = 1;

#[map(name = "LLAMUX_EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Decision requests from the LSM hooks: a ring of their own, so that a
/// flood of observation events cannot starve enforcement.
#[map(name = "LLAMUX_REQUESTS")]
static REQUESTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

#[map(name = "LLAMUX_HITS")]
static HITS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

#[map(name = "LLAMUX_DECISIONS")]
static DECISIONS: HashMap<DecisionKey, Decision> = HashMap::with_max_entries(16384, 0);

#[map(name = "LLAMUX_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "LLAMUX_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(N_STATS, 0);

/// Syscalls per process (tgid).
#[map(name = "LLAMUX_SYSCOUNT")]
static SYSCOUNT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

/// Scheduler accounting per task (tid).
#[map(name = "LLAMUX_SCHED")]
static SCHED: LruHashMap<u32, SchedStat> = LruHashMap::with_max_entries(8192, 0);

/// Last request time per key: one EV_REQUEST per key per request_gap_ns.
#[map(name = "LLAMUX_PENDING")]
static PENDING: LruHashMap<DecisionKey, u64> = LruHashMap::with_max_entries(4096, 0);

/// Decision hits seen by the tracepoints, per key.
#[map(name = "LLAMUX_HITCOUNT")]
static HITCOUNT: LruHashMap<DecisionKey, HitStat> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch records (an Event does not fit the 512-byte stack well),
/// one slot per program family so that a program preempted on its CPU by
/// another family's does not see its record clobbered.
#[map(name = "LLAMUX_SCRATCH")]
static SCRATCH: PerCpuArray<Event> = PerCpuArray::with_max_entries(5, 0);

/// The exec decision (inode key) bprm_check_security applied to each task's
/// exec in progress, by tid: sched_process_exec counts its hit (for a
/// script, current->mm->exe_file is the interpreter, not the file decided).
#[map(name = "LLAMUX_EXECKEY")]
static EXECKEY: LruHashMap<u32, DecisionKey> = LruHashMap::with_max_entries(4096, 0);

/// The command line of each task's execve in progress, by tid: copied at
/// sys_enter (bprm_check_security cannot read it: the strings are already
/// in the new, not yet current, mm), read by bprm_check_security, dropped
/// at sched_process_exec and exit.
#[map(name = "LLAMUX_ARGV")]
static ARGV: LruHashMap<u32, ArgvBuf> = LruHashMap::with_max_entries(1024, 0);

/// Per-CPU scratch where sys_enter assembles an ArgvBuf.
#[map(name = "LLAMUX_ARGVBUF")]
static ARGVBUF: PerCpuArray<ArgvBuf> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch of the dentry walk (bprm_check_security only).
#[map(name = "LLAMUX_WALK")]
static WALK: PerCpuArray<WalkBuf> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn stat(i: u32) {
    if let Some(p) = STATS.get_ptr_mut(i) {
        // SAFETY: a per-CPU array slot: only this CPU writes it, and the
        // program is not re-entered on the same CPU for these hooks.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

#[inline(always)]
fn scratch(slot: u32) -> Option<&'static mut Event> {
    let p = SCRATCH.get_ptr_mut(slot)?;
    // SAFETY: per-CPU map value, valid for the program's run and used by
    // this CPU only.
    Some(unsafe { &mut *p })
}

/// Fills the common fields of `e` from the current task.
#[inline(always)]
fn fill_current(e: &mut Event, kind: u32, now: u64) {
    let pt = bpf_get_current_pid_tgid();
    e.kind = kind;
    e.pid = (pt >> 32) as u32;
    e.tid = pt as u32;
    e.ppid = 0;
    e.uid = bpf_get_current_uid_gid() as u32;
    e.flags = 0;
    e.ctime_ns = 0;
    e.ts_ns = now;
    e.a = 0;
    e.b = 0;
    e.c = 0;
    e.key = DecisionKey::zeroed();
    e.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    e.pcomm = [0; COMM_LEN];
    e.path[0] = 0;
    e.file_uid = 0;
    e.file_mode = 0;
    e.dir_mode = 0;
    e.chain = [[0; COMM_LEN]; CHAIN_LEN];
    e.argv[0] = 0;
}

/// Comms of the parent's ancestors (grandparent first) into `e.chain`;
/// stops at the idle task (tgid 0).
#[inline(always)]
fn fill_chain(e: &mut Event, off: &Offsets) {
    if off.task_real_parent == 0 {
        return;
    }
    // SAFETY: bpf_get_current_task has no preconditions; the tasks are
    // only read through kread (bpf_probe_read_kernel).
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mut t: *const u8 = kread(task, off.task_real_parent).unwrap_or(core::ptr::null());
    for i in 0..CHAIN_LEN {
        t = kread(t, off.task_real_parent).unwrap_or(core::ptr::null());
        let tgid: u32 = kread(t, off.task_tgid).unwrap_or(0);
        if tgid == 0 {
            break;
        }
        if let (Some(c), Some(dst)) = (
            kread::<[u8; COMM_LEN]>(t, off.task_comm),
            e.chain.get_mut(i),
        ) {
            *dst = c;
        }
    }
}

/// The executed file's owner and mode and its directory's mode (exec
/// requests): EVF_FILE_INFO and EVF_DIR_INFO say what was read.
#[inline(always)]
fn fill_file_info(file: *const u8, off: &Offsets, e: &mut Event) {
    let inode: *const u8 = kread(file, off.file_inode).unwrap_or(core::ptr::null());
    if let (Some(uid), Some(mode)) = (
        kread::<u32>(inode, off.inode_uid),
        kread::<u16>(inode, off.inode_mode),
    ) {
        e.file_uid = uid;
        e.file_mode = mode as u32;
        e.flags |= EVF_FILE_INFO;
    }
    let dentry: *const u8 = kread(file, off.file_dentry).unwrap_or(core::ptr::null());
    let parent: *const u8 = kread(dentry, off.dentry_parent).unwrap_or(core::ptr::null());
    let dinode: *const u8 = kread(parent, off.dentry_inode).unwrap_or(core::ptr::null());
    if let Some(mode) = kread::<u16>(dinode, off.inode_mode) {
        e.dir_mode = mode as u32;
        e.flags |= EVF_DIR_INFO;
    }
}

/// Copies the command line of an execve/execveat being entered (user
/// pointer `argv`) into ARGV[tid]: at most ARGV_MAX_ARGS arguments and
/// ARGV_LEN - 1 bytes, joined by spaces, EVF_ARGV_CUT when cut. Always
/// replaces what an earlier exec of the task left (an unreadable argv
/// leaves an empty, cut record).
#[inline(always)]
fn capture_argv(argv: u64, tid: u32) {
    const MASK: u32 = ARGV_LEN as u32 - 1;
    let Some(a) = ARGVBUF.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's ArgvBuf (ARGV_LEN of text and as much slack):
    // every write below is at an offset masked to < ARGV_LEN, and the
    // string copies are at most ARGV_LEN - pos bytes from there.
    let (buf, posp) = unsafe { ((*a).buf.as_mut_ptr(), &raw mut (*a).pos) };
    let mut flags = EVF_ARGV;
    // SAFETY: as above.
    unsafe {
        core::ptr::write_volatile(posp, 0);
        *buf = 0;
    }
    let mut i = 0;
    while i < ARGV_MAX_ARGS {
        // SAFETY: a user pointer read with the checked probe-read helper.
        let p: u64 = match unsafe { bpf_probe_read_user((argv + 8 * i as u64) as *const u64) } {
            Ok(p) => p,
            Err(_) => {
                flags |= EVF_ARGV_CUT;
                break;
            }
        };
        if p == 0 {
            break;
        }
        // SAFETY: the position slot of this CPU's ArgvBuf.
        let pos = unsafe { core::ptr::read_volatile(posp) } & MASK;
        let room = ARGV_LEN as u32 - pos;
        if room < 2 {
            flags |= EVF_ARGV_CUT;
            break;
        }
        // SAFETY: pos < ARGV_LEN and room <= ARGV_LEN - pos: inside buf;
        // the source is read with the checked probe-read helper.
        let n = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user_str(
                buf.add(pos as usize).cast(),
                room,
                p as *const core::ffi::c_void,
            )
        };
        if n <= 0 {
            flags |= EVF_ARGV_CUT;
            break;
        }
        // n <= room <= ARGV_LEN: the wider mask keeps ARGV_LEN itself.
        let n = n as u32 & (2 * ARGV_LEN as u32 - 1);
        // The argument's NUL becomes the separator.
        // SAFETY: masked offset inside buf.
        unsafe {
            *buf.add(((pos + n).wrapping_sub(1) & MASK) as usize) = b' ';
            core::ptr::write_volatile(posp, pos + n);
        }
        if n >= room {
            flags |= EVF_ARGV_CUT;
            break;
        }
        i += 1;
    }
    if i == ARGV_MAX_ARGS {
        // SAFETY: as above.
        let more: u64 =
            unsafe { bpf_probe_read_user((argv + 8 * i as u64) as *const u64) }.unwrap_or(0);
        if more != 0 {
            flags |= EVF_ARGV_CUT;
        }
    }
    // SAFETY: as above; the last separator becomes the NUL.
    unsafe {
        let pos = core::ptr::read_volatile(posp) & (2 * ARGV_LEN as u32 - 1);
        *buf.add((pos.wrapping_sub(1) & MASK) as usize) = 0;
        if pos == 0 {
            *buf = 0;
        }
        (*a).flags = flags;
        let _ = ARGV.insert(&tid, &*a, 0);
    }
}

/// Parent tgid and comm through the offsets the loader found in BTF.
#[inline(always)]
fn fill_parent(e: &mut Event, off: &Offsets) {
    // SAFETY: bpf_get_current_task returns the current task_struct; every
    // read below goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        if off.task_real_parent == 0 {
            return;
        }
        let parent: *const u8 = match bpf_probe_read_kernel(
            task.add(off.task_real_parent as usize) as *const *const u8
        ) {
            Ok(p) => p,
            Err(_) => return,
        };
        if let Ok(t) = bpf_probe_read_kernel(parent.add(off.task_tgid as usize) as *const u32) {
            e.ppid = t;
        }
        if let Ok(c) =
            bpf_probe_read_kernel(parent.add(off.task_comm as usize) as *const [u8; COMM_LEN])
        {
            e.pcomm = c;
        }
    }
}

#[inline(always)]
fn emit(ring: &RingBuf, e: &Event, flags: u64, drop_stat: u32, ok_stat: u32) {
    match ring.output::<Event>(e, flags) {
        Ok(()) => stat(ok_stat),
        Err(_) => stat(drop_stat),
    }
}

/// A kernel value at `p + off`, read with the faulting-safe helper.
#[inline(always)]
fn kread<T>(p: *const u8, off: u32) -> Option<T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the access and fails cleanly on
    // a bad address; the result is a plain copy.
    unsafe { bpf_probe_read_kernel(p.wrapping_add(off as usize) as *const T) }.ok()
}

/// Identity of a file: (inode number, s_dev, i_generation, ctime ns).
#[derive(Clone, Copy)]
struct FileId {
    ino: u64,
    dev: u32,
    gen: u32,
    ctime_ns: u64,
}

/// The identity of `file` (struct file *), from its f_inode.
#[inline(always)]
fn file_id(file: *const u8, off: &Offsets) -> Option<FileId> {
    let inode: *const u8 = kread(file, off.file_inode)?;
    let ino: u64 = kread(inode, off.inode_ino)?;
    let sb: *const u8 = kread(inode, off.inode_sb)?;
    let dev: u32 = kread(sb, off.sb_dev)?;
    let gen: u32 = kread(inode, off.inode_generation)?;
    let sec: i64 = kread(inode, off.inode_ctime_sec)?;
    let nsec: u32 = kread(inode, off.inode_ctime_nsec)?;
    let ctime_ns = (sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(nsec as u64);
    Some(FileId {
        ino,
        dev,
        gen,
        ctime_ns,
    })
}

/// Rebuilds the path of `file` (struct file *) into `e.path` by walking
/// its dentries up to the root of the mount tree, crossing mounts (the
/// name execve was given plays no part). Sets EVF_PATH_CUT when the path
/// is longer than `e.path`, EVF_PATH_HEAD_CUT when the walk gave up
/// (deeper than WALK_DEPTH, longer than WALK_LEN, a read failed, or
/// another program clobbered this CPU's scratch): `e.path` is then the
/// tail only.
#[inline(always)]
fn walk_path(file: *const u8, off: &Offsets, e: &mut Event) {
    const MASK: u32 = WALK_LEN as u32 - 1;
    e.path[0] = 0;
    let Some(w) = WALK.get_ptr_mut(0) else {
        e.flags |= EVF_PATH_HEAD_CUT;
        return;
    };
    let buf = w as *mut u8;
    // Owner mark: a program preempted on this CPU by another exec's walk
    // finds the mark changed and does not trust the buffer.
    let mark = bpf_get_current_pid_tgid() ^ unsafe_ktime();
    // The write position lives in the map value, not on the stack: loaded
    // back, it is an unknown value to the verifier, so the states of the
    // loop's iterations compare equal and are pruned (tracked exactly on
    // the stack, every length combination was a state of its own and the
    // verification did not end).
    // SAFETY: `w` is this CPU's WalkBuf (2 * WALK_LEN bytes). Every write
    // below is at an offset masked to < WALK_LEN plus at most 255 bytes,
    // inside the value; position and mark live in the slack after
    // WALK_LEN + 256.
    let posp = unsafe { buf.add(2 * WALK_LEN - 16) } as *mut u32;
    unsafe {
        core::ptr::write_volatile(buf.add(2 * WALK_LEN - 8) as *mut u64, mark);
        core::ptr::write_volatile(posp, MASK);
        *buf.add(WALK_LEN - 1) = 0;
    }
    let mut done = false;
    let mut dentry: *const u8 = kread(file, off.file_dentry).unwrap_or(core::ptr::null());
    let mut vfsmnt: *const u8 = kread(file, off.file_mnt).unwrap_or(core::ptr::null());
    for _ in 0..WALK_DEPTH {
        let Some(parent) = kread::<*const u8>(dentry, off.dentry_parent) else {
            break;
        };
        let Some(mnt_root) = kread::<*const u8>(vfsmnt, off.vfsmount_root) else {
            break;
        };
        if dentry == mnt_root || dentry == parent {
            // The root of this mount: continue at its mountpoint in the
            // parent mount, or stop at the root of the tree.
            let mount = vfsmnt.wrapping_sub(off.mount_mnt as usize);
            let Some(mparent) = kread::<*const u8>(mount, off.mount_parent) else {
                break;
            };
            if mparent == mount || mparent.is_null() {
                done = true;
                break;
            }
            let Some(mp) = kread::<*const u8>(mount, off.mount_mountpoint) else {
                break;
            };
            dentry = mp;
            vfsmnt = mparent.wrapping_add(off.mount_mnt as usize);
            continue;
        }
        let Some(len) = kread::<u32>(dentry, off.dentry_name_len) else {
            break;
        };
        let Some(name) = kread::<*const u8>(dentry, off.dentry_name) else {
            break;
        };
        // SAFETY: the position slot inside this CPU's WalkBuf.
        let pos = unsafe { core::ptr::read_volatile(posp) } & MASK;
        if len > 255 || len + 1 > pos {
            break;
        }
        let p = (pos - len - 1) & MASK;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(posp, p) };
        // SAFETY: p < WALK_LEN and len <= 255: inside the 2 * WALK_LEN
        // value; the name is copied with the checked probe-read helper.
        unsafe {
            *buf.add(p as usize) = b'/';
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                buf.add(p as usize + 1).cast(),
                len & 255,
                name.cast(),
            );
        }
        dentry = parent;
    }
    // SAFETY: the position slot, as above.
    let mut p = unsafe { core::ptr::read_volatile(posp) } & MASK;
    if p == MASK && done {
        // The root directory itself.
        p = MASK - 1;
        // SAFETY: constant offset inside the value.
        unsafe { *buf.add(WALK_LEN - 2) = b'/' };
    }
    // SAFETY: the source is inside this CPU's WalkBuf and NUL-terminated at
    // WALK_LEN - 1; the copy is bounded by e.path.
    let n = unsafe { bpf_probe_read_kernel_str_bytes(buf.add(p as usize), &mut e.path) }
        .map_or(0, |s| s.len());
    if (MASK - p) as usize > n {
        e.flags |= EVF_PATH_CUT;
    }
    // SAFETY: reads the mark written above (inside the value).
    let still = unsafe { core::ptr::read_volatile(buf.add(2 * WALK_LEN - 8) as *const u64) };
    if !done || still != mark {
        e.flags |= EVF_PATH_HEAD_CUT;
    }
}

#[inline(always)]
fn kind_is_file(kind: u32) -> bool {
    kind == KEY_EXE || kind == KEY_FILE
}

/// The decision key of file `id` for `hook`.
#[inline(always)]
fn file_key(hook: u32, kind: u32, id: &FileId) -> DecisionKey {
    DecisionKey {
        hook,
        kind,
        hash: id.ino,
        dev: id.dev,
        gen: id.gen,
    }
}

// ---------------------------------------------------------------- syscalls

#[tracepoint(category = "raw_syscalls", name = "sys_enter")]
pub fn llamux_sys_enter(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let pt = bpf_get_current_pid_tgid();
    let tgid = (pt >> 32) as u32;
    if tgid == 0 || tgid == cfg.loader_tgid {
        return 0;
    }
    stat(ST_SYSCALLS);
    let now = unsafe_ktime();
    // Constant indexes: no bounds-check panic path for the verifier.
    for (hook, kind) in [(HOOK_SYSCALL, cfg.hit_key[2]), (HOOK_SCHED, cfg.hit_key[3])] {
        let hash = match kind {
            KEY_PID => tgid as u64,
            KEY_COMM => fnv1a(&bpf_get_current_comm().unwrap_or([0; COMM_LEN])),
            _ => continue,
        };
        let key = DecisionKey {
            hook,
            kind,
            hash,
            dev: 0,
            gen: 0,
        };
        if let Some((hits, d)) = tp_hit(&key, now) {
            let Some(e) = scratch(0) else { return 0 };
            fill_current(e, EV_TP_HIT, now);
            hit_fields(e, &key, hits, &d);
            emit(
                &HITS,
                e,
                BPF_RB_NO_WAKEUP as u64,
                ST_TP_HITS_DROPPED,
                ST_HITS,
            );
        }
    }
    if cfg.hit_key[HOOK_OPEN as usize] != 0 {
        open_hit(&ctx, cfg.hit_key[HOOK_OPEN as usize], now);
    }
    let n = match SYSCOUNT.get_ptr_mut(&tgid) {
        Some(p) => {
            // SAFETY: a live map value; a racing update from another CPU only
            // loses a count (the counts are statistics).
            unsafe {
                *p += 1;
                *p
            }
        }
        None => {
            let _ = SYSCOUNT.insert(&tgid, &1, 0);
            1
        }
    };
    let every = cfg.syscall_sample as u64;
    if every == 0 || n % every != 0 {
        return 0;
    }
    let Some(e) = scratch(0) else { return 0 };
    fill_current(e, EV_SYSCALL, now);
    // SAFETY: `id` (long) is at offset 8 of raw_syscalls/sys_enter's record.
    e.a = unsafe { ctx.read_at::<i64>(8) }.unwrap_or(-1) as u64;
    e.b = n;
    emit(
        &EVENTS,
        e,
        BPF_RB_NO_WAKEUP as u64,
        ST_EVENTS_DROPPED,
        ST_EVENTS,
    );
    0
}

// x86_64 numbers of the system calls that open a file by name.
const NR_OPEN: i64 = 2;
const NR_CREAT: i64 = 85;
const NR_OPENAT: i64 = 257;
const NR_OPENAT2: i64 = 437;

/// A hit of a pid- or comm-keyed open decision at open/openat/openat2/creat
/// (recorded at the attempt, so DENYed opens count too). File-keyed open
/// decisions are counted by file_open itself: only it knows the inode.
#[inline(always)]
fn open_hit(ctx: &TracePointContext, kind: u32, now: u64) {
    if kind != KEY_PID && kind != KEY_COMM {
        return;
    }
    // raw_syscalls/sys_enter record: id (long) @8, args[6] (unsigned long) @16.
    // SAFETY: fixed offsets inside the tracepoint record.
    let id = unsafe { ctx.read_at::<i64>(8) }.unwrap_or(-1);
    let arg = match id {
        NR_OPEN | NR_CREAT => 16,
        NR_OPENAT | NR_OPENAT2 => 24,
        _ => return,
    };
    // SAFETY: as above.
    let Ok(name) = (unsafe { ctx.read_at::<u64>(arg) }) else {
        return;
    };
    let Some(e) = scratch(0) else { return };
    fill_current(e, EV_TP_HIT, now);
    // SAFETY: a user pointer read with the checked probe-read helper.
    if unsafe { bpf_probe_read_user_str_bytes(name as *const u8, &mut e.path) }.is_err() {
        return;
    }
    let hash = if kind == KEY_PID {
        e.pid as u64
    } else {
        fnv1a(&e.comm)
    };
    let key = DecisionKey {
        hook: HOOK_OPEN,
        kind,
        hash,
        dev: 0,
        gen: 0,
    };
    if let Some((hits, d)) = tp_hit(&key, now) {
        hit_fields(e, &key, hits, &d);
        emit(
            &HITS,
            e,
            BPF_RB_NO_WAKEUP as u64,
            ST_TP_HITS_DROPPED,
            ST_HITS,
        );
    }
}

/// Counts a hit of `key` when it has a live decision; returns the hits so
/// far and the decision when an EV_TP_HIT record is due (at most once per
/// HIT_GAP_NS per key).
#[inline(always)]
fn tp_hit(key: &DecisionKey, now: u64) -> Option<(u64, Decision)> {
    // SAFETY: copied out at once; a concurrent update by the loader gives
    // the older or the newer decision.
    let d = (unsafe { DECISIONS.get(key) }).copied()?;
    if d.expires_ns != 0 && now >= d.expires_ns {
        return None;
    }
    count_hit(key, now).map(|hits| (hits, d))
}

/// Counts one hit of `key` (HITCOUNT); the hits so far when an EV_TP_HIT
/// record is due (at most once per HIT_GAP_NS per key).
#[inline(always)]
fn count_hit(key: &DecisionKey, now: u64) -> Option<u64> {
    stat(ST_TP_HITS);
    let (hits, record) = match HITCOUNT.get_ptr_mut(key) {
        Some(p) => {
            // SAFETY: a live map value; a racing update from another CPU
            // only loses a count or sends one extra record.
            unsafe {
                (*p).hits += 1;
                let record = now.wrapping_sub((*p).last_record_ns) >= HIT_GAP_NS;
                if record {
                    (*p).last_record_ns = now;
                }
                ((*p).hits, record)
            }
        }
        None => {
            let _ = HITCOUNT.insert(
                key,
                &HitStat {
                    hits: 1,
                    last_record_ns: now,
                },
                0,
            );
            (1, true)
        }
    };
    if record {
        Some(hits)
    } else {
        None
    }
}

/// Turns `e` (the hitting task's record) into an EV_TP_HIT.
#[inline(always)]
fn hit_fields(e: &mut Event, key: &DecisionKey, hits: u64, d: &Decision) {
    e.kind = EV_TP_HIT;
    e.key = *key;
    e.a = hits;
    e.b = d.action as u64;
    e.c = d.policy as u64 | ((d.answer as u64) << 32);
}

#[inline(always)]
fn unsafe_ktime() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

// ---------------------------------------------------------------- scheduler

// sched/sched_switch record: prev_comm[16]@8 prev_pid@24 prev_prio@28
// prev_state(long)@32 next_comm[16]@40 next_pid@56 next_prio@60.
#[tracepoint(category = "sched", name = "sched_switch")]
pub fn llamux_sched_switch(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let now = unsafe_ktime();
    // SAFETY: fixed offsets of the sched_switch record (see above).
    let (prev, state, next) = unsafe {
        (
            ctx.read_at::<u32>(24).unwrap_or(0),
            ctx.read_at::<i64>(32).unwrap_or(0),
            ctx.read_at::<u32>(56).unwrap_or(0),
        )
    };
    if next != 0 {
        match SCHED.get_ptr_mut(&next) {
            // SAFETY: a live map value of this task; races only blur statistics.
            Some(p) => unsafe { (*p).last_in_ns = now },
            None => {
                let s = SchedStat {
                    last_in_ns: now,
                    ..SchedStat::default()
                };
                let _ = SCHED.insert(&next, &s, 0);
            }
        }
    }
    if prev == 0 {
        return 0;
    }
    stat(ST_SWITCHES);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(p) = SCHED.get_ptr_mut(&prev) else {
        return 0;
    };
    // SAFETY: as above.
    let s = unsafe { &mut *p };
    if s.last_in_ns != 0 && now > s.last_in_ns {
        s.runtime_ns += now - s.last_in_ns;
    }
    s.switches += 1;
    // Preempted (TASK_REPORT_MAX) or still runnable: an involuntary switch.
    if state == 0 || state & 0x100 != 0 {
        s.involuntary += 1;
    }
    let every = cfg.sched_sample as u64;
    if tgid == cfg.loader_tgid || every == 0 || s.switches % every != 0 {
        return 0;
    }
    let (runtime, switches, invol) = (s.runtime_ns, s.switches, s.involuntary);
    let Some(e) = scratch(0) else { return 0 };
    fill_current(e, EV_SCHED, now);
    e.a = runtime;
    e.b = switches;
    e.c = invol;
    emit(
        &EVENTS,
        e,
        BPF_RB_NO_WAKEUP as u64,
        ST_EVENTS_DROPPED,
        ST_EVENTS,
    );
    0
}

/// The command line of an exec, for bprm_check_security (ARGV). Only
/// execve and execveat run these (not every system call, as sys_enter).
/// `off`: where the record holds the argv pointer.
#[inline(always)]
fn exec_argv(ctx: &TracePointContext, off: usize) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if cfg.hooks[HOOK_EXEC as usize].enabled == 0 {
        return 0;
    }
    // SAFETY: a fixed offset inside the tracepoint record.
    if let Ok(argv) = unsafe { ctx.read_at::<u64>(off) } {
        capture_argv(argv, bpf_get_current_pid_tgid() as u32);
    }
    0
}

// syscalls/sys_enter_execve: __syscall_nr@8, filename@16, argv@24, envp@32.
#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn llamux_execve(ctx: TracePointContext) -> u32 {
    exec_argv(&ctx, 24)
}

// syscalls/sys_enter_execveat: __syscall_nr@8, fd@16, filename@24, argv@32.
#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn llamux_execveat(ctx: TracePointContext) -> u32 {
    exec_argv(&ctx, 32)
}

// sched/sched_process_exec: __data_loc char[] filename@8, pid@12, old_pid@16.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn llamux_exec(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if cfg.exec_events == 0 {
        return 0;
    }
    let Some(e) = scratch(1) else { return 0 };
    fill_current(e, EV_EXEC, unsafe_ktime());
    let _ = ARGV.remove(&e.tid);
    if e.pid == cfg.loader_tgid {
        return 0;
    }
    fill_parent(e, &cfg.off);
    // SAFETY: the __data_loc word at offset 8 holds (len << 16 | offset) of
    // the filename inside this record; the string is read with
    // bpf_probe_read_kernel_str, which bounds and checks the copy.
    unsafe {
        if let Ok(loc) = ctx.read_at::<u32>(8) {
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            let _ = bpf_probe_read_kernel_str_bytes(src, &mut e.path);
        }
    }
    emit(&EVENTS, e, 0, ST_EVENTS_DROPPED, ST_EVENTS);
    // A live exec decision for this program: a hit (the exec succeeded).
    let kind = cfg.hit_key[0];
    let key = match kind {
        KEY_EXE => {
            // The file bprm_check_security decided for this exec.
            // SAFETY: copied out at once.
            if let Some(k) = unsafe { EXECKEY.get(&e.tid) }.copied() {
                let _ = EXECKEY.remove(&e.tid);
                k
            } else {
                // Else the file now running: current->mm->exe_file.
                // SAFETY: bpf_get_current_task has no preconditions; the
                // task is only read through kread (bpf_probe_read_kernel).
                let task = unsafe { bpf_get_current_task() } as *const u8;
                let mm: *const u8 = kread(task, cfg.off.task_mm).unwrap_or(core::ptr::null());
                let exe: *const u8 = kread(mm, cfg.off.mm_exe_file).unwrap_or(core::ptr::null());
                let Some(id) = file_id(exe, &cfg.off) else {
                    return 0;
                };
                e.ctime_ns = id.ctime_ns;
                file_key(HOOK_EXEC, kind, &id)
            }
        }
        KEY_PID => DecisionKey {
            hook: HOOK_EXEC,
            kind,
            hash: e.pid as u64,
            dev: 0,
            gen: 0,
        },
        KEY_COMM => DecisionKey {
            hook: HOOK_EXEC,
            kind,
            hash: fnv1a(&e.comm),
            dev: 0,
            gen: 0,
        },
        _ => return 0,
    };
    if let Some((hits, d)) = tp_hit(&key, e.ts_ns) {
        // The exec record (path, parent) becomes the hit record.
        hit_fields(e, &key, hits, &d);
        emit(&HITS, e, 0, ST_TP_HITS_DROPPED, ST_HITS);
    }
    0
}

// sched/sched_process_exit: comm[16]@8 pid@24 prio@28.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn llamux_exit(_ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let pt = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pt >> 32) as u32, pt as u32);
    // SAFETY: map values read once; they may be stale, which is harmless.
    let runtime = unsafe { SCHED.get(&tid) }.map_or(0, |s| s.runtime_ns);
    let _ = SCHED.remove(&tid);
    let _ = ARGV.remove(&tid);
    if tgid != tid {
        return 0;
    }
    // SAFETY: as above.
    let calls = unsafe { SYSCOUNT.get(&tgid) }.copied().unwrap_or(0);
    let _ = SYSCOUNT.remove(&tgid);
    if cfg.exec_events == 0 || tgid == cfg.loader_tgid {
        return 0;
    }
    let Some(e) = scratch(1) else { return 0 };
    fill_current(e, EV_EXIT, unsafe_ktime());
    e.a = calls;
    e.b = runtime;
    emit(&EVENTS, e, 0, ST_EVENTS_DROPPED, ST_EVENTS);
    0
}

// ---------------------------------------------------------------- LSM

/// Does `path` start with the hook's prefix?
#[inline(always)]
fn prefix_ok(h: &HookConfig, path: &[u8; PATH_LEN]) -> bool {
    let n = h.prefix_len as usize;
    // get() rather than indexing: no panic paths (the verifier rejects a
    // program ending in a call to the panic handler).
    for i in 0..PREFIX_LEN {
        if i >= n {
            break;
        }
        match (path.get(i), h.prefix.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
    true
}

/// The decision for the event in `e` (path already filled); `id`: the
/// file's identity for exec/open hooks; `governed`: the path is under the
/// policy's prefix. A file's decision applies under any name, governed or
/// not (a hard link or bind mount outside the prefix is the same file);
/// only a miss depends on `governed`. Returns the LSM verdict (0 or -EPERM).
#[inline(always)]
fn decide(
    ctx: &LsmContext,
    hook: u32,
    h: &HookConfig,
    e: &mut Event,
    id: Option<FileId>,
    governed: bool,
) -> i32 {
    // Ungoverned tasks are still judged on file objects with an identity.
    let judged = governed || (kind_is_file(h.key_kind) && id.is_some());
    if !judged {
        return 0;
    }
    let kind = h.key_kind;
    let key = match kind {
        KEY_PID => DecisionKey {
            hook,
            kind,
            hash: e.pid as u64,
            dev: 0,
            gen: 0,
        },
        KEY_COMM => DecisionKey {
            hook,
            kind,
            hash: fnv1a(&e.comm),
            dev: 0,
            gen: 0,
        },
        _ => match id {
            Some(f) => {
                e.ctime_ns = f.ctime_ns;
                file_key(hook, kind, &f)
            }
            // No inode to key by: the policy's default, nothing to ask. (The
            // stat call keeps LLVM from folding the verdict into a negation,
            // which the verifier cannot bound to [-4095, 0].)
            None => {
                if governed && h.default_action == ACT_DENY {
                    stat(ST_DENIED);
                    return -EPERM;
                }
                return 0;
            }
        },
    };
    e.key = key;
    e.a = hook as u64;
    let now = e.ts_ns;
    // SAFETY: the value is copied out at once; a concurrent update by the
    // loader can only give the older or the newer decision.
    if let Some(d) = unsafe { DECISIONS.get(&key) }.copied() {
        // A DENY binds to the file whatever is done to it; an ALLOW only
        // to the content it was given for (ctime: any write, chmod, link
        // or rename since asks again).
        let same = d.action == ACT_DENY || !key.is_file() || d.ctime_ns == e.ctime_ns;
        if (d.expires_ns == 0 || now < d.expires_ns) && same {
            e.kind = EV_HIT;
            e.b = d.action as u64;
            e.c = d.policy as u64 | ((d.answer as u64) << 32);
            emit(&HITS, e, 0, ST_HITS_DROPPED, ST_HITS);
            if hook == HOOK_OPEN {
                // Only file_open knows an open's inode: it counts the hits.
                let _ = count_hit(&key, now);
            } else if key.is_file() && d.action != ACT_DENY {
                // sched_process_exec counts it once the exec succeeds.
                let _ = EXECKEY.insert(&e.tid, &key, 0);
            }
            if d.action == ACT_DENY {
                stat(ST_DENIED);
                info!(
                    ctx,
                    "deny hook {} pid {} (decision of policy {})", hook, e.pid, d.policy
                );
                return -EPERM;
            }
            return 0;
        }
        if governed {
            stat(ST_EXPIRED);
        }
    }
    if !governed {
        return 0;
    }
    stat(ST_MISSES);
    // A fail-closed policy denies what it cannot show the model whole.
    if h.default_action == ACT_DENY && e.flags & (EVF_PATH_CUT | EVF_PATH_HEAD_CUT) != 0 {
        e.kind = EV_HIT;
        e.flags |= EVF_UNREPRESENTABLE;
        e.b = ACT_DENY as u64;
        e.c = u64::MAX;
        emit(&HITS, e, 0, ST_HITS_DROPPED, ST_HITS);
        stat(ST_DENIED);
        return -EPERM;
    }
    // Ask for a decision, at most once per key per request gap.
    // SAFETY: copied out at once, as above.
    let last = unsafe { PENDING.get(&key) }.copied().unwrap_or(0);
    if last == 0 || now.wrapping_sub(last) >= h.request_gap_ns {
        let _ = PENDING.insert(&key, &now, 0);
        e.kind = EV_REQUEST;
        e.b = h.default_action as u64;
        if REQUESTS.output::<Event>(e, 0).is_ok() {
            stat(ST_EVENTS);
        } else {
            // Lost: let the next occurrence ask again at once.
            stat(ST_EVENTS_DROPPED);
            let _ = PENDING.remove(&key);
        }
    } else {
        stat(ST_REQUESTS_SUPPRESSED);
    }
    if h.default_action == ACT_DENY {
        stat(ST_DENIED);
        return -EPERM;
    }
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn llamux_bprm_check(ctx: LsmContext) -> i32 {
    // LSM_HOOK(int, 0, bprm_check_security, struct linux_binprm *bprm)
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    let Some(cfg) = config() else { return 0 };
    let h = &cfg.hooks[HOOK_EXEC as usize];
    if h.enabled == 0 {
        return 0;
    }
    let bprm: *const u8 = ctx.arg(0);
    let Some(e) = scratch(2) else { return 0 };
    fill_current(e, EV_REQUEST, unsafe_ktime());
    // The first check of an exec (interp still == filename; a script's
    // interpreter is checked second): forget what an earlier, failed exec
    // of this task left.
    let fname: u64 = kread(bprm, cfg.off.bprm_filename).unwrap_or(0);
    let interp: u64 = kread(bprm, cfg.off.bprm_interp).unwrap_or(1);
    if fname == interp {
        let _ = EXECKEY.remove(&e.tid);
    }
    // The file about to run (a script's interpreter on the second call):
    // its identity is the key, its dentries give the path.
    let file: *const u8 = kread(bprm, cfg.off.bprm_file).unwrap_or(core::ptr::null());
    let id = file_id(file, &cfg.off);
    walk_path(file, &cfg.off, e);
    // Without the head of the path the prefix is unknown: governed.
    let governed = e.flags & EVF_PATH_HEAD_CUT != 0 || prefix_ok(h, &e.path);
    fill_parent(e, &cfg.off);
    if governed {
        // Context for the model (the decision itself binds to the inode).
        if let Some(f) = id {
            e.ctime_ns = f.ctime_ns;
        }
        fill_file_info(file, &cfg.off, e);
        fill_chain(e, &cfg.off);
        // SAFETY: copied out at once; another CPU replacing it gives the
        // older or the newer record.
        if let Some(a) = unsafe { ARGV.get(&e.tid) } {
            // SAFETY: both buffers are ARGV_LEN bytes or more; the copy
            // goes through the checked probe-read helper.
            unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                    e.argv.as_mut_ptr().cast(),
                    ARGV_LEN as u32,
                    a.buf.as_ptr().cast(),
                )
            };
            e.argv[ARGV_LEN - 1] = 0;
            e.flags |= a.flags & (EVF_ARGV | EVF_ARGV_CUT);
        }
    }
    decide(&ctx, HOOK_EXEC, h, e, id, governed)
}

#[lsm(hook = "file_open")]
pub fn llamux_file_open(ctx: LsmContext) -> i32 {
    // LSM_HOOK(int, 0, file_open, struct file *file)
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    let Some(cfg) = config() else { return 0 };
    let h = &cfg.hooks[HOOK_OPEN as usize];
    if h.enabled == 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == cfg.loader_tgid {
        return 0;
    }
    let file: *const u8 = ctx.arg(0);
    let Some(e) = scratch(3) else { return 0 };
    fill_current(e, EV_REQUEST, unsafe_ktime());
    // SAFETY: file is the hook's struct file; dentry and name are read with
    // the probe-read helpers.
    unsafe {
        let Ok(dentry) =
            bpf_probe_read_kernel(file.add(cfg.off.file_dentry as usize) as *const *const u8)
        else {
            return 0;
        };
        let Ok(name) =
            bpf_probe_read_kernel(dentry.add(cfg.off.dentry_name as usize) as *const *const u8)
        else {
            return 0;
        };
        if bpf_probe_read_kernel_str_bytes(name, &mut e.path).is_err() {
            return 0;
        }
    }
    let governed = prefix_ok(h, &e.path);
    let id = file_id(file, &cfg.off);
    decide(&ctx, HOOK_OPEN, h, e, id, governed)
}

#[lsm(hook = "task_setnice")]
pub fn llamux_task_setnice(ctx: LsmContext) -> i32 {
    // LSM_HOOK(int, 0, task_setnice, struct task_struct *p, int nice)
    let retval: i32 = ctx.arg(2);
    if retval != 0 {
        return retval;
    }
    let Some(cfg) = config() else { return 0 };
    let task: *const u8 = ctx.arg(0);
    let nice: i32 = ctx.arg(1);
    let off = &cfg.off;
    if off.task_static_prio == 0 {
        return 0;
    }
    // SAFETY: `task` is the hook's target task_struct; every field is read
    // with bpf_probe_read_kernel, which faults safely.
    let (tgid, tid, prio, comm) = unsafe {
        (
            bpf_probe_read_kernel(task.add(off.task_tgid as usize) as *const u32).unwrap_or(0),
            bpf_probe_read_kernel(task.add(off.task_pid as usize) as *const u32).unwrap_or(0),
            bpf_probe_read_kernel(task.add(off.task_static_prio as usize) as *const i32)
                .unwrap_or(120),
            bpf_probe_read_kernel(task.add(off.task_comm as usize) as *const [u8; COMM_LEN])
                .unwrap_or([0; COMM_LEN]),
        )
    };
    let now = unsafe_ktime();
    for (hook, kind) in [(HOOK_SCHED, cfg.hit_key[3]), (HOOK_SYSCALL, cfg.hit_key[2])] {
        let hash = match kind {
            KEY_PID => tgid as u64,
            KEY_COMM => fnv1a(&comm),
            _ => continue,
        };
        let key = DecisionKey {
            hook,
            kind,
            hash,
            dev: 0,
            gen: 0,
        };
        // SAFETY: copied out at once, as in `decide`.
        let Some(d) = (unsafe { DECISIONS.get(&key) }).copied() else {
            continue;
        };
        if d.expires_ns != 0 && now >= d.expires_ns {
            continue;
        }
        let Some(e) = scratch(4) else { return 0 };
        fill_current(e, EV_NICE, now);
        // The caller goes to ppid/pcomm, the target to pid/tid/comm.
        e.ppid = e.pid;
        e.pcomm = e.comm;
        e.pid = tgid;
        e.tid = tid;
        e.comm = comm;
        e.key = key;
        // static_prio = nice + 120 (NICE_TO_PRIO).
        e.a = (prio - 120) as i64 as u64;
        e.b = nice as i64 as u64;
        e.c = d.policy as u64 | ((d.answer as u64) << 32);
        emit(&HITS, e, 0, ST_HITS_DROPPED, ST_NICE);
        return 0;
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
