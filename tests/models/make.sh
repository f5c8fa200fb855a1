#!/usr/bin/env bash
# Generates the tiny LLaMA test models (tests/models/*.gguf, gitignored) from
# tests/models/make.py with the fixtures venv and llama.cpp's SPM vocab.
#   make.sh            write the models into tests/models/ (or $1 = --out DIR)
#   make.sh --check    regenerate into a temp dir and verify against SHA256SUMS
#   make.sh --update   regenerate into tests/models/ and rewrite SHA256SUMS
#   make.sh --stats    also print numpy-forward statistics
# Generation is byte-deterministic; SHA256SUMS is committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../fixtures
py=$("$fixtures/setup-python.sh")
vocab=$("$fixtures/get-llama-src.sh")/models/ggml-vocab-llama-spm.gguf
mode=${1:-}
case "$mode" in
    --check)
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        "$py" "$here/make.py" --vocab "$vocab" --out "$tmp" >/dev/null
        (cd "$tmp" && sha256sum -c "$here/SHA256SUMS")
        ;;
    --update)
        "$py" "$here/make.py" --vocab "$vocab" --out "$here" | sort -k2 > "$here/SHA256SUMS"
        cat "$here/SHA256SUMS"
        ;;
    --out)
        "$py" "$here/make.py" --vocab "$vocab" --out "$2"
        ;;
    --stats)
        "$py" "$here/make.py" --vocab "$vocab" --out "$here" --stats
        ;;
    "")
        "$py" "$here/make.py" --vocab "$vocab" --out "$here"
        ;;
    *) echo "usage: $0 [--check|--update|--stats|--out DIR]" >&2; exit 2 ;;
esac
