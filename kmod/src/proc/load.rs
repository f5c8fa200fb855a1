// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/load: one write() is one model path to load (surrounding
//! whitespace trimmed). The write returns when the load is done.

use kernel::ffi::c_char;

use kernel::prelude::*;

use crate::state::{self, Req};
use crate::sys;

/// PATH_MAX: a write of this many bytes or more is no path.
const PATH_MAX: usize = 4096;

fn write(buf: *const c_char, count: usize) -> Result<usize> {
    if count == 0 || count >= PATH_MAX {
        return Err(EINVAL);
    }
    let raw = super::read_user(buf, count)?;
    // A NUL ends the path, as in C strings; then trim whitespace.
    let path = raw
        .get(..raw.iter().position(|&c| c == 0).unwrap_or(raw.len()))
        .unwrap_or_default();
    let start = path
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(path.len());
    let end = path
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    let mut p = KVec::with_capacity(end.saturating_sub(start) + 1, GFP_KERNEL)?;
    p.extend_from_slice(path.get(start..end).unwrap_or_default(), GFP_KERNEL)?;
    p.push(0, GFP_KERNEL)?;
    let path = CStr::from_bytes_with_nul(&p).map_err(|_| EINVAL)?;
    let sh = state::shared().ok_or(ENODEV)?;
    {
        // Like generate and advise: EBUSY while a prompt is pending or
        // generating, rather than taking the model away from it.
        let mut g = sh.core.lock();
        sh.expire_pending(&mut g);
        if g.stopping {
            return Err(sys::eshutdown());
        }
        if !matches!(g.req, Req::Idle) {
            return Err(EBUSY);
        }
    }
    // Without the Core lock: the current model keeps working while the new
    // one is read, and a later load or rmmod interrupts this one.
    crate::load::load_model_file(sh, path)?;
    Ok(count)
}

proc_rw! { llamux_load_write, *const c_char, |_file, buf, count| write(buf, count) }
