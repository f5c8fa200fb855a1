// SPDX-License-Identifier: GPL-2.0

//! The one place where the module touches raw kernel interfaces: functions
//! 6.12 binds (`kernel::bindings`) but gives no safe abstraction for, the
//! exported ones it does not bind (declared here by hand), and the
//! one-line C wrappers of static inlines and macros (llamux_glue.c). Each
//! is wrapped in a safe function or type; the rest of the module is safe
//! Rust except where it calls engine code (engine.rs, workers.rs).

use core::alloc::Layout;
use core::ffi::{c_int, c_void};
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use kernel::alloc::allocator::KVmalloc;
use kernel::alloc::{AllocError, Allocator};
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::types::Opaque;

/// `struct proc_dir_entry` (opaque here).
#[repr(C)]
pub(crate) struct ProcDirEntry {
    _p: [u8; 0],
}

/// `struct proc_ops` (its tables are C: llamux_glue.c).
#[repr(C)]
pub(crate) struct ProcOps {
    _p: [u8; 0],
}

/// A seq_file show callback.
pub(crate) type ShowFn = unsafe extern "C" fn(*mut bindings::seq_file, *mut c_void) -> c_int;

// Pointers to kernel structs only (never passed by value).
#[allow(improper_ctypes)]
extern "C" {
    // fs/proc/generic.c and fs/proc/inode.c: exported, not bound in 6.12.
    fn proc_mkdir(name: *const c_char, parent: *mut ProcDirEntry) -> *mut ProcDirEntry;
    fn proc_create(
        name: *const c_char,
        mode: u16,
        parent: *mut ProcDirEntry,
        ops: *const ProcOps,
    ) -> *mut ProcDirEntry;
    fn proc_create_single_data(
        name: *const c_char,
        mode: u16,
        parent: *mut ProcDirEntry,
        show: Option<ShowFn>,
        data: *mut c_void,
    ) -> *mut ProcDirEntry;
    fn proc_remove(de: *mut ProcDirEntry);

    // llamux_glue.c: one-line wrappers of static inlines and macros.
    fn llamux_need_resched() -> bool;
    fn llamux_cond_resched();
    fn llamux_fatal_signal_pending(t: *mut bindings::task_struct) -> bool;
    fn llamux_local_clock() -> u64;
    fn llamux_init_completion(c: *mut bindings::completion);
    fn llamux_file_size(f: *mut bindings::file) -> i64;
    fn llamux_file_mode(f: *mut bindings::file) -> u16;
    fn llamux_totalram_bytes() -> u64;
    fn llamux_cpu() -> c_int;
}

// include/uapi/asm-generic/fcntl.h and include/uapi/linux/stat.h (x86_64).
const O_RDONLY: c_int = 0;
const O_NONBLOCK: c_int = 0o4000;
const O_LARGEFILE: c_int = 0o100000;
const O_PATH: c_int = 0o10000000;
const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;
const S_IFBLK: u16 = 0o060000;
const S_IFDIR: u16 = 0o040000;
const POSIX_FADV_DONTNEED: c_int = 4;
const KFPU_MXCSR: u32 = 2;
const NUMA_NO_NODE: c_int = -1;

// ---- Scheduling, time, memory ----

/// need_resched(): another task wants this CPU.
pub(crate) fn need_resched() -> bool {
    // SAFETY: reads the current task's flag; no preconditions.
    unsafe { llamux_need_resched() }
}

/// cond_resched(): a voluntary preemption point.
pub(crate) fn cond_resched() {
    // SAFETY: may sleep; every caller is in process context outside any
    // spinlock and FPU section.
    unsafe { llamux_cond_resched() }
}

/// local_clock() in ns: cheap, monotonic per CPU.
pub(crate) fn local_clock() -> u64 {
    // SAFETY: no preconditions.
    unsafe { llamux_local_clock() }
}

/// cpu_relax(): PAUSE. Written out because the kernel's Rust is built
/// without SSE2, and `core::hint::spin_loop` then emits nothing at all: a
/// spin loop without PAUSE starves the sibling thread (and, in a TCG guest,
/// the other vCPUs' host threads).
#[inline(always)]
pub(crate) fn cpu_relax() {
    // SAFETY: PAUSE (F3 90) only hints the CPU; no memory, stack or flags.
    unsafe { core::arch::asm!(".byte 0xf3, 0x90", options(nomem, nostack, preserves_flags)) };
}

/// raw_smp_processor_id(): stable only while preemption is off (inside an
/// FPU section).
pub(crate) fn cpu_id() -> usize {
    // SAFETY: reads a per-CPU word; no preconditions.
    unsafe { llamux_cpu() }.max(0) as usize
}

/// ktime_get_ns().
pub(crate) fn now_ns() -> u64 {
    kernel::time::Ktime::ktime_get().to_ns() as u64
}

/// Bytes of memory available for new allocations (si_mem_available).
pub(crate) fn mem_available() -> u64 {
    // SAFETY: reads global counters; no preconditions.
    let pages = unsafe { bindings::si_mem_available() };
    (pages.max(0) as u64) << kernel::page::PAGE_SHIFT
}

/// Bytes of RAM (totalram_pages()).
pub(crate) fn totalram() -> u64 {
    // SAFETY: reads a global counter; no preconditions.
    unsafe { llamux_totalram_bytes() }
}

/// Online CPUs, in order (a snapshot of cpu_online_mask).
pub(crate) fn online_cpus() -> impl Iterator<Item = u32> {
    // SAFETY: nr_cpu_ids is set at boot and read-only afterwards.
    let n = unsafe { bindings::nr_cpu_ids };
    (0..n).filter(|&cpu| {
        let (w, b) = ((cpu / 64) as usize, cpu % 64);
        // SAFETY: the mask is a static bitmap of at least nr_cpu_ids bits;
        // a racy read of one word is what cpu_online() does too.
        let word = unsafe {
            core::ptr::addr_of!(bindings::__cpu_online_mask.bits)
                .cast::<u64>()
                .add(w)
                .read_volatile()
        };
        word >> b & 1 != 0
    })
}

// ---- FPU ----

/// kernel_fpu_begin_mask(KFPU_MXCSR): the engine uses SSE/AVX, never x87.
/// Only fpu.rs calls this and `fpu_end`, always in pairs.
pub(crate) fn fpu_begin() {
    // SAFETY: process context (every caller); the matching fpu_end follows.
    unsafe { bindings::kernel_fpu_begin_mask(KFPU_MXCSR) }
}

/// kernel_fpu_end().
pub(crate) fn fpu_end() {
    // SAFETY: called only inside a section fpu_begin opened (fpu.rs).
    unsafe { bindings::kernel_fpu_end() }
}

// ---- Engine memory ----

fn engine_layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.max(1), 8).ok()
}

/// kvmalloc(size) for the engine (aligned to 8), or null.
pub(crate) fn kvmalloc(size: usize) -> *mut u8 {
    let Some(l) = engine_layout(size) else {
        return core::ptr::null_mut();
    };
    match KVmalloc::alloc(l, GFP_KERNEL | __GFP_NOWARN) {
        Ok(p) => p.as_ptr().cast(),
        Err(AllocError) => core::ptr::null_mut(),
    }
}

/// Frees what `kvmalloc(size)` returned.
///
/// # Safety
/// `p` came from `kvmalloc(size)` and is not used afterwards.
pub(crate) unsafe fn kvfree(p: *mut u8, size: usize) {
    let (Some(p), Some(l)) = (NonNull::new(p), engine_layout(size)) else {
        return;
    };
    // SAFETY: by the caller's contract, `p` is a live KVmalloc allocation of
    // this layout, never used again.
    unsafe { KVmalloc::free(p, l) }
}

// ---- Tasks ----

/// A task pointer that stays valid while it is used: the current task, or
/// a writer blocked in a syscall of this module until the user is done.
#[derive(Clone, Copy)]
pub(crate) struct TaskRef(NonNull<bindings::task_struct>);

// SAFETY: a task_struct may be inspected from any thread; the lifetime rule
// is the constructor's (see `current`).
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// The current task. Valid while its syscall runs, which every user of
    /// a TaskRef waits for (the load's helper threads run inside it).
    pub(crate) fn current() -> Self {
        // SAFETY: `current` is always a valid task in process context.
        let p = unsafe { bindings::get_current() };
        // `current` is never null in process context.
        TaskRef(NonNull::new(p).unwrap_or(NonNull::dangling()))
    }

    /// fatal_signal_pending(task).
    pub(crate) fn fatal_signal_pending(self) -> bool {
        // SAFETY: the task is alive (see `current`).
        unsafe { llamux_fatal_signal_pending(self.0.as_ptr()) }
    }
}

/// A kernel thread this module started and stops (`KThread::stop`).
pub(crate) struct KThread(NonNull<bindings::task_struct>);

// SAFETY: the task pointer is only passed to kthread_stop, from any thread.
unsafe impl Send for KThread {}
// SAFETY: as above.
unsafe impl Sync for KThread {}

/// A kthread function.
pub(crate) type ThreadFn = unsafe extern "C" fn(*mut c_void) -> c_int;

impl KThread {
    /// Starts `f(arg)` bound to `cpu`, named "llamux/CPU".
    ///
    /// # Safety
    /// `arg` must stay valid for `f` until `stop` has returned.
    pub(crate) unsafe fn start_on_cpu(f: ThreadFn, arg: *mut c_void, cpu: u32) -> Result<Self> {
        // SAFETY: a valid function and name format; `arg` per the contract.
        let t = unsafe {
            bindings::kthread_create_on_cpu(
                Some(f),
                arg,
                cpu,
                kernel::c_str!("llamux/%u").as_char_ptr(),
            )
        };
        let t = from_err_ptr(t)?;
        let t = NonNull::new(t).ok_or(ENOMEM)?;
        // SAFETY: a freshly created, not yet started kthread.
        unsafe { bindings::wake_up_process(t.as_ptr()) };
        Ok(KThread(t))
    }

    /// Starts `f(arg)` on any CPU (the scheduler places it), named
    /// "llamux/N" with N = `index`.
    ///
    /// # Safety
    /// As `start_on_cpu`.
    pub(crate) unsafe fn start(f: ThreadFn, arg: *mut c_void, index: u32) -> Result<Self> {
        // SAFETY: a valid function and name format with its one argument;
        // `arg` per the contract.
        let t = unsafe {
            bindings::kthread_create_on_node(
                Some(f),
                arg,
                NUMA_NO_NODE,
                kernel::c_str!("llamux/%u").as_char_ptr(),
                index,
            )
        };
        let t = from_err_ptr(t)?;
        let t = NonNull::new(t).ok_or(ENOMEM)?;
        // SAFETY: a freshly created, not yet started kthread.
        unsafe { bindings::wake_up_process(t.as_ptr()) };
        Ok(KThread(t))
    }

    /// kthread_stop(): sets the stop flag, wakes the thread and waits for
    /// its function to return (or for it to exit without running).
    pub(crate) fn stop(self) {
        // SAFETY: a kthread created by `start_on_cpu` whose function only
        // returns once kthread_should_stop() (so its task is still there).
        unsafe { bindings::kthread_stop(self.0.as_ptr()) };
    }
}

/// kthread_should_stop() of the current kthread.
pub(crate) fn kthread_should_stop() -> bool {
    // SAFETY: only called from this module's worker kthreads.
    unsafe { bindings::kthread_should_stop() }
}

struct FreshCall<'a> {
    f: &'a mut (dyn FnMut() + Send),
    done: Opaque<bindings::completion>,
}

unsafe extern "C" fn fresh_main(p: *mut c_void) -> c_int {
    // SAFETY: `p` is the FreshCall of `run_on_fresh_stack`, which waits for
    // `done` before its frame (holding the call) goes away.
    let call = unsafe { &mut *p.cast::<FreshCall<'_>>() };
    (call.f)();
    // SAFETY: `done` was initialised; after complete() this thread touches
    // nothing of the call (the waiter may return at once).
    unsafe { bindings::complete(call.done.get()) };
    0
}

/// Runs `f` in a short-lived kthread ("llamux-setup") with an empty stack
/// and waits for it, uninterruptibly (`f` borrows this frame). Building a
/// model, tokenizer or session moves KiB-sized engine values through
/// frames of up to ~11 KiB; a syscall path has already used part of its
/// 16 KiB stack.
pub(crate) fn run_on_fresh_stack(f: &mut (dyn FnMut() + Send)) -> Result {
    let mut call = FreshCall {
        f,
        done: Opaque::uninit(),
    };
    // SAFETY: `done` is this frame's and is not moved until we return.
    unsafe { llamux_init_completion(call.done.get()) };
    let arg = core::ptr::addr_of_mut!(call).cast::<c_void>();
    // SAFETY: a valid function and name; `arg` stays valid until the
    // thread has completed `done` (waited for below).
    let t = unsafe {
        bindings::kthread_create_on_node(
            Some(fresh_main),
            arg,
            NUMA_NO_NODE,
            kernel::c_str!("llamux-setup").as_char_ptr(),
        )
    };
    let t = from_err_ptr(t)?;
    // SAFETY: a freshly created kthread; it exits by itself after `f`.
    unsafe { bindings::wake_up_process(t) };
    // SAFETY: `done` is initialised; fresh_main completes it exactly once.
    unsafe { bindings::wait_for_completion(call.done.get()) };
    Ok(())
}

// ---- Files ----

/// File types a model may be read from.
pub(crate) enum Kind {
    Regular,
    Block,
    Dir,
    Other,
}

fn kind_of(mode: u16) -> Kind {
    match mode & S_IFMT {
        S_IFREG => Kind::Regular,
        S_IFBLK => Kind::Block,
        S_IFDIR => Kind::Dir,
        _ => Kind::Other,
    }
}

/// An open `struct file`, closed on drop.
pub(crate) struct File(NonNull<bindings::file>);

// SAFETY: a struct file may be used and closed from any thread.
unsafe impl Send for File {}
// SAFETY: kernel_read with a caller-owned position does not touch shared
// state of the file without its own locking.
unsafe impl Sync for File {}

impl File {
    fn open(path: &CStr, flags: c_int) -> Result<File> {
        // SAFETY: a NUL-terminated path; filp_open returns a file or ERR_PTR.
        let f = unsafe { bindings::filp_open(path.as_char_ptr(), flags, 0) };
        let f = from_err_ptr(f)?;
        Ok(File(NonNull::new(f).ok_or(ENOENT)?))
    }

    /// What `path` names, without opening it for reading: O_PATH calls no
    /// driver's open and never blocks (a FIFO's read open waits for a
    /// writer).
    pub(crate) fn kind_at(path: &CStr) -> Result<Kind> {
        Ok(File::open(path, O_PATH)?.kind())
    }

    /// Opens `path` for reading without blocking (O_NONBLOCK: if the path
    /// was swapped for a FIFO since `kind_at`, the open does not wait).
    pub(crate) fn open_read(path: &CStr) -> Result<File> {
        File::open(path, O_RDONLY | O_LARGEFILE | O_NONBLOCK)
    }

    pub(crate) fn kind(&self) -> Kind {
        // SAFETY: an open file has an inode.
        kind_of(unsafe { llamux_file_mode(self.0.as_ptr()) })
    }

    /// i_size of the file's mapping host (a block device's size too).
    pub(crate) fn size(&self) -> i64 {
        // SAFETY: an open file.
        unsafe { llamux_file_size(self.0.as_ptr()) }
    }

    /// kernel_read() of up to `n` bytes at `*pos`, appended to `buf`
    /// (within its capacity). Returns the bytes read (0 at EOF).
    pub(crate) fn read_append(&self, buf: &mut VVec<u8>, n: usize, pos: &mut i64) -> Result<usize> {
        let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
        let n = n.min(spare.len());
        // SAFETY: `spare` has room for `n` bytes; kernel_read writes at most
        // that many and advances `pos`.
        let r =
            unsafe { bindings::kernel_read(self.0.as_ptr(), spare.as_mut_ptr().cast(), n, pos) };
        if r < 0 {
            return Err(Error::from_errno(r as c_int));
        }
        let r = (r as usize).min(n);
        // SAFETY: kernel_read initialised the first `r` spare bytes.
        unsafe { buf.set_len(buf.len() + r) };
        Ok(r)
    }

    /// vfs_fadvise(POSIX_FADV_DONTNEED) over a range (best effort).
    pub(crate) fn drop_cache(&self, off: i64, len: i64) {
        // SAFETY: an open file; advice only.
        unsafe { bindings::vfs_fadvise(self.0.as_ptr(), off, len, POSIX_FADV_DONTNEED) };
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: opened by filp_open, closed once.
        unsafe { bindings::filp_close(self.0.as_ptr(), core::ptr::null_mut()) };
    }
}

// ---- /proc ----

/// A /proc entry this module created; `remove` takes it (and its children)
/// away, waiting for callbacks in flight.
pub(crate) struct ProcEntry(NonNull<ProcDirEntry>);

// SAFETY: proc entries may be used and removed from any thread.
unsafe impl Send for ProcEntry {}
// SAFETY: as above.
unsafe impl Sync for ProcEntry {}

impl ProcEntry {
    /// proc_mkdir(name, NULL).
    pub(crate) fn mkdir(name: &CStr) -> Result<Self> {
        // SAFETY: a NUL-terminated name; null parent is /proc.
        let p = unsafe { proc_mkdir(name.as_char_ptr(), core::ptr::null_mut()) };
        Ok(ProcEntry(NonNull::new(p).ok_or(ENOMEM)?))
    }

    /// proc_create(name, 0600, self, ops): a file with C `ops`.
    ///
    /// # Safety
    /// `ops` is a static proc_ops table whose callbacks are sound to run
    /// from now until `remove`.
    pub(crate) unsafe fn create(&self, name: &CStr, ops: *const ProcOps) -> Result {
        // SAFETY: a live directory of ours, a NUL-terminated name, `ops` per
        // the contract. The entry goes away with the directory.
        let p = unsafe { proc_create(name.as_char_ptr(), 0o600, self.0.as_ptr(), ops) };
        if p.is_null() {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// proc_create_single(name, 0600, self, show): a seq_file file.
    pub(crate) fn create_single(&self, name: &CStr, show: ShowFn) -> Result {
        // SAFETY: a live directory of ours; `show` is a function of this
        // module, which removes the entry before it goes away.
        let p = unsafe {
            proc_create_single_data(
                name.as_char_ptr(),
                0o600,
                self.0.as_ptr(),
                Some(show),
                core::ptr::null_mut(),
            )
        };
        if p.is_null() {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// proc_remove(): removes the tree, waiting for callbacks in flight.
    pub(crate) fn remove(self) {
        // SAFETY: our entry, removed once.
        unsafe { proc_remove(self.0.as_ptr()) };
    }
}

/// The seq_file of a show callback, as a `fmt::Write`.
pub(crate) struct Seq(NonNull<bindings::seq_file>);

impl Seq {
    /// # Safety
    /// `m` is the live seq_file of the show callback running now; the Seq
    /// is used only during that call.
    pub(crate) unsafe fn new(m: *mut bindings::seq_file) -> Option<Self> {
        NonNull::new(m).map(Seq)
    }

    /// seq_write(): overflow is noted by the seq_file core, which calls the
    /// show callback again with a bigger buffer.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        // SAFETY: a live seq_file (see `new`); `b` is readable.
        unsafe { bindings::seq_write(self.0.as_ptr(), b.as_ptr().cast(), b.len()) };
    }
}

impl fmt::Write for Seq {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// single_open(file, show, NULL): the open of a seq_file /proc file.
pub(crate) fn single_open(file: *mut bindings::file, show: ShowFn) -> c_int {
    // SAFETY: `file` is the file being opened (proc_open callback).
    unsafe { bindings::single_open(file, Some(show), core::ptr::null_mut()) }
}

/// Per-open-file state kept in `file->private_data`.
pub(crate) struct FilePrivate;

impl FilePrivate {
    /// Stores `v` in the file being opened.
    pub(crate) fn set<T>(file: *mut bindings::file, v: Pin<KBox<T>>) {
        // SAFETY: the file of a proc_open callback, whose private_data is
        // ours; the box is taken back in `take` at release.
        unsafe { (*file).private_data = KBox::into_raw(Pin::into_inner_unchecked(v)).cast() };
    }

    /// The state `set` stored, for the duration of a read/write callback.
    ///
    /// # Safety
    /// `file`'s private_data was set with a `Pin<KBox<T>>` of this `T`, and
    /// the returned reference is not used after the callback returns.
    pub(crate) unsafe fn get<'a, T>(file: *mut bindings::file) -> Option<Pin<&'a T>> {
        // SAFETY: per the contract, a live, pinned T until release.
        let p = unsafe { (*file).private_data.cast::<T>() };
        // SAFETY: as above (pinned in `set`).
        NonNull::new(p).map(|p| unsafe { Pin::new_unchecked(&*p.as_ptr()) })
    }

    /// Takes the state back at release.
    ///
    /// # Safety
    /// As `get`; no callback of the file runs any more (release).
    pub(crate) unsafe fn take<T>(file: *mut bindings::file) -> Option<Pin<KBox<T>>> {
        // SAFETY: per the contract.
        let p = unsafe { (*file).private_data.cast::<T>() };
        if p.is_null() {
            return None;
        }
        // SAFETY: the box `set` leaked, taken once.
        unsafe { (*file).private_data = core::ptr::null_mut() };
        // SAFETY: as above; it was pinned.
        Some(unsafe { Pin::new_unchecked(KBox::from_raw(p)) })
    }
}

/// User memory of a read/write callback.
pub(crate) fn user_slice(ptr: *const c_char, len: usize) -> kernel::uaccess::UserSlice {
    kernel::uaccess::UserSlice::new(ptr as usize, len)
}

/// Error from a negative errno the engine returned (EINVAL on nonsense).
pub(crate) fn errno(e: i64) -> Error {
    if (-4095..0).contains(&e) {
        Error::from_errno(e as c_int)
    } else {
        EINVAL
    }
}

/// ECANCELED (not among rust/kernel's named codes in 6.12).
pub(crate) fn ecanceled() -> Error {
    Error::from_errno(-125)
}

/// ESHUTDOWN (not among rust/kernel's named codes in 6.12).
pub(crate) fn eshutdown() -> Error {
    Error::from_errno(-108)
}

/// BUG(): for an engine panic (the engine's state is unknown).
pub(crate) fn bug() -> ! {
    // SAFETY: BUG() has no preconditions; it does not return.
    unsafe { bindings::BUG() }
}
