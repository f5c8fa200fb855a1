#!/usr/bin/env bash
# README's test command: installs what it needs (apt, pip, cargo), builds
# everything, runs every test, and ends with one line `tests: N passed, N failed`.
#
#   tests/run.sh            everything (user-space engine tests, then guest tests)
#   tests/run.sh --no-guest skip the kernel build and the guest tests
#   tests/run.sh --debug    the guest tests on the debug kernel (lockdep,
#                           atomic-sleep, lockup detectors, kmemleak, KFENCE)
#   tests/run.sh --mitigations  the guest tests on a kernel with a distribution's
#                           mitigations (return thunks, retpolines, IBT, SLS:
#                           tests/guest/config/mitigations.config; one more
#                           kernel build the first time)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
guest=1 debug=0 variant=""
case "${1:-}" in
    --no-guest) guest=0 ;;
    --debug) debug=1 ;;
    --mitigations) variant=mitigations; export LLAMUX_KERNEL_VARIANT=mitigations ;;
    "") ;;
    *) echo "usage: tests/run.sh [--no-guest | --debug | --mitigations]" >&2; exit 2 ;;
esac

passed=0
failed=0
failures=()
log_dir=${LLAMUX_LOG_DIR:-$root/target/test-logs}
mkdir -p "$log_dir"

note() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
ok() { passed=$((passed + 1)); echo "PASS $1"; }
bad() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; }

# A setup step: its failure stops the run (later steps need it).
setup() {
    local name=$1; shift
    note "$name"
    if ! "$@"; then
        bad "$name"
        finish
    fi
}

# Runs a suite and adds its counts to the totals: cargo's "N passed; N
# failed" lines (summed), or a guest run's last "guest: N passed, N failed".
suite() {
    local kind=$1 name=$2; shift 2
    note "$name"
    local out="$log_dir/$name.log"
    "$@" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local p f
    if [ "$kind" = cargo ]; then
        p=$(grep -aEo '[0-9]+ passed' "$out" | awk '{s+=$1} END {print s+0}')
        f=$(grep -aEo '[0-9]+ failed' "$out" | awk '{s+=$1} END {print s+0}')
    else
        read -r p f < <(grep -aE '^(guest|package|lint): [0-9]+ passed, [0-9]+ failed' "$out" | tail -n1 | awk '{print $2+0, $4+0}')
        p=${p:-0} f=${f:-0}
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        failures+=("$name")
    elif [ "$rc" -ne 0 ]; then
        bad "$name (exit $rc)"
    fi
    return 0
}

finish() {
    echo
    [ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
    echo "tests: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}

setup "install packages (apt, bindgen)" tests/guest/setup.sh
# rustfmt and clippy over every crate (tests/lint.sh): each failing check
# counts as a failure, named in its FAIL line.
lint_args=()
[ "$guest" = 0 ] && lint_args=(--no-module)
suite steps "lint" tests/lint.sh "${lint_args[@]}"
PY=$(tests/fixtures/setup-python.sh) || { bad "python venv"; finish; }
LLAMUX_LLAMA_SRC=$(tests/fixtures/get-llama-src.sh) || { bad "llama.cpp sources (tokenizer vectors)"; finish; }
export LLAMUX_LLAMA_SRC
setup "make test models" tests/models/make.sh
# The committed reference logits were made from exactly these bytes.
setup "test models equal SHA256SUMS (generation is deterministic)" \
    sh -c 'cd tests/models && sha256sum -c SHA256SUMS'
note "gguf-py listings of the test models"
for m in tests/models/*.gguf; do
    "$PY" tests/fixtures/gguf-listing.py "$m" || bad "listing $m"
done

suite cargo "engine-and-loader" cargo test --workspace --release --no-fail-fast

# The user-space engine's kernels as one instruction per intrinsic (the
# module's engine object is checked as build-engine.sh makes it).
note "SIMD intrinsics inlined in llamux"
if cargo build --release -q -p llamux && tests/check-inlined.sh target/release/llamux; then
    ok "check-inlined"
else
    bad "check-inlined"
fi

# Builds the module's engine object and fails if it has more panic call
# sites than kmod/panic-baseline.txt records.
note "panic paths in the module's engine object"
if kmod/check-panics.sh >"$log_dir/check-panics.log" 2>&1; then
    tail -n1 "$log_dir/check-panics.log"
    ok "check-panics"
else
    tail -n20 "$log_dir/check-panics.log"
    bad "check-panics"
fi

# The module is Rust; C only where Rust-for-Linux 6.12 leaves no other way.
note "C code lines in kmod/ (at most 150)"
if kmod/check-c-lines.sh; then ok "check-c-lines"; else bad "check-c-lines"; fi

# The Debian package: built, its contents checked, its unit verified.
suite steps "package" tests/package/test-package.sh

if [ "$guest" = 1 ]; then
    for t in tests/guest/test-*.sh; do
        name=$(basename "$t" .sh) args=()
        if [ "$debug" = 1 ]; then
            # test-advisor.sh takes suite names before `--`.
            [ "$name" = test-advisor ] && args=(--)
            args+=(--debug)
            name+=-debug
        fi
        [ -n "$variant" ] && name+=-$variant
        suite guest "$name" "$t" "${args[@]}"
    done
fi
finish
