#!/usr/bin/env bash
# Llamux vs llama.cpp and ik_llama.cpp (llama-bench, ik without and with
# run-time repacking -rtr 1) on the same GGUF files, 1 and 2 threads, plus a
# streaming-read memory bandwidth figure; prints a table of ratios against
# llama.cpp and against the best peer of each cell.
#
#   bench/run.sh            tiny models, the real model (when fetched) and 13B shape
#   bench/run.sh --no-13b   without the 13B-shape model
#
# Env: P (prompt lengths, default "16 128"), N, R (generated tokens,
# repetitions; defaults 32, 200 for the tiny models: one repetition takes
# 1-5 ms there, so a median of few is at the mercy of one timer tick or a
# neighbour VM), PR, NR, RR, ROUNDSR (the real model: "16 128", 32, 5, 3),
# P13, N13, R13 (13B: "16", 4, 5), ROUNDS13 (default 3: the runs of the
# engines alternate that many times, samples pooled, so a shift in the
# machine's bandwidth lands on all), THREADS (default "1 2"), LLAMA_BENCH
# and IK_BENCH (paths; default: the builds of tests/fixtures/build-llama.sh
# and build-ik-llama.sh, built if missing; IK_BENCH=none skips ik),
# LLAMUX_CACHE.
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
P=${P:-"16 128"} N=${N:-32} R=${R:-200}
PR=${PR:-"16 128"} NR=${NR:-32} RR=${RR:-5} ROUNDSR=${ROUNDSR:-3}
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

ik=${IK_BENCH:-}
if [ -z "$ik" ]; then
    echo "== building ik_llama.cpp (tests/fixtures/build-ik-llama.sh)" >&2
    eval "$(tests/fixtures/build-ik-llama.sh)"
    ik=$IK_BENCH
fi
peers=(llama)
[ "$ik" != none ] && peers+=(ik ik-rtr)

# One peer run: llama-bench JSON of one test (pp P or tg N).
peer() {
    local who=$1; shift
    case $who in
        llama) "$lb" "$@" -o json 2>/dev/null ;;
        ik) "$ik" "$@" -rtr 0 -o json 2>/dev/null ;;
        ik-rtr) "$ik" "$@" -rtr 1 -o json 2>/dev/null ;;
    esac
}

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
real=$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
[ -f "$real" ] && models+=("$real")
[ $with13 = 1 ] && models+=("$m13")

load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== bandwidth" >&2
for t in $THREADS; do "$out/bw" "$t" 1024 10 > "$out/bw-$t.txt"; done

: > "$out/runs.jsonl"
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    # The tiny models' weights stay in the caches: no bandwidth share.
    if [ "$m" = "$m13" ]; then
        ps=$P13 n=$N13 r=$R13 rounds=$ROUNDS13 bwopt=--bandwidth
    elif [ "$m" = "$real" ]; then
        ps=$PR n=$NR r=$RR rounds=$ROUNDSR bwopt=--bandwidth
    else
        ps=$P n=$N r=$R rounds=1 bwopt=
    fi
    # Page the file in once, so no engine pays for the disk.
    cat "$m" > /dev/null
    for t in $THREADS; do
        for k in $(seq "$rounds"); do
            echo "== $name, $t thread(s), round $k of $rounds" >&2
            # Alternate the engines, each test separately, to spread the
            # machine's background load over all of them.
            for p in $ps; do
                "$llamux" bench -m "$m" -t "$t" -p "$p" -n 0 -r "$r" --json > "$out/$name-t$t-llamux-pp$p-$k.json"
                for who in "${peers[@]}"; do
                    peer "$who" -m "$m" -t "$t" -p "$p" -n 0 -r "$r" > "$out/$name-t$t-$who-pp$p-$k.json"
                done
            done
            # --bandwidth: memory bandwidth measured right before and after
            # each decode repetition. On this kind of VM it moves with where
            # the host runs the vCPUs (2 threads read 30-36 GB/s or 60-68
            # within seconds), so decode is compared with what the memory
            # gave at that time.
            "$llamux" bench -m "$m" -t "$t" -p 0 -n "$n" -r "$r" $bwopt --json > "$out/$name-t$t-llamux-tg-$k.json"
            for who in "${peers[@]}"; do
                peer "$who" -m "$m" -t "$t" -p 0 -n "$n" -r "$r" > "$out/$name-t$t-$who-tg-$k.json"
            done
        done
        echo "{\"model\":\"$name\",\"threads\":$t,\"p\":[${ps// /,}],\"n\":$n,\"r\":$r,\"rounds\":$rounds,\"peers\":\"${peers[*]}\"}" >> "$out/runs.jsonl"
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for t in $THREADS; do "$out/bw" "$t" 1024 10 >> "$out/bw-$t.txt"; done

python3 - "$out" "$load0" "$load1" "$ik" <<'PY'
import json, os, platform, subprocess, sys, time
out, load0, load1, ik = sys.argv[1:5]
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
# (min-max) of the samples, every round's samples pooled.
def med(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2, v[0], v[-1]
def runs_of(name, t, who, kind, rounds):
    return [json.load(open(f"{out}/{name}-t{t}-{who}-{kind}-{k}.json")) for k in range(1, rounds + 1)]
def ours(name, t, kind, rounds):
    js = runs_of(name, t, "llamux", kind, rounds)
    key = "tg" if kind == "tg" else "pp"
    return med([x for j in js for x in j[key]["samples_ts"]]) + (js[0]["weight_bytes"], js[0]["isa"])
def share(name, t, rounds):
    bs = [j["tg"].get("bandwidth") for j in runs_of(name, t, "llamux", "tg", rounds)]
    if not all(bs):
        return "-", "-"
    gbs = med([x for b in bs for x in b["samples_gbs"]])[0]
    return f"{gbs:.2f}", f"{100 * med([x for b in bs for x in b['samples_share']])[0]:.0f}%"
def theirs(name, t, who, kind, rounds):
    try:
        return med([x for j in runs_of(name, t, who, kind, rounds) for x in j[0]["samples_ts"]])
    except (OSError, ValueError, IndexError, KeyError):
        return None  # that engine failed on this model (e.g. a type it lacks)
def fmt(v):
    return "-" if v is None else f"{v[0]:.2f} [{v[1]:.4g}-{v[2]:.4g}]"
names = {"llama": "llama.cpp", "ik": "ik", "ik-rtr": "ik -rtr"}
print(f"# Llamux vs llama.cpp and ik_llama.cpp llama-bench ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit})")
print(f"# {cpu}, {os.cpu_count()} cores, {int(mem) / 1048576:.0f} GiB RAM, {platform.release()}")
print(f"# load average before {load0}, after {load1}")
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
ts = sorted({r["threads"] for r in runs})
print("# streaming read bandwidth (bench/bw.c, best of the start and end of the run): " + ", ".join(f"{t} thread(s) {bw(t):.2f} GB/s" for t in ts))
print()
peers = runs[0]["peers"].split() if runs else ["llama"]
hdr = ["model", "t", "test", "llamux t/s"] + [f"{names[p]} t/s" for p in peers] + ["vs llama.cpp", "vs best peer", "llamux GB/s", "bw GB/s", "% of bw"]
rows = []
isa = "?"
for r in runs:
    name, t, k = r["model"], r["threads"], r.get("rounds", 1)
    for kind in [f"pp{p}" for p in r["p"]] + ["tg"]:
        o = ours(name, t, kind, k)
        isa = o[4]
        th = {p: theirs(name, t, p, kind, k) for p in peers}
        best = max((v[0] for v in th.values() if v), default=None)
        ll = th.get("llama")
        row = [name, str(t), kind if kind != "tg" else f"tg{r['n']}", fmt(o[:3])] + [fmt(th[p]) for p in peers]
        row += [f"{o[0] / ll[0]:.2f}x" if ll else "-", f"{o[0] / best:.2f}x" if best else "-"]
        if kind == "tg":
            bwt, sh = share(name, t, k)
            row += [f"{o[0] * o[3] / 1e9:.2f}", bwt, sh]
        else:
            row += ["", "", ""]
        rows.append(row)
w = [max(len(x[i]) for x in rows + [hdr]) for i in range(len(hdr))]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for x in rows:
    print("| " + " | ".join(c.rjust(w[i]) if i > 0 else c.ljust(w[i]) for i, c in enumerate(x)) + " |")
print()
rounds = {r["model"]: r.get("rounds", 1) for r in runs}
print("# tokens/s: median [min-max] of the repetitions, pooled over the rounds (" + ", ".join(f"{m}: {k}" for m, k in rounds.items()) + ");")
print(f"# llamux kernels: {isa}; ratios are Llamux / peer medians; best peer = the fastest of {', '.join(names[p] for p in peers)} in that cell;")
print(f"# ik_llama.cpp: {ik} (ik-llama-cpp-python 0.1.5 sdist, GGML_NATIVE), without and with run-time repacking (-rtr 1);")
print("# GB/s = decode tokens/s x bytes of weights read per token; bw = streaming-read bandwidth on the same threads, measured by `llamux bench")
print("# --bandwidth` just before and just after each decode repetition (the larger of the two; median over repetitions); % of bw = median")
print("# over repetitions of that repetition's decode GB/s / its bw (not measured for the tiny models, whose weights stay in the caches).")
PY
