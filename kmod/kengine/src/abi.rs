//! The ABI between llamux.ko (kmod/src) and its hard-float engine object
//! (this crate, built by kmod/build-engine.sh): written down once, here.
//!
//! - kengine includes this file as `mod abi`: `llx_entries!` makes its
//!   exported trampolines and checks each Rust function behind one against
//!   the signature below; `llx_callbacks!` declares what it calls back.
//! - The module includes it with `#[path]`: `llx_entries!` declares the
//!   entries it calls, `llx_callbacks!` checks its callback definitions.
//! - build-engine.sh reads the entry and callback names from the two macro
//!   bodies (every `fn llx_*` line between `macro_rules! llx_entries` and
//!   `macro_rules! llx_callbacks` is an export, every one after it a
//!   callback the object may leave undefined).
//!
//! Rules of the calls: every entry (llx_task included) runs between
//! kernel_fpu_begin_mask(KFPU_MXCSR) and kernel_fpu_end(), at most six
//! arguments (the trampolines pass registers only), pointers and integers
//! only (the module is soft-float), errors as negative errno values.

use core::ffi::c_void;

/// Bumped whenever a signature or a `#[repr(C)]` layout here changes; the
/// module refuses an object with another version.
pub const LLX_ABI_VERSION: u32 = 6;

/// Longest advise request record, in bytes (the module checks it first).
pub const LLX_ADVISE_MAX: usize = 16384;

/// Most tokens one `llx_bench_forward` call takes.
pub const LLX_BENCH_MAX_BATCH: usize = 128;

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
    /// Advisor prefixes kept prefilled (`llx_advise`); 0: the default.
    pub advise_slots: u32,
    /// Non-zero: the file's Q4_K/Q6_K matrices were repacked by
    /// `llx_repack_step` (read them in the x8 layouts).
    pub repacked: u32,
    /// Largest advisor context (positions) `llx_advise` accepts; 0: the
    /// engine's default.
    pub advise_max_ctx: u32,
    /// Passed back to `llx_parallel_run`.
    pub exec_ctx: *mut c_void,
}

/// Sampling settings, floats as integer thousandths.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

/// Counters of `llx_advise_stats`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct LlxAdviseStats {
    /// Advisors built, each with one prefill of its policy's prefix.
    pub prefills: u64,
    /// Requests served by an already prefilled advisor.
    pub reuses: u64,
    /// Slots in use and available.
    pub slots_used: u32,
    pub slots: u32,
}

/// A task of `llx_parallel_run` (the module calls the `llx_task` entry).
pub type LlxTaskFn = unsafe extern "C" fn(*const c_void, usize);

/// The entries the object exports. `$m` receives the list.
macro_rules! llx_entries {
    ($m:ident) => {
        $m! {
            /// LLX_ABI_VERSION of the object.
            fn llx_abi_version() -> u32;
            /// Parses "key=value ..." sampling words into `*s` (unchanged
            /// on error): 0 or -EINVAL.
            fn llx_parse_params(text: *const u8, len: usize, s: *mut LlxSampling) -> i32;
            /// Builds a model over `file[..len]` (kept alive and unchanged
            /// until llx_free): 0 and a handle in `*out`, or -errno and a
            /// message in `err`.
            fn llx_load(file: *const u8, len: usize, p: *const LlxLoadParams, out: *mut *mut c_void, err: *mut u8, err_cap: usize) -> i32;
            /// Frees a handle of llx_load (null is ignored).
            fn llx_free(h: *mut c_void);
            /// Copies the model description into `buf`; its full length.
            fn llx_info(h: *mut c_void, buf: *mut u8, cap: usize) -> isize;
            /// Prepares the session for `s` (the stack-hungry part of a start).
            fn llx_prepare(h: *mut c_void, s: *const LlxSampling, err: *mut u8, err_cap: usize) -> i32;
            /// Prefills a prompt: its token count, or -errno and a message.
            fn llx_start(h: *mut c_void, prompt: *const u8, len: usize, s: *const LlxSampling, err: *mut u8, err_cap: usize) -> i64;
            /// One token: 1 (piece in `out`), 0 at the end, or -errno.
            fn llx_step(h: *mut c_void, out: *mut u8, cap: usize, out_len: *mut usize, token: *mut u32) -> i32;
            /// Runs task `i` of a llx_parallel_run job.
            fn llx_task(data: *const c_void, i: usize);
            /// `llamux bench`'s protocol: bench tokens `first..first + n`
            /// (at most LLX_BENCH_MAX_BATCH) in one forward call, the
            /// sequence forgotten first when `reset` is non-zero: 0 or -errno.
            fn llx_bench_forward(h: *mut c_void, first: usize, n: usize, reset: u32) -> i32;
            /// Scores an advise request record (llxa2: plain or chat
            /// prompt) into a response record: its length, or -errno with
            /// a NUL-terminated message in `resp`.
            fn llx_advise(h: *mut c_void, req: *const u8, len: usize, resp: *mut u8, cap: usize) -> isize;
            /// Copies the advisor counters.
            fn llx_advise_stats(h: *mut c_void, out: *mut LlxAdviseStats);
            /// Plans the in-place x8 repack of `file` (null handle: nothing to do).
            fn llx_repack_begin(file: *const u8, len: usize, out: *mut *mut c_void, err: *mut u8, err_cap: usize) -> i32;
            /// Repacks about `budget` more bytes; `progress`: done, total.
            fn llx_repack_step(r: *mut c_void, file: *mut u8, len: usize, budget: usize, progress: *mut u64) -> i32;
            /// Frees a handle of llx_repack_begin (null is ignored).
            fn llx_repack_free(r: *mut c_void);
        }
    };
}

/// The callbacks the module provides. `$m` receives the list.
macro_rules! llx_callbacks {
    ($m:ident) => {
        $m! {
            /// `size` bytes aligned to `align` (at most 8), or null. Leaves
            /// and re-enters the caller's FPU section.
            fn llx_kmalloc(size: usize, align: usize) -> *mut u8;
            /// Frees what llx_kmalloc returned.
            fn llx_kfree(ptr: *mut u8, size: usize, align: usize);
            /// Reports an engine bug; never returns.
            fn llx_panic(msg: *const u8, len: usize) -> !;
            /// Runs `task_fn(data, i)` for every `i < n` and returns when all
            /// have run; leaves and re-enters the caller's FPU section.
            fn llx_parallel_run(exec_ctx: *mut c_void, n: usize, task_fn: LlxTaskFn, data: *const c_void);
            /// Bytes the engine may still allocate for a new context (the
            /// system's available memory less the module's reserve).
            fn llx_mem_available() -> u64;
        }
    };
}

/// Declares a list as `extern "C"` functions (the caller's side).
#[allow(unused_macros)]
macro_rules! llx_declare {
    ($($(#[$a:meta])* fn $name:ident($($arg:ident: $t:ty),*) $(-> $r:ty)?;)*) => {
        extern "C" {
            $($(#[$a])* pub fn $name($($arg: $t),*) $(-> $r)?;)*
        }
    };
}
