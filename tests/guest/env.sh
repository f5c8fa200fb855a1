# Shared settings for the guest harness (sourced, not executed).
LLAMUX_CACHE="${LLAMUX_CACHE:-$HOME/.cache/llamux}"
LLAMUX_BINDGEN_VERSION="0.69.5"
LLAMUX_BINDGEN="${LLAMUX_BINDGEN:-$LLAMUX_CACHE/bin/bindgen}"
# Always the Debian rustc-web toolchain: rustup's rustc (first on PATH on
# these machines) has no rust-src.
LLAMUX_RUSTC=/usr/bin/rustc
LLAMUX_KMAKE_VARS=(RUSTC="$LLAMUX_RUSTC" HOSTRUSTC="$LLAMUX_RUSTC" BINDGEN="$LLAMUX_BINDGEN")
export LLAMUX_CACHE
# bindgen loads libclang at run time and would pick the newest one installed
# (llvm-22 is on these machines for bpf-linker); 0.69.5 is proven with 14.
export LIBCLANG_PATH="${LIBCLANG_PATH:-/usr/lib/llvm-14/lib}"
