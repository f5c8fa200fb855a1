#!/usr/bin/env bash
# Llamux vs llama.cpp (llama-bench) on the same GGUF files, 1 and 2 threads,
# plus a streaming-read memory bandwidth figure; prints a table of ratios.
#
#   bench/run.sh            tiny-q4_k_m, tiny-mixed and the 13B-shape model
#   bench/run.sh --no-13b   only the tiny models
#
# Env: P, N, R (prompt tokens, generated tokens, repetitions; defaults 16,
# 32, 200 for the tiny models: one repetition takes 1-5 ms there, so a
# median of few is at the mercy of one timer tick or a neighbour VM),
# P13, N13, R13 (defaults 16, 4, 5 for 13B), ROUNDS13 (default 3: the
# 13B runs of both engines alternate that many times, samples pooled, so
# a shift in the machine's bandwidth lands on both),
# THREADS (default "1 2"), LLAMA_BENCH (path; default: the build of
# tests/fixtures/build-llama.sh, built if missing), LLAMUX_CACHE.
# Results (JSON per run) go to target/bench/; the 13B-shape GGUF (7.9 GB)
# is written once to $LLAMUX_CACHE/models/ by bench/make-13b.py.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${LLAMUX_CACHE:-$HOME/.cache/llamux}
out=$root/target/bench
mkdir -p "$out"
with13=1
[ "${1:-}" = "--no-13b" ] && with13=0
P=${P:-16} N=${N:-32} R=${R:-200}
P13=${P13:-16} N13=${N13:-4} R13=${R13:-5} ROUNDS13=${ROUNDS13:-3}
THREADS=${THREADS:-"1 2"}

echo "== build" >&2
cargo build --release -q -p llamux >&2
llamux=$root/target/release/llamux
cc -O2 -pthread -o "$out/bw" bench/bw.c

lb=${LLAMA_BENCH:-}
if [ -z "$lb" ]; then
    lb=$(ls "$cache"/llama-build-0.3.36-native*/bin/llama-bench 2>/dev/null | head -1 || true)
fi
if [ -z "$lb" ]; then
    echo "== building llama.cpp (tests/fixtures/build-llama.sh)" >&2
    eval "$(tests/fixtures/build-llama.sh)"
    lb=$LLAMA_BIN/llama-bench
fi

models=()
for m in tiny-q4_k_m tiny-mixed; do
    [ -f "tests/models/$m.gguf" ] || tests/models/make.sh >/dev/null
    models+=("tests/models/$m.gguf")
done
m13=$cache/models/codellama-13b-shape-q4_k_m.gguf
if [ $with13 = 1 ] && [ ! -f "$m13" ]; then
    echo "== writing $m13 (bench/make-13b.py)" >&2
    mkdir -p "$(dirname "$m13")"
    py=$(tests/fixtures/setup-python.sh)
    vocab=$(tests/fixtures/get-llama-src.sh)/models/ggml-vocab-llama-spm.gguf
    "$py" bench/make-13b.py --vocab "$vocab" --out "$m13" >&2
fi
[ $with13 = 1 ] && models+=("$m13")

load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== bandwidth" >&2
for t in $THREADS; do "$out/bw" "$t" 1024 10 > "$out/bw-$t.txt"; done

: > "$out/runs.jsonl"
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    # The tiny models' weights stay in the caches: no bandwidth share.
    if [ "$m" = "$m13" ]; then
        p=$P13 n=$N13 r=$R13 rounds=$ROUNDS13 bwopt=--bandwidth
    else
        p=$P n=$N r=$R rounds=1 bwopt=
    fi
    # Page the file in once, so neither side pays for the disk.
    cat "$m" > /dev/null
    for t in $THREADS; do
        for k in $(seq "$rounds"); do
            echo "== $name, $t thread(s), round $k of $rounds" >&2
            # Alternate the two engines, pp and tg separately, to spread the
            # machine's background load over both.
            "$llamux" bench -m "$m" -t "$t" -p "$p" -n 0 -r "$r" --json > "$out/$name-t$t-llamux-pp-$k.json"
            "$lb" -m "$m" -t "$t" -p "$p" -n 0 -r "$r" -o json 2>/dev/null > "$out/$name-t$t-llama-pp-$k.json"
            # --bandwidth (13B): memory bandwidth measured right before and
            # after each decode repetition. On this kind of VM it moves with
            # where the host runs the vCPUs (2 threads read 30-36 GB/s or
            # 60-68 within seconds), so decode is compared with what the
            # memory gave at that time.
            "$llamux" bench -m "$m" -t "$t" -p 0 -n "$n" -r "$r" $bwopt --json > "$out/$name-t$t-llamux-tg-$k.json"
            "$lb" -m "$m" -t "$t" -p 0 -n "$n" -r "$r" -o json 2>/dev/null > "$out/$name-t$t-llama-tg-$k.json"
        done
        echo "{\"model\":\"$name\",\"threads\":$t,\"p\":$p,\"n\":$n,\"r\":$r,\"rounds\":$rounds}" >> "$out/runs.jsonl"
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for t in $THREADS; do "$out/bw" "$t" 1024 10 >> "$out/bw-$t.txt"; done

python3 - "$out" "$load0" "$load1" <<'PY'
import json, os, platform, subprocess, sys, time
out, load0, load1 = sys.argv[1:4]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
try:
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
except Exception:
    commit = "?"
def bw(t):
    v = [float(x) for x in open(f"{out}/bw-{t}.txt").read().split()]
    return max(v)
# Median of the repetitions (robust to a busy machine), and the spread
# (min-max) of the samples.
def med(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2, v[0], v[-1]
# Every round's samples pooled.
def runs_of(name, t, who, kind, rounds):
    return [json.load(open(f"{out}/{name}-t{t}-{who}-{kind}-{k}.json")) for k in range(1, rounds + 1)]
def ours(name, t, kind, rounds):
    js = runs_of(name, t, "llamux", kind, rounds)
    return med([x for j in js for x in j[kind]["samples_ts"]]) + (js[0]["weight_bytes"], js[0]["isa"])
def share(name, t, rounds):
    bs = [j["tg"].get("bandwidth") for j in runs_of(name, t, "llamux", "tg", rounds)]
    if not all(bs):
        return "-", "-"
    gbs = med([x for b in bs for x in b["samples_gbs"]])[0]
    return f"{gbs:.2f}", f"{100 * med([x for b in bs for x in b['samples_share']])[0]:.0f}%"
def theirs(name, t, kind, rounds):
    return med([x for j in runs_of(name, t, "llama", kind, rounds) for x in j[0]["samples_ts"]])
def fmt(m, lo, hi):
    return f"{m:.2f} [{lo:.4g}-{hi:.4g}]"
print(f"# Llamux vs llama.cpp llama-bench ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit})")
print(f"# {cpu}, {os.cpu_count()} cores, {int(mem) / 1048576:.0f} GiB RAM, {platform.release()}")
print(f"# load average before {load0}, after {load1}")
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
ts = sorted({r["threads"] for r in runs})
print("# streaming read bandwidth (bench/bw.c, best of the start and end of the run): " + ", ".join(f"{t} thread(s) {bw(t):.2f} GB/s" for t in ts))
print()
hdr = ["model", "t", "pp", "llamux pp t/s", "llama.cpp pp t/s", "pp ratio", "tg", "llamux tg t/s", "llama.cpp tg t/s", "tg ratio", "llamux tg GB/s", "bw GB/s", "% of bw"]
rows = []
for r in runs:
    name, t = r["model"], r["threads"]
    k = r.get("rounds", 1)
    opp, opl, oph, wb, isa = ours(name, t, "pp", k)
    otg, otl, oth, _, _ = ours(name, t, "tg", k)
    lpp, lpl, lph = theirs(name, t, "pp", k)
    ltg, ltl, lth = theirs(name, t, "tg", k)
    gbs = otg * wb / 1e9
    bwt, sh = share(name, t, k)
    rows.append([name, str(t), f"pp{r['p']}", fmt(opp, opl, oph), fmt(lpp, lpl, lph), f"{opp / lpp:.2f}x",
                 f"tg{r['n']}", fmt(otg, otl, oth), fmt(ltg, ltl, lth), f"{otg / ltg:.2f}x",
                 f"{gbs:.2f}", bwt, sh])
w = [max(len(x[i]) for x in rows + [hdr]) for i in range(len(hdr))]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for x in rows:
    print("| " + " | ".join(c.rjust(w[i]) if i > 0 else c.ljust(w[i]) for i, c in enumerate(x)) + " |")
print()
rounds = {r["model"]: r.get("rounds", 1) for r in runs}
print("# tokens/s: median [min-max] of the repetitions, pooled over the rounds (" + ", ".join(f"{m}: {k}" for m, k in rounds.items()) + ");")
print(f"# llamux kernels: {isa}; ratios are Llamux / llama.cpp medians;")
print("# GB/s = decode tokens/s x bytes of weights read per token; bw = streaming-read bandwidth on the same threads, measured by `llamux bench")
print("# --bandwidth` just before and just after each decode repetition (the larger of the two; median over repetitions); % of bw = median")
print("# over repetitions of that repetition's decode GB/s / its bw (not measured for the tiny models, whose weights stay in the caches).")
PY
