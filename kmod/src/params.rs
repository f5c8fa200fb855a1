// SPDX-License-Identifier: GPL-2.0

//! The module parameters. 6.12 has no Rust module_param: the declarations
//! (names, types, modes, descriptions) are in llamux_glue.c, which owns the
//! storage; this file is the only reader. Writable ones (0644) change at
//! any time through sysfs: each read is a READ_ONCE.

use core::ffi::{c_int, c_uint};

use kernel::ffi::c_char;

use kernel::str::CStr;

extern "C" {
    static llamux_param_threads: c_uint;
    static llamux_param_chunk_kb: c_uint;
    static llamux_param_n_ctx: c_uint;
    static llamux_param_kv_f16: c_int;
    static llamux_param_max_model_mb: c_uint;
    static llamux_param_drop_cache: bool;
    static llamux_param_n_batch: c_uint;
    static llamux_param_repack: bool;
    static llamux_param_spin_us: c_uint;
    static llamux_param_fpu_slice_us: c_uint;
    static llamux_param_pin_workers: bool;
    static llamux_param_max_prompt: c_uint;
    static llamux_param_advise_slots: c_uint;
    static llamux_param_advise_max_ctx: c_uint;
    static llamux_param_prompt_timeout_s: c_uint;
    static llamux_param_model: *const c_char;
    static llamux_param_params: *const c_char;
}

macro_rules! getters {
    ($($(#[$a:meta])* $name:ident: $var:ident -> $t:ty;)*) => {
        $(
            $(#[$a])*
            pub(crate) fn $name() -> $t {
                // SAFETY: a module parameter of this type, set by the
                // kernel before init and through sysfs under its lock; a
                // volatile read of an aligned scalar is READ_ONCE.
                unsafe { core::ptr::addr_of!($var).read_volatile() }
            }
        )*
    };
}

getters! {
    /// Inference threads including the caller (0: all online CPUs);
    /// `max_threads` is an alias of the same variable.
    threads: llamux_param_threads -> u32;
    /// Model file read chunk in KiB.
    chunk_kb: llamux_param_chunk_kb -> u32;
    /// KV cache positions of the next load.
    n_ctx: llamux_param_n_ctx -> u32;
    /// KV cache type of the next load: 0 f32, 1 f16.
    kv_f16: llamux_param_kv_f16 -> i32;
    /// Largest model file in MiB.
    max_model_mb: llamux_param_max_model_mb -> u32;
    /// Drop each chunk's page cache after copying it.
    drop_cache: llamux_param_drop_cache -> bool;
    /// Prefill batch size.
    n_batch: llamux_param_n_batch -> u32;
    /// Repack Q4_K/Q6_K matrices at load.
    repack: llamux_param_repack -> bool;
    /// Spin time of workers and caller before sleeping, in µs.
    spin_us: llamux_param_spin_us -> u32;
    /// Age in µs after which a thread ends its FPU section between tasks.
    fpu_slice_us: llamux_param_fpu_slice_us -> u32;
    /// Bind each worker to one CPU.
    pin_workers: llamux_param_pin_workers -> bool;
    /// Longest prompt in bytes.
    max_prompt: llamux_param_max_prompt -> u32;
    /// Advisor prefixes kept prefilled.
    advise_slots: llamux_param_advise_slots -> u32;
    /// Largest advisor context (positions).
    advise_max_ctx: llamux_param_advise_max_ctx -> u32;
    /// Seconds a prompt may stay pending unread (0: for ever).
    prompt_timeout_s: llamux_param_prompt_timeout_s -> u32;
}

fn charp(p: *const c_char) -> Option<&'static CStr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated charp parameter (mode 0444: set before init
    // and never changed while the module is loaded).
    Some(unsafe { CStr::from_char_ptr(p) })
}

/// `model=`: the GGUF file to load at init.
pub(crate) fn model() -> Option<&'static CStr> {
    // SAFETY: see `charp`; the pointer itself is read once.
    charp(unsafe { core::ptr::addr_of!(llamux_param_model).read_volatile() })
}

/// `params=`: default sampling words.
pub(crate) fn params() -> Option<&'static CStr> {
    // SAFETY: as above.
    charp(unsafe { core::ptr::addr_of!(llamux_param_params).read_volatile() })
}
