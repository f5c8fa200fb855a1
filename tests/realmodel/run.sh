#!/usr/bin/env bash
# Opt-in real-model profile (not part of tests/run.sh: it downloads ~1.1 GB
# once and runs a 1.5B model with CPU kernels). Fetches Qwen2.5-Coder-1.5B-
# Instruct Q4_K_M (fetch.sh), builds llamux and llama.cpp (cached), then
# compares llamux with llama.cpp: tokenizer, logits over a prompt (top-1
# agreement >= 99% of positions, max |dlogit|), greedy 32-token output.
# Env: LLAMUX_CACHE (default ~/.cache/llamux), LLAMUX_THREADS (default 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
threads=${LLAMUX_THREADS:-2}
model=$("$here/fetch.sh")
eval "$("$root/tests/fixtures/build-llama.sh")"
(cd "$root" && cargo build --release -q -p llamux)
llamux=$root/target/release/llamux
LLAMA_CPP_LIB_PATH=$LLAMA_CPP_LIB_PATH "$LLAMA_PY" "$here/compare.py" "$llamux" "$model" "$threads"
