#!/usr/bin/env bash
# README's main job: build everything, boot a guest, load llamux.ko with a
# model, answer a prompt through /proc/llamux/generate, then load the
# exec-guard policy and show an exec denied by the BPF-LSM probe on the
# model's decision.
#   tests/demo.sh [--model FILE.gguf] [--prompt TEXT]
#   tests/demo.sh --real [--prompt TEXT] [--tokens N]
# Default model: the tiny Q4_K_M test model (random weights: its text is not
# meant to read well; --model takes any LLaMA/Qwen2 GGUF that fits the guest).
# --real: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (tests/realmodel/fetch.sh, 1.1 GB,
# fetched once), shared read-only into a 3 GiB guest over 9p, asked a coding
# question in its chat template (N tokens, default 32; TCG makes it slow).
# LLAMUX_DEMO_LOG=FILE: the guest's serial log (default in $LLAMUX_CACHE/logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model=$root/tests/models/tiny-q4_k_m.gguf
prompt="Once upon a time"
real=0 tokens=32 prompt_set=0
while (($#)); do
    case $1 in
        --model) model=$2; shift 2 ;;
        --prompt) prompt=$2; prompt_set=1; shift 2 ;;
        --real) real=1; shift ;;
        --tokens) tokens=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument $1" >&2; exit 2 ;;
    esac
done
step() { printf '\n=== %s\n' "$*"; }

step "install what is missing (apt, bindgen)"
tests/guest/setup.sh
step "test models"
[ -f tests/models/tiny-q4_k_m.gguf ] || tests/models/make.sh
step "guest kernel (cached) and llamux.ko"
make -C kmod
step "BPF probes"
ebpf/build.sh
step "static llamux binary"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p llamux --target x86_64-unknown-linux-gnu
llamux=target/x86_64-unknown-linux-gnu/release/llamux

files=(--file kmod/llamux.ko --file "$llamux:/bin/llamux"
       --file target/bpf/llamux-probes.o:/usr/lib/llamux/llamux-probes.o
       --file policies/exec-guard.toml:/llamux/policies/exec-guard.toml)
if ((real)); then
    step "the real model (tests/realmodel/fetch.sh)"
    model=$(tests/realmodel/fetch.sh)
    ((prompt_set)) || prompt="Write a Python function is_prime(n) that returns True when n is a prime number."
    # The model stays on the host: a read-only 9p share, not the initramfs.
    files+=(--share "$(dirname "$model")")
    guest_args=("/mnt/host/$(basename "$model")" "$tokens")
    mem=3G timeout=3600
else
    mem=1G timeout=600
    size=$(stat -c %s "$model")
    [ "$size" -gt $((256 << 20)) ] && mem=$(( (size * 3 >> 30) + 2 ))G
    files+=(--file "$model:/llamux/model.gguf")
    guest_args=()
fi
step "boot the guest"
printf '%s' "$prompt" > "$root/target/demo-prompt.txt"
log=(); [ -n "${LLAMUX_DEMO_LOG:-}" ] && log=(--log "$LLAMUX_DEMO_LOG")
exec tests/guest/run-guest.sh --smp 2 --mem "$mem" --timeout "$timeout" --append "lsm=bpf" "${log[@]}" "${files[@]}" \
    --file "$root/target/demo-prompt.txt:/llamux/prompt.txt" tests/guest/tests/demo.sh "${guest_args[@]}"
