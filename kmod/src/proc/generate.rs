// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/generate: one write() is one whole prompt (EBUSY while one
//! is pending or running, E2BIG over max_prompt); the first reader of a
//! pending prompt owns the generation and reads its text, one token per
//! engine step (other readers: EBUSY while it runs, EOF when nothing is
//! pending). A reader that closes ends its request; a prompt nobody reads
//! is dropped after prompt_timeout_s.

use kernel::ffi::c_char;

use kernel::bindings;
use kernel::prelude::*;

use crate::engine::ErrBuf;
use crate::fpu::STATS;
use crate::params;
use crate::state::{self, Core, Req, Shared, Turn, PIECE_MAX};
use crate::sys;

/// Ends the request (Core lock held).
pub(crate) fn finish(sh: &Shared, c: &mut Core) {
    if matches!(c.req, Req::Running { .. }) {
        STATS.end();
    }
    c.req = Req::Idle;
    sh.changed.notify_all();
}

fn write(buf: *const c_char, count: usize) -> Result<usize> {
    if count > params::max_prompt() as usize {
        return Err(E2BIG);
    }
    if count == 0 {
        return Err(EINVAL);
    }
    let prompt = super::read_user(buf, count)?;
    let sh = state::shared().ok_or(ENODEV)?;
    let mut g = sh.core.lock();
    sh.expire_pending(&mut g);
    if g.stopping {
        return Err(sys::eshutdown());
    }
    if g.meta.is_none() {
        return Err(ENODEV);
    }
    if !matches!(g.req, Req::Idle) {
        return Err(EBUSY);
    }
    // `echo` adds a newline the user did not mean as part of the prompt.
    let mut len = prompt.len();
    if len > 1 && prompt.last() == Some(&b'\n') {
        len -= 1;
    }
    let sampling = g.sampling;
    g.req = Req::Pending {
        prompt,
        len,
        sampling,
        since_ns: sys::now_ns(),
    };
    Ok(count)
}

/// Copies the unread part of the current piece to user space.
fn copy_piece(
    c: &mut Core,
    out: &mut kernel::uaccess::UserSliceWriter,
    count: usize,
) -> Result<usize> {
    let Req::Running {
        piece, len, off, ..
    } = &mut c.req
    else {
        return Ok(0);
    };
    let n = count.min(len.saturating_sub(*off));
    out.write_slice(piece.get(*off..*off + n).unwrap_or_default())?;
    *off += n;
    Ok(n)
}

fn read(file: *mut bindings::file, buf: *mut c_char, count: usize) -> Result<usize> {
    if count == 0 {
        return Ok(0);
    }
    let me = file as usize;
    let mut out = sys::user_slice(buf, count).writer();
    let sh = state::shared().ok_or(ENODEV)?;
    let mut g = sh.core.lock();
    sh.expire_pending(&mut g);
    // Wait for the engine turn unless there is nothing to do or text of
    // the last token is left; the checks run again after every wake-up.
    let mut begin = false;
    let turn = Turn::take(sh, &mut g, |c| {
        if c.stopping {
            if !matches!(c.req, Req::Idle) {
                finish(sh, c);
            }
            return Err(sys::eshutdown());
        }
        match &c.req {
            Req::Idle => Err(ENODATA_EOF),
            Req::Running { reader, .. } if *reader != me => Err(EBUSY),
            Req::Running { len, off, .. } if off < len => Err(ENODATA_PIECE),
            Req::Running { .. } => {
                // One token per read: signals and rmmod are noticed between.
                if kernel::current!().signal_pending() {
                    return Err(ERESTARTSYS);
                }
                begin = false;
                Ok(())
            }
            Req::Pending { .. } => {
                begin = true;
                Ok(())
            }
        }
    });
    let mut turn = match turn {
        Ok(t) => t,
        Err(e) if e == ENODATA_EOF => return Ok(0),
        Err(e) if e == ENODATA_PIECE => return copy_piece(&mut g, &mut out, count),
        Err(e) => return Err(e),
    };
    if begin {
        let Req::Pending {
            prompt,
            len,
            sampling,
            ..
        } = core::mem::replace(
            &mut g.req,
            Req::Running {
                reader: me,
                piece: [0; PIECE_MAX],
                len: 0,
                off: 0,
            },
        )
        else {
            turn.end(&mut g);
            return Err(EINVAL);
        };
        g.n_ids = 0;
        g.last_error = 0;
        g.last_prefill_ns = 0;
        g.last_decode_ns = 0;
        g.n_requests += 1;
        drop(g);
        STATS.begin();
        let r = start(&mut turn, prompt.get(..len).unwrap_or_default(), &sampling);
        let mut g = sh.core.lock();
        g.last_prefill_ns = r.1;
        match r.0 {
            Ok(n) => g.last_n_prompt = n,
            Err(e) => {
                g.last_n_prompt = e.to_errno() as i64;
                g.last_error = e.to_errno();
                finish(sh, &mut g);
                turn.end(&mut g);
                return Err(e);
            }
        }
        // Fall through to the first token, within the same turn.
        return step(sh, turn, g, &mut out, count);
    }
    step(sh, turn, g, &mut out, count)
}

// Markers for `read` (never returned to user space).
const ENODATA_EOF: Error = ENOTSUPP;
const ENODATA_PIECE: Error = ETOOSMALL;

/// Prepares (on a fresh stack) and prefills: the prompt's token count and
/// the time it took.
fn start(turn: &mut Turn<'_>, prompt: &[u8], s: &crate::engine::Sampling) -> (Result<i64>, u64) {
    let t0 = sys::now_ns();
    let Some(e) = turn.engine.as_mut() else {
        return (Err(ENODEV), 0);
    };
    let mut err = ErrBuf::new();
    let mut r = 0;
    if let Err(x) = sys::run_on_fresh_stack(&mut || r = e.prepare(s, &mut err)) {
        return (Err(x), sys::now_ns() - t0);
    }
    if r < 0 {
        pr_info!("generate: {} (errno {})\n", err.text(), r);
        return (Err(sys::errno(r as i64)), sys::now_ns() - t0);
    }
    let n = e.start(prompt, s, &mut err);
    let dt = sys::now_ns() - t0;
    if n < 0 {
        pr_info!("generate: {} (errno {})\n", err.text(), n);
        return (Err(sys::errno(n)), dt);
    }
    (Ok(n), dt)
}

/// Runs one engine step with the turn, then copies its text out.
fn step(
    sh: &Shared,
    mut turn: Turn<'_>,
    g: kernel::sync::lock::Guard<'_, Core, kernel::sync::lock::mutex::MutexBackend>,
    out: &mut kernel::uaccess::UserSliceWriter,
    count: usize,
) -> Result<usize> {
    drop(g);
    let mut piece = [0u8; PIECE_MAX];
    let (mut len, mut tok) = (0usize, 0u32);
    let t0 = sys::now_ns();
    let r = match turn.engine.as_mut() {
        Some(e) => e.step(&mut piece, &mut len, &mut tok),
        None => ENODEV.to_errno(),
    };
    let dt = sys::now_ns() - t0;
    let mut g = sh.core.lock();
    g.last_decode_ns += dt;
    if r <= 0 {
        if r < 0 {
            pr_info!("generate: step failed (errno {})\n", r);
            g.last_error = r;
        }
        finish(sh, &mut g);
        turn.end(&mut g);
        return if r < 0 {
            Err(sys::errno(r as i64))
        } else {
            Ok(0)
        };
    }
    let n = g.n_ids;
    if let Some(slot) = g.last_ids.get_mut(n) {
        *slot = tok;
        g.n_ids = n + 1;
    }
    if let Req::Running {
        piece: p,
        len: l,
        off,
        ..
    } = &mut g.req
    {
        *p = piece;
        *l = len.min(PIECE_MAX);
        *off = 0;
    }
    turn.end(&mut g);
    copy_piece(&mut g, out, count)
}

proc_rw! { llamux_generate_write, *const c_char, |_file, buf, count| write(buf, count) }

proc_rw! { llamux_generate_read, *mut c_char, |file, buf, count| read(file, buf, count) }

#[no_mangle]
extern "C" fn llamux_generate_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> core::ffi::c_int {
    let Some(sh) = state::shared() else {
        return 0;
    };
    let mut g = sh.core.lock();
    // A reader that goes away (Ctrl-C) ends its request.
    if matches!(g.req, Req::Running { reader, .. } if reader == file as usize) {
        finish(sh, &mut g);
    }
    0
}
