#!/usr/bin/env bash
# Builds the Debian package (packaging/build-deb.sh) and checks it without
# installing it on this machine: control fields, conffiles, maintainer
# scripts, files (binary, BPF object, DKMS source with kmod/'s files and no
# build products, man pages, completions), the packaged binary's
# `service --check` on the packaged configuration, and `systemd-analyze
# verify` of the unit in a root made of this machine's units plus the
# package. Last line: `package: N passed, N failed`.
#   tests/package/test-package.sh [DEB]     (DEB: check this one, no build)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1${2:+: $2}"; }
# step NAME CMD...: runs CMD, its output indented.
step() {
  local name=$1 out rc; shift
  out="$("$@" 2>&1)"; rc=$?
  [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/    /' | tail -n 30
  if ((rc == 0)); then pass "$name"; else fail "$name" "exit $rc"; fi
}
finish() { echo "package: $PASSED passed, $FAILED failed"; ((FAILED == 0)); exit; }

VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
W="$(mktemp -d "${TMPDIR:-/tmp}/llamux-pkgtest.XXXXXX")"
trap 'rm -rf "$W"' EXIT

if [[ -n "${1:-}" ]]; then
  DEB="$1"
  [[ -f $DEB ]] && pass "package given: $DEB" || { fail "package given" "$DEB missing"; finish; }
else
  DEB="$("$ROOT/packaging/build-deb.sh" --out "$W/out" 2>"$W/build.log")"
  if [[ $? -eq 0 && -f $DEB ]]; then pass "build the package ($(basename "$DEB"))"; else
    tail -n 30 "$W/build.log"; fail "build the package"; finish; fi
fi

dpkg-deb -I "$DEB" > "$W/info" && dpkg-deb -f "$DEB" > "$W/control" && dpkg-deb -c "$DEB" > "$W/list" ||
  { fail "dpkg-deb -I/-c"; finish; }
sed 's/^/    /' "$W/control"
field() { sed -n "s/^$1: //p" "$W/control"; }
step "control: Package llamux, Version $VERSION-1, amd64" \
  test "$(field Package) $(field Version) $(field Architecture)" = "llamux $VERSION-1 amd64"
step "control: Depends from dpkg-shlibdeps (libc6)" sh -c "echo '$(field Depends)' | grep -q 'libc6 (>= '"
step "control: Recommends the DKMS toolchain" sh -c "echo '$(field Recommends)' | grep -q 'dkms.*rustc-web.*rust-web-src'"

mkdir -p "$W/ctl" "$W/x"
dpkg-deb -e "$DEB" "$W/ctl" && dpkg-deb -x "$DEB" "$W/x" || { fail "extract"; finish; }
printf '%s\n' /etc/llamux/llamux.toml /etc/llamux/policies.d/{exec-guard,open-guard,sched-advisor,syscall-rate}.toml | sort > "$W/want-conf"
step "conffiles: llamux.toml and the four default policies" diff -u "$W/want-conf" <(sort "$W/ctl/conffiles")
step "every conffile is in the package, root-owned, 0644" sh -c "
  while read -r f; do grep -qE \"^-rw-r--r-- root/root .* \.\$f\$\" '$W/list' || { echo \"\$f\"; exit 1; }; done < '$W/ctl/conffiles'"
step "exec-guard-closed (fail-closed) is only an example" sh -c "
  ! grep -q 'policies.d/exec-guard-closed' '$W/list' && grep -q 'usr/share/llamux/policies/exec-guard-closed.toml' '$W/list'"
for s in postinst prerm postrm; do
  step "maintainer script $s: executable, sh -n" sh -c "test -x '$W/ctl/$s' && sh -n '$W/ctl/$s'"
done
step "postinst: dkms add + build (common.postinst), never fails the install" sh -c "
  grep -q 'dkms add -m \"\$NAME\" -v \"\$VERSION\"' '$W/ctl/postinst' && grep -q 'common.postinst' '$W/ctl/postinst' &&
  grep -qx 'VERSION=$VERSION' '$W/ctl/postinst' && grep -q 'deb-systemd-helper update-state llamux.service' '$W/ctl/postinst'"
step "prerm: dkms remove of this version" sh -c "grep -q 'dkms remove -m \"\$NAME\" -v \"\$VERSION\" --all' '$W/ctl/prerm' && grep -qx 'VERSION=$VERSION' '$W/ctl/prerm'"
step "md5sums cover every file" sh -c "
  (cd '$W/x' && find . -type f | sed 's|^\./||' | sort) > '$W/files' && awk '{print \$2}' '$W/ctl/md5sums' | sort | diff -u '$W/files' - &&
  (cd '$W/x' && md5sum -c --quiet '$W/ctl/md5sums')"

has() { grep -qE "^$1 root/root .* \./$2\$" "$W/list"; }
step "/usr/bin/llamux 0755" has -rwxr-xr-x usr/bin/llamux
step "/usr/lib/llamux/llamux-probes.o is a BPF ELF" sh -c "
  readelf -h '$W/x/usr/lib/llamux/llamux-probes.o' | grep -q 'Machine:.*Linux BPF'"
step "/lib/systemd/system/llamux.service" has -rw-r--r-- lib/systemd/system/llamux.service
for m in llamux llamux-service llamux-load llamux-completions; do
  step "man page $m.1.gz" has -rw-r--r-- "usr/share/man/man1/$m.1.gz"
done
step "llamux-service(1) renders and names policies.d" sh -c "
  zcat '$W/x/usr/share/man/man1/llamux-service.1.gz' | man -l - 2>/dev/null | grep -q 'policies.d'"
step "bash completion registers llamux" bash -c "source '$W/x/usr/share/bash-completion/completions/llamux' && complete -p llamux"
step "zsh and fish completions" sh -c "
  head -1 '$W/x/usr/share/zsh/vendor-completions/_llamux' | grep -q '#compdef llamux' &&
  grep -q 'complete -c llamux' '$W/x/usr/share/fish/vendor_completions.d/llamux.fish'"

S="usr/src/llamux-$VERSION"
for f in dkms.conf Cargo.toml kmod/Kbuild kmod/Makefile kmod/dkms-build.sh kmod/build-engine.sh tests/check-inlined.sh .cargo-home/config.toml; do
  step "DKMS source: $f" test -f "$W/x/$S/$f"
done
step "dkms.conf: version $VERSION, kmod/dkms-build.sh, kmod/llamux.ko, CONFIG_RUST only" bash -c "
  bash -n '$W/x/$S/dkms.conf' && . '$W/x/$S/dkms.conf' &&
  test \"\$PACKAGE_NAME \$PACKAGE_VERSION \$BUILT_MODULE_NAME \$BUILT_MODULE_LOCATION \$BUILD_EXCLUSIVE_CONFIG\" = 'llamux $VERSION llamux kmod/ CONFIG_RUST' &&
  case \"\${MAKE[0]}\" in 'bash kmod/dkms-build.sh '*) ;; *) exit 1 ;; esac"
# The module's files come from kmod/ itself: every tracked file (but the
# fuzz crate) is there, whatever helper added or removed one.
step "DKMS source holds every tracked kmod/ file" sh -c "
  cd '$ROOT' && git ls-files kmod | grep -v '^kmod/engine/fuzz/' | while read -r f; do
    [ -f \"$W/x/$S/\$f\" ] || { echo \"missing \$f\"; exit 1; }; done"
step "DKMS source: no build products" sh -c "
  ! grep -E '\./$S/.*(\.o|\.ko|\.mod|\.cmd|\.a|\.rmeta|/target/.*)\$' '$W/list'"
step "DKMS source: the engine's crates vendored (half, libm)" sh -c "
  ls -d '$W/x/$S'/vendor/half-* '$W/x/$S'/vendor/libm-* >/dev/null"

# The packaged binary and configuration, pointed at the extracted tree.
B="$W/x/usr/bin/llamux"
step "llamux --version is $VERSION" sh -c "'$B' --version | grep -qx 'llamux $VERSION'"
sed "s|^policies_dir = .*|policies_dir = \"$W/x/etc/llamux/policies.d\"|" "$W/x/etc/llamux/llamux.toml" > "$W/x/etc/llamux/test.toml"
step "llamux service --check on the packaged configuration: 4 policies" sh -c "
  '$B' service --check --config '$W/x/etc/llamux/test.toml' | grep -q ': ok (4 policies)'"
chmod 0666 "$W/x/etc/llamux/test.toml"
step "llamux service --check refuses a world-writable configuration" sh -c "
  ! '$B' service --check --config '$W/x/etc/llamux/test.toml' 2>&1 | tee /dev/stderr | grep -q ': ok'"

# systemd-analyze verify in a root: this machine's units + the package (it
# checks the unit's syntax, that ExecStart's binary exists in that root, and
# that the Documentation= man page resolves).
if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze verify" "systemd-analyze missing (apt install systemd)"
else
  V="$W/vroot"
  mkdir -p "$V/usr/lib/systemd" "$V/etc/systemd"
  cp -a /usr/lib/systemd/system "$V/usr/lib/systemd/"
  ln -s usr/lib "$V/lib"; ln -s usr/bin "$V/bin"; ln -s usr/sbin "$V/sbin"
  (cd "$W/x" && tar cf - .) | (cd "$V" && tar xf - --keep-directory-symlink)
  step "systemd-analyze verify llamux.service" env MANPATH="$V/usr/share/man" systemd-analyze verify --root="$V" llamux.service
  # The same check must fail on a broken unit (a misspelt key, a wrong path).
  sed 's/^Restart=/Restrat=/; s|^ExecStart=/usr/bin/llamux|ExecStart=/usr/bin/llamuxx|' \
    "$V/lib/systemd/system/llamux.service" > "$V/lib/systemd/system/llamux-broken.service"
  step "systemd-analyze verify fails on a broken copy" sh -c "
    ! MANPATH='$V/usr/share/man' systemd-analyze verify --root='$V' llamux-broken.service"
  rm -f "$V/lib/systemd/system/llamux-broken.service"
  out="$(systemd-analyze security --offline=yes --root="$V" llamux.service 2>&1 | grep 'Overall exposure')"
  echo "    $out"
  step "unit restarts on failure, logs to the journal" sh -c "
    grep -qx 'Restart=on-failure' '$V/lib/systemd/system/llamux.service' &&
    grep -qx 'StandardError=journal' '$V/lib/systemd/system/llamux.service'"
fi
finish
