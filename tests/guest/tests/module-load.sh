#!/bin/sh
# Guest test: loading models into llamux.ko (run through tests/guest/test-load.sh,
# which attaches tiny-q4_k_m.gguf as the read-only disk /dev/vda and shares
# tests/models over 9p).
#   progress in /proc/llamux/status during a load; a load interrupted by a
#   fatal signal (EINTR), by a newer load and by rmmod (ECANCELED) leaves the
#   old model (or none) usable; EFBIG over max_model_mb, ENOMEM when memory
#   is short; the KV cache sized by n_ctx with its cost shown, f16 KV output
#   equal to `llamux run --kv-f16`; a model on /dev/vda; the page cache of a
#   file on 9p (cache=loose) dropped while loading (drop_cache=1) or kept.
. /llamux/lib.sh
KO=/llamux/llamux.ko
U=/llamux/llamux
MQ=/llamux/tiny-q4_k_m.gguf
MM=/llamux/tiny-mixed.gguf
P=/proc/llamux
S=/sys/module/llamux/parameters
N=16

st() { sed -n "s/^$1: //p" $P/status; }
ids_kernel() { st last_ids | sed 's/^ *//'; }
ids_user() { # MODEL PROMPT [run options]
	m=$1 p=$2
	shift 2
	"$U" run --model "$m" -t 2 --prompt "$p" -n $N --json "$@" |
		sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p' | tr ',' ' '
}
# same_ids MODEL PROMPT [run options]: the loaded model answers as user space.
same_ids() {
	m=$1 p=$2
	shift 2
	echo "temperature=0 n_predict=$N" > $P/params || return 1
	printf '%s' "$p" > $P/generate && cat $P/generate > /dev/null || return 1
	k=$(ids_kernel)
	u=$(ids_user "$m" "$p" "$@")
	echo "kernel ids: $k"
	echo "user ids:   $u"
	[ -n "$k" ] && [ "$k" = "$u" ]
}
# kv_bytes_expected N_CTX ELEM_BYTES: K and V for every layer and position,
# from the dims the module reports.
kv_bytes_expected() {
	d=$(grep '^dims:' $P/model)
	nl=$(echo "$d" | sed 's/.* n_layer=\([0-9]*\).*/\1/')
	nkv=$(echo "$d" | sed 's/.* n_head_kv=\([0-9]*\).*/\1/')
	hd=$(echo "$d" | sed 's/.* head_dim=\([0-9]*\).*/\1/')
	echo $((2 * nl * $1 * nkv * hd * $2))
}
kv_status_is() { # N_CTX TYPE ELEM_BYTES
	want="kv_cache: n_ctx=$1 type=$2 bytes=$(kv_bytes_expected $1 $3)"
	echo "status: $(grep '^kv_cache:' $P/status)"
	echo "want:   $want"
	grep -qx "$want" $P/status && dmesg | grep -q "llamux: $want"
}
# A sparse file of SIZE on tmpfs: reading it costs no memory but time.
sparse() { dd if=/dev/zero of="$1" bs=1 count=0 seek="$2" 2>/dev/null; }
# bg_load FILE: starts a load in the background; BG = its pid.
bg_load() {
	sh -c "echo $1 > $P/load" 2>/tmp/bg.err &
	BG=$!
}
# Waits until status shows the load past its first chunk (prints it).
wait_loading() {
	i=0
	while [ $i -lt 300 ]; do
		if [ "$(st load_state)" = loading ]; then
			b=$(st load_bytes)
			[ "${b%% *}" -gt 0 ] && { grep '^load_' $P/status; return 0; }
		fi
		usleep 20000
		i=$((i + 1))
	done
	echo "never saw the load in progress"; grep '^load_\|^last_load' $P/status
	return 1
}

step "insmod threads=2 n_ctx=256 model=q4_k_m chunk_kb=4" insmod $KO threads=2 n_ctx=256 chunk_kb=4 model=$MQ
step "dmesg: load start with file and size" dmesg_has "llamux: loading $MQ \($(wc -c < $MQ) bytes, chunk 4 KiB"
step "dmesg: load end with time and rate" dmesg_has "llamux: loaded $MQ \([0-9]+ bytes, [0-9]+ ms, [0-9]+ MB/s"
step "status after load: idle, no error" sh -c "grep -x 'load_state: idle' $P/status && grep -x 'last_load_error: 0' $P/status && grep '^last_load_mb_per_s: ' $P/status"
step "KV cache f32 sized by n_ctx=256, shown in status and dmesg" kv_status_is 256 f32 4
step "f32 greedy equals user space" same_ids $MQ "Once upon a time"

# f16 KV: set for the next load, half the bytes, output equal to user space's f16.
step "kv_type=f16 n_ctx=128 for the next load" sh -c "echo f16 > $S/kv_type && echo 128 > $S/n_ctx && grep -x f16 $S/kv_type"
step_not "kv_type rejects other values" sh -c "echo q8 > $S/kv_type"
step "reload with f16 KV" sh -c "echo $MQ > $P/load"
step "KV cache f16 at n_ctx=128: 2 bytes an element" kv_status_is 128 f16 2
for p in "Once upon a time" "The quick brown fox" "Hello, world"; do
	step "f16 KV greedy equals llamux run --kv-f16: $p" same_ids $MQ "$p" --kv-f16 --ctx 128
done
step "f16 KV on tiny-mixed equals llamux run --kv-f16" sh -c "echo $MM > $P/load"
step "  mixed f16 ids" same_ids $MM "Once upon a time" --kv-f16 --ctx 128
echo f32 > $S/kv_type
echo 256 > $S/n_ctx
step "back to q4_k_m, f32 KV" sh -c "echo $MQ > $P/load"

# Progress and interrupts: a big sparse file read in 4 KiB chunks is slow
# enough under TCG to be caught in the middle.
BIG=/tmp/big.gguf
sparse $BIG 1200M
# load_then_kill: progress shows, then kill -9 the writer mid-load.
load_then_kill() {
	bg_load $BIG
	wait_loading
	ok=$?
	kill -9 $BG
	wait $BG
	return $ok
}
echo 4 > $S/chunk_kb
step "load progress visible in status, then kill -9" load_then_kill
step "a fatal signal interrupts the load (dmesg, EINTR)" dmesg_has "llamux: load of $BIG interrupted after [0-9]+ of 1258291200 bytes \(errno -4\)"
step "after the kill: idle, EINTR recorded" sh -c "grep -x 'load_state: idle' $P/status && grep -x 'last_load_error: -4' $P/status"
step "after the kill: the old model is still loaded" sh -c "grep -x 'model_path: $MQ' $P/status"
step "after the kill: the old model still answers" same_ids $MQ "Once upon a time"

bg_load $BIG
step "a load in progress" wait_loading
step "a second load while it runs" sh -c "echo $MM > $P/load"
wait $BG
rc=$?
step "the first load ended with ECANCELED" sh -c "echo 'rc=$rc'; cat /tmp/bg.err; [ $rc -ne 0 ] && grep -qi 'cancel' /tmp/bg.err"
step "  dmesg: interrupted by the newer load" dmesg_has "llamux: load of $BIG interrupted after [0-9]+ of 1258291200 bytes \(errno -125\)"
step "the newer load won" sh -c "grep -x 'model_path: $MM' $P/status && grep -x 'last_load_error: 0' $P/status"
step "  and answers" same_ids $MM "Hello, world"

# Limits: the old model stays.
echo 1 > $S/max_model_mb
step_not "over max_model_mb=1: refused" sh -c "echo $MQ > $P/load 2>/tmp/efbig.err"
step "  with EFBIG (File too large)" sh -c "cat /tmp/efbig.err; grep -qi 'too large' /tmp/efbig.err && grep -x 'last_load_error: -27' $P/status"
step "  dmesg names the limit" dmesg_has "llamux: $MQ: [0-9]+ bytes is over max_model_mb=1"
echo 65536 > $S/max_model_mb
HUGE=/tmp/huge.gguf
mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo)
sparse $HUGE $((mem_kb * 2))K
step_not "a file twice the RAM: refused" sh -c "echo $HUGE > $P/load 2>/tmp/enomem.err"
step "  with ENOMEM, before allocating" sh -c "cat /tmp/enomem.err; grep -qi 'memory' /tmp/enomem.err && grep -x 'last_load_error: -12' $P/status"
step "  dmesg says what did not fit" dmesg_has "llamux: $HUGE: [0-9]+ bytes do not fit: [0-9]+ bytes available"
rm -f $HUGE
step "after EFBIG and ENOMEM: the old model answers" same_ids $MM "Once upon a time"

# rmmod in the middle of a load.
bg_load $BIG
step "load in progress before rmmod" wait_loading
step "rmmod during a load" rmmod llamux
wait $BG
rc=$?
step "the load ended with ECANCELED" sh -c "echo rc=$rc; cat /tmp/bg.err; [ $rc -ne 0 ] && grep -qi 'cancel' /tmp/bg.err"
step_not "module gone" grep -E '^llamux ' /proc/modules
step "no engine memory leaked" sh -c "dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep -q ': 0 bytes'"
rm -f $BIG

# A model on a disk (/dev/vda, a block device: read, never mapped).
step "/dev/vda is the model file (size rounded to sectors)" sh -c "n=\$((\$(cat /sys/block/vda/size) * 512)); echo \$n; [ \$n -ge $(wc -c < $MQ) ] && [ \$n -lt $(($(wc -c < $MQ) + 512)) ]"
step "insmod model=/dev/vda" insmod $KO threads=2 chunk_kb=64 model=/dev/vda
step "the disk model answers as user space on /dev/vda" same_ids /dev/vda "Once upon a time"
rmmod llamux

# A model in a regular file with a page cache (9p, cache=loose): the
# cache is dropped chunk by chunk with drop_cache=1, kept with drop_cache=0.
MF=/mnt/cache/tiny-f32.gguf
# (from /: busybox mount takes the tag "llamux" for the file /llamux/llamux)
step "9p share remounted with cache=loose" sh -c "cd / && umount /mnt/host && mkdir -p /mnt/cache &&
	mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose llamux /mnt/cache && test -f $MF"
FSZ=$(wc -c < $MF 2>/dev/null || echo 0)
cached_kb() { awk '/^Cached:/ { print $2 }' /proc/meminfo; }
share_load() { # DROP: prints the growth of Cached in bytes over the load
	sync; echo 3 > /proc/sys/vm/drop_caches
	c0=$(cached_kb)
	insmod $KO threads=2 chunk_kb=64 drop_cache=$1 model=$MF || return 1
	c1=$(cached_kb)
	echo $(((c1 - c0) * 1024))
}
dropped=$(share_load 1)
echo "LLAMUX-PAGECACHE drop_cache=1 cached_growth=$dropped file=$FSZ"
step "drop_cache=1: the file's page cache is dropped while loading" sh -c "grep -x 'model_path: $MF' $P/status && [ -n '$dropped' ] && [ '$dropped' -lt $((FSZ / 4)) ]"
step "the shared model answers as user space" same_ids $MF "Once upon a time"
rmmod llamux
kept=$(share_load 0)
echo "LLAMUX-PAGECACHE drop_cache=0 cached_growth=$kept file=$FSZ"
step "drop_cache=0: the file's pages stay cached" sh -c "grep -x 'model_path: $MF' $P/status && [ -n '$kept' ] && [ '$kept' -ge $((FSZ * 3 / 4)) ]"
step "status shows drop_cache=0" sh -c "grep -x 'drop_cache: 0' $P/status"
step "rmmod" rmmod llamux
step "no engine memory leaked at the end" sh -c "dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep -q ': 0 bytes'"
finish
