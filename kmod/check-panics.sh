#!/usr/bin/env bash
# Lists the panic paths left in the module's hard-float engine object: call
# sites (calls and tail jumps, from `objdump -dr` relocations) of core/alloc
# panic entry points (panicking::*, slice index *_fail, unwrap/expect
# failures, capacity overflow...), per calling function. Fails when the
# total grows above kmod/panic-baseline.txt.
#   kmod/check-panics.sh [OBJ]         OBJ default: build one with build-engine.sh
#   kmod/check-panics.sh --update [OBJ] rewrite the baseline
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="$HERE/panic-baseline.txt"
update=0
[[ "${1:-}" == "--update" ]] && { update=1; shift; }
OBJ="${1:-}"
if [[ -z "$OBJ" ]]; then
  OBJ="$(mktemp --suffix=.o)"
  trap 'rm -f "$OBJ"' EXIT
  bash "$HERE/build-engine.sh" "$OBJ" >&2
fi

# "COUNT CALLER -> TARGET" lines, hashes stripped so the list is stable.
sites="$(objdump -dr -C --no-show-raw-insn "$OBJ" | awk '
  function last_ident(t,   i, j, n) {
    for (i = 2; i <= length(t); i++) {
      if (substr(t, i, 1) !~ /[0-9]/ || substr(t, i - 1, 1) ~ /[0-9]/) continue
      for (j = i; substr(t, j, 1) ~ /[0-9]/; j++) ;
      n = substr(t, i, j - i) + 0
      if (n > 0 && j + n - 1 == length(t)) return substr(t, j)
    }
    return t
  }
  /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<") + 1); sub(/>:$/, "", fn); next }
  /R_X86_64_(PLT32|PC32)/ {
    t = $NF; sub(/[-+]0x[0-9a-f]+$/, "", t); sub(/^\.text(\.unlikely)?\./, "", t)
    # v0-mangled section symbols: keep the last identifier (its length first)
    if (t ~ /^_R/) t = last_ident(t)
    if (t ~ /panic|_fail|unwrap_failed|expect_failed|capacity_overflow|handle_alloc_error|handle_error|begin_unwind/ \
        && fn !~ /^core::panicking|^core::slice::index::slice_|^core::result::unwrap_failed|^core::option::(un)?wrap_failed|^core::option::expect_failed|^alloc::raw_vec::(handle_error|capacity_overflow)|^alloc::alloc::handle_alloc_error|rust_begin_unwind|__rdl_alloc_error_handler/)
      print fn " -> " t
  }' | sed -E 's/::h[0-9a-f]{16}//g' | sort | uniq -c | sort -rn)"
total="$(awk '{s += $1} END {print s + 0}' <<<"$sites")"

if ((update)); then
  { echo "# kmod/check-panics.sh: panic call sites in engine_hf.o (total first)"
    echo "total $total"
    echo "$sites"; } > "$BASE"
  echo "check-panics: baseline written: $total call sites"
  exit 0
fi
echo "$sites"
base="$(awk '$1 == "total" {print $2}' "$BASE")"
echo "check-panics: $total panic call sites (baseline $base)"
if ((total > base)); then
  echo "check-panics: more panic paths than the baseline; new or grown:" >&2
  diff <(grep -v '^#\|^total' "$BASE" | sort) <(sort <<<"$sites") | grep '^>' >&2 || true
  exit 1
fi
