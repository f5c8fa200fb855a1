// SPDX-License-Identifier: GPL-2.0

//! What the engine object calls back (abi.rs `llx_callbacks`): its
//! allocator, panic hook, parallel runner and memory query. The allocator
//! and the runner arrive inside the engine's FPU section and leave it while
//! they may sleep (the runner also between slices of tasks).

use core::ffi::c_void;
use core::sync::atomic::{AtomicI64, Ordering};

use kernel::prelude::*;

use crate::abi::LlxTaskFn;
use crate::engine::Job;
use crate::fpu;
use crate::sys;
use crate::workers::Pool;

/// Bytes the engine holds (every engine allocation goes through here: the
/// tests read the unload line to prove an unload leaks nothing).
pub(crate) static ENGINE_MEM: AtomicI64 = AtomicI64::new(0);

#[no_mangle]
extern "C" fn llx_kmalloc(size: usize, _align: usize) -> *mut u8 {
    // SAFETY: an engine callback, inside the engine's FPU section;
    // kvmalloc may sleep.
    let p = unsafe { fpu::outside(|| sys::kvmalloc(size)) };
    if !p.is_null() {
        ENGINE_MEM.fetch_add(size as i64, Ordering::Relaxed);
    }
    p
}

#[no_mangle]
extern "C" fn llx_kfree(p: *mut u8, size: usize, _align: usize) {
    // SAFETY: an engine callback (see above); `p` came from llx_kmalloc
    // with this size (the engine's allocator contract); kvfree may sleep.
    unsafe { fpu::outside(|| sys::kvfree(p, size)) };
    ENGINE_MEM.fetch_sub(size as i64, Ordering::Relaxed);
}

#[no_mangle]
extern "C" fn llx_panic(msg: *const u8, len: usize) -> ! {
    sys::fpu_end();
    let text = if msg.is_null() {
        &[][..]
    } else {
        // SAFETY: the engine passes `len` readable bytes of its message.
        unsafe { core::slice::from_raw_parts(msg, len.min(256)) }
    };
    pr_emerg!("engine panic: {}\n", kernel::str::BStr::from_bytes(text));
    sys::bug()
}

#[no_mangle]
extern "C" fn llx_parallel_run(
    exec_ctx: *mut c_void,
    n: usize,
    task_fn: LlxTaskFn,
    data: *const c_void,
) {
    // SAFETY: `exec_ctx` is the module's pool, passed in LlxLoadParams by
    // load.rs; it lives until after every engine is freed.
    let pool = unsafe { &*exec_ctx.cast::<Pool>() };
    let job = Job::new(task_fn, data, n);
    // SAFETY: an engine callback, inside the engine's FPU section.
    unsafe { pool.run(job) };
}

#[no_mangle]
extern "C" fn llx_mem_available() -> u64 {
    sys::mem_available().saturating_sub(crate::load::reserve())
}

/// The callbacks have the signatures abi.rs gives.
macro_rules! llx_check_defined {
    ($($(#[$a:meta])* fn $name:ident($($arg:ident: $t:ty),*) $(-> $r:ty)?;)*) => {
        $(const _: unsafe extern "C" fn($($t),*) $(-> $r)? = $name;)*
    };
}
llx_callbacks!(llx_check_defined);
