#!/usr/bin/env bash
# README's main job: build everything, boot a guest, load llamux.ko with a
# model, answer a prompt through /proc/llamux/generate, then load the
# exec-guard policy and show an exec denied by the BPF-LSM probe on the
# model's decision.
#   tests/demo.sh [--model FILE.gguf] [--prompt TEXT]
# Default model: the tiny Q4_K_M test model (random weights: its text is not
# meant to read well; --model takes any LLaMA/Qwen2 GGUF that fits the guest).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model=$root/tests/models/tiny-q4_k_m.gguf
prompt="Once upon a time"
while (($#)); do
    case $1 in
        --model) model=$2; shift 2 ;;
        --prompt) prompt=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
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

mem=1G
size=$(stat -c %s "$model")
[ "$size" -gt $((256 << 20)) ] && mem=$(( (size * 3 >> 30) + 2 ))G
files=(--file kmod/llamux.ko --file "$llamux:/bin/llamux" --file "$model:/llamux/model.gguf"
       --file target/bpf/llamux-probes.o:/usr/lib/llamux/llamux-probes.o
       --file policies/exec-guard.toml:/llamux/policies/exec-guard.toml)
step "boot the guest"
printf '%s' "$prompt" > "$root/target/demo-prompt.txt"
exec tests/guest/run-guest.sh --smp 2 --mem "$mem" --timeout 600 --append "lsm=bpf" "${files[@]}" \
    --file "$root/target/demo-prompt.txt:/llamux/prompt.txt" tests/guest/tests/demo.sh
