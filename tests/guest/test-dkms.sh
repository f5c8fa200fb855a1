#!/usr/bin/env bash
# DKMS: builds the Debian package, runs `dkms add/build/install` on its
# /usr/src/llamux-VERSION source in a temporary DKMS tree against the guest
# kernel's build tree, checks the refusal of a kernel without CONFIG_RUST,
# then loads the DKMS-built llamux.ko in a guest that answers prompts
# (tests/guest/tests/dkms-module.sh: greedy ids equal `llamux run`).
#   tests/guest/test-dkms.sh [run-guest.sh options, e.g. --debug]
# LLAMUX_KERNEL_VARIANT=mitigations selects that kernel, as for every suite.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "$@"
suite_kdir
KREL="$(cat "$KDIR/include/config/kernel.release")"
command -v dkms >/dev/null || "$HERE/setup.sh"

W="$(mktemp -d "${TMPDIR:-/tmp}/llamux-dkms.XXXXXX")"
trap 'rm -rf "$W"' EXIT
DEB="$("$ROOT/packaging/build-deb.sh" --out "$W/deb")"
VERSION="$(dpkg-deb -f "$DEB" Version)"; VERSION="${VERSION%-*}"
dpkg-deb -x "$DEB" "$W/x"
# The install tree stands for /lib/modules of a root in $W/root; dkms only
# installs into an existing KREL folder there.
INST="$W/root/lib/modules"
mkdir -p "$W/src" "$W/dkms" "$INST/$KREL"
mv "$W/x/usr/src/llamux-$VERSION" "$W/src/"
TREES=(--dkmstree "$W/dkms" --sourcetree "$W/src" --installtree "$INST")

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
LOGF="$W/dkms/llamux/$VERSION/$KREL/x86_64/log/make.log"
dkms build -m llamux -v "$VERSION" -k "$KREL" --kernelsourcedir "$KDIR" "${TREES[@]}" ||
  { tail -40 "$W/dkms/llamux/$VERSION/build/make.log" 2>/dev/null; fail "dkms build"; }
echo "test-dkms: dkms build took $(( $(date +%s) - t0 )) s"
grep -E 'build-engine:|llamux-dkms:' "$LOGF" || true
# dkms's own depmod would look at this host's /lib/modules (no KREL here):
# --no-depmod, then depmod on the install root, against the kernel's
# System.map, reporting any symbol the module needs and the kernel lacks.
dkms install -m llamux -v "$VERSION" -k "$KREL" --kernelsourcedir "$KDIR" "${TREES[@]}" --no-depmod ||
  fail "dkms install"
dkms status -m llamux "${TREES[@]}"
KO="$(find "$INST/$KREL" -name 'llamux.ko*' | head -1)"
[[ -n $KO ]] || fail "no llamux.ko in the install tree"
out="$(depmod -b "$W/root" -e -F "$KDIR/System.map" "$KREL" 2>&1)" || fail "depmod: $out"
grep -i 'unknown symbol' <<<"$out" && fail "depmod: the module needs symbols the kernel does not have"
grep -q 'llamux.ko' "$INST/$KREL/modules.dep" || fail "depmod: llamux.ko not in modules.dep"
echo "test-dkms: depmod -e against System.map: no unknown symbol"
case "$KO" in *.ko) ;; *) fail "compressed module $KO: the guest's busybox insmod needs a plain .ko" ;; esac
modinfo -F vermagic "$KO" | grep -q "^$KREL " || fail "vermagic of $KO is not $KREL"
echo "test-dkms: installed $KO ($(stat -c %s "$KO") bytes)"
cp "$KO" "$W/llamux.ko"

suite_llamux
suite_models
# Not exec: the trap removes the work folder after the guest.
"$HERE/run-guest.sh" --smp 2 --mem 1G "$@" \
  --file "$W/llamux.ko" --file "$BIN" --file "$MODELS/tiny-q4_k_m.gguf" \
  "$HERE/tests/dkms-module.sh" "$KREL"
