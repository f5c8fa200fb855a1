// SPDX-License-Identifier: GPL-2.0

//! FPU sections around engine calls.
//!
//! The engine is a hard-float object: every call into it runs between
//! kernel_fpu_begin_mask(KFPU_MXCSR) and kernel_fpu_end(), in process
//! context, with preemption off, so nothing may sleep inside. Its allocator
//! and parallel-run callbacks arrive inside such a section and leave it
//! while they may sleep (`outside`). That is sound because the SysV ABI
//! makes every xmm/ymm register caller-saved across these extern "C" calls
//! (the engine holds no vector state in registers over them) and
//! KFPU_MXCSR reloads the default MXCSR the engine assumes.

use core::marker::PhantomData;

use crate::sys;

/// An open FPU section; closed on drop. Not `Send`: the section belongs to
/// the CPU and task that opened it.
pub(crate) struct FpuSection {
    _not_send: PhantomData<*mut ()>,
}

impl FpuSection {
    /// Opens a section. The caller runs only engine code inside.
    pub(crate) fn enter() -> Self {
        sys::fpu_begin();
        FpuSection {
            _not_send: PhantomData,
        }
    }
}

impl Drop for FpuSection {
    fn drop(&mut self) {
        sys::fpu_end();
    }
}

/// Runs `f` outside the caller's FPU section and reopens it afterwards:
/// for engine callbacks that may sleep.
///
/// # Safety
/// Called only from an engine callback, i.e. inside an `FpuSection` that
/// engine code is running in.
pub(crate) unsafe fn outside<R>(f: impl FnOnce() -> R) -> R {
    sys::fpu_end();
    let r = f();
    sys::fpu_begin();
    r
}
