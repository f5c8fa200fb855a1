#!/bin/sh
# Guest side of bench/module-13b.sh: the 13B-shape model on /dev/vda.
#   bench-13b.sh TOKENS N_CTX KV_TYPE [PROMPT]   (PROMPT: one word)
# Loads it twice (page cache kept, then dropped while loading), generates
# TOKENS greedy tokens through /proc/llamux/generate, then the same with
# `llamux run` on /dev/vda after rmmod; prints BENCH13B lines.
. /llamux/lib.sh
N=${1:-16} CTX=${2:-64} KV=${3:-f16}
KO=/llamux/llamux.ko
U=/llamux/llamux
P=/proc/llamux
PROMPT=${4:-"def quicksort(arr):"}
UKV=""
[ "$KV" = f16 ] && UKV=--kv-f16

mem() {
	awk '/^(MemTotal|MemFree|MemAvailable|Buffers|Cached|VmallocUsed):/ {
		sub(":", "", $1); printf "%s=%dMiB ", $1, $2 / 1024 }' /proc/meminfo
}
st() { sed -n "s/^$1: //p" $P/status; }
# watch_load PID: a progress line with meminfo every 10 s while the load
# runs, then the peak of Buffers+Cached (the page cache) seen.
watch_load() {
	peak=0
	while kill -0 $1 2>/dev/null; do
		pc=$(awk '/^(Buffers|Cached):/ { s += $2 } END { print int(s / 1024) }' /proc/meminfo)
		[ "$pc" -gt "$peak" ] && peak=$pc
		[ -r $P/status ] && [ "$(st load_state)" = loading ] &&
			echo "BENCH13B progress t=$(cut -d' ' -f1 /proc/uptime)s bytes=$(st load_bytes | tr -d ' ') rate=$(st load_mb_per_s)MB/s $(mem)"
		sleep 10
	done
	echo "BENCH13B page_cache_peak_during_load=${peak}MiB"
	wait $1
}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

echo "BENCH13B model_bytes=$(($(cat /sys/block/vda/size) * 512)) tokens=$N n_ctx=$CTX kv=$KV cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "BENCH13B meminfo_before $(mem)"

# 1. The page cache kept (drop_cache=0): the model twice, until reclaim
# (a block device's cache also goes when its last opener closes it).
insmod $KO threads=2 n_ctx=$CTX kv_type=$KV drop_cache=0 model=/dev/vda &
watch_load $!
step "load with drop_cache=0" sh -c "grep -x 'model_path: /dev/vda' $P/status"
echo "BENCH13B load_cache_kept: $(dmesg | grep 'llamux: loaded /dev/vda' | tail -n1 | sed 's/.*(//; s/)//')"
echo "BENCH13B meminfo_loaded_cache_kept $(mem)"
step "rmmod" rmmod llamux
drop
echo "BENCH13B meminfo_after_rmmod $(mem)"

# 2. The page cache dropped chunk by chunk (drop_cache=1, the default).
step "insmod without a model" insmod $KO threads=2 n_ctx=$CTX kv_type=$KV drop_cache=1
sh -c "echo /dev/vda > $P/load" &
watch_load $!
step "load with drop_cache=1" sh -c "grep -x 'model_path: /dev/vda' $P/status"
echo "BENCH13B load_cache_dropped: $(dmesg | grep 'llamux: loaded /dev/vda' | tail -n1 | sed 's/.*(//; s/)//')"
echo "BENCH13B kv_cache $(st kv_cache)"
echo "BENCH13B meminfo_loaded_cache_dropped $(mem)"
echo "BENCH13B engine_alloc_bytes=$(st engine_alloc_bytes)"

echo "temperature=0 n_predict=$N" > $P/params
# Streamed to the serial log (a 13B token under TCG can take minutes).
printf '%s' "$PROMPT" > $P/generate && cat $P/generate | tee /tmp/k.txt
echo
step "generate up to $N tokens in the kernel" sh -c "[ \"\$(sed -n 's/^last_generated_tokens: //p' $P/status)\" -ge 1 ]"
kids=$(st last_ids | sed 's/^ *//')
echo "BENCH13B kernel_ids=$kids"
echo "BENCH13B kernel_prefill_tokens_per_s=$(st last_prefill_tokens_per_s) prompt_tokens=$(st last_prompt_tokens) prefill_ms=$(st last_prefill_ms)"
echo "BENCH13B kernel_decode_tokens_per_s=$(st last_decode_tokens_per_s) decode_ms=$(st last_decode_ms) generated=$(st last_generated_tokens)"
step "rmmod" rmmod llamux
drop

# 3. User space, same guest, same file (mmap of /dev/vda).
uj=$("$U" run --model /dev/vda -t 2 --ctx $CTX $UKV --prompt "$PROMPT" -n $N --json)
echo "$uj" | head -c 2000 | sed 's/^/  | /'
uids=$(echo "$uj" | sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p' | tr ',' ' ')
ut=$(echo "$uj" | sed -n 's/.*"decode_tokens_per_s":\([0-9.]*\).*/\1/p')
up=$(echo "$uj" | sed -n 's/.*"prefill_tokens_per_s":\([0-9.]*\).*/\1/p')
kt=$(echo "$kids" | wc -w)
echo "BENCH13B user_ids=$uids"
echo "BENCH13B user_prefill_tokens_per_s=$up user_decode_tokens_per_s=$ut"
echo "BENCH13B meminfo_user_run_done $(mem)"
step "kernel and user-space token ids equal ($kt tokens)" sh -c "[ -n '$kids' ] && [ '$kids' = '$uids' ]"
[ "$kids" = "$uids" ] && echo "BENCH13B ids_equal=yes" || echo "BENCH13B ids_equal=no"
finish
