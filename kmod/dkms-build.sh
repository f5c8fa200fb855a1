#!/usr/bin/env bash
# Builds llamux.ko for one kernel, for DKMS (dkms.conf's MAKE) or by hand:
#   kmod/dkms-build.sh KDIR [KERNELRELEASE]   -> kmod/llamux.ko
#   kmod/dkms-build.sh --check KDIR           only the checks below
#   kmod/dkms-build.sh --clean
# KDIR: the kernel's build tree (/lib/modules/RELEASE/build). Before any
# compiling it checks, with one clear message each, that this kernel can host
# the module: Rust support (CONFIG_RUST), modules, x86_64, the Rust metadata
# of its `kernel` crate, the same rustc that built it (out-of-tree Rust must
# match it exactly), and rust-src (the engine object builds core with
# -Zbuild-std). The toolchain is /usr/bin/rustc and /usr/bin/cargo (Debian's
# rustc-web and cargo-web: kmod/Makefile and build-engine.sh use those).
# Env: BINDGEN (default: bindgen on PATH or ~/.cache/llamux/bin/bindgen).
# Uses only `make -C kmod KDIR=...`, so the module's file list is kmod/'s.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "llamux-dkms: $*" >&2
  echo "llamux-dkms: see docs/install.md (/usr/share/doc/llamux/install.md)" >&2
  exit 1
}

if [[ "${1:-}" == --clean ]]; then
  make -C "$HERE" clean
  rm -rf "$HERE/kengine/target"
  exit 0
fi
CHECK_ONLY=0
if [[ "${1:-}" == --check ]]; then CHECK_ONLY=1; shift; fi
(($#)) || { echo "usage: kmod/dkms-build.sh [--check] KDIR [KERNELRELEASE]" >&2; exit 2; }
KDIR="$1"
KREL="${2:-$(basename "$(dirname "$KDIR")")}"

[[ -d "$KDIR" ]] || die "no kernel build tree at $KDIR (install the headers of kernel $KREL)"
CONFIG="$KDIR/.config"
[[ -f "$CONFIG" ]] || die "$KDIR has no .config: not a configured kernel build tree"
kconf() { grep -q "^CONFIG_$1=y" "$CONFIG"; }
kconf X86_64 || die "kernel $KREL is not x86_64: the engine object is x86_64 code"
kconf MODULES || die "kernel $KREL was built without module support (CONFIG_MODULES)"
kconf RUST || die "kernel $KREL was built without Rust support (CONFIG_RUST is not set):" \
  "llamux.ko is a Rust-for-Linux module and cannot be built for it; boot a kernel built with CONFIG_RUST=y"
[[ -f "$KDIR/rust/libkernel.rmeta" ]] ||
  die "$KDIR/rust/libkernel.rmeta is missing: these headers lack the Rust metadata out-of-tree Rust modules are built against"
[[ -f "$KDIR/Module.symvers" ]] || die "$KDIR/Module.symvers is missing: the kernel's build tree is incomplete"

RUSTC=/usr/bin/rustc
[[ -x "$RUSTC" ]] || die "no rustc at $RUSTC: install Debian's rustc-web"
# CONFIG_RUSTC_VERSION (scripts/rustc-version.sh: MAJOR*100000 + MINOR*100 +
# PATCH) names the rustc that built the kernel; its crates' metadata only
# loads in that same rustc.
want="$(sed -n 's/^CONFIG_RUSTC_VERSION=//p' "$CONFIG")"
have_txt="$("$RUSTC" --version 2>/dev/null | awk '{print $2}')"
if [[ $have_txt =~ ^([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
  have=$((BASH_REMATCH[1] * 100000 + BASH_REMATCH[2] * 100 + BASH_REMATCH[3]))
else
  die "cannot read the version of $RUSTC"
fi
if [[ -n "$want" && "$want" != "$have" ]]; then
  die "kernel $KREL was built with rustc $((want / 100000)).$((want / 100 % 1000)).$((want % 100)), $RUSTC is $have_txt:" \
    "an out-of-tree Rust module needs the same rustc as its kernel (install that rustc-web version)"
fi
SYSROOT="$("$RUSTC" --print sysroot)"
[[ -d "$SYSROOT/lib/rustlib/src/rust/library/core" ]] ||
  die "no Rust library source under $SYSROOT/lib/rustlib/src (install rust-web-src): the engine object builds core itself"
[[ -x /usr/bin/cargo ]] || die "no /usr/bin/cargo (install cargo-web, the cargo of rustc-web)"
if kconf OBJTOOL && [[ ! -x "$KDIR/tools/objtool/objtool" ]]; then
  die "$KDIR/tools/objtool/objtool is missing: the kernel's build tree is incomplete"
fi
((CHECK_ONLY)) && { echo "llamux-dkms: kernel $KREL can host llamux.ko (rustc $have_txt)"; exit 0; }

if [[ -z "${BINDGEN:-}" ]]; then
  BINDGEN="$(command -v bindgen || true)"
  [[ -z "$BINDGEN" && -x "${HOME:-/root}/.cache/llamux/bin/bindgen" ]] && BINDGEN="$HOME/.cache/llamux/bin/bindgen"
fi
# A packaged source tree carries its crates (vendor/): no network needed.
# -Zbuild-std also resolves the standard library's own crates: rust-web-src
# carries them in library/vendor. One directory source holds both sets.
if [[ -f "$HERE/../.cargo-home/config.toml" ]]; then
  SRC="$(cd "$HERE/.." && pwd)"
  rm -rf "$SRC/.vendor-all"
  mkdir "$SRC/.vendor-all"
  for d in "$SRC"/vendor/* "$SYSROOT"/lib/rustlib/src/rust/library/vendor/*; do
    [[ -d $d && ! -e "$SRC/.vendor-all/$(basename "$d")" ]] && ln -s "$d" "$SRC/.vendor-all/"
  done
  export CARGO_HOME="$SRC/.cargo-home"
fi
echo "llamux-dkms: building llamux.ko for $KREL against $KDIR (rustc $have_txt)"
make -C "$HERE" KDIR="$KDIR" ${BINDGEN:+BINDGEN="$BINDGEN"}
