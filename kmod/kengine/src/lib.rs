//! llamux-kengine: the narrow `extern "C"` surface llamux.ko calls.
//!
//! This crate and the whole engine under it are compiled as ONE hard-float
//! object for `x86_64-unknown-linux-gnu` with the kernel code model (see
//! kmod/build-engine.sh and docs/kernel.md, "The engine object"). Rules
//! that follow:
//!
//! - Every exported `llx_*` entry is a `global_asm!` trampoline that
//!   realigns the stack (kernel C keeps it 8-byte aligned, this code assumes
//!   16) before calling the Rust function behind it. Trampolines pass the
//!   six argument registers through untouched, so no entry takes more than
//!   six arguments (a seventh would be read from the moved stack).
//! - Every entry, `llx_task` included, may only be called between
//!   `kernel_fpu_begin_mask(KFPU_MXCSR)` and `kernel_fpu_end()`.
//! - Arguments are pointers and integers only; the module is soft-float.
//!   Floating-point settings cross as integer thousandths.
//! - Errors are negative errno values with a message in a caller buffer;
//!   nothing here panics on input. A panic (an engine bug) ends in the
//!   module's `llx_panic`, which never returns.
//!
//! Callbacks the module provides (all `extern "C"`): `llx_kmalloc`,
//! `llx_kfree` (the global allocator), `llx_panic`, `llx_parallel_run`.
//! The allocator callback and `llx_parallel_run` are called from inside the
//! caller's FPU section and leave it (kernel_fpu_end) while they sleep, then
//! re-enter it (kernel_fpu_begin_mask(KFPU_MXCSR)) before returning. That is
//! sound for this object: in the SysV ABI every xmm/ymm register is
//! caller-saved, so the compiler holds no vector value in a register across
//! these calls, and the only callee-saved FP state, MXCSR's control bits, is
//! reset by KFPU_MXCSR to the default (0x1f80) this code always runs with.
//! x87 is never used (SSE2 is the x86_64 baseline for f32/f64).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[macro_use]
mod abi;
use abi::*;

use alloc::boxed::Box;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::fmt::{self, Write};

use llamux_engine::exec::Exec;
use llamux_engine::host::{try_box, ErrorKind, FixedBuf, Host, HostParams};
use llamux_engine::model::{ModelError, Repacker};
use llamux_engine::params::MilliSampling;

const E2BIG: i32 = 7;
const ENOMEM: i32 = 12;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const EOVERFLOW: i32 = 75;

// ---------------------------------------------------------------------------
// Module callbacks.

mod cb {
    use super::abi::*;
    use core::ffi::c_void;
    llx_callbacks!(llx_declare);
}
use cb::{llx_kfree, llx_kmalloc, llx_mem_available, llx_panic, llx_parallel_run};

/// The exported entries as the module sees them (for `llx_task`'s address).
#[allow(dead_code)]
mod exported {
    use super::abi::*;
    use core::ffi::c_void;
    llx_entries!(llx_declare);
}

// ---------------------------------------------------------------------------
// Trampolines: realign the stack, call the Rust function, return its value.

// The kernel's own code-generation rules, as build-engine.sh reads them from
// the kernel's .config (the `RET` and padding of arch/x86 linkage.h):
// MITIGATION_RETHUNK returns through the kernel's return thunk, SLS puts an
// int3 after a plain `ret`, CALL_PADDING gives each function 16 bytes of
// nops in front (call depth tracking patches them at run time).
#[cfg(llx_rethunk)]
macro_rules! ret_insn {
    () => {
        "jmp __x86_return_thunk"
    };
}
#[cfg(all(not(llx_rethunk), llx_sls))]
macro_rules! ret_insn {
    () => {
        "ret; int3"
    };
}
#[cfg(all(not(llx_rethunk), not(llx_sls)))]
macro_rules! ret_insn {
    () => {
        "ret"
    };
}
#[cfg(llx_call_padding)]
macro_rules! entry_padding {
    () => {
        ".rept 16; nop; .endr"
    };
}
#[cfg(not(llx_call_padding))]
macro_rules! entry_padding {
    () => {
        ""
    };
}

macro_rules! trampoline {
    ($name:ident) => {
        core::arch::global_asm!(
            ".pushsection .text",
            concat!(".globl ", stringify!($name)),
            concat!(".type ", stringify!($name), ",@function"),
            ".p2align 4",
            entry_padding!(),
            concat!(stringify!($name), ":"),
            // The module calls llx_task through a pointer (IBT target).
            "endbr64",
            "push rbp",
            "mov rbp, rsp",
            "and rsp, -32",
            "call {inner}",
            "leave",
            ret_insn!(),
            concat!(".size ", stringify!($name), ", . - ", stringify!($name)),
            ".popsection",
            inner = sym $name,
        );
    };
}

/// One trampoline per entry of abi.rs, each over the Rust function of the
/// same name (whose signature must be the one abi.rs gives).
macro_rules! llx_trampolines {
    ($($(#[$a:meta])* fn $name:ident($($arg:ident: $t:ty),*) $(-> $r:ty)?;)*) => {
        $(
            trampoline!($name);
            const _: extern "C" fn($($t),*) $(-> $r)? = $name;
        )*
    };
}
llx_entries!(llx_trampolines);

// ---------------------------------------------------------------------------
// Allocator and panic handler.

/// Alignment `llx_kmalloc` always gives (kmalloc's minimum on x86_64).
const KMALLOC_ALIGN: usize = 8;

struct KernelAlloc;

// SAFETY: the module's callbacks return memory of the requested size that
// no one else uses until `llx_kfree`; larger alignments are made here by
// over-allocating and keeping the original pointer just below the block.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.align() <= KMALLOC_ALIGN {
            // SAFETY: a plain allocation; null is passed on as failure.
            return unsafe { llx_kmalloc(l.size(), KMALLOC_ALIGN) };
        }
        let Some(total) = l.size().checked_add(l.align() + KMALLOC_ALIGN) else {
            return core::ptr::null_mut();
        };
        // SAFETY: as above.
        let raw = unsafe { llx_kmalloc(total, KMALLOC_ALIGN) };
        if raw.is_null() {
            return raw;
        }
        // Leave at least 8 bytes below the aligned block for `raw`.
        let addr = (raw as usize + KMALLOC_ALIGN + l.align() - 1) & !(l.align() - 1);
        let p = raw.wrapping_add(addr - raw as usize);
        // SAFETY: addr - 8 >= raw and addr + size <= raw + total, so both the
        // slot and the block lie inside the allocation; the slot is 8-aligned.
        unsafe { (p.sub(KMALLOC_ALIGN) as *mut *mut u8).write(raw) };
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if l.align() <= KMALLOC_ALIGN {
            // SAFETY: `p` came from `llx_kmalloc` with this size.
            unsafe { llx_kfree(p, l.size(), KMALLOC_ALIGN) };
            return;
        }
        // SAFETY: `alloc` stored the original pointer just below `p`.
        let raw = unsafe { (p.sub(KMALLOC_ALIGN) as *const *mut u8).read() };
        // SAFETY: `raw` came from `llx_kmalloc` with this total size.
        unsafe { llx_kfree(raw, l.size() + l.align() + KMALLOC_ALIGN, KMALLOC_ALIGN) };
    }
}

#[global_allocator]
static ALLOC: KernelAlloc = KernelAlloc;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut buf = [0u8; 256];
    let mut w = FixedBuf {
        buf: &mut buf,
        len: 0,
    };
    let _ = write!(w, "{info}");
    let len = w.len;
    // SAFETY: the module's hook only reads `len` bytes and never returns.
    unsafe { llx_panic(buf.as_ptr(), len) }
}

// ---------------------------------------------------------------------------
// Conversions between the ABI's types and the engine's.

fn to_milli(s: &LlxSampling) -> MilliSampling {
    MilliSampling {
        temperature_milli: s.temperature_milli,
        top_k: s.top_k,
        top_p_milli: s.top_p_milli,
        min_p_milli: s.min_p_milli,
        repeat_penalty_milli: s.repeat_penalty_milli,
        repeat_last_n: s.repeat_last_n,
        n_predict: s.n_predict,
        seed: s.seed,
    }
}

fn from_milli(m: MilliSampling) -> LlxSampling {
    LlxSampling {
        temperature_milli: m.temperature_milli,
        top_k: m.top_k,
        top_p_milli: m.top_p_milli,
        min_p_milli: m.min_p_milli,
        repeat_penalty_milli: m.repeat_penalty_milli,
        repeat_last_n: m.repeat_last_n,
        n_predict: m.n_predict,
        reserved: 0,
        seed: m.seed,
    }
}

fn errno(k: ErrorKind) -> i32 {
    match k {
        ErrorKind::Invalid => -EINVAL,
        ErrorKind::OutOfMemory => -ENOMEM,
        ErrorKind::TooBig => -E2BIG,
        ErrorKind::NoSpace => -ENOSPC,
    }
}

fn model_errno(e: &ModelError) -> i32 {
    match e {
        ModelError::OutOfMemory => -ENOMEM,
        _ => -EINVAL,
    }
}

/// The module's exec: hands tasks to `llx_parallel_run`.
struct KernelExec {
    ctx: *mut c_void,
    parallelism: usize,
}

/// `llx_task`'s data: the task of one `Exec::run`.
type TaskRef<'a> = &'a (dyn Fn(usize) + Sync);

impl Exec for KernelExec {
    fn parallelism(&self) -> usize {
        self.parallelism
    }

    fn run(&mut self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        let data: *const TaskRef<'_> = &task;
        // SAFETY: `llx_parallel_run` returns only when every task has run,
        // so `task` (and `data`, on this stack) outlive every use;
        // `llx_task` is the trampoline of `llx_task` below, which expects
        // exactly this.
        unsafe { llx_parallel_run(self.ctx, n, exported::llx_task, data.cast()) };
    }
}

extern "C" fn llx_task(data: *const c_void, i: usize) {
    // SAFETY: `data` is the `*const TaskRef` KernelExec::run passed to
    // llx_parallel_run, alive until that returns (the module calls us only
    // before it does).
    let t: TaskRef<'_> = unsafe { *(data as *const TaskRef<'_>) };
    t(i)
}

/// A handle: the host over the module's file buffer.
type Engine = Host<'static, KernelExec>;

/// A caller's buffer for a message (or a response record): text up to one
/// byte before its end, NUL-terminated by `finish`.
struct ErrOut<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> ErrOut<'a> {
    fn new(buf: *mut u8, cap: usize) -> Self {
        if buf.is_null() || cap == 0 {
            return ErrOut {
                buf: &mut [],
                len: 0,
            };
        }
        // SAFETY: the caller promises `cap` writable bytes at `buf`, not
        // aliased during the call.
        let buf = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
        ErrOut { buf, len: 0 }
    }

    /// Room for text (one byte stays for the NUL).
    fn room(&self) -> usize {
        self.buf.len().saturating_sub(1)
    }

    fn finish(self) {
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
    }
}

impl Write for ErrOut<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.room();
        let mut f = FixedBuf {
            buf: self.buf.get_mut(..room).unwrap_or_default(),
            len: self.len,
        };
        let r = f.write_str(s);
        self.len = f.len;
        r
    }
}

/// Writes `msg` NUL-terminated into `buf` (truncating).
fn put_err(buf: *mut u8, cap: usize, msg: fmt::Arguments<'_>) {
    let mut e = ErrOut::new(buf, cap);
    let _ = e.write_fmt(msg);
    e.finish();
}

// ---------------------------------------------------------------------------
// Entries (each reached through its trampoline above; see abi.rs).

extern "C" fn llx_abi_version() -> u32 {
    LLX_ABI_VERSION
}

extern "C" fn llx_parse_params(text: *const u8, len: usize, s: *mut LlxSampling) -> i32 {
    if s.is_null() || (text.is_null() && len != 0) {
        return -EINVAL;
    }
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `text`.
        unsafe { core::slice::from_raw_parts(text, len) }
    };
    // SAFETY: `s` is non-null and the caller's, for the duration of the call.
    let cur = to_milli(unsafe { &*s });
    match cur.parse(bytes) {
        Ok(v) => {
            // SAFETY: as above.
            unsafe { *s = from_milli(v) };
            0
        }
        Err(_) => -EINVAL,
    }
}

extern "C" fn llx_load(
    file: *const u8,
    len: usize,
    params: *const LlxLoadParams,
    out: *mut *mut c_void,
    err: *mut u8,
    err_cap: usize,
) -> i32 {
    if file.is_null() || params.is_null() || out.is_null() {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL;
    }
    // SAFETY: the module keeps `len` bytes at `file` alive and unmodified
    // until llx_free, which drops everything borrowing them first; so the
    // 'static lifetime is never observed past their end.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(file, len) };
    // SAFETY: non-null, the caller's for the duration of the call.
    let p = unsafe { &*params };
    let hp = HostParams {
        n_ctx: p.n_ctx as usize,
        n_batch: p.n_batch as usize,
        kv_f16: p.kv_f16 != 0,
        max_prompt_bytes: p.max_prompt_bytes as usize,
        advise_slots: p.advise_slots as usize,
        advise_max_ctx: p.advise_max_ctx as usize,
        repacked: p.repacked != 0,
    };
    let exec = KernelExec {
        ctx: p.exec_ctx,
        parallelism: p.parallelism.max(1) as usize,
    };
    let mut msg = ErrOut::new(err, err_cap);
    let r = match Engine::load(bytes, &hp, exec, &mut msg) {
        Ok(h) => match try_box(h) {
            Ok(b) => {
                // SAFETY: `out` is non-null and the caller's.
                unsafe { *out = Box::into_raw(b).cast() };
                0
            }
            Err(_) => {
                let _ = write!(msg, "out of memory");
                -ENOMEM
            }
        },
        Err(k) => errno(k),
    };
    msg.finish();
    r
}

/// The handle behind `h`.
///
/// # Safety
/// `h` came from `llx_load` and is not freed; the module runs one call on
/// it at a time (its engine turn).
unsafe fn engine<'a>(h: *mut c_void) -> Option<&'a mut Engine> {
    // SAFETY: per the contract.
    unsafe { (h as *mut Engine).as_mut() }
}

extern "C" fn llx_free(h: *mut c_void) {
    if !h.is_null() {
        // SAFETY: `h` came from Box::into_raw in `llx_load`, freed once.
        drop(unsafe { Box::from_raw(h as *mut Engine) });
    }
}

extern "C" fn llx_info(h: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: a live handle (abi.rs).
    let Some(e) = (unsafe { engine(h) }) else {
        return -EINVAL as isize;
    };
    let info = e.info().as_bytes();
    let n = info.len().min(cap);
    if n > 0 && !buf.is_null() {
        // SAFETY: the caller promises `cap` writable bytes at `buf`.
        unsafe { core::ptr::copy_nonoverlapping(info.as_ptr(), buf, n) };
    }
    info.len() as isize
}

extern "C" fn llx_prepare(
    h: *mut c_void,
    sampling: *const LlxSampling,
    err: *mut u8,
    err_cap: usize,
) -> i32 {
    // SAFETY: a live handle (abi.rs); the sampling is the caller's.
    let (Some(e), Some(s)) = (unsafe { engine(h) }, unsafe { sampling.as_ref() }) else {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL;
    };
    let mut msg = ErrOut::new(err, err_cap);
    let r = e.prepare(to_milli(s), &mut msg).map_or_else(errno, |()| 0);
    msg.finish();
    r
}

extern "C" fn llx_start(
    h: *mut c_void,
    prompt: *const u8,
    len: usize,
    sampling: *const LlxSampling,
    err: *mut u8,
    err_cap: usize,
) -> i64 {
    // SAFETY: as in llx_prepare.
    let (Some(e), Some(s)) = (unsafe { engine(h) }, unsafe { sampling.as_ref() }) else {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL as i64;
    };
    if prompt.is_null() && len != 0 {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL as i64;
    }
    let text = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `prompt`.
        unsafe { core::slice::from_raw_parts(prompt, len) }
    };
    let mut msg = ErrOut::new(err, err_cap);
    let r = e
        .start(text, to_milli(s), &mut msg)
        .map_or_else(|k| errno(k) as i64, |n| n as i64);
    msg.finish();
    r
}

extern "C" fn llx_step(
    h: *mut c_void,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
    token: *mut u32,
) -> i32 {
    // SAFETY: a live handle (abi.rs).
    let Some(e) = (unsafe { engine(h) }) else {
        return -EINVAL;
    };
    if out_len.is_null() || token.is_null() || (out.is_null() && cap != 0) {
        return -EINVAL;
    }
    match e.step() {
        Ok(Some(t)) => {
            let piece = e.piece(t);
            // SAFETY: out-pointers are non-null and the caller's.
            unsafe {
                *token = t;
                *out_len = piece.len();
            }
            if piece.len() > cap {
                return -EOVERFLOW;
            }
            // SAFETY: the caller promises `cap` >= piece.len() writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(piece.as_ptr(), out, piece.len()) };
            1
        }
        Ok(None) => 0,
        Err(k) => errno(k),
    }
}

extern "C" fn llx_bench_forward(h: *mut c_void, first: usize, n: usize, reset: u32) -> i32 {
    // SAFETY: a live handle (abi.rs).
    let Some(e) = (unsafe { engine(h) }) else {
        return -EINVAL;
    };
    if n == 0 || n > LLX_BENCH_MAX_BATCH {
        return -EINVAL;
    }
    e.bench_forward(first, n, reset != 0)
        .map_or_else(errno, |()| 0)
}

extern "C" fn llx_advise(
    h: *mut c_void,
    req: *const u8,
    len: usize,
    resp: *mut u8,
    cap: usize,
) -> isize {
    // SAFETY: a live handle (abi.rs).
    let Some(e) = (unsafe { engine(h) }) else {
        return -EINVAL as isize;
    };
    if req.is_null() || resp.is_null() || cap == 0 {
        return -EINVAL as isize;
    }
    // SAFETY: the caller promises `len` readable bytes at `req`.
    let bytes = unsafe { core::slice::from_raw_parts(req, len) };
    let mut out = ErrOut::new(resp, cap);
    // SAFETY: a plain query of the module, callable inside an FPU section.
    let mut avail = || unsafe { llx_mem_available() };
    let r = match e.advise(bytes, &mut avail, &mut out) {
        Ok(resp) => {
            out.len = 0;
            let _ = resp.encode(&mut out);
            // A full buffer may have cut the record.
            if out.len < out.room() {
                out.len as isize
            } else {
                out.len = 0;
                let _ = write!(out, "response buffer too small");
                -EOVERFLOW as isize
            }
        }
        Err(k) => errno(k) as isize,
    };
    if r < 0 {
        out.finish();
    }
    r
}

extern "C" fn llx_advise_stats(h: *mut c_void, out: *mut LlxAdviseStats) {
    // SAFETY: a live handle (abi.rs).
    let Some(e) = (unsafe { engine(h) }) else {
        return;
    };
    if out.is_null() {
        return;
    }
    let st = e.advise_stats();
    let st = LlxAdviseStats {
        prefills: st.prefills,
        reuses: st.reuses,
        slots_used: st.slots_used as u32,
        slots: st.slots as u32,
    };
    // SAFETY: the caller's writable LlxAdviseStats.
    unsafe { out.write(st) };
}

// ---------------------------------------------------------------------------
// Repacking.

/// Plans the in-place repack of the Q4_K/Q6_K matrices of the model in
/// `file[..len]` into the x8 layouts of the 8-row SIMD kernels. Returns 0
/// with a handle in `*out`, which is null when there is nothing to do (no
/// such matrix, or no SIMD kernels for them on this CPU), or -errno and a
/// message. The module then calls `llx_repack_step` until it returns 1,
/// each call in its own short FPU section, and `llx_repack_free`.
extern "C" fn llx_repack_begin(
    file: *const u8,
    len: usize,
    out: *mut *mut c_void,
    err: *mut u8,
    err_cap: usize,
) -> i32 {
    if file.is_null() || out.is_null() {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL;
    }
    // SAFETY: non-null, the caller's.
    unsafe { *out = core::ptr::null_mut() };
    if llamux_engine::quant::isa() == llamux_engine::quant::Isa::Scalar {
        return 0;
    }
    // SAFETY: the caller promises `len` readable bytes at `file`, unchanged
    // for this call.
    let bytes = unsafe { core::slice::from_raw_parts(file, len) };
    let r = match Repacker::new(bytes) {
        Ok(r) if r.matrices() == 0 => return 0,
        Ok(r) => r,
        Err(e) => {
            put_err(err, err_cap, format_args!("{e}"));
            return model_errno(&e);
        }
    };
    let Ok(b) = try_box(r) else {
        put_err(err, err_cap, format_args!("out of memory"));
        return -ENOMEM;
    };
    // SAFETY: as above.
    unsafe { *out = Box::into_raw(b).cast() };
    0
}

/// Repacks about `budget` more bytes of `file[..len]` (the buffer
/// `llx_repack_begin` planned; the module owns it and nothing else reads
/// it until the load). `progress[0]`, `[1]`: bytes done and in all.
/// Returns 1 when every matrix is done, 0 when more remains, or -errno.
extern "C" fn llx_repack_step(
    r: *mut c_void,
    file: *mut u8,
    len: usize,
    budget: usize,
    progress: *mut u64,
) -> i32 {
    if r.is_null() || file.is_null() {
        return -EINVAL;
    }
    // SAFETY: `r` came from `repack_begin` and is not freed; the module
    // never runs two calls on one handle at once.
    let r = unsafe { &mut *(r as *mut Repacker) };
    // SAFETY: `len` writable bytes at `file` that nothing else accesses
    // during the call (see above).
    let bytes = unsafe { core::slice::from_raw_parts_mut(file, len) };
    let res = r.step(bytes, budget);
    if !progress.is_null() {
        let (done, total) = r.progress();
        // SAFETY: the caller passes two writable u64s.
        unsafe {
            progress
                .cast::<[u64; 2]>()
                .write_unaligned([done as u64, total as u64])
        };
    }
    match res {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => model_errno(&e),
    }
}

/// Frees a handle from `llx_repack_begin` (null is ignored).
extern "C" fn llx_repack_free(r: *mut c_void) {
    if !r.is_null() {
        // SAFETY: `r` came from Box::into_raw in `repack_begin`, freed once.
        drop(unsafe { Box::from_raw(r as *mut Repacker) });
    }
}

// The module checks a record's size against the ABI's limit first.
const _: () = assert!(LLX_ADVISE_MAX == llamux_engine::host::advise::ADVISE_MAX);
const _: () = assert!(LLX_BENCH_MAX_BATCH == llamux_engine::host::BENCH_MAX_BATCH);
