#!/usr/bin/env bash
# Runs the kernel's objtool on the linked module exactly as kbuild did
# (the command saved in kmod/.llamux.o.cmd, so the flags follow KDIR's
# .config: --retpoline --rethunk --sls --ibt --prefix=16 on a kernel with
# mitigations) on a fresh relink of kmod/llamux.mod, without writing
# (--dry-run), and fails on any warning. 6.12 only prints objtool's
# warnings (no OBJTOOL_WERROR), so a module it does not accept still builds.
#   kmod/check-objtool.sh KDIR         after `make -C kmod KDIR=KDIR`
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KDIR="${1:?usage: kmod/check-objtool.sh KDIR}"
CMD="$HERE/.llamux.o.cmd"
[[ -f "$CMD" && -f "$HERE/llamux.mod" ]] || { echo "check-objtool: build the module first (no $CMD)" >&2; exit 1; }
line="$(sed -n 's/^savedcmd_[^ ]* := //p' "$CMD")"
case "$line" in
  *"; ./tools/objtool/objtool "*) ;;
  *) echo "check-objtool: kbuild ran no objtool on the linked module (no CONFIG_OBJTOOL with IBT/LTO in $KDIR): nothing to check"; exit 0 ;;
esac
# The objtool part: "./tools/objtool/objtool ARGS .../llamux.o"; ARGS are
# plain --flags (checked, so nothing else reaches the command line).
read -ra words <<<"${line##*; }"
args=()
for w in "${words[@]:1:${#words[@]}-2}"; do
  [[ $w =~ ^--[a-z_-]+(=[a-z0-9_,]+)?$ ]] || { echo "check-objtool: unexpected objtool argument '$w' in $CMD" >&2; exit 1; }
  args+=("$w")
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$HERE" && ld -m elf_x86_64 -r -o "$tmp/llamux.o" @llamux.mod)
out="$("$KDIR/tools/objtool/objtool" "${args[@]}" --dry-run "$tmp/llamux.o" 2>&1)" || {
  printf '%s\n' "$out"; echo "check-objtool: objtool failed on llamux.o" >&2; exit 1; }
if grep -q . <<<"$out"; then
  printf '%s\n' "$out" | head -40
  echo "check-objtool: objtool warned about llamux.o ($(grep -c . <<<"$out") line(s))" >&2
  exit 1
fi
echo "check-objtool: objtool ${args[*]} accepts llamux.o"
