// SPDX-License-Identifier: GPL-2.0

//! Model loading: chunked reading into vmalloc memory (dropping each
//! chunk's page cache), the in-place repack, building the engine and
//! swapping it in, and cancellation.
//!
//! A load reads the whole file without the Core lock or the engine turn
//! (the old model keeps answering, status shows progress), then builds the
//! engine on it and swaps it in under the turn. Until the swap nothing can
//! see the new bytes, so a failed or interrupted load leaves the old model
//! (or none) in place. Only regular files and block devices are read: the
//! path is checked with an O_PATH open first and opened O_NONBLOCK, so no
//! load waits on user space (a FIFO's open would wait for a writer, and
//! rmmod for the load).

use core::sync::atomic::Ordering;

use kernel::prelude::*;
use kernel::str::BStr;

use crate::abi::LlxLoadParams;
use crate::engine::{ErrBuf, Loaded, Repack};
use crate::params;
use crate::state::{kv_line, Meta, Req, Shared, Turn};
use crate::sys::{self, File, Kind, TaskRef};

/// Bytes each repack step handles, in its own FPU section (preemption is
/// off in one).
const REPACK_STEP: usize = 1 << 20;
/// Room for the engine's model description.
const INFO_MAX: usize = 4096;

/// Memory a load leaves free beyond the file (KV cache, scratch, the rest
/// of the system): 1/32 of RAM, at least 32 MiB. Also kept free by the
/// advisor's contexts (llx_mem_available).
pub(crate) fn reserve() -> u64 {
    (sys::totalram() / 32).max(32 << 20)
}

/// Bytes per nanosecond as MB/s; 0 for no time.
pub(crate) fn mb_per_s(bytes: u64, ns: u64) -> u64 {
    bytes.saturating_mul(1000).checked_div(ns).unwrap_or(0)
}

/// Ok, or why load number `seq` (asked for by `writer`) must stop: EINTR on
/// a fatal signal to the writer; ECANCELED on rmmod or a newer load (not
/// EINTR: writers such as echo retry a write that fails with EINTR, and two
/// of them would then cancel each other for ever).
fn cancelled(sh: &Shared, writer: TaskRef, seq: u32) -> Result {
    if writer.fatal_signal_pending() {
        return Err(EINTR);
    }
    if sh.stopping.load(Ordering::Relaxed) || sh.load_seq.load(Ordering::Relaxed) != seq {
        return Err(sys::ecanceled());
    }
    Ok(())
}

fn stat_end(sh: &Shared, err: i32, bytes: u64, ns: u64) {
    let mut st = sh.load_stat.lock();
    st.active = false;
    st.last_err = err;
    if err == 0 {
        st.last_bytes = bytes;
        st.last_ns = ns;
    }
}

/// Opens `path` if it is a regular file or a block device.
fn open_model(path: &CStr) -> Result<File> {
    let refuse = |k: &Kind| -> Result {
        match k {
            Kind::Regular | Kind::Block => Ok(()),
            Kind::Dir => Err(EISDIR),
            Kind::Other => Err(EINVAL),
        }
    };
    if let Err(e) = refuse(&File::kind_at(path)?) {
        pr_err!(
            "{}: not a regular file or block device\n",
            BStr::from_bytes(path.as_bytes())
        );
        return Err(e);
    }
    let f = File::open_read(path)?;
    // The path may have changed since the check.
    refuse(&f.kind())?;
    Ok(f)
}

/// Reads `path` into vmalloc memory. With drop_cache, each chunk's pages
/// leave the page cache once copied (POSIX_FADV_DONTNEED), so the file is
/// not held twice. A block device's size is its bdev inode's.
fn read_file(sh: &Shared, path: &CStr, seq: u32) -> Result<VVec<u8>> {
    let name = BStr::from_bytes(path.as_bytes());
    let chunk = (params::chunk_kb().max(1) as usize).saturating_mul(1024);
    let f = open_model(path)?;
    let size = f.size();
    if size <= 0 {
        return Err(EINVAL);
    }
    let size = size as u64;
    let max_mb = params::max_model_mb();
    if size > (max_mb as u64) << 20 {
        pr_err!("{}: {} bytes is over max_model_mb={}\n", name, size, max_mb);
        return Err(EFBIG);
    }
    // vmalloc would reclaim and then OOM-kill to satisfy us (it has no
    // RETRY_MAYFAIL): refuse up front what clearly does not fit.
    let avail = sys::mem_available();
    if size.saturating_add(reserve()) > avail {
        pr_err!(
            "{}: {} bytes do not fit: {} bytes available, {} kept in reserve\n",
            name,
            size,
            avail,
            reserve()
        );
        return Err(ENOMEM);
    }
    let me = TaskRef::current();
    cancelled(sh, me, seq)?; // superseded while waiting for the last load
    let size = usize::try_from(size).map_err(|_| EFBIG)?;
    let mut buf = match VVec::<u8>::with_capacity(size, GFP_KERNEL | __GFP_NOWARN) {
        Ok(b) => b,
        Err(_) => {
            let e = if me.fatal_signal_pending() {
                EINTR
            } else {
                ENOMEM
            };
            pr_err!(
                "{}: cannot allocate {} bytes (errno {})\n",
                name,
                size,
                e.to_errno()
            );
            return Err(e);
        }
    };
    let t0 = sys::now_ns();
    {
        let mut st = sh.load_stat.lock();
        st.active = true;
        let b = path.as_bytes();
        let n = b.len().min(st.file.len() - 1);
        st.file = [0; 128];
        if let (Some(dst), Some(src)) = (st.file.get_mut(..n), b.get(..n)) {
            dst.copy_from_slice(src);
        }
        st.file_len = n;
        st.done = 0;
        st.total = size as u64;
        st.start_ns = t0;
        st.repack_done = 0;
        st.repack_total = 0;
    }
    pr_info!(
        "loading {} ({} bytes, chunk {} KiB, drop_cache={})\n",
        name,
        size,
        chunk / 1024,
        params::drop_cache() as i32
    );
    let mut pos: i64 = 0;
    while buf.len() < size {
        let from = pos;
        let want = chunk.min(size - buf.len());
        let r = f.read_append(&mut buf, want, &mut pos)?;
        if r == 0 {
            return Err(EIO); // the file shrank underneath us
        }
        if params::drop_cache() {
            f.drop_cache(from, r as i64);
        }
        sh.load_stat.lock().done = buf.len() as u64;
        if let Err(e) = cancelled(sh, me, seq) {
            pr_info!(
                "load of {} interrupted after {} of {} bytes (errno {})\n",
                name,
                buf.len(),
                size,
                e.to_errno()
            );
            return Err(e);
        }
        sys::cond_resched();
    }
    Ok(buf)
}

/// Repacks the Q4_K/Q6_K matrices of `buf` in place for the engine's 8-row
/// SIMD kernels (as `llamux` does in user space, so both run the same
/// kernels on the same layout). Runs on a fresh stack; a signal goes to
/// `writer`. Ok(true) when something was repacked.
fn repack(
    sh: &Shared,
    buf: &mut [u8],
    writer: TaskRef,
    seq: u32,
    err: &mut ErrBuf,
) -> Result<bool, i32> {
    let t0 = sys::now_ns();
    let mut r = match Repack::begin(buf, err)? {
        Some(r) => r,
        None => return Ok(false),
    };
    let mut prog = [0u64; 2];
    let res = loop {
        if let Err(e) = cancelled(sh, writer, seq) {
            break e.to_errno();
        }
        let (e, p) = r.step(buf, REPACK_STEP);
        prog = p;
        {
            let mut st = sh.load_stat.lock();
            st.repack_done = p[0];
            st.repack_total = p[1];
        }
        if e != 0 {
            break e;
        }
        sys::cond_resched();
    };
    drop(r);
    if res < 0 {
        if res == EINTR.to_errno() || res == sys::ecanceled().to_errno() {
            err.set(format_args!("load interrupted while repacking"));
        } else {
            err.set(format_args!(
                "repack failed after {} of {} bytes",
                prog[0], prog[1]
            ));
        }
        return Err(res);
    }
    pr_info!(
        "repacked {} bytes of Q4_K/Q6_K matrices in {} ms\n",
        prog[1],
        (sys::now_ns() - t0) / 1_000_000
    );
    Ok(true)
}

/// Loads `path` (load number `seq`), replacing the current model on
/// success. Runs with `loading` set.
fn load(sh: &Shared, path: &CStr, seq: u32) -> Result {
    let name = BStr::from_bytes(path.as_bytes());
    let t0 = sys::now_ns();
    let mut p = KVec::new();
    p.extend_from_slice(path.as_bytes(), GFP_KERNEL)?;
    let mut err = KBox::new(ErrBuf::new(), GFP_KERNEL)?;
    let mut buf = read_file(sh, path, seq).inspect_err(|e| {
        pr_err!(
            "{}: cannot read model file (errno {})\n",
            name,
            e.to_errno()
        );
    })?;
    let mut repacked = false;
    if params::repack() {
        let writer = TaskRef::current();
        let mut res = Ok(false);
        sys::run_on_fresh_stack(&mut || res = repack(sh, &mut buf, writer, seq, &mut err))?;
        match res {
            Ok(r) => repacked = r,
            Err(e) => {
                pr_err!("{}: {} (errno {})\n", name, err.text(), e);
                return Err(sys::errno(e as i64));
            }
        }
    }
    let lp = LlxLoadParams {
        n_ctx: params::n_ctx(),
        n_batch: params::n_batch(),
        kv_f16: params::kv_f16() as u32,
        max_prompt_bytes: params::max_prompt(),
        parallelism: sh.threads.load(Ordering::Relaxed),
        advise_slots: params::advise_slots().clamp(1, 8),
        repacked: repacked as u32,
        advise_max_ctx: params::advise_max_ctx(),
        exec_ctx: &sh.pool as *const _ as *mut core::ffi::c_void,
    };
    // The swap waits for a running generation (its answer comes from the
    // model it started on) and for the engine turn; a newer load or rmmod
    // that came meanwhile wins.
    let mut g = sh.core.lock();
    loop {
        if g.stopping || sh.load_seq.load(Ordering::Relaxed) != seq {
            return Err(sys::ecanceled());
        }
        if !g.busy && !matches!(g.req, Req::Running { .. }) {
            break;
        }
        if sh.changed.wait_interruptible(&mut g) {
            return Err(EINTR);
        }
    }
    let mut turn = Turn::take(sh, &mut g, |_| Ok(()))?;
    drop(g);
    let mut info = KVec::with_capacity(INFO_MAX, GFP_KERNEL)?;
    info.extend_with(INFO_MAX, 0, GFP_KERNEL)?;
    let mut built: Result<KBox<Loaded>, i32> = Err(EINVAL.to_errno());
    let mut file = Some(buf);
    let mut ilen = 0;
    sys::run_on_fresh_stack(&mut || {
        if let Some(f) = file.take() {
            built = Loaded::new(f, &lp, &mut err);
            if let Ok(l) = built.as_mut() {
                ilen = l.info(&mut info);
            }
        }
    })?;
    let new = built.map_err(|e| {
        pr_err!("{}: {} (errno {})\n", name, err.text(), e);
        sys::errno(e as i64)
    })?;
    let info_len = ilen.min(INFO_MAX - 1);
    let mut kv = KVec::new();
    kv.extend_from_slice(
        kv_line(info.get(..info_len).unwrap_or_default()),
        GFP_KERNEL,
    )?;
    let len = new.file_len();
    let ns = sys::now_ns() - t0;
    // Nothing runs on the old model now (a pending prompt has not started:
    // the new model answers it).
    let old = turn.engine.replace(new);
    {
        let mut g = sh.core.lock();
        // Its advisors went with it.
        g.adv_stats = Default::default();
        g.meta = Some(Meta {
            path: p,
            info,
            info_len,
            file_len: len,
            load_ns: ns,
        });
        turn.end(&mut g);
    }
    drop(old);
    pr_info!(
        "loaded {} ({} bytes, {} ms, {} MB/s, {} threads)\n",
        name,
        len,
        ns / 1_000_000,
        mb_per_s(len as u64, ns),
        sh.threads.load(Ordering::Relaxed)
    );
    pr_info!("{}\n", BStr::from_bytes(&kv));
    stat_end(sh, 0, len as u64, ns);
    Ok(())
}

/// A load from /proc/llamux/load or model=: stops any load in progress,
/// waits for it to go, then loads.
pub(crate) fn load_model_file(sh: &Shared, path: &CStr) -> Result {
    let seq = sh.load_seq.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
    sh.changed.notify_all(); // an older load waiting to swap quits
    {
        let mut g = sh.loading.lock();
        while *g {
            if sh.load_done.wait_interruptible(&mut g) {
                return Err(EINTR);
            }
        }
        *g = true;
    }
    let r = load(sh, path, seq);
    if let Err(e) = r {
        stat_end(sh, e.to_errno(), 0, 0);
    }
    *sh.loading.lock() = false;
    sh.load_done.notify_all();
    r
}
