#!/usr/bin/env bash
# DKMS: builds the Debian package, runs `dkms add/build/install` on its
# /usr/src/llamux-VERSION source in a temporary DKMS tree against the guest
# kernel's build tree, checks the refusal of a kernel without CONFIG_RUST,
# then loads the DKMS-built llamux.ko in a guest that answers prompts
# (tests/guest/tests/dkms-module.sh: greedy ids equal `llamux run`).
#   tests/guest/test-dkms.sh [run-guest.sh options, e.g. --debug]
# LLAMUX_KERNEL_VARIANT=mitigations selects that kernel, as for every suite.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/env.sh"
kargs=()
for a in "$@"; do [[ $a == --debug ]] && kargs=(--debug); done
KDIR="$("$HERE/build-kernel.sh" "${kargs[@]}" --print-kdir)"
KREL="$(cat "$KDIR/include/config/kernel.release")"
echo "test-dkms: KDIR=$KDIR ($KREL)"
command -v dkms >/dev/null || "$HERE/setup.sh"

W="$(mktemp -d "${TMPDIR:-/tmp}/llamux-dkms.XXXXXX")"
trap 'rm -rf "$W"' EXIT
DEB="$("$ROOT/packaging/build-deb.sh" --out "$W/deb")"
VERSION="$(dpkg-deb -f "$DEB" Version)"; VERSION="${VERSION%-*}"
dpkg-deb -x "$DEB" "$W/x"
mkdir -p "$W/src" "$W/dkms" "$W/install"
mv "$W/x/usr/src/llamux-$VERSION" "$W/src/"
TREES=(--dkmstree "$W/dkms" --sourcetree "$W/src" --installtree "$W/install")

fail() { echo "test-dkms: FAIL $*" >&2; exit 1; }

# A kernel without Rust: dkms skips it (BUILD_EXCLUSIVE_CONFIG), and
# dkms-build.sh names the reason. A copy of the tree's top with RUST off.
mkdir -p "$W/norust"
for f in "$KDIR"/*; do ln -s "$f" "$W/norust/"; done
grep -v '^CONFIG_RUST=' "$KDIR/.config" > "$W/norust/.config"
echo "# CONFIG_RUST is not set" >> "$W/norust/.config"
dkms add -m llamux -v "$VERSION" "${TREES[@]}"
set +e
out="$(dkms build -m llamux -v "$VERSION" -k "$KREL" --kernelsourcedir "$W/norust" "${TREES[@]}" 2>&1)"; rc=$?
set -e
echo "$out" | sed 's/^/  dkms(no rust): /'
((rc != 0)) && grep -q 'BUILD_EXCLUSIVE' <<<"$out" || fail "dkms build on a kernel without CONFIG_RUST: rc $rc"
set +e
out="$(bash "$W/src/llamux-$VERSION/kmod/dkms-build.sh" "$W/norust" "$KREL" 2>&1)"; rc=$?
set -e
echo "$out" | sed 's/^/  dkms-build.sh(no rust): /'
((rc != 0)) && grep -q 'without Rust support (CONFIG_RUST is not set)' <<<"$out" ||
  fail "dkms-build.sh on a kernel without CONFIG_RUST: rc $rc"
echo "test-dkms: a kernel without CONFIG_RUST is refused with a clear message"

# The real build, offline (the source carries its crates).
t0=$(date +%s)
dkms build -m llamux -v "$VERSION" -k "$KREL" --kernelsourcedir "$KDIR" "${TREES[@]}" ||
  { cat "$W/dkms/llamux/$VERSION/build/make.log" 2>/dev/null | tail -40; fail "dkms build"; }
echo "test-dkms: dkms build took $(( $(date +%s) - t0 )) s"
grep -E 'build-engine:|llamux-dkms:' "$W/dkms/llamux/$VERSION/build/make.log" || true
# dkms install copies into the install tree and runs depmod for KREL
# (no such kernel on this host: only its warning).
dkms install -m llamux -v "$VERSION" -k "$KREL" --kernelsourcedir "$KDIR" "${TREES[@]}" --force ||
  fail "dkms install"
dkms status -m llamux "${TREES[@]}"
KO="$(find "$W/install/$KREL" -name 'llamux.ko*' | head -1)"
[[ -n $KO ]] || fail "no llamux.ko in the install tree"
case "$KO" in *.ko) ;; *) fail "compressed module $KO: the guest's busybox insmod needs a plain .ko" ;; esac
modinfo -F vermagic "$KO" | grep -q "^$KREL " || fail "vermagic of $KO is not $KREL"
echo "test-dkms: installed $KO ($(stat -c %s "$KO") bytes)"
cp "$KO" "$W/llamux.ko"

(cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
  --target x86_64-unknown-linux-gnu)
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/llamux"
MODELS="${LLAMUX_TEST_MODELS:-$ROOT/tests/models}"
[[ -f "$MODELS/tiny-q4_k_m.gguf" ]] || "$ROOT/tests/models/make.sh"
# Not exec: the trap removes the work folder after the guest.
"$HERE/run-guest.sh" --smp 2 --mem 1G "$@" \
  --file "$W/llamux.ko" --file "$BIN" --file "$MODELS/tiny-q4_k_m.gguf" \
  "$HERE/tests/dkms-module.sh" "$KREL"
