# The common start of every guest suite driver (tests/guest/test-*.sh),
# sourced, not executed: sets HERE, ROOT and the harness settings (env.sh),
# `kargs` (--debug when the suite's options have it), and gives the host-side
# builds a suite may need. Each returns non-zero on failure, so a driver
# without `set -e` can report it.
#   . "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "$@"
#   suite_module      KDIR of the guest kernel (built once if absent), then
#                     kmod/llamux.ko against it
#   suite_llamux      static `llamux` (glibc, +crt-static) -> BIN
#   suite_models      tiny-q4_k_m.gguf and tiny-mixed.gguf -> MODELS
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
SUITE="$(basename "$0" .sh)"
kargs=()
for a in "$@"; do [[ $a == --debug ]] && kargs=(--debug); done

suite_kdir() {
  KDIR="$("$HERE/build-kernel.sh" "${kargs[@]}" --print-kdir)" || return 1
  echo "$SUITE: KDIR=$KDIR"
}

suite_module() {
  suite_kdir || return 1
  local t0=$SECONDS
  make -C "$ROOT/kmod" KDIR="$KDIR" || return 1
  echo "$SUITE: module built in $((SECONDS - t0)) s"
}

# Static user-space tool (glibc, +crt-static; build scripts stay dynamic).
suite_llamux() {
  (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
    --target x86_64-unknown-linux-gnu) || return 1
  BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/llamux"
}

# The generated test models; LLAMUX_TEST_MODELS names another folder. From
# an unpacked package without tests/models/make.sh: generated into the cache.
suite_models() {
  MODELS="${LLAMUX_TEST_MODELS:-$ROOT/tests/models}"
  [[ -f "$MODELS/tiny-q4_k_m.gguf" && -f "$MODELS/tiny-mixed.gguf" ]] && return 0
  if [[ -x "$ROOT/tests/models/make.sh" ]]; then
    "$ROOT/tests/models/make.sh"
  else
    MODELS="$LLAMUX_CACHE/models"
    mkdir -p "$MODELS" &&
      "$LLAMUX_CACHE/venv/bin/python" "$ROOT/tests/models/make.py" --out "$MODELS" \
        --vocab "$LLAMUX_CACHE/llama-cpp-python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"
  fi
}

# tests/run.sh counts a suite's last `guest:` line. A driver that boots
# several guests pipes each one's output through suite_tally and ends with
# suite_total, which prints their sum.
# (suite_tally runs in a pipeline's subshell: the file is named here.)
SUITE_TALLY="${TMPDIR:-/tmp}/llamux-suite-tally.$$"
rm -f "$SUITE_TALLY"
suite_tally() {
  tee -a "$SUITE_TALLY"
}
suite_total() {
  touch "$SUITE_TALLY"
  grep -aE '^guest: [0-9]+ passed, [0-9]+ failed' "$SUITE_TALLY" |
    awk '{p += $2; f += $4} END {printf "guest: %d passed, %d failed\n", p, f}'
  rm -f "$SUITE_TALLY"
}
