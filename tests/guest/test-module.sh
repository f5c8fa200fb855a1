#!/usr/bin/env bash
# Build (or reuse) the guest kernel, build kmod/llamux.ko against it, and run
# tests/guest/tests/minimal-module.sh in a guest.
#   tests/guest/test-module.sh [--debug] [run-guest.sh options...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "$@"
suite_module
# objtool only warns in 6.12: a module it does not accept fails here.
"$ROOT/kmod/check-objtool.sh" "$KDIR"
exec "$HERE/run-guest.sh" "$@" --file "$ROOT/kmod/llamux.ko" "$HERE/tests/minimal-module.sh"
