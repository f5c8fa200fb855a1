// SPDX-License-Identifier: GPL-2.0

//! /proc/llamux/bench: `llamux bench`'s protocol run by the module, so
//! `llamux bench --kernel` compares the two homes on the same tokens. One
//! write of "pp=P tg=N reps=R" runs, under the engine turn: a warm-up
//! prefill of P bench tokens, then R timed ones (each from an empty cache),
//! a warm-up token, then R timed decodes of N tokens one forward call at a
//! time (each from an empty cache). The write returns when all ran; the
//! times (ns, each repetition's forward calls only) are in status
//! (`bench_*`). A signal or rmmod ends it between forward calls. EBUSY
//! while a generation is pending or running (it would lose its context).

use kernel::ffi::c_char;

use kernel::bindings;
use kernel::prelude::*;

use crate::engine::{ErrBuf, Loaded};
use crate::fpu::STATS;
use crate::state::{self, Bench, Req, Shared, Turn, BENCH_MAX_REPS};
use crate::sys;

/// Most tokens of one prefill (abi.rs LLX_BENCH_MAX_BATCH).
const MAX_PP: u32 = crate::abi::LLX_BENCH_MAX_BATCH as u32;
/// Most decode tokens per repetition.
const MAX_TG: u32 = 4096;

/// Parses "pp=P tg=N reps=R" (any order, each at most once, all decimal).
fn parse(text: &[u8]) -> Result<(u32, u32, u32)> {
    let (mut pp, mut tg, mut reps) = (None, None, None);
    for word in text
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        let eq = word.iter().position(|&c| c == b'=').ok_or(EINVAL)?;
        let (key, val) = (
            word.get(..eq).unwrap_or_default(),
            word.get(eq + 1..).unwrap_or_default(),
        );
        if val.is_empty() || val.len() > 9 || !val.iter().all(u8::is_ascii_digit) {
            return Err(EINVAL);
        }
        let v = val.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
        let slot = match key {
            b"pp" => &mut pp,
            b"tg" => &mut tg,
            b"reps" => &mut reps,
            _ => return Err(EINVAL),
        };
        if slot.replace(v).is_some() {
            return Err(EINVAL);
        }
    }
    let (pp, tg, reps) = (pp.unwrap_or(0), tg.unwrap_or(0), reps.unwrap_or(1));
    if pp > MAX_PP || tg > MAX_TG || pp + tg == 0 || reps == 0 || reps as usize > BENCH_MAX_REPS {
        return Err(EINVAL);
    }
    Ok((pp, tg, reps))
}

/// Stops between forward calls: a signal, or rmmod.
fn interrupted(sh: &Shared) -> Result {
    if sh.stopping.load(core::sync::atomic::Ordering::Relaxed) {
        return Err(sys::eshutdown());
    }
    if kernel::current!().signal_pending() {
        return Err(EINTR);
    }
    sys::cond_resched();
    Ok(())
}

/// One forward call: its time in ns.
fn forward(e: &mut Loaded, first: usize, n: usize, reset: bool) -> Result<u64> {
    let t0 = sys::now_ns();
    let r = e.bench_forward(first, n, reset);
    let dt = sys::now_ns() - t0;
    if r < 0 {
        pr_info!("bench: forward failed (errno {})\n", r);
        return Err(sys::errno(r as i64));
    }
    Ok(dt)
}

/// The protocol, filling `b` as it goes.
fn run(sh: &Shared, e: &mut Loaded, b: &mut Bench) -> Result {
    let (pp, tg) = (b.pp as usize, b.tg as usize);
    if pp > 0 {
        forward(e, 0, pp, true)?;
        for _ in 0..b.reps {
            interrupted(sh)?;
            let ns = forward(e, 0, pp, true)?;
            b.push_pp(ns);
        }
    }
    if tg > 0 {
        interrupted(sh)?;
        forward(e, 0, 1, true)?;
        for _ in 0..b.reps {
            let mut ns = 0u64;
            for i in 0..tg {
                interrupted(sh)?;
                ns += forward(e, i, 1, i == 0)?;
            }
            b.push_tg(ns);
        }
    }
    Ok(())
}

fn write(buf: *const c_char, count: usize) -> Result<usize> {
    if count == 0 {
        return Err(EINVAL);
    }
    if count > 128 {
        return Err(E2BIG);
    }
    let text = super::read_user(buf, count)?;
    let (pp, tg, reps) = parse(&text)?;
    let sh = state::shared().ok_or(ENODEV)?;
    let mut g = sh.core.lock();
    sh.expire_pending(&mut g);
    let mut turn = Turn::take(sh, &mut g, |c| {
        if c.stopping {
            return Err(sys::eshutdown());
        }
        if c.meta.is_none() {
            return Err(ENODEV);
        }
        if !matches!(c.req, Req::Idle) {
            return Err(EBUSY);
        }
        Ok(())
    })?;
    let sampling = g.sampling;
    g.bench = Bench::new(pp, tg, reps);
    drop(g);
    let mut b = Bench::new(pp, tg, reps);
    STATS.begin();
    let r = match turn.engine.as_mut() {
        None => Err(ENODEV),
        Some(e) => {
            // The session may need building: stack-hungry, on a fresh stack.
            let mut err = ErrBuf::new();
            let mut pr = 0;
            sys::run_on_fresh_stack(&mut || pr = e.prepare(&sampling, &mut err)).and_then(|()| {
                if pr < 0 {
                    pr_info!("bench: {} (errno {})\n", err.text(), pr);
                    Err(sys::errno(pr as i64))
                } else {
                    run(sh, e, &mut b)
                }
            })
        }
    };
    STATS.end();
    b.error = r.err().map_or(0, |e| e.to_errno());
    let mut g = sh.core.lock();
    g.bench = b;
    turn.end(&mut g);
    r.map(|()| count)
}

#[no_mangle]
extern "C" fn llamux_bench_write(
    _file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _ppos: *mut i64,
) -> isize {
    super::ret(write(buf, count))
}
