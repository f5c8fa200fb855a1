// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/model: the loaded model's path and the engine's
//! description of it, or "none".

use core::ffi::{c_int, c_void};
use core::fmt::Write;

use kernel::bindings;

use crate::state;
use crate::sys::Seq;

pub(crate) unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: the seq_file of this show call.
    let Some(mut m) = (unsafe { Seq::new(m) }) else {
        return 0;
    };
    let Some(sh) = state::shared() else {
        return 0;
    };
    let g = sh.core.lock();
    match g.meta.as_ref() {
        Some(meta) => {
            let _ = write!(m, "path: ");
            m.bytes(&meta.path);
            let _ = writeln!(m);
            m.bytes(meta.info());
        }
        None => {
            let _ = writeln!(m, "none");
        }
    }
    0
}
