//! llamux-kengine: the narrow `extern "C"` surface llamux.ko calls.
//!
//! This crate and the whole engine under it are compiled as ONE hard-float
//! object for `x86_64-unknown-linux-gnu` with the kernel code model (see
//! kmod/build-engine.sh and shared/notes/toolchain.md). Rules that follow:
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

use alloc::boxed::Box;
use alloc::string::String;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::fmt::{self, Write};

use alloc::vec::Vec;

use llamux_engine::advise::request::{parse_u64, Request};
use llamux_engine::advise::{Advisor, MAX_ANSWERS};
use llamux_engine::exec::Exec;
use llamux_engine::gguf::Gguf;
use llamux_engine::model::{ContextParams, KvType, Model, ModelError, Repacker};
use llamux_engine::sample::SamplerParams;
use llamux_engine::session::{Session, SessionError, Step};
use llamux_engine::tokenizer::{Tokenizer, TokenizerScratch};

/// Bumped whenever a signature or a `#[repr(C)]` layout below changes; the
/// module refuses an object with another version.
pub const LLX_ABI_VERSION: u32 = 3;

const E2BIG: i32 = 7;
const ENOMEM: i32 = 12;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const EOVERFLOW: i32 = 75;

// ---------------------------------------------------------------------------
// Module callbacks.

extern "C" {
    /// Memory of `size` bytes aligned to at least 8 (kvmalloc), or null.
    /// Leaves and re-enters the FPU section (see the crate comment).
    fn llx_kmalloc(size: usize, align: usize) -> *mut u8;
    /// Frees what `llx_kmalloc` returned.
    fn llx_kfree(ptr: *mut u8, size: usize, align: usize);
    /// Reports an engine bug and never returns.
    fn llx_panic(msg: *const u8, len: usize) -> !;
    /// Runs `task_fn(task_data, i)` for every `i < n`, each inside its own
    /// FPU section on some CPU, and returns when all have run. Leaves and
    /// re-enters the caller's FPU section while it waits.
    fn llx_parallel_run(
        exec_ctx: *mut c_void,
        n: usize,
        task_fn: unsafe extern "C" fn(*const c_void, usize),
        task_data: *const c_void,
    );
    /// The `llx_task` trampoline (defined below in assembly).
    fn llx_task(task_data: *const c_void, i: usize);
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
    ($name:literal, $inner:path) => {
        core::arch::global_asm!(
            ".pushsection .text",
            concat!(".globl ", $name),
            concat!(".type ", $name, ",@function"),
            ".p2align 4",
            entry_padding!(),
            concat!($name, ":"),
            // The module calls llx_task through a pointer (IBT target).
            "endbr64",
            "push rbp",
            "mov rbp, rsp",
            "and rsp, -32",
            "call {inner}",
            "leave",
            ret_insn!(),
            concat!(".size ", $name, ", . - ", $name),
            ".popsection",
            inner = sym $inner,
        );
    };
}

trampoline!("llx_abi_version", abi_version);
trampoline!("llx_parse_params", parse_params);
trampoline!("llx_load", load);
trampoline!("llx_free", free);
trampoline!("llx_info", info);
trampoline!("llx_prepare", prepare);
trampoline!("llx_start", start);
trampoline!("llx_step", step);
trampoline!("llx_task", task);
trampoline!("llx_advise", advise);
trampoline!("llx_advise_stats", advise_stats);
trampoline!("llx_repack_begin", repack_begin);
trampoline!("llx_repack_step", repack_step);
trampoline!("llx_repack_free", repack_free);

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

/// Formats into a fixed buffer, dropping what does not fit.
struct FixedBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncates at the end of the buffer; get() keeps it panic-free.
        let rest = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = s.len().min(rest.len());
        if let (Some(dst), Some(src)) = (rest.get_mut(..n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut buf = [0u8; 256];
    let mut w = FixedBuf { buf: &mut buf, len: 0 };
    let _ = write!(w, "{info}");
    let len = w.len;
    // SAFETY: the module's hook only reads `len` bytes and never returns.
    unsafe { llx_panic(buf.as_ptr(), len) }
}

// ---------------------------------------------------------------------------
// Shared types.

/// Model and context settings for `llx_load`.
#[repr(C)]
pub struct LlxLoadParams {
    /// KV cache positions (prompt + generated tokens).
    pub n_ctx: u32,
    /// Prefill batch size.
    pub n_batch: u32,
    /// Non-zero: f16 KV cache.
    pub kv_f16: u32,
    /// Longest prompt in bytes `llx_start` accepts (sizes tokenizer scratch).
    pub max_prompt_bytes: u32,
    /// How many tasks `llx_parallel_run` runs at once (a splitting hint).
    pub parallelism: u32,
    /// Advisor prefixes kept prefilled (`llx_advise`); 0: the default,
    /// clamped to 1..=ADV_SLOTS_MAX.
    pub advise_slots: u32,
    /// Non-zero: the file's Q4_K/Q6_K matrices were repacked by
    /// `llx_repack_step` (read them in the x8 layouts).
    pub repacked: u32,
    /// Passed back to `llx_parallel_run`.
    pub exec_ctx: *mut c_void,
}

/// Sampling settings, floats as integer thousandths.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LlxSampling {
    /// 0: greedy.
    pub temperature_milli: u32,
    /// 0: off.
    pub top_k: u32,
    /// 1000: off.
    pub top_p_milli: u32,
    /// 0: off.
    pub min_p_milli: u32,
    /// 1000: off.
    pub repeat_penalty_milli: u32,
    /// Tokens the repetition penalty looks back over (0: off).
    pub repeat_last_n: u32,
    /// Tokens `llx_step` produces at most per request.
    pub n_predict: u32,
    pub reserved: u32,
    pub seed: u64,
}

impl LlxSampling {
    /// The user-space tool's defaults (loader/src/main.rs SampleArgs, the
    /// engine's SamplerParams::default() for what it does not set).
    const DEFAULT: LlxSampling = LlxSampling {
        temperature_milli: 0,
        top_k: 40,
        top_p_milli: 950,
        min_p_milli: 50,
        repeat_penalty_milli: 1000,
        repeat_last_n: 64,
        n_predict: 32,
        reserved: 0,
        seed: 0,
    };

    /// n/1000 is correctly rounded, so "0.95" gives the same f32 as
    /// parsing 0.95 directly (what `llamux run` does).
    fn to_engine(self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature_milli as f32 / 1000.0,
            top_k: self.top_k.min(i32::MAX as u32) as i32,
            top_p: self.top_p_milli as f32 / 1000.0,
            min_p: self.min_p_milli as f32 / 1000.0,
            repeat_penalty: self.repeat_penalty_milli as f32 / 1000.0,
            penalty_last_n: self.repeat_last_n as usize,
            seed: self.seed as u32,
            ..SamplerParams::default()
        }
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
        // so `task` (and `data`, on this stack) outlive every use; `llx_task`
        // is the trampoline for `task` below, which expects exactly this.
        unsafe { llx_parallel_run(self.ctx, n, llx_task, data.cast()) };
    }
}

extern "C" fn task(data: *const c_void, i: usize) {
    // SAFETY: `data` is the `*const TaskRef` KernelExec::run passed to
    // llx_parallel_run, alive until that returns (the module calls us only
    // before it does).
    let t: TaskRef<'_> = unsafe { *(data as *const TaskRef<'_>) };
    t(i)
}

/// A loaded model with its one session.
///
/// Big parts are boxed and built by `#[inline(never)]` helpers: the kernel
/// stack is 16 KiB, and Tokenizer and Session carry KiB-sized arrays that
/// would otherwise be moved around (and summed up) in one frame.
struct Engine {
    model: Box<Model<'static>>,
    tok: Box<Tokenizer>,
    /// None only after a failed rebuild (see `prepare_session`).
    sess: Option<Box<Session>>,
    /// What `sess` was built with.
    ctx_params: ContextParams,
    max_prompt_bytes: usize,
    sess_sampling: LlxSampling,
    /// `sess` was (re)built since the last start: its sampler is new.
    fresh: bool,
    exec: KernelExec,
    info: String,
    /// Settings of the running request.
    sampling: LlxSampling,
    /// Tokens produced since the last `llx_start`.
    n_generated: u32,
    started: bool,
    /// Prefilled advisors of the last `adv_slots` policies used by
    /// `llx_advise` (LRU; None: a free slot).
    advs: [Option<Box<AdvState>>; ADV_SLOTS_MAX],
    adv_slots: usize,
    /// Clock of `AdvState::last_used`: one tick per request.
    adv_clock: u64,
    /// Advisors built (prefix prefilled) and requests served by a cached one.
    adv_prefills: u64,
    adv_reuses: u64,
}

// ---------------------------------------------------------------------------
// Helpers.

/// Writes `msg` NUL-terminated into `buf` (truncating).
fn put_err(buf: *mut u8, cap: usize, msg: fmt::Arguments<'_>) {
    if buf.is_null() || cap == 0 {
        return;
    }
    // SAFETY: the caller promises `buf` holds `cap` writable bytes.
    let b = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
    let last = cap - 1;
    let mut w = FixedBuf { buf: &mut b[..last], len: 0 };
    let _ = w.write_fmt(msg);
    let n = w.len;
    b[n] = 0;
}

fn model_errno(e: &ModelError) -> i32 {
    match e {
        ModelError::OutOfMemory => -ENOMEM,
        _ => -EINVAL,
    }
}

fn session_errno(e: &SessionError) -> i32 {
    match e {
        SessionError::OutOfMemory => -ENOMEM,
        SessionError::Model(m) => model_errno(m),
        SessionError::PromptTooLong { .. } => -E2BIG,
        _ => -EINVAL,
    }
}

fn kind(ty: KvType) -> &'static str {
    match ty {
        KvType::F32 => "f32",
        KvType::F16 => "f16",
    }
}

#[inline(never)]
fn make_info(g: &Gguf<'_>, m: &Model<'_>, s: &Session, file_len: usize) -> Result<String, fmt::Error> {
    let hp = &m.hp;
    let mut o = String::new();
    writeln!(o, "arch: {}", hp.arch)?;
    writeln!(o, "file_bytes: {file_len}")?;
    writeln!(o, "gguf_version: {}", g.version)?;
    writeln!(
        o,
        "dims: n_vocab={} n_embd={} n_layer={} n_head={} n_head_kv={} n_ff={} head_dim={} n_ctx_train={}",
        hp.n_vocab, hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff, hp.head_dim, hp.n_ctx_train
    )?;
    // Tensor type counts, in order of first appearance (no map in no_std
    // without extra code; a model has a handful of types).
    const MAX_TYPES: usize = 16;
    let mut types: [(&str, usize, u64); MAX_TYPES] = [("", 0, 0); MAX_TYPES];
    let mut n_types = 0;
    for t in &g.tensors {
        let name = t.type_name();
        match types[..n_types].iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None if n_types < MAX_TYPES => {
                types[n_types] = (name, 1, t.n_bytes);
                n_types += 1;
            }
            None => {}
        }
    }
    write!(o, "tensors: {}", g.tensors.len())?;
    for (name, n, bytes) in &types[..n_types] {
        write!(o, " {name}={n} ({bytes} bytes)")?;
    }
    writeln!(o)?;
    let p = &s.ctx.params;
    writeln!(o, "weights_bytes: {}", m.weight_bytes())?;
    // Which quant kernels this CPU runs (CPUID, as in user space).
    writeln!(o, "kernels: {}", llamux_engine::quant::isa().name())?;
    // x8: Q4_K/Q6_K matrices repacked at load for the 8-row kernels.
    writeln!(o, "layout: {}", if m.repacked() { "x8" } else { "rows" })?;
    writeln!(o, "context: n_ctx={} n_batch={} kv={} bytes={}", p.n_ctx, p.n_batch, kind(p.kv_type), s.ctx.memory_bytes())?;
    // The module copies this line to dmesg and /proc/llamux/status.
    writeln!(o, "kv_cache: n_ctx={} type={} bytes={}", p.n_ctx, kind(p.kv_type), s.ctx.kv_bytes())?;
    Ok(o)
}

// ---------------------------------------------------------------------------
// Entries (each reached through its trampoline above).

extern "C" fn abi_version() -> u32 {
    LLX_ABI_VERSION
}

/// Parses `key=value` words (`temperature=0.8 top_k=40 top_p=0.95
/// min_p=0.05 repeat_penalty=1.1 repeat_last_n=64 seed=1 n_predict=32`) into `*s`,
/// which holds the current values; `defaults` alone resets them. On error
/// `*s` is unchanged. Returns 0 or -EINVAL.
extern "C" fn parse_params(text: *const u8, len: usize, s: *mut LlxSampling) -> i32 {
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
    let cur = unsafe { *s };
    match parse_sampling(bytes, cur) {
        Some(v) => {
            // SAFETY: as above.
            unsafe { *s = v };
            0
        }
        None => -EINVAL,
    }
}

/// Integer thousandths of a non-negative decimal ("0.95" -> 950), rounding
/// digits past the third down. None on anything else or on overflow.
fn parse_milli(v: &[u8]) -> Option<u32> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut x: u32 = 0;
    for &c in int {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add((c - b'0') as u32)?;
    }
    x = x.checked_mul(1000)?;
    let mut scale = 100;
    for &c in frac {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_add((c - b'0') as u32 * scale)?;
        scale /= 10;
    }
    Some(x)
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    u32::try_from(parse_u64(v)?).ok()
}

fn parse_sampling(text: &[u8], mut s: LlxSampling) -> Option<LlxSampling> {
    for word in text.split(|c| c.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        if word == b"defaults" {
            s = LlxSampling::DEFAULT;
            continue;
        }
        let eq = word.iter().position(|&c| c == b'=')?;
        let (k, v) = (&word[..eq], &word[eq + 1..]);
        match k {
            b"temperature" | b"temp" => s.temperature_milli = parse_milli(v)?,
            b"top_k" => s.top_k = parse_u32(v)?,
            b"top_p" => s.top_p_milli = parse_milli(v)?,
            b"min_p" => s.min_p_milli = parse_milli(v)?,
            b"repeat_penalty" => s.repeat_penalty_milli = parse_milli(v)?,
            b"repeat_last_n" => s.repeat_last_n = parse_u32(v)?,
            b"seed" => s.seed = parse_u64(v)?,
            b"n_predict" | b"n" => s.n_predict = parse_u32(v)?,
            _ => return None,
        }
    }
    Some(s)
}

/// Parses and checks the model in `file[..len]` and allocates everything a
/// generation needs. The module keeps `file` alive and unchanged until
/// `llx_free`. Returns 0 and a handle in `*out`, or -errno and a message.
extern "C" fn load(
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
    let g = match Gguf::parse(bytes) {
        Ok(g) => g,
        Err(e) => {
            put_err(err, err_cap, format_args!("not a valid GGUF file: {e}"));
            return -EINVAL;
        }
    };
    let model = match boxed_model(&g, p.repacked != 0) {
        Ok(m) => m,
        Err(e) => {
            put_err(err, err_cap, format_args!("{e}"));
            return model_errno(&e);
        }
    };
    let tok = match boxed_tokenizer(&g) {
        Ok(t) => t,
        Err(e) => {
            put_err(err, err_cap, format_args!("tokenizer: {e}"));
            return -EINVAL;
        }
    };
    let cp = ContextParams {
        n_ctx: p.n_ctx.max(1) as usize,
        n_batch: p.n_batch.max(1) as usize,
        logits_all: false,
        kv_type: if p.kv_f16 != 0 { KvType::F16 } else { KvType::F32 },
    };
    let sess = match boxed_session(&model, &tok, cp, LlxSampling::DEFAULT, p.max_prompt_bytes.max(1) as usize) {
        Ok(s) => s,
        Err(e) => {
            put_err(err, err_cap, format_args!("context: {e}"));
            return session_errno(&e);
        }
    };
    let info = match make_info(&g, &model, &sess, len) {
        Ok(i) => i,
        Err(_) => {
            put_err(err, err_cap, format_args!("out of memory"));
            return -ENOMEM;
        }
    };
    let e = Engine {
        model,
        tok,
        sess: Some(sess),
        ctx_params: cp,
        max_prompt_bytes: p.max_prompt_bytes.max(1) as usize,
        sess_sampling: LlxSampling::DEFAULT,
        fresh: true,
        exec: KernelExec { ctx: p.exec_ctx, parallelism: p.parallelism.max(1) as usize },
        info,
        sampling: LlxSampling::DEFAULT,
        n_generated: 0,
        started: false,
        advs: Default::default(),
        adv_slots: if p.advise_slots == 0 { ADV_SLOTS_DEFAULT } else { (p.advise_slots as usize).min(ADV_SLOTS_MAX) },
        adv_clock: 0,
        adv_prefills: 0,
        adv_reuses: 0,
    };
    let Some(b) = try_box(e) else {
        put_err(err, err_cap, format_args!("out of memory"));
        return -ENOMEM;
    };
    // SAFETY: `out` is non-null and the caller's.
    unsafe { *out = Box::into_raw(b).cast() };
    0
}

/// Frees a handle from `llx_load` (null is ignored).
extern "C" fn free(h: *mut c_void) {
    if h.is_null() {
        return;
    }
    // SAFETY: `h` came from Box::into_raw in `load` and is freed once.
    drop(unsafe { Box::from_raw(h as *mut Engine) });
}

/// Copies the model description (text) into `buf`; returns its full length
/// (which may exceed `cap`: then only `cap` bytes were copied) or -EINVAL.
extern "C" fn info(h: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    if h.is_null() {
        return -EINVAL as isize;
    }
    // SAFETY: a live handle; the module never runs two calls on one handle
    // at once.
    let e = unsafe { &*(h as *const Engine) };
    let n = e.info.len().min(cap);
    if n > 0 && !buf.is_null() {
        // SAFETY: the caller promises `cap` writable bytes at `buf`.
        unsafe { core::ptr::copy_nonoverlapping(e.info.as_ptr(), buf, n) };
    }
    e.info.len() as isize
}

#[inline(never)]
fn boxed_model(g: &Gguf<'static>, repacked: bool) -> Result<Box<Model<'static>>, ModelError> {
    let m = if repacked { Model::from_repacked_gguf(g)? } else { Model::from_gguf(g)? };
    try_box(m).ok_or(ModelError::OutOfMemory)
}

/// Plans the in-place repack of the Q4_K/Q6_K matrices of the model in
/// `file[..len]` into the x8 layouts of the 8-row SIMD kernels. Returns 0
/// with a handle in `*out`, which is null when there is nothing to do (no
/// such matrix, or no SIMD kernels for them on this CPU), or -errno and a
/// message. The module then calls `llx_repack_step` until it returns 1,
/// each call in its own short FPU section, and `llx_repack_free`.
extern "C" fn repack_begin(file: *const u8, len: usize, out: *mut *mut c_void, err: *mut u8, err_cap: usize) -> i32 {
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
    let Some(b) = try_box(r) else {
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
extern "C" fn repack_step(r: *mut c_void, file: *mut u8, len: usize, budget: usize, progress: *mut u64) -> i32 {
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
        unsafe { progress.cast::<[u64; 2]>().write_unaligned([done as u64, total as u64]) };
    }
    match res {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => model_errno(&e),
    }
}

/// Frees a handle from `llx_repack_begin` (null is ignored).
extern "C" fn repack_free(r: *mut c_void) {
    if !r.is_null() {
        // SAFETY: `r` came from Box::into_raw in `repack_begin`, freed once.
        drop(unsafe { Box::from_raw(r as *mut Repacker) });
    }
}

/// `Box::new` that returns None when the allocation fails instead of
/// panicking (in the kernel, a panic is an oops).
fn try_box<T>(v: T) -> Option<Box<T>> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Some(Box::new(v)); // allocates nothing
    }
    // SAFETY: a layout of non-zero size, as alloc requires.
    let p = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh, non-null allocation of T's layout from the
    // global allocator: writing one T into it and owning it as a Box (which
    // frees it with that layout) is what Box::new does.
    unsafe {
        p.write(v);
        Some(Box::from_raw(p))
    }
}

#[inline(never)]
fn boxed_tokenizer(g: &Gguf<'static>) -> Result<Box<Tokenizer>, llamux_engine::tokenizer::TokenizerError> {
    try_box(Tokenizer::from_gguf(g)?).ok_or(llamux_engine::tokenizer::TokenizerError::OutOfMemory)
}

#[inline(never)]
fn boxed_session(
    m: &Model<'static>,
    tok: &Tokenizer,
    cp: ContextParams,
    s: LlxSampling,
    max_prompt_bytes: usize,
) -> Result<Box<Session>, SessionError> {
    try_box(Session::new(m, tok, cp, s.to_engine(), max_prompt_bytes)?).ok_or(SessionError::OutOfMemory)
}

/// Makes `e.sess` sample with `e.sampling`: new settings, and for every
/// non-greedy request a restart of the random sequence from the seed (as in
/// `llamux run`), go through `Session::set_sampling`, which allocates
/// nothing. The session is only built when there is none (first use, or
/// after a failed build).
#[inline(never)]
fn prepare_session(e: &mut Engine) -> Result<(), SessionError> {
    if let Some(sess) = e.sess.as_mut() {
        if e.sess_sampling != e.sampling || !(e.fresh || e.sampling.temperature_milli == 0) {
            sess.set_sampling(e.sampling.to_engine())?;
            e.sess_sampling = e.sampling;
            e.fresh = true;
        }
        return Ok(());
    }
    e.sess = Some(boxed_session(&e.model, &e.tok, e.ctx_params, e.sampling, e.max_prompt_bytes)?);
    e.sess_sampling = e.sampling;
    e.fresh = true;
    Ok(())
}

/// Prepares the session for `sampling` as `llx_start` would (see
/// `prepare_session`), so the module can do the stack-hungry first build on
/// a fresh kernel stack. Returns 0 or -errno with a message.
extern "C" fn prepare(h: *mut c_void, sampling: *const LlxSampling, err: *mut u8, err_cap: usize) -> i32 {
    if h.is_null() || sampling.is_null() {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL;
    }
    // SAFETY: a live handle, used by one call at a time (module's lock).
    let e = unsafe { &mut *(h as *mut Engine) };
    // SAFETY: non-null, the caller's for the duration of the call.
    e.sampling = unsafe { *sampling };
    match prepare_session(e) {
        Ok(()) => 0,
        Err(err_v) => {
            put_err(err, err_cap, format_args!("{err_v}"));
            session_errno(&err_v)
        }
    }
}

/// Tokenizes the prompt and runs it through the model (prefill). Returns
/// the number of prompt tokens, or -errno with a message (-E2BIG: the
/// prompt is longer than `max_prompt_bytes` or the context).
extern "C" fn start(
    h: *mut c_void,
    prompt: *const u8,
    len: usize,
    sampling: *const LlxSampling,
    err: *mut u8,
    err_cap: usize,
) -> i64 {
    if h.is_null() || sampling.is_null() || (prompt.is_null() && len != 0) {
        put_err(err, err_cap, format_args!("null argument"));
        return -EINVAL as i64;
    }
    // SAFETY: a live handle, used by one call at a time (module's lock).
    let e = unsafe { &mut *(h as *mut Engine) };
    e.started = false;
    let text = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `prompt`.
        unsafe { core::slice::from_raw_parts(prompt, len) }
    };
    // SAFETY: non-null, the caller's for the duration of the call.
    e.sampling = unsafe { *sampling };
    e.n_generated = 0;
    if let Err(err_v) = prepare_session(e) {
        put_err(err, err_cap, format_args!("{err_v}"));
        return session_errno(&err_v) as i64;
    }
    e.fresh = false;
    let Some(sess) = e.sess.as_mut() else {
        return -EINVAL as i64;
    };
    match sess.start(&e.model, &e.tok, text, &mut e.exec) {
        Ok(n) => {
            e.started = true;
            n as i64
        }
        Err(err_v) => {
            put_err(err, err_cap, format_args!("{err_v}"));
            session_errno(&err_v) as i64
        }
    }
}

/// Produces one token: 1 with its id in `*token` and its bytes in
/// `out[..*out_len]`; 0 at the end (EOS, full context or n_predict);
/// -errno on error (-EOVERFLOW: `cap` too small for the piece).
extern "C" fn step(h: *mut c_void, out: *mut u8, cap: usize, out_len: *mut usize, token: *mut u32) -> i32 {
    if h.is_null() || out_len.is_null() || token.is_null() || (out.is_null() && cap != 0) {
        return -EINVAL;
    }
    // SAFETY: a live handle, used by one call at a time (module's lock).
    let e = unsafe { &mut *(h as *mut Engine) };
    if !e.started {
        return -EINVAL;
    }
    if e.n_generated >= e.sampling.n_predict {
        e.started = false;
        return 0;
    }
    let Some(sess) = e.sess.as_mut() else {
        return -EINVAL;
    };
    match sess.step(&e.model, &e.tok, &mut e.exec) {
        Ok(Step::Token(t)) => {
            e.n_generated += 1;
            let piece = e.tok.token_piece(t);
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
        Ok(Step::End) => {
            e.started = false;
            0
        }
        Err(err_v) => {
            e.started = false;
            let r = session_errno(&err_v);
            if r == -E2BIG {
                -ENOSPC
            } else {
                r
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Advisor: `llx_advise`.
//
// Request record: llamux_engine::advise::request ("llxa1 CTX PREFIX_LEN
// EVENT_LEN N A_LEN_1 .. A_LEN_N\n" then the texts back to back).
//
// The engine tokenizes like the loader's user-space advisor
// (loader/src/policy_advise.rs): prefix with BOS, event and answers
// without; an Advisor of CTX positions and n_batch = max(longest answer,
// 32); the event cut from the front to leave room for the answers. So the
// scores are bit-identical to `llamux advise` with the same --ctx.
//
// Response record (text, one line):
//
//   "BEST EVENT_TOKENS PREFIX_TOKENS N BITS_1 .. BITS_N\n"
//
// BITS_i: answer i's score (summed log-probability) as the raw f32 bits in
// 8 hex digits (the module is soft-float and only passes text through).
//
// Up to `advise_slots` advisors are kept, one per (CTX, prefix, answers)
// (compared byte for byte): a request matching one reuses its prefilled
// prefix KV cache and allocates nothing. Any other request builds a new
// advisor (allocation and prefill happen only then) in a free slot or in
// place of the least recently used one; so policies used in turn are each
// prefilled once while they fit. If that allocation fails while other
// advisors are cached, they are freed and the build is tried once more.

/// Longest request record, in bytes (the module checks it first: E2BIG).
pub const LLX_ADVISE_MAX: usize = 16384;
/// Advisor slots: the default and the most (each holds a KV cache of CTX
/// positions: with a big model, few slots).
pub const ADV_SLOTS_DEFAULT: usize = 4;
pub const ADV_SLOTS_MAX: usize = 8;

/// Counters of `llx_advise_stats`.
#[repr(C)]
pub struct LlxAdviseStats {
    /// Advisors built, each with one prefill of its policy's prefix.
    pub prefills: u64,
    /// Requests served by an already prefilled advisor.
    pub reuses: u64,
    /// Slots in use and available.
    pub slots_used: u32,
    pub slots: u32,
}

struct AdvState {
    adv: Advisor,
    /// CTX, prefix and answers of the request that built this state.
    ctx: usize,
    prefix: Vec<u8>,
    answers_key: Vec<u8>,
    answer_lens: [usize; MAX_ANSWERS],
    n_answers: usize,
    /// Answer tokens back to back (`answer_lens` splits them).
    answer_toks: Vec<u32>,
    prefix_tokens: usize,
    scratch: TokenizerScratch,
    /// Event tokens (room for LLX_ADVISE_MAX bytes' worth).
    ev: Vec<u32>,
    /// `Engine::adv_clock` at its last request (LRU).
    last_used: u64,
}

impl AdvState {
    fn matches(&self, r: &Request<'_>) -> bool {
        self.ctx == r.ctx
            && self.answer_lens.get(..self.n_answers) == Some(r.answer_lens())
            && self.prefix[..] == *r.prefix
            && self.answers_key[..] == *r.answers_bytes()
    }
}

fn copy_bytes(b: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(b.len()).ok()?;
    v.extend_from_slice(b);
    Some(v)
}

fn zeroed_u32(n: usize) -> Option<Vec<u32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, 0);
    Some(v)
}

/// Builds the advisor for `r` and prefills its prefix (the setup path:
/// allocation happens here only). Errors: (-errno, message) in `err`.
#[inline(never)]
fn build_adv(e: &mut Engine, r: &Request<'_>, err: &mut FixedBuf<'_>) -> Result<Box<AdvState>, i32> {
    let mut scratch = match e.tok.scratch(LLX_ADVISE_MAX) {
        Ok(s) => s,
        Err(x) => {
            let _ = write!(err, "tokenizer scratch: {x}");
            return Err(-ENOMEM);
        }
    };
    let oom = |err: &mut FixedBuf<'_>| {
        let _ = write!(err, "out of memory");
        -ENOMEM
    };
    let mut buf = zeroed_u32(LLX_ADVISE_MAX + 2).ok_or_else(|| oom(err))?;
    let n = match e.tok.encode(r.prefix, true, &mut scratch, &mut buf) {
        Ok(n) => n,
        Err(x) => {
            let _ = write!(err, "prefix: {x}");
            return Err(-EINVAL);
        }
    };
    let prefix_toks = copy_from(buf.get(..n).unwrap_or_default()).ok_or_else(|| oom(err))?;
    let mut answer_toks = Vec::new();
    let mut answer_lens = [0usize; MAX_ANSWERS];
    let mut longest = 0;
    for ((i, text), len) in r.answers().enumerate().zip(answer_lens.iter_mut()) {
        let n = match e.tok.encode(text, false, &mut scratch, &mut buf) {
            Ok(n) => n,
            Err(x) => {
                let _ = write!(err, "answer {i}: {x}");
                return Err(-EINVAL);
            }
        };
        if n == 0 {
            let _ = write!(err, "answer {i} has no tokens");
            return Err(-EINVAL);
        }
        if answer_toks.try_reserve(n).is_err() {
            return Err(oom(err));
        }
        answer_toks.extend_from_slice(buf.get(..n).unwrap_or_default());
        *len = n;
        longest = longest.max(n);
    }
    let n_batch = longest.max(32);
    if prefix_toks.len() + 64 + n_batch > r.ctx {
        let _ = write!(err, "prefix of {} tokens does not fit a {}-position context", prefix_toks.len(), r.ctx);
        return Err(-E2BIG);
    }
    let mut adv = match Advisor::new(&e.model, r.ctx, n_batch) {
        Ok(a) => a,
        Err(x) => {
            let _ = write!(err, "advisor: {x}");
            return Err(model_errno(&x));
        }
    };
    if let Err(x) = adv.set_prefix(&e.model, &prefix_toks, &mut e.exec) {
        let _ = write!(err, "prefix: {x}");
        return Err(model_errno(&x));
    }
    let (Some(prefix), Some(answers_key)) = (copy_bytes(r.prefix), copy_bytes(r.answers_bytes())) else {
        return Err(oom(err));
    };
    try_box(AdvState {
        adv,
        ctx: r.ctx,
        prefix,
        answers_key,
        answer_lens,
        n_answers: r.n_answers(),
        answer_toks,
        prefix_tokens: prefix_toks.len(),
        scratch,
        ev: buf,
        last_used: 0,
    })
    .ok_or_else(|| oom(err))
}

fn copy_from(t: &[u32]) -> Option<Vec<u32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(t.len()).ok()?;
    v.extend_from_slice(t);
    Some(v)
}

/// Scores a request record (format above) and writes the response record
/// into `resp[..cap]`. Returns the response length, or -errno with a
/// NUL-terminated message in `resp`: -EINVAL (malformed record, engine
/// error), -E2BIG (record over LLX_ADVISE_MAX, prefix too long for CTX),
/// -ENOMEM, -EOVERFLOW (`cap` too small).
extern "C" fn advise(h: *mut c_void, req: *const u8, len: usize, resp: *mut u8, cap: usize) -> isize {
    if h.is_null() || req.is_null() || resp.is_null() || cap == 0 {
        return -EINVAL as isize;
    }
    // SAFETY: the caller promises `cap` writable bytes at `resp`, not
    // aliased by `req` or the engine.
    let out = unsafe { core::slice::from_raw_parts_mut(resp, cap) };
    // The last byte stays free for the NUL (cap >= 1 checked above).
    let (buf, _) = out.split_at_mut(cap - 1);
    let mut err = FixedBuf { buf, len: 0 };
    let r = advise_inner(h, req, len, &mut err);
    let n = err.len;
    if r < 0 {
        if let Some(b) = out.get_mut(n) {
            *b = 0;
        }
    }
    r
}

fn advise_inner(h: *mut c_void, req: *const u8, len: usize, out: &mut FixedBuf<'_>) -> isize {
    if len > LLX_ADVISE_MAX {
        let _ = write!(out, "request of {len} bytes, at most {LLX_ADVISE_MAX}");
        return -E2BIG as isize;
    }
    // SAFETY: a live handle, used by one call at a time (module's lock).
    let e = unsafe { &mut *(h as *mut Engine) };
    // SAFETY: the caller promises `len` readable bytes at `req`.
    let bytes = unsafe { core::slice::from_raw_parts(req, len) };
    let Some(r) = Request::parse(bytes) else {
        let _ = write!(out, "malformed advise request");
        return -EINVAL as isize;
    };
    let n_slots = e.adv_slots.clamp(1, ADV_SLOTS_MAX);
    let slot = match e.advs[..n_slots].iter().position(|a| a.as_ref().is_some_and(|a| a.matches(&r))) {
        Some(i) => {
            e.adv_reuses += 1;
            i
        }
        None => {
            // A free slot, else the least recently used one, freed first.
            let i = e.advs[..n_slots].iter().position(Option::is_none).unwrap_or_else(|| {
                let mut lru = 0;
                for (j, a) in e.advs[..n_slots].iter().enumerate() {
                    if a.as_ref().map_or(0, |a| a.last_used) < e.advs[lru].as_ref().map_or(0, |a| a.last_used) {
                        lru = j;
                    }
                }
                lru
            });
            e.advs[i] = None;
            let built = match build_adv(e, &r, out) {
                Err(x) if x == -ENOMEM && e.advs.iter().any(Option::is_some) => {
                    // No memory for one more: keep only the new one.
                    e.advs.iter_mut().for_each(|a| *a = None);
                    out.len = 0;
                    build_adv(e, &r, out)
                }
                b => b,
            };
            match built {
                Ok(a) => e.advs[i] = Some(a),
                Err(x) => return x as isize,
            }
            e.adv_prefills += 1;
            i
        }
    };
    e.adv_clock += 1;
    let clock = e.adv_clock;
    let Some(st) = e.advs[slot].as_deref_mut() else {
        return -EINVAL as isize;
    };
    st.last_used = clock;
    let n_ev = match e.tok.encode(r.event, false, &mut st.scratch, &mut st.ev) {
        Ok(n) => n,
        Err(x) => {
            let _ = write!(out, "event: {x}");
            return -EINVAL as isize;
        }
    };
    // Split the answers' tokens (build_adv made the lengths add up).
    let mut answers: [&[u32]; MAX_ANSWERS] = [&[]; MAX_ANSWERS];
    let mut rest = &st.answer_toks[..];
    let mut longest = 0;
    let n_answers = st.n_answers.min(MAX_ANSWERS);
    for (a, &l) in answers.iter_mut().zip(&st.answer_lens).take(n_answers) {
        let (head, tail) = rest.split_at(l.min(rest.len()));
        (*a, rest) = (head, tail);
        longest = longest.max(l);
    }
    // As the user-space advisor: cut the event from the front if long.
    let room = st.ctx.saturating_sub(st.prefix_tokens + longest + 1);
    let ev = st.ev.get(..n_ev).unwrap_or_default();
    let ev = ev.get(ev.len().saturating_sub(room)..).unwrap_or_default();
    let mut scores = [0f32; MAX_ANSWERS];
    let best = match st.adv.score(&e.model, ev, &answers[..n_answers], &mut scores, &mut e.exec) {
        Ok(b) => b,
        Err(x) => {
            let _ = write!(out, "{x}");
            return model_errno(&x) as isize;
        }
    };
    let _ = write!(out, "{best} {} {} {}", ev.len(), st.prefix_tokens, st.n_answers);
    for s in scores.iter().take(n_answers) {
        let _ = write!(out, " {:08x}", s.to_bits());
    }
    let _ = writeln!(out);
    if out.len == out.buf.len() {
        out.len = 0;
        let _ = write!(out, "response buffer too small");
        return -EOVERFLOW as isize;
    }
    out.len as isize
}

/// Copies the advisor counters into `*out` (null is ignored).
extern "C" fn advise_stats(h: *mut c_void, out: *mut LlxAdviseStats) {
    if h.is_null() || out.is_null() {
        return;
    }
    // SAFETY: a live handle, used by one call at a time (module's lock).
    let e = unsafe { &*(h as *const Engine) };
    let st = LlxAdviseStats {
        prefills: e.adv_prefills,
        reuses: e.adv_reuses,
        slots_used: e.advs.iter().filter(|a| a.is_some()).count() as u32,
        slots: e.adv_slots as u32,
    };
    // SAFETY: the caller's writable LlxAdviseStats.
    unsafe { out.write(st) };
}
