// SPDX-License-Identifier: GPL-2.0

//! Llamux: LLaMA inference inside the Linux kernel.
//!
//! This is the Rust-for-Linux glue of `llamux.ko`. For now it only registers
//! `/proc/llamux/status` (through the C glue in `llamux_proc.c`) and reads
//! the `max_threads` module parameter.

use core::ffi::{c_int, c_uint};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::bindings;
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::str::CString;

module! {
    type: Llamux,
    name: "llamux",
    author: "Llamux developers",
    description: "LLaMA inference inside the Linux kernel",
    license: "GPL",
}

/// Version reported on load and in `/proc/llamux/status`.
const VERSION: &str = "0.1.0";

extern "C" {
    fn llamux_proc_init() -> c_int;
    fn llamux_proc_exit();
    fn llamux_param_max_threads() -> c_uint;
    /// Appends the engine host's part of the status (llamux_core.c); `m`
    /// is a `struct seq_file *` (opaque to bindgen, hence void).
    fn llamux_core_status(m: *mut core::ffi::c_void);
}

/// How many times `/proc/llamux/status` was read since load.
static STATUS_READS: AtomicU64 = AtomicU64::new(0);

/// Number of worker threads the module will use: the `max_threads`
/// parameter, or one per possible CPU when it is 0.
fn worker_threads() -> u32 {
    // SAFETY: `llamux_param_max_threads` only reads a `uint` module parameter
    // that the kernel sets before `init` runs and never changes (mode 0444).
    let wanted = unsafe { llamux_param_max_threads() };
    // SAFETY: `nr_cpu_ids` is set during early boot and read-only afterwards.
    let cpus = unsafe { bindings::nr_cpu_ids };
    if wanted == 0 || wanted > cpus {
        cpus
    } else {
        wanted
    }
}

/// seq_file show callback of `/proc/llamux/status`, called by the C glue.
#[no_mangle]
pub extern "C" fn llamux_status_show(m: *mut bindings::seq_file) -> c_int {
    let reads = STATUS_READS.fetch_add(1, Ordering::Relaxed) + 1;
    let text = match CString::try_from_fmt(kernel::fmt!(
        "llamux {}\nmax_threads: {}\nworker_threads: {}\nstatus_reads: {}\n",
        VERSION,
        // SAFETY: see `worker_threads`.
        unsafe { llamux_param_max_threads() },
        worker_threads(),
        reads
    )) {
        Ok(t) => t,
        Err(e) => return e.to_errno(),
    };
    let bytes = text.as_bytes();
    // SAFETY: `m` is the live seq_file the proc core passed to the show
    // callback; `bytes` is valid for `bytes.len()` bytes for this call.
    // seq_write only reports overflow, which the seq_file core handles by
    // retrying with a bigger buffer, so its result needs no handling here.
    unsafe { bindings::seq_write(m, bytes.as_ptr().cast(), bytes.len()) };
    // SAFETY: `m` is the live seq_file of this show call (see above); the
    // C side only appends to it under its own lock.
    unsafe { llamux_core_status(m.cast()) };
    0
}

/// The loaded module. Dropping it tears down `/proc/llamux`.
struct Llamux;

impl kernel::Module for Llamux {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: called once from module init; the matching
        // `llamux_proc_exit` runs in `drop`, or not at all if this fails.
        to_result(unsafe { llamux_proc_init() })?;
        pr_info!(
            "loaded version {} (max_threads={}, worker_threads={})\n",
            VERSION,
            // SAFETY: see `worker_threads`.
            unsafe { llamux_param_max_threads() },
            worker_threads()
        );
        Ok(Llamux)
    }
}

impl Drop for Llamux {
    fn drop(&mut self) {
        // SAFETY: `init` succeeded, so `/proc/llamux` exists; this removes it
        // and waits for running readers before the module text goes away.
        unsafe { llamux_proc_exit() };
        pr_info!("unloaded\n");
    }
}
