//! Which kernels run: CPU features detected once (no std: cpuid + xgetbv),
//! cached in an atomic, with an override to force the scalar reference.

use core::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level the quant kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The scalar reference kernels (bit-exact with ggml's scalar code).
    Scalar,
    /// AVX2 + FMA + F16C (x86_64), ggml's AVX2 kernel shapes, and 256-bit
    /// kernels for repacked Q4_K and Q6_K matrices (`avx2_x8`).
    Avx2,
    /// The same AVX2 kernels compiled with AVX-512 F/BW/VL enabled (and
    /// GFNI for the one-token Q4_K kernel's nibbles): the same integer
    /// results and float operations (same bits), but 32 vector registers,
    /// so the multi-token prefill kernels keep their accumulators out of
    /// memory. Also the level of the 512-bit kernels for repacked Q4_K and
    /// Q6_K matrices (`q4_k_x8`, `q6_k_x8`; they need VBMI and VNNI too).
    Avx512,
}

impl Isa {
    /// Whether the AVX2 kernels (or their AVX-512 build) run at this level.
    pub fn has_avx2(self) -> bool {
        self != Isa::Scalar
    }

    /// The name `llamux --isa` and `bench --json` use.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn level(self) -> u8 {
        match self {
            Isa::Scalar => SCALAR,
            Isa::Avx2 => AVX2,
            Isa::Avx512 => AVX512,
        }
    }
}

const UNKNOWN: u8 = 0;
const SCALAR: u8 = 1;
const AVX2: u8 = 2;
const AVX512: u8 = 3;

/// What the CPU supports (detected lazily).
static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);
/// The highest level `isa()` may return (`set_max_isa`).
static MAX_LEVEL: AtomicU8 = AtomicU8::new(AVX512);

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
    let l7 = __cpuid_count(7, 0);
    let avx2 = l7.ebx >> 5 & 1 == 1;
    // AVX-512 F (EBX bit 16), BW (30), VL (31), VBMI (ECX bit 1), GFNI
    // (ECX bit 8) and VNNI (ECX bit 11).
    let avx512 = [16, 30, 31].iter().all(|b| l7.ebx >> b & 1 == 1)
        && [1, 8, 11].iter().all(|b| l7.ecx >> b & 1 == 1);
    // SAFETY: OSXSAVE is set, so xgetbv is available and XCR0 readable.
    let xcr0 = unsafe { xcr0() };
    // The OS must save XMM and YMM state (bits 1 and 2) or ymm use faults;
    // for AVX-512 also opmask, ZMM0-15 upper halves and ZMM16-31 (5-7).
    if !avx2 || xcr0 & 0b110 != 0b110 {
        SCALAR
    } else if avx512 && xcr0 & 0b1110_0110 == 0b1110_0110 {
        AVX512
    } else {
        AVX2
    }
}

/// Whether the CPU is Intel's ("GenuineIntel"), detected once: its cores
/// issue 512-bit integer operations on two ports where 256-bit ones have
/// three, and they want more software prefetch than AMD's Zen 4, into L1
/// (measured choices: `fastest_isa`, `avx2_x8::Prefetch::plan`).
pub fn intel() -> bool {
    match INTEL.load(Ordering::Relaxed) {
        UNKNOWN => {
            let i = detect_intel();
            INTEL.store(if i { 2 } else { 1 }, Ordering::Relaxed);
            i
        }
        v => v == 2,
    }
}

/// `intel()`: 0 not yet detected, 1 no, 2 yes.
static INTEL: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(target_arch = "x86_64")]
fn detect_intel() -> bool {
    let l0 = core::arch::x86_64::__cpuid(0);
    // The vendor string is EBX, EDX, ECX.
    (l0.ebx, l0.edx, l0.ecx)
        == (
            u32::from_le_bytes(*b"Genu"),
            u32::from_le_bytes(*b"ineI"),
            u32::from_le_bytes(*b"ntel"),
        )
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_intel() -> bool {
    false
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
        isa => detected() >= isa.level(),
    }
}

/// The kernels in use: the best available, capped by `set_max_isa`.
#[inline]
pub fn isa() -> Isa {
    match detected().min(MAX_LEVEL.load(Ordering::Relaxed)) {
        AVX512 => Isa::Avx512,
        AVX2 => Isa::Avx2,
        _ => Isa::Scalar,
    }
}

/// Caps the kernels `isa()` picks (process-wide): `Isa::Scalar` forces the
/// scalar reference everywhere.
pub fn set_max_isa(max: Isa) {
    MAX_LEVEL.store(max.level(), Ordering::Relaxed);
}

/// `false` forces the scalar reference kernels everywhere (process-wide);
/// `true` returns to the best available.
pub fn set_simd(on: bool) {
    set_max_isa(if on { Isa::Avx512 } else { Isa::Scalar });
}

/// The highest level up to `isa` that this CPU has: what makes dispatch
/// sound.
#[inline]
pub(super) fn usable(isa: Isa) -> Isa {
    match isa {
        Isa::Avx512 if !isa_available(Isa::Avx512) => usable(Isa::Avx2),
        Isa::Avx2 if !isa_available(Isa::Avx2) => Isa::Scalar,
        isa => isa,
    }
}
