// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the engine object's entries (declared once in
//! kmod/kengine/src/abi.rs). Each call runs in its own FPU section.

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::prelude::*;

use crate::abi::*;
use crate::fpu::FpuSection;

/// The engine's entries, as abi.rs declares them (llx_task is the
/// engine's own: only kengine passes it around).
#[allow(dead_code, unreachable_pub)]
mod ffi {
    use crate::abi::*;
    use core::ffi::c_void;
    llx_entries!(llx_declare);
}

// SAFETY: the only pointer, `exec_ctx`, is the module's worker pool, which
// is Sync; the engine only passes it back to llx_parallel_run.
unsafe impl Sync for LlxLoadParams {}
// SAFETY: as above.
unsafe impl Send for LlxLoadParams {}

/// Sampling settings (floats as thousandths).
pub(crate) type Sampling = LlxSampling;

/// The ABI version the object was built with.
pub(crate) fn abi_version() -> u32 {
    let _fpu = FpuSection::enter();
    // SAFETY: no arguments; inside an FPU section.
    unsafe { ffi::llx_abi_version() }
}

/// Applies "key=value ..." words to `s`; on error `s` is unchanged.
pub(crate) fn parse_params(text: &[u8], s: &mut Sampling) -> Result {
    let _fpu = FpuSection::enter();
    // SAFETY: `text` is readable for its length, `s` writable; FPU section.
    let r = unsafe { ffi::llx_parse_params(text.as_ptr(), text.len(), s) };
    if r < 0 {
        return Err(crate::sys::errno(r as i64));
    }
    Ok(())
}

/// A model built over a file buffer it owns (the engine borrows the bytes
/// until it is freed: the handle is dropped before the buffer).
pub(crate) struct Loaded {
    h: NonNull<c_void>,
    _file: VVec<u8>,
}

// SAFETY: the handle is used by one thread at a time (the module's engine
// turn, state.rs) and may move between threads.
unsafe impl Send for Loaded {}

/// A message buffer for engine errors (NUL-terminated by the engine).
pub(crate) struct ErrBuf(pub(crate) [u8; 256]);

impl ErrBuf {
    pub(crate) fn new() -> Self {
        ErrBuf([0; 256])
    }

    /// Replaces the message (truncated to fit, NUL-terminated).
    pub(crate) fn set(&mut self, msg: core::fmt::Arguments<'_>) {
        struct W<'a>(&'a mut [u8], usize);
        impl core::fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                for &c in s.as_bytes() {
                    if self.1 + 1 < self.0.len() {
                        self.0[self.1] = c;
                        self.1 += 1;
                    }
                }
                Ok(())
            }
        }
        self.0 = [0; 256];
        let _ = core::fmt::write(&mut W(&mut self.0, 0), msg);
    }

    /// The message, up to its NUL.
    pub(crate) fn text(&self) -> &kernel::str::BStr {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        kernel::str::BStr::from_bytes(self.0.get(..n).unwrap_or_default())
    }
}

impl Loaded {
    /// Parses and checks the model in `file` and allocates everything a
    /// generation needs. Stack-hungry: run on a fresh stack.
    pub(crate) fn new(
        file: VVec<u8>,
        p: &LlxLoadParams,
        err: &mut ErrBuf,
    ) -> Result<KBox<Loaded>, i32> {
        let mut h: *mut c_void = core::ptr::null_mut();
        let r = {
            let _fpu = FpuSection::enter();
            // SAFETY: `file` stays alive and unchanged inside the Loaded
            // until after llx_free; the other pointers are valid for the
            // call; FPU section.
            unsafe {
                ffi::llx_load(
                    file.as_ptr(),
                    file.len(),
                    p,
                    &mut h,
                    err.0.as_mut_ptr(),
                    err.0.len(),
                )
            }
        };
        if r < 0 {
            return Err(r);
        }
        let Some(h) = NonNull::new(h) else {
            return Err(EINVAL.to_errno());
        };
        // On failure the Loaded is dropped, which frees the handle.
        KBox::new(Loaded { h, _file: file }, GFP_KERNEL).map_err(|_| ENOMEM.to_errno())
    }

    /// Bytes of the model file.
    pub(crate) fn file_len(&self) -> usize {
        self._file.len()
    }

    /// Copies the model description into `buf`: its full length.
    pub(crate) fn info(&mut self, buf: &mut [u8]) -> usize {
        let _fpu = FpuSection::enter();
        // SAFETY: a live handle; `buf` writable for its length.
        let r = unsafe { ffi::llx_info(self.h.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        r.max(0) as usize
    }

    /// Prepares the session for `s` (stack-hungry: on a fresh stack).
    pub(crate) fn prepare(&mut self, s: &Sampling, err: &mut ErrBuf) -> i32 {
        let _fpu = FpuSection::enter();
        // SAFETY: a live handle, valid pointers for the call.
        unsafe { ffi::llx_prepare(self.h.as_ptr(), s, err.0.as_mut_ptr(), err.0.len()) }
    }

    /// Prefills `prompt`: its token count or -errno.
    pub(crate) fn start(&mut self, prompt: &[u8], s: &Sampling, err: &mut ErrBuf) -> i64 {
        let _fpu = FpuSection::enter();
        // SAFETY: as above.
        unsafe {
            ffi::llx_start(
                self.h.as_ptr(),
                prompt.as_ptr(),
                prompt.len(),
                s,
                err.0.as_mut_ptr(),
                err.0.len(),
            )
        }
    }

    /// One token: 1 (its bytes in `out[..*len]`), 0 at the end, or -errno.
    pub(crate) fn step(&mut self, out: &mut [u8], len: &mut usize, token: &mut u32) -> i32 {
        let _fpu = FpuSection::enter();
        // SAFETY: as above.
        unsafe { ffi::llx_step(self.h.as_ptr(), out.as_mut_ptr(), out.len(), len, token) }
    }

    /// Bench tokens `first..first + n` in one forward call (the cache
    /// forgotten first when `reset`): 0 or -errno.
    pub(crate) fn bench_forward(&mut self, first: usize, n: usize, reset: bool) -> i32 {
        let _fpu = FpuSection::enter();
        // SAFETY: a live handle; FPU section.
        unsafe { ffi::llx_bench_forward(self.h.as_ptr(), first, n, u32::from(reset)) }
    }

    /// Scores an advise request record into `resp` (stack-hungry).
    pub(crate) fn advise(&mut self, req: &[u8], resp: &mut [u8]) -> isize {
        let _fpu = FpuSection::enter();
        // SAFETY: as above.
        unsafe {
            ffi::llx_advise(
                self.h.as_ptr(),
                req.as_ptr(),
                req.len(),
                resp.as_mut_ptr(),
                resp.len(),
            )
        }
    }

    /// The advisor's counters.
    pub(crate) fn advise_stats(&mut self) -> LlxAdviseStats {
        let mut st = LlxAdviseStats::default();
        let _fpu = FpuSection::enter();
        // SAFETY: as above.
        unsafe { ffi::llx_advise_stats(self.h.as_ptr(), &mut st) };
        st
    }
}

fn drop_handle(h: NonNull<c_void>) {
    let _fpu = FpuSection::enter();
    // SAFETY: a handle of llx_load, freed once.
    unsafe { ffi::llx_free(h.as_ptr()) };
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // The file buffer (a later field) is freed after this.
        drop_handle(self.h);
    }
}

/// An in-place repack of a file buffer into the x8 layouts.
pub(crate) struct Repack(NonNull<c_void>);

// SAFETY: used by one thread at a time.
unsafe impl Send for Repack {}

impl Repack {
    /// Plans the repack of `file`; None when there is nothing to do.
    pub(crate) fn begin(file: &[u8], err: &mut ErrBuf) -> Result<Option<Repack>, i32> {
        let mut r: *mut c_void = core::ptr::null_mut();
        let _fpu = FpuSection::enter();
        // SAFETY: `file` readable for the call; out-pointers valid.
        let e = unsafe {
            ffi::llx_repack_begin(
                file.as_ptr(),
                file.len(),
                &mut r,
                err.0.as_mut_ptr(),
                err.0.len(),
            )
        };
        if e < 0 {
            return Err(e);
        }
        Ok(NonNull::new(r).map(Repack))
    }

    /// Repacks about `budget` more bytes of `file` (the buffer `begin`
    /// planned): 1 when done, 0 when more remains, -errno. Also the bytes
    /// done and in all.
    pub(crate) fn step(&mut self, file: &mut [u8], budget: usize) -> (i32, [u64; 2]) {
        let mut prog = [0u64; 2];
        let _fpu = FpuSection::enter();
        // SAFETY: a live handle; `file` is writable and not read by anyone
        // else during the call; `prog` holds two u64.
        let r = unsafe {
            ffi::llx_repack_step(
                self.0.as_ptr(),
                file.as_mut_ptr(),
                file.len(),
                budget,
                prog.as_mut_ptr(),
            )
        };
        (r, prog)
    }
}

impl Drop for Repack {
    fn drop(&mut self) {
        let _fpu = FpuSection::enter();
        // SAFETY: a handle of llx_repack_begin, freed once.
        unsafe { ffi::llx_repack_free(self.0.as_ptr()) };
    }
}

/// One job of `llx_parallel_run`: the engine's task function and data.
#[derive(Clone, Copy)]
pub(crate) struct Job {
    f: Option<LlxTaskFn>,
    data: *const c_void,
    pub(crate) n: usize,
}

// SAFETY: the data is the engine's, shared read-only by its tasks (which
// the engine made Sync) while llx_parallel_run waits for them.
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

impl Job {
    pub(crate) fn new(f: LlxTaskFn, data: *const c_void, n: usize) -> Job {
        Job {
            f: Some(f),
            data,
            n,
        }
    }

    /// The job as plain words, for publishing it in atomics.
    pub(crate) fn to_raw(self) -> (usize, *mut c_void, usize) {
        (
            self.f.map_or(0, |f| f as usize),
            self.data.cast_mut(),
            self.n,
        )
    }

    /// The job `to_raw` gave.
    ///
    /// # Safety
    /// `f` is 0 or the first word of `to_raw` of a job.
    pub(crate) unsafe fn from_raw(f: usize, data: *mut c_void, n: usize) -> Job {
        let f = if f == 0 {
            None
        } else {
            // SAFETY: per the contract, `f` is an LlxTaskFn's address.
            Some(unsafe { core::mem::transmute::<usize, LlxTaskFn>(f) })
        };
        Job {
            f,
            data: data.cast_const(),
            n,
        }
    }

    /// Runs task `i`.
    ///
    /// # Safety
    /// Only inside an FPU section, while the llx_parallel_run call that
    /// handed out this job has not returned, and with `i < n`.
    pub(crate) unsafe fn run(&self, i: usize) {
        if let Some(f) = self.f {
            // SAFETY: per the contract, `data` is alive, an FPU section is
            // open; `f` is llx_task.
            unsafe { f(self.data, i) };
        }
    }
}
