#!/usr/bin/env bash
# Build (or reuse from cache) the Llamux guest kernel: Debian linux-source-6.12
# on tinyconfig + kvm_guest.config + tests/guest/config/llamux.config
# (+ debug.config with --debug, + mitigations.config with --mitigations),
# CONFIG_RUST=y. LLAMUX_KERNEL_VARIANT=release|debug|mitigations sets the
# default variant (so every guest suite can run on the mitigations kernel).
#
#   build-kernel.sh [--debug|--mitigations] [--force]  build if not cached, print summary
#   build-kernel.sh [--debug] --print-kdir   KDIR for out-of-tree modules
#   build-kernel.sh [--debug] --print-image  bzImage path
#   build-kernel.sh [--debug] --print-vmlinux  PVH-bootable vmlinux path
#   build-kernel.sh [--debug] --print-dir    cache entry directory
# A --print-* call builds first when needed (build output goes to stderr), then
# prints exactly one path on stdout; with --if-cached it exits 3 instead of
# building.
#
# Cache: $LLAMUX_CACHE/kernel/<variant>-<key>/ (default ~/.cache/llamux), key =
# sha256 of (linux-source-6.12 version, config fragments, rustc-web version,
# bindgen version, layout version). Entries are immutable once complete.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/env.sh"

VARIANT="${LLAMUX_KERNEL_VARIANT:-release}" FORCE=0 PRINT="" IF_CACHED=0
JOBS="${LLAMUX_JOBS:-$(nproc)}"
while (($#)); do
  case "$1" in
    --debug) VARIANT=debug ;;
    --mitigations) VARIANT=mitigations ;;
    --force) FORCE=1 ;;
    --print-kdir) PRINT=kdir ;;
    --print-image) PRINT=image ;;
    --print-vmlinux) PRINT=vmlinux ;;
    --print-dir) PRINT=dir ;;
    --if-cached) IF_CACHED=1 ;;
    -j) JOBS="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-kernel: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# Everything but the --print-* answer goes to stderr.
exec 3>&1 1>&2

"$HERE/setup.sh" >/dev/null || "$HERE/setup.sh"

LAYOUT_VERSION=1
FRAGS=("$HERE/config/llamux.config")
case "$VARIANT" in
  release) ;;
  debug) FRAGS+=("$HERE/config/debug.config") ;;
  mitigations) FRAGS+=("$HERE/config/mitigations.config") ;;
  *) echo "build-kernel: unknown variant $VARIANT (release, debug, mitigations)" >&2; exit 2 ;;
esac
KVER_PKG="$(dpkg-query -W -f='${Version}' linux-source-6.12)"
RUSTC_VER="$(dpkg-query -W -f='${Version}' rustc-web) $($LLAMUX_RUSTC --version)"
BINDGEN_VER="$("$LLAMUX_BINDGEN" --version)"
KEY="$({ echo "layout $LAYOUT_VERSION"; echo "linux-source-6.12 $KVER_PKG"; echo "rustc $RUSTC_VER";
         echo "$BINDGEN_VER"; cat "${FRAGS[@]}"; } | sha256sum | cut -c1-16)"
OUT="$LLAMUX_CACHE/kernel/$VARIANT-$KEY"
BUILD="$LLAMUX_CACHE/build/$VARIANT-$KEY"

print_result() {
  case "$PRINT" in
    kdir) echo "$OUT/kdir" >&3 ;;
    image) echo "$OUT/bzImage" >&3 ;;
    vmlinux) echo "$OUT/vmlinux" >&3 ;;
    dir) echo "$OUT" >&3 ;;
    "") cat "$OUT/info.txt"; echo "KDIR=$OUT/kdir"; echo "IMAGE=$OUT/bzImage"; echo "VMLINUX=$OUT/vmlinux" ;;
  esac
}

if ((!FORCE)) && [[ -f "$OUT/complete" ]]; then print_result; exit 0; fi
if ((IF_CACHED)); then echo "build-kernel: no cached $VARIANT kernel $KEY"; exit 3; fi

mkdir -p "$LLAMUX_CACHE/kernel" "$LLAMUX_CACHE/build"
exec 9>"$LLAMUX_CACHE/kernel/.$VARIANT-$KEY.lock"
flock 9   # another build of the same key may be running
if ((!FORCE)) && [[ -f "$OUT/complete" ]]; then print_result; exit 0; fi

T0=$(date +%s)
LOG="$LLAMUX_CACHE/build/$VARIANT-$KEY.log"
echo "build-kernel: building $VARIANT kernel $KVER_PKG key $KEY (log $LOG, -j$JOBS)"
KM=(make -s "${LLAMUX_KMAKE_VARS[@]}")
if ((!FORCE)) && [[ -f "$BUILD/.llamux-configured" ]]; then
  # An interrupted build of the same key: make picks up where it stopped.
  echo "build-kernel: resuming the build in $BUILD"
  cd "$BUILD"
  T1=$(date +%s)
else
# Deleting an old tree is slow on a busy machine: move it aside, delete later.
for d in "$BUILD" "$OUT" "$OUT.tmp"; do
  [[ -e $d ]] && mv "$d" "$LLAMUX_CACHE/build/.trash-$(basename "$d")-$$-$RANDOM"
done
(nice rm -rf "$LLAMUX_CACHE"/build/.trash-* </dev/null >/dev/null 2>&1 &)
mkdir -p "$BUILD"
tar -xaf /usr/src/linux-source-6.12.tar.* -C "$BUILD" --strip-components=1
cd "$BUILD"

{ "${KM[@]}" rustavailable &&
  "${KM[@]}" tinyconfig &&
  scripts/kconfig/merge_config.sh -m .config kernel/configs/kvm_guest.config "${FRAGS[@]}" &&
  "${KM[@]}" olddefconfig; } >"$LOG" 2>&1 || { tail -40 "$LOG"; echo "build-kernel: configuration failed" >&2; exit 1; }

# Every line of our fragments must have stuck (a later fragment's line for
# the same symbol replaces an earlier one, as in merge_config.sh).
declare -A want=()
order=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)= || $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    [[ -v "want[${BASH_REMATCH[1]}]" ]] || order+=("${BASH_REMATCH[1]}")
    want[${BASH_REMATCH[1]}]=$line
  fi
done < <(cat "${FRAGS[@]}")
bad=0
for sym in "${order[@]}"; do
  line=${want[$sym]}
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    if ! grep -qxF -- "$line" .config; then
      echo "build-kernel: wanted $line, got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" .config || echo absent)"; bad=1
    fi
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    if grep -qE "^${BASH_REMATCH[1]}=" .config; then
      echo "build-kernel: wanted $line, got: $(grep -E "^${BASH_REMATCH[1]}=" .config)"; bad=1
    fi
  fi
done
((bad)) && { echo "build-kernel: config fragment did not stick (see above)" >&2; exit 1; }
touch .llamux-configured
T1=$(date +%s)
fi
if ! "${KM[@]}" -j"$JOBS" bzImage modules >>"$LOG" 2>&1; then  # vmlinux comes with bzImage
  grep -E 'error|Error' "$LOG" | head -30; tail -20 "$LOG"
  echo "build-kernel: kernel build failed, log $LOG" >&2; exit 1
fi
T2=$(date +%s)

# Trimmed tree usable as KDIR for `make -C KDIR M=... modules`.
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/kdir"
K="$OUT.tmp/kdir"
rsync -a --prune-empty-dirs \
  --exclude='*.o' --exclude='.*.cmd' --exclude='*.a' \
  --include='/Makefile' --include='/.config' --include='/Module.symvers' \
  --include='/System.map' --include='/vmlinux' \
  --include='/scripts/***' --include='/include/***' --include='/rust/***' \
  --include='/arch/' --include='/arch/x86/' --include='/arch/x86/Makefile*' \
  --include='/arch/x86/include/***' \
  --include='/tools/' --include='/tools/objtool/' --include='/tools/objtool/objtool' \
  --include='/tools/bpf/' --include='/tools/bpf/resolve_btfids/' \
  --include='/tools/bpf/resolve_btfids/resolve_btfids' \
  --exclude='*' ./ "$K/"
cp arch/x86/boot/bzImage "$OUT.tmp/bzImage"
ln "$K/vmlinux" "$OUT.tmp/vmlinux"
cp .config "$OUT.tmp/config"
T3=$(date +%s)
{
  echo "variant: $VARIANT"
  echo "key: $KEY"
  echo "linux-source-6.12: $KVER_PKG ($(make -s kernelversion))"
  echo "rustc: $RUSTC_VER"
  echo "bindgen: $BINDGEN_VER"
  echo "built: $(date -u +%FT%TZ) on $(nproc) cpus, -j$JOBS, loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "time: configure $((T1-T0)) s, make $((T2-T1)) s, trim $((T3-T2)) s, total $((T3-T0)) s (of this run)"
  echo "kdir size: $(du -sh "$K" | cut -f1)"
} > "$OUT.tmp/info.txt"
cp "$LOG" "$OUT.tmp/build.log"
touch "$OUT.tmp/complete"
mv "$OUT.tmp" "$OUT"
cd /
if [[ "${LLAMUX_KEEP_BUILD:-0}" != 1 ]]; then
  mv "$BUILD" "$LLAMUX_CACHE/build/.trash-$VARIANT-$KEY-$$"
  (nice rm -rf "$LLAMUX_CACHE"/build/.trash-* </dev/null >/dev/null 2>&1 &)
fi
echo "build-kernel: done in $((T3-T0)) s"
print_result
