#!/usr/bin/env bash
# Idempotent install of everything the Llamux guest harness needs on a
# Debian bookworm machine (root). Fast no-op when everything is present.
#   tests/guest/setup.sh            install missing pieces
#   tests/guest/setup.sh --check    only report, exit 1 if something is missing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"

CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

PKGS=(
  rustc-web rust-web-src cargo-web
  # clippy for kengine, the eBPF crates and the module (tests/lint.sh).
  rust-web-clippy
  linux-source-6.12
  build-essential bc flex bison libelf-dev libssl-dev dwarves cpio kmod
  clang libclang-dev
  qemu-system-x86 busybox-static zstd xz-utils python3 rsync
  # The Debian package and its DKMS module (tests/package, test-dkms.sh):
  # dkms, dpkg-shlibdeps, systemd-analyze, man.
  dkms dpkg-dev systemd man-db
)

missing=()
installed=" $({ dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' "${PKGS[@]}" 2>/dev/null || true; } |
  sed -n 's/^ii *|//p' | tr '\n' ' ') "
for p in "${PKGS[@]}"; do
  [[ "$installed" == *" $p "* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if ((CHECK_ONLY)); then echo "setup: missing packages: ${missing[*]}"; exit 1; fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine's lists may be absent or an old snapshot (seen: one
  # without linux-source-6.12 and with rustc-web 1.85), so refresh them
  # before any install.
  apt-get -o DPkg::Lock::Timeout=900 update
  apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}"
fi

# bindgen-cli 0.69.5 (Debian's 0.60 is too old for 6.12).
if [[ ! -x "$LLAMUX_BINDGEN" ]] || ! "$LLAMUX_BINDGEN" --version 2>/dev/null | grep -q "$LLAMUX_BINDGEN_VERSION"; then
  if ((CHECK_ONLY)); then echo "setup: bindgen $LLAMUX_BINDGEN_VERSION missing at $LLAMUX_BINDGEN"; exit 1; fi
  echo "setup: cargo install bindgen-cli $LLAMUX_BINDGEN_VERSION into $LLAMUX_CACHE"
  mkdir -p "$LLAMUX_CACHE"
  # Debian's cargo matches rustc-web; pin rustc too so rustup is not consulted.
  RUSTC=/usr/bin/rustc /usr/bin/cargo install bindgen-cli --version "$LLAMUX_BINDGEN_VERSION" \
    --locked --root "$LLAMUX_CACHE"
fi

# Sanity: the kernel's Rust needs core's source from rust-web-src.
test -d /usr/lib/rustlib/src/rust/library/core || { echo "setup: rust-web-src library source missing" >&2; exit 1; }
ls /usr/src/linux-source-6.12.tar.* >/dev/null 2>&1 || { echo "setup: /usr/src/linux-source-6.12.tar.* missing" >&2; exit 1; }
echo "setup: ok (rustc $(/usr/bin/rustc --version | awk '{print $2}'), $("$LLAMUX_BINDGEN" --version))"
