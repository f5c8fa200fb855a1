#!/usr/bin/env bash
# Fails if a binary or object defines an out-of-line copy of a SIMD
# intrinsic (`core::core_arch::x86::avx2::_mm256_*` and the like). Each
# such copy is a call, with its vectors passed through memory, where a
# kernel meant one instruction: it happens when the intrinsic sits in code
# compiled without the intrinsic's features, such as a closure inside an
# `#[inline(always)]` function (it made the AVX-512 Q6_K kernel 15x slower
# with rustc 1.95 on 2026-12-06). Feature probes (xgetbv, cpuid) are fine.
#   tests/check-inlined.sh FILE...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: tests/check-inlined.sh FILE..." >&2; exit 2; }
rc=0
for f in "$@"; do
    out=$(nm -C --defined-only "$f" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' |
        grep -E '^core::core_arch::x86(_64)?::' | grep -vE '::(xsave|cpuid|rdtsc)::' | sort -u || true)
    if [ -n "$out" ]; then
        echo "check-inlined: $f has out-of-line SIMD intrinsics:" >&2
        echo "$out" | sed 's/^/  /' >&2
        rc=1
    else
        echo "check-inlined: $f: every SIMD intrinsic inlined"
    fi
done
exit $rc
