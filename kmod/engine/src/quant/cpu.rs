//! Which kernels run: CPU features detected once (no std: cpuid + xgetbv),
//! cached in an atomic, with an override to force the scalar reference.

use core::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level the quant kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The scalar reference kernels (bit-exact with ggml's scalar code).
    Scalar,
    /// AVX2 + FMA + F16C (x86_64), ggml's AVX2 kernel shapes.
    Avx2,
}

const UNKNOWN: u8 = 0;
const SCALAR: u8 = 1;
const AVX2: u8 = 2;

/// What the CPU supports (detected lazily).
static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Cleared by `set_simd(false)`.
static ALLOW_SIMD: AtomicU8 = AtomicU8::new(1);

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // Leaf 7 is read only when leaf 0 says it exists.
    let (l1, max_leaf) = (__cpuid(1), __cpuid(0).eax);
    let (fma, osxsave, avx, f16c) = (
        l1.ecx >> 12 & 1 == 1,
        l1.ecx >> 27 & 1 == 1,
        l1.ecx >> 28 & 1 == 1,
        l1.ecx >> 29 & 1 == 1,
    );
    if max_leaf < 7 || !(fma && osxsave && avx && f16c) {
        return SCALAR;
    }
    let avx2 = __cpuid_count(7, 0).ebx >> 5 & 1 == 1;
    // SAFETY: OSXSAVE is set, so xgetbv is available and XCR0 readable.
    let xcr0 = unsafe { xcr0() };
    // The OS must save XMM and YMM state (bits 1 and 2) or ymm use faults.
    if avx2 && xcr0 & 0b110 == 0b110 {
        AVX2
    } else {
        SCALAR
    }
}

/// # Safety
/// CPUID.1:ECX.OSXSAVE must be set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller checked OSXSAVE, which is what xgetbv needs.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    SCALAR
}

fn detected() -> u8 {
    match DETECTED.load(Ordering::Relaxed) {
        UNKNOWN => {
            let d = detect();
            DETECTED.store(d, Ordering::Relaxed);
            d
        }
        d => d,
    }
}

/// Whether this CPU (and OS) can run `isa`'s kernels.
pub fn isa_available(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => detected() == AVX2,
    }
}

/// The kernels in use: the best available unless `set_simd(false)`.
#[inline]
pub fn isa() -> Isa {
    if ALLOW_SIMD.load(Ordering::Relaxed) != 0 && detected() == AVX2 {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

/// `false` forces the scalar reference kernels everywhere (process-wide);
/// `true` returns to the best available.
pub fn set_simd(on: bool) {
    ALLOW_SIMD.store(on as u8, Ordering::Relaxed);
}

/// `isa` if available, else the scalar path: what makes dispatch sound.
#[inline]
pub(super) fn usable(isa: Isa) -> Isa {
    if isa_available(isa) {
        isa
    } else {
        Isa::Scalar
    }
}
