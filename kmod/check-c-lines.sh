#!/usr/bin/env bash
# Counts the lines of C code in kmod/ outside the engine crates (blank lines
# and comments not counted) and the Rust lines of the module (src/ and the
# shared ABI file, same rule), and fails when the C is over the limit the
# module keeps to: C only where Rust-for-Linux 6.12 leaves no other way.
#   kmod/check-c-lines.sh [LIMIT]      LIMIT default 150
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIMIT="${1:-150}"
# Code lines of C/Rust files: strips // and /* */ comments (not inside
# strings: good enough for this code), then counts non-blank lines.
count() {
  [[ $# -eq 0 ]] && { echo 0; return; }
  cat "$@" | awk '
    {
      line = $0; out = ""
      while (length(line) > 0) {
        if (inc) { i = index(line, "*/"); if (!i) { line = ""; break } line = substr(line, i + 2); inc = 0; continue }
        a = index(line, "/*"); b = index(line, "//")
        if (a && (!b || a < b)) { out = out substr(line, 1, a - 1); line = substr(line, a + 2); inc = 1; continue }
        if (b) { out = out substr(line, 1, b - 1); line = "" ; break }
        out = out line; line = ""
      }
      if (out ~ /[^ \t]/) n++
    }
    END { print n + 0 }'
}
mapfile -t cfiles < <(find "$HERE" -path "$HERE/engine" -prune -o -path "$HERE/kengine" -prune -o \
  \( -name '*.c' -o -name '*.h' \) -type f -not -name '*.mod.c' -print | sort)
mapfile -t rfiles < <(find "$HERE/src" -name '*.rs' -type f | sort; [[ -f $HERE/kengine/src/abi.rs ]] && echo "$HERE/kengine/src/abi.rs"; for f in "$HERE"/*.rs; do [[ -f $f ]] && echo "$f"; done)
c=$(count "${cfiles[@]}")
r=$(count "${rfiles[@]}")
echo "kmod C code lines: $c (${cfiles[*]##*/}), limit $LIMIT"
echo "kmod Rust code lines: $r (src/ and kengine/src/abi.rs)"
if ((c > LIMIT)); then
  echo "check-c-lines: $c lines of C in kmod/, more than $LIMIT" >&2
  exit 1
fi
