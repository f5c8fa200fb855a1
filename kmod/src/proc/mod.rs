// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux: one file per /proc file. The proc_ops tables of the files
//! with more than a seq_file show are C (llamux_glue.c: the struct has a
//! config-dependent layout 6.12 does not bind) and point at the `extern "C"`
//! functions of these files.

/// The `extern "C"` read or write callback `$name` that llamux_glue.c's
/// proc_ops tables point at: the handler's result as the VFS wants it.
macro_rules! proc_rw {
    ($name:ident, $buf_ty:ty, |$file:pat_param, $buf:pat_param, $count:pat_param| $body:expr) => {
        #[no_mangle]
        extern "C" fn $name(
            $file: *mut kernel::bindings::file,
            $buf: $buf_ty,
            $count: usize,
            _ppos: *mut i64,
        ) -> isize {
            $crate::proc::ret($body)
        }
    };
}

pub(crate) mod advise;
pub(crate) mod bench;
pub(crate) mod generate;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod params;
pub(crate) mod status;

use core::fmt::Write;

use kernel::prelude::*;

use crate::engine::Sampling;
use crate::sys::{ProcEntry, ProcOps, Seq};

extern "C" {
    // llamux_glue.c
    static llamux_generate_ops: ProcOps;
    static llamux_load_ops: ProcOps;
    static llamux_params_ops: ProcOps;
    static llamux_advise_ops: ProcOps;
    static llamux_bench_ops: ProcOps;
}

/// Creates /proc/llamux and its files (all 0600).
pub(crate) fn create() -> Result<ProcEntry> {
    let dir = ProcEntry::mkdir(kernel::c_str!("llamux"))?;
    let r = (|| -> Result {
        dir.create_single(kernel::c_str!("status"), status::show)?;
        dir.create_single(kernel::c_str!("model"), model::show)?;
        // SAFETY: the tables are static and point at this module's
        // callbacks, which only use the module state published before this
        // and cleared after the directory is removed.
        unsafe {
            dir.create(
                kernel::c_str!("generate"),
                core::ptr::addr_of!(llamux_generate_ops),
            )?;
            dir.create(kernel::c_str!("load"), core::ptr::addr_of!(llamux_load_ops))?;
            dir.create(
                kernel::c_str!("params"),
                core::ptr::addr_of!(llamux_params_ops),
            )?;
            dir.create(
                kernel::c_str!("advise"),
                core::ptr::addr_of!(llamux_advise_ops),
            )?;
            dir.create(
                kernel::c_str!("bench"),
                core::ptr::addr_of!(llamux_bench_ops),
            )?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok(dir),
        Err(e) => {
            dir.remove();
            Err(e)
        }
    }
}

/// A read/write callback's result as the VFS wants it.
pub(crate) fn ret(r: Result<usize>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// One line of sampling settings, as /proc/llamux/params shows them.
pub(crate) fn show_sampling(m: &mut Seq, s: &Sampling) {
    let milli = |v: u32| (v / 1000, v % 1000);
    let (t, tf) = milli(s.temperature_milli);
    let (p, pf) = milli(s.top_p_milli);
    let (mp, mpf) = milli(s.min_p_milli);
    let (r, rf) = milli(s.repeat_penalty_milli);
    let _ = writeln!(
        m,
        "temperature={t}.{tf:03} top_k={} top_p={p}.{pf:03} min_p={mp}.{mpf:03} repeat_penalty={r}.{rf:03} repeat_last_n={} seed={} n_predict={}",
        s.top_k, s.repeat_last_n, s.seed, s.n_predict
    );
}

/// Reads a whole write() of at most `max` bytes from user space.
pub(crate) fn read_user(buf: *const kernel::ffi::c_char, count: usize) -> Result<KVec<u8>> {
    let mut v = KVec::new();
    crate::sys::user_slice(buf, count).read_all(&mut v, GFP_KERNEL)?;
    Ok(v)
}
