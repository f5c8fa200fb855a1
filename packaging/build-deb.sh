#!/usr/bin/env bash
# Builds the Debian package of Llamux from this tree with dpkg-deb (no
# debhelper needed): target/deb/llamux_VERSION-1_amd64.deb.
#   packaging/build-deb.sh [--out DIR]      prints the .deb's path on stdout
# Contents:
#   /usr/bin/llamux                          the tool (cargo build --release)
#   /usr/lib/llamux/llamux-probes.o          BPF object (ebpf/build.sh)
#   /usr/src/llamux-VERSION/                 DKMS source: dkms.conf, kmod/ (the
#                                            whole folder minus build products),
#                                            tests/check-inlined.sh, the engine's
#                                            crates in vendor/ (offline builds)
#   /etc/llamux/llamux.toml, policies.d/*    conffiles
#   /lib/systemd/system/llamux.service
#   /usr/share/man/man1/llamux*.1.gz, bash/zsh/fish completions
#   /usr/share/llamux/policies/              every policy of policies/ (examples)
#   /usr/share/doc/llamux/                   install.md, copyright
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
P="$ROOT/packaging"
OUT="$ROOT/target/deb"
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
exec 3>&1 1>&2
LLAMUX_CACHE="${LLAMUX_CACHE:-$HOME/.cache/llamux}"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || { echo "build-deb: bad version '$VERSION' in Cargo.toml" >&2; exit 1; }
DEBVERSION="$VERSION-1"
# Policies enabled by default (one exec policy at most: exec-guard-closed,
# the fail-closed variant, stays an example).
ENABLED_POLICIES=(exec-guard open-guard sched-advisor syscall-rate)

echo "build-deb: llamux $DEBVERSION"
(cd "$ROOT" && cargo build --release -q -p llamux)
BIN="$ROOT/target/release/llamux"
BPF=""
for c in "$ROOT/target/bpf/llamux-probes.o" "$LLAMUX_CACHE/bpf/llamux-probes.o"; do
  [[ -f $c ]] && { BPF=$c; break; }
done
if [[ -z $BPF ]]; then
  "$ROOT/ebpf/build.sh"
  BPF="$ROOT/target/bpf/llamux-probes.o"
fi

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/llamux-deb.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
D="$STAGE/root"
install -d -m 0755 "$D"/{DEBIAN,usr/bin,usr/lib/llamux,etc/llamux/policies.d,lib/systemd/system} \
  "$D"/usr/share/{man/man1,llamux/policies,doc/llamux,bash-completion/completions,zsh/vendor-completions,fish/vendor_completions.d}
install -m 0755 "$BIN" "$D/usr/bin/llamux"
strip --strip-debug "$D/usr/bin/llamux"
install -m 0644 "$BPF" "$D/usr/lib/llamux/llamux-probes.o"

# Configuration (conffiles).
install -m 0644 "$P/llamux.toml" "$D/etc/llamux/llamux.toml"
for n in "${ENABLED_POLICIES[@]}"; do
  install -m 0644 "$ROOT/policies/$n.toml" "$D/etc/llamux/policies.d/$n.toml"
done
install -m 0644 "$ROOT"/policies/*.toml "$D/usr/share/llamux/policies/"
install -m 0644 "$P/llamux.service" "$D/lib/systemd/system/llamux.service"

# Man pages and completions from the binary's own clap definitions.
"$BIN" manpages "$STAGE/man"
for f in "$STAGE"/man/*.1; do gzip -9n -c "$f" > "$D/usr/share/man/man1/$(basename "$f").gz"; done
"$BIN" completions bash > "$D/usr/share/bash-completion/completions/llamux"
"$BIN" completions zsh > "$D/usr/share/zsh/vendor-completions/_llamux"
"$BIN" completions fish > "$D/usr/share/fish/vendor_completions.d/llamux.fish"

# Documentation.
[[ -f "$ROOT/docs/install.md" ]] && install -m 0644 "$ROOT/docs/install.md" "$D/usr/share/doc/llamux/install.md"
cat > "$D/usr/share/doc/llamux/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: llamux

Files: *
License: GPL-2.0-only
 On Debian systems the full text is in /usr/share/common-licenses/GPL-2.
COPY

# DKMS source: kmod/ as it is (minus build products), so the module's file
# list is whatever kmod/ holds; the build goes through kmod/dkms-build.sh.
S="$D/usr/src/llamux-$VERSION"
install -d "$S/tests"
rsync -a --delete \
  --exclude='target/' --exclude='/engine/fuzz/' --exclude='*.o' --exclude='*.ko' --exclude='*.mod' \
  --exclude='*.mod.c' --exclude='.*.cmd' --exclude='*.a' --exclude='*.rmeta' --exclude='*.d' \
  --exclude='.kdir' --exclude='modules.order' --exclude='Module.symvers' --exclude='.tmp_versions/' \
  --exclude='*.tmp.*' "$ROOT/kmod/" "$S/kmod/"
install -m 0755 "$ROOT/tests/check-inlined.sh" "$S/tests/check-inlined.sh"
# kmod/engine inherits edition/license/version from the workspace root.
{
  echo "# Written by packaging/build-deb.sh: the workspace root kmod/engine inherits from."
  echo "[workspace]"
  echo 'members = ["kmod/engine"]'
  echo 'exclude = ["kmod/kengine", "kmod/engine/fuzz"]'
  echo
  sed -n '/^\[workspace.package\]/,/^\[/{/^\[/!p;/^\[workspace.package\]/p}' "$ROOT/Cargo.toml"
} > "$S/Cargo.toml"
sed "s/@VERSION@/$VERSION/g" "$P/dkms.conf" > "$S/dkms.conf"
# The engine object's crates, for builds without network (kernel upgrades).
(cd "$ROOT" && RUSTC=/usr/bin/rustc /usr/bin/cargo vendor --locked -q --versioned-dirs \
  --manifest-path kmod/kengine/Cargo.toml "$S/vendor") > "$STAGE/vendor.toml"
install -d "$S/.cargo-home"
{
  echo "# Written by packaging/build-deb.sh: the engine object builds offline."
  echo "[net]"
  echo "offline = true"
  echo "[source.crates-io]"
  echo 'replace-with = "vendored-sources"'
  echo "[source.vendored-sources]"
  echo "# kmod/dkms-build.sh links vendor/ and rust-web-src's library/vendor"
  echo "# (what -Zbuild-std resolves) into .vendor-all; relative to the folder"
  echo "# holding .cargo-home."
  echo "directory = \".vendor-all\""
} > "$S/.cargo-home/config.toml"
find "$S" -type d -exec chmod 0755 {} +
find "$S" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$S" -type f -perm -u+x -exec chmod 0755 {} +

# Package metadata.
( cd "$D" && find etc -type f | sort | sed 's|^|/|' ) > "$D/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  sed "s/@VERSION@/$VERSION/g" "$P/debian/$s" > "$D/DEBIAN/$s"
  chmod 0755 "$D/DEBIAN/$s"
done
# Shared-library dependencies of the binary, as dpkg-shlibdeps finds them.
mkdir -p "$STAGE/shl/debian"
printf 'Source: llamux\n\nPackage: llamux\nArchitecture: amd64\n' > "$STAGE/shl/debian/control"
DEPENDS="$(cd "$STAGE/shl" && dpkg-shlibdeps -O "$D/usr/bin/llamux" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[[ -n $DEPENDS ]] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
SIZE="$(du -sk --exclude=DEBIAN "$D" | cut -f1)"
sed -e "s/@DEBVERSION@/$DEBVERSION/" -e "s/@SIZE@/$SIZE/" -e "s/@DEPENDS@/$DEPENDS/" \
  "$P/debian/control" > "$D/DEBIAN/control"
( cd "$D" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum | sed 's| \./| |' ) > "$D/DEBIAN/md5sums"

mkdir -p "$OUT"
DEB="$OUT/llamux_${DEBVERSION}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$D" "$DEB" >/dev/null
echo "build-deb: $DEB ($(du -h "$DEB" | cut -f1))"
echo "$DEB" >&3
