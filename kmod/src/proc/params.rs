// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/params: the default sampling settings of the next request.
//! A write of "key=value ..." words changes the ones it names ("defaults"
//! resets all); a bad word rejects the whole write (EINVAL).

use core::ffi::{c_int, c_void};

use kernel::ffi::c_char;

use kernel::bindings;
use kernel::prelude::*;

use crate::engine;
use crate::state;
use crate::sys::{self, Seq};

/// Longest write (too long, as generate/advise: E2BIG, not EINVAL).
const MAX_WRITE: usize = 1024;

unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: the seq_file of this show call.
    let Some(mut m) = (unsafe { Seq::new(m) }) else {
        return 0;
    };
    let Some(sh) = state::shared() else {
        return 0;
    };
    let s = sh.core.lock().sampling;
    super::show_sampling(&mut m, &s);
    0
}

#[no_mangle]
extern "C" fn llamux_params_open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    sys::single_open(file, show)
}

fn write(buf: *const c_char, count: usize) -> Result<usize> {
    if count == 0 {
        return Err(EINVAL);
    }
    if count > MAX_WRITE {
        return Err(E2BIG);
    }
    let text = super::read_user(buf, count)?;
    let sh = state::shared().ok_or(ENODEV)?;
    let mut g = sh.core.lock();
    let mut s = g.sampling;
    engine::parse_params(&text, &mut s)?;
    g.sampling = s;
    Ok(count)
}

proc_rw! { llamux_params_write, *const c_char, |_file, buf, count| write(buf, count) }
