// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/advise: the module side of the loader's kernel advisor.
//! One write() carries one whole request record
//! (llamux_engine::advise::request); the decision is computed during that
//! write, and read() on the same open file then returns the response record
//! (llamux_engine::advise::response; EOF after it; the next write replaces
//! it). This file only checks the size (0 bytes: EINVAL; over
//! LLX_ADVISE_MAX: E2BIG); the engine parses the record (malformed:
//! EINVAL). No model: ENODEV. Requests take the engine turn like each token
//! of a generation does, so they are served between a generation's tokens
//! and never wait for a pending prompt's reader.

use core::ffi::c_int;

use kernel::ffi::c_char;

use kernel::bindings;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

use crate::abi::LLX_ADVISE_MAX;
use crate::state::{self, Turn};
use crate::sys::{self, FilePrivate};

/// Room for a response record.
const RESP_MAX: usize = 1024;

/// The response of the last write on one open file.
struct Resp {
    len: usize,
    off: usize,
    buf: [u8; RESP_MAX],
}

type AdviseFile = Mutex<Resp>;

#[no_mangle]
extern "C" fn llamux_advise_open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    match KBox::pin_init(
        new_mutex!(
            Resp {
                len: 0,
                off: 0,
                buf: [0; RESP_MAX]
            },
            "llamux_advise_file"
        ),
        GFP_KERNEL,
    ) {
        Ok(b) => {
            FilePrivate::set(file, b);
            0
        }
        Err(e) => e.to_errno(),
    }
}

#[no_mangle]
extern "C" fn llamux_advise_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: set by llamux_advise_open with an AdviseFile; release is the
    // file's last callback.
    drop(unsafe { FilePrivate::take::<AdviseFile>(file) });
    0
}

fn write(file: *mut bindings::file, buf: *const c_char, count: usize) -> Result<usize> {
    if count == 0 {
        return Err(EINVAL);
    }
    if count > LLX_ADVISE_MAX {
        return Err(E2BIG);
    }
    let req = super::read_user(buf, count)?;
    // SAFETY: an advise file's private data, used during this callback.
    let af = unsafe { FilePrivate::get::<AdviseFile>(file) }.ok_or(EINVAL)?;
    {
        let mut r = af.lock();
        r.len = 0;
        r.off = 0;
    }
    let sh = state::shared().ok_or(ENODEV)?;
    let mut g = sh.core.lock();
    let mut turn = Turn::take(sh, &mut g, |c| {
        if c.stopping {
            return Err(sys::eshutdown());
        }
        if c.meta.is_none() {
            return Err(ENODEV);
        }
        Ok(())
    })
    .map_err(|e| if e == ERESTARTSYS { EINTR } else { e })?;
    drop(g);
    let mut resp = KBox::new([0u8; RESP_MAX], GFP_KERNEL)?;
    let t0 = sys::now_ns();
    let mut ret: isize = ENODEV.to_errno() as isize;
    let mut stats = None;
    let run = match turn.engine.as_mut() {
        // On a fresh stack: a request may rebuild an advisor and prefill.
        Some(e) => sys::run_on_fresh_stack(&mut || {
            ret = e.advise(&req, &mut resp[..]);
            stats = Some(e.advise_stats());
        }),
        None => Ok(()),
    };
    let dt = sys::now_ns() - t0;
    let mut g = sh.core.lock();
    g.last_advise_ns = dt;
    g.n_advise += 1;
    if let Some(st) = stats {
        g.adv_stats = st;
    }
    let res = match run {
        Err(e) => Err(e),
        Ok(()) if ret < 0 => {
            let n = resp.iter().position(|&c| c == 0).unwrap_or(RESP_MAX - 1);
            pr_info!(
                "advise: {} (errno {})\n",
                kernel::str::BStr::from_bytes(resp.get(..n).unwrap_or_default()),
                ret
            );
            Err(sys::errno(ret as i64))
        }
        Ok(()) => Ok((ret as usize).min(RESP_MAX)),
    };
    if res.is_err() {
        g.n_advise_errors += 1;
    }
    turn.end(&mut g);
    drop(g);
    let n = res?;
    let mut r = af.lock();
    r.buf = *resp;
    r.len = n;
    r.off = 0;
    Ok(count)
}

fn read(file: *mut bindings::file, buf: *mut c_char, count: usize) -> Result<usize> {
    // SAFETY: an advise file's private data, used during this callback.
    let af = unsafe { FilePrivate::get::<AdviseFile>(file) }.ok_or(EINVAL)?;
    let mut r = af.lock();
    let n = count.min(r.len.saturating_sub(r.off));
    if n > 0 {
        let from = r.off;
        sys::user_slice(buf, n)
            .writer()
            .write_slice(r.buf.get(from..from + n).unwrap_or_default())?;
        r.off += n;
    }
    Ok(n)
}

proc_rw! { llamux_advise_write, *const c_char, |file, buf, count| write(file, buf, count) }

proc_rw! { llamux_advise_read, *mut c_char, |file, buf, count| read(file, buf, count) }
