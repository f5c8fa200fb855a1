#!/bin/sh
# Guest test: llamux.ko hosts the engine. Needs /llamux/llamux.ko, the static
# user-space /llamux/llamux and the test models (run through
# tests/guest/test-generate.sh).
#   greedy completions through /proc/llamux/generate equal `llamux run`
#   token for token (threads=1 and threads=2), a malformed GGUF fails with an
#   errno and a dmesg line and leaves the module usable, concurrent writers
#   get EBUSY, a 256-token generation, rmmod during a generation.
. /llamux/lib.sh
KO=/llamux/llamux.ko
U=/llamux/llamux
MQ=/llamux/tiny-q4_k_m.gguf
MM=/llamux/tiny-mixed.gguf
P=/proc/llamux
N=16

ids_kernel() { sed -n 's/^last_ids: *//p' $P/status; }
ids_user() { # MODEL THREADS PROMPT N ($UFLAGS: e.g. --no-repack)
	"$U" $UFLAGS run --model "$1" -t "$2" --prompt "$3" -n "$4" --json |
		sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p' | tr ',' ' '
}
# same_ids MODEL THREADS PROMPT N: kernel and user space agree.
same_ids() {
	echo "temperature=0 n_predict=$4" > $P/params || return 1
	printf '%s' "$3" > $P/generate || return 1
	text=$(cat $P/generate) || return 1
	k=$(ids_kernel)
	u=$(ids_user "$1" "$2" "$3" "$4")
	echo "prompt: $3"
	echo "kernel text: $text"
	echo "kernel ids: $k"
	echo "user ids:   $u"
	[ -n "$k" ] && [ "$k" = "$u" ]
}

step "insmod threads=1 model=q4_k_m chunk_kb=4" insmod $KO threads=1 chunk_kb=4 model=$MQ
step "load line in dmesg" dmesg_has 'llamux: loaded /llamux/tiny-q4_k_m.gguf'
step "model info" cat $P/model
step "status" cat $P/status
# The module picks its kernels by CPUID like user space (the same level),
# and both repack Q4_K/Q6_K for the 8-row kernels where those run.
same_as_user() { # FIELD KEY: /proc/llamux/model's "FIELD: x" equals bench --json's "KEY": "x"
	k=$(sed -n "s/^$1: //p" $P/model)
	u=$("$U" bench -m $MQ -p 1 -n 1 -r 1 --json | sed -n "s/.*\"$2\": *\"\([a-z0-9]*\)\".*/\1/p")
	echo "kernel $1: $k, user space: $u"
	[ -n "$k" ] && [ "$k" = "$u" ]
}
step "kernels line equals user space's" same_as_user kernels isa
step "layout line equals user space's" same_as_user layout layout
if grep -qx 'kernels: scalar' $P/model; then
	step "scalar kernels: row-major layout" grep -x 'layout: rows' $P/model
else
	step "SIMD kernels: x8 layout" grep -x 'layout: x8' $P/model
	step "repack line in dmesg" dmesg_has 'llamux: repacked [0-9]+ bytes of Q4_K/Q6_K matrices in [0-9]+ ms'
fi
step "files are 0600" sh -c 'for f in generate load model params status advise; do m=$(ls -l /proc/llamux/$f | cut -c1-10); echo "$f $m"; [ "$m" = "-rw-------" ] || exit 1; done'
# An unprivileged user can neither drive, reconfigure nor read the module.
grep -q '^nobody:' /etc/passwd 2>/dev/null || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> /etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >> /etc/group
step "a shell as uid 65534" su -s /bin/sh nobody -c 'test "$(id -u)" = 65534'
for f in generate load params advise; do
	step_not "uid 65534 cannot write /proc/llamux/$f" su -s /bin/sh nobody -c "echo x > $P/$f"
done
step_not "uid 65534 cannot read /proc/llamux/status" su -s /bin/sh nobody -c "cat $P/status"
for p in "Once upon a time" "The quick brown fox" "Hello, world" "1 2 3 4"; do
	step "t1 q4_k_m equal: $p" same_ids $MQ 1 "$p" $N
done
query_same() {
	echo "temperature=0 n_predict=$N" > $P/params
	printf 'Hello, world' > $P/generate && want=$(cat $P/generate) || return 1
	got=$("$U" query 'Hello, world') || return 1
	j=$("$U" query --json 'Hello, world') || return 1
	echo "generate: $want"; echo "query:    $got"; echo "json:     $j"
	[ -n "$want" ] && [ "$got" = "$want" ] && echo "$j" | grep -q "\"generated_tokens\":\[$(ids_kernel | tr ' ' ',')\]"
}
step "llamux query streams the same completion" query_same
step "rmmod" rmmod llamux

step "insmod threads=2" insmod $KO threads=2 model=$MQ
step "status threads=2" sh -c "grep -x 'threads: 2' $P/status"
for p in "Once upon a time" "The quick brown fox" "Hello, world"; do
	step "t2 q4_k_m equal: $p" same_ids $MQ 2 "$p" $N
done
step "load tiny-mixed via /proc/llamux/load" sh -c "echo $MM > $P/load"
step "model is tiny-mixed" sh -c "grep -x 'path: $MM' $P/model"
for p in "Once upon a time" "Hello, world"; do
	step "t2 mixed equal: $p" same_ids $MM 2 "$p" $N
done

# Malformed files.
head -c 3000 $MQ > /tmp/trunc.gguf
printf 'GGUFxxxxxxxxxxxxxxxxxxxxxxxx' > /tmp/junk.gguf
step_not "truncated GGUF rejected" sh -c "echo /tmp/trunc.gguf > $P/load"
step "dmesg names the problem" dmesg_has 'llamux: /tmp/trunc.gguf: .*\(errno -[0-9]+\)'
step_not "junk GGUF rejected" sh -c "echo /tmp/junk.gguf > $P/load"
step "dmesg names junk" dmesg_has 'llamux: /tmp/junk.gguf: .*\(errno -[0-9]+\)'
step_not "missing file rejected" sh -c "echo /nonexistent.gguf > $P/load"
step "still usable after bad loads" same_ids $MM 2 "Once upon a time" $N

# repack=0 keeps the file's layout, as `llamux --no-repack` does.
echo 0 > /sys/module/llamux/parameters/repack
step "repack=0: load tiny-mixed" sh -c "echo $MM > $P/load"
step "repack=0: row-major layout" grep -x 'layout: rows' $P/model
UFLAGS=--no-repack
for p in "Once upon a time" "Hello, world"; do
	step "repack=0 equals llamux --no-repack: $p" same_ids $MM 2 "$p" $N
done
UFLAGS=
echo 1 > /sys/module/llamux/parameters/repack

# Seeded sampling, hot enough to leave the argmax: the same sampler as user
# space, restarted from the seed on every request (Session::set_sampling,
# no session rebuild).
sampled_ids() { # PROMPT
	echo "temperature=4 top_k=0 top_p=1 min_p=0 repeat_penalty=1 seed=7 n_predict=16" > $P/params || return 1
	printf '%s' "$1" > $P/generate && cat $P/generate > /dev/null && ids_kernel
}
same_sampled() {
	k1=$(sampled_ids "Once upon a time") && k2=$(sampled_ids "Once upon a time") || return 1
	u=$("$U" run --model $MM -t 2 --prompt "Once upon a time" -n 16 --temperature 4 --top-k 0 --top-p 1 --seed 7 --json |
		sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p' | tr ',' ' ')
	echo "kernel ids: $k1"; echo "again:      $k2"; echo "user ids:   $u"
	[ -n "$k1" ] && [ "$k1" = "$k2" ] && [ "$k1" = "$u" ]
}
step "seeded sampling equals user space and repeats" same_sampled

# Limits and concurrency.
step_not "prompt over max_prompt: E2BIG" sh -c "head -c 5000 /dev/zero | tr '\\0' a > $P/generate"
step "bad params rejected" sh -c "! echo 'temperature=abc' > $P/params"
echo "n_predict=64" > $P/params
printf 'Once upon a time' > $P/generate
step_not "second writer gets EBUSY" sh -c "printf 'x' > $P/generate"
cat $P/generate > /dev/null

# 256 tokens, kernel vs user-space speed in this guest.
step "load q4_k_m again" sh -c "echo $MQ > $P/load"
step "256-token generation" sh -c "
	echo 'temperature=0 n_predict=256' > $P/params
	printf 'Once upon a time' > $P/generate
	cat $P/generate > /tmp/long.txt
	n=\$(sed -n 's/^last_generated_tokens: //p' $P/status)
	echo generated=\$n
	[ \"\$n\" -ge 1 ]"
kt=$(sed -n 's/^last_decode_tokens_per_s: //p' $P/status)
kn=$(sed -n 's/^last_generated_tokens: //p' $P/status)
uj=$("$U" run --model $MQ -t 2 --prompt "Once upon a time" -n 256 --json)
ut=$(echo "$uj" | sed -n 's/.*"decode_tokens_per_s":\([0-9.]*\).*/\1/p')
echo "LLAMUX-PERF kernel_decode_tokens_per_s=$kt kernel_tokens=$kn user_decode_tokens_per_s=$ut threads=2"
step "256-token ids equal user space" sh -c "[ \"\$(sed -n 's/^last_ids: *//p' $P/status)\" = \"\$(echo '$uj' | sed -n 's/.*\"generated_tokens\":\[\([^]]*\)\].*/\1/p' | tr ',' ' ')\" ]"

# A reader killed by a signal ends its request; the next one works.
echo 'temperature=0 n_predict=256' > $P/params
printf 'Once upon a time' > $P/generate
cat $P/generate > /tmp/killed.txt &
CAT=$!
sleep 1
kill $CAT
wait $CAT
step "after a killed reader: not busy" sh -c "grep -x 'state: idle' $P/status && printf 'Hello' > $P/generate && cat $P/generate > /dev/null"

# rmmod while a generation runs.
echo 'temperature=0 n_predict=256' > $P/params
printf 'Once upon a time' > $P/generate
cat $P/generate > /tmp/cut.txt &
CAT=$!
sleep 1
step "rmmod during generation" rmmod llamux
wait $CAT
echo "reader got $(wc -c < /tmp/cut.txt) bytes before unload"
step_not "module gone" grep -E '^llamux ' /proc/modules
step "no engine memory leaked by the unload" sh -c "dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep -q ': 0 bytes'"
step "insmod with a bad model= still loads" insmod $KO model=/tmp/trunc.gguf
step "dmesg names the bad model=" dmesg_has 'llamux: model=/tmp/trunc.gguf not loaded \(errno -22\)'
step "status: no model" sh -c "grep -x 'model_loaded: no' $P/status"
step_not "generate without a model fails" sh -c "printf x > $P/generate"
step "rmmod without a model" rmmod llamux
step "insmod again after rmmod" insmod $KO model=$MQ
step "generate after reload" same_ids $MQ 2 "Hello, world" 8
step "final rmmod" rmmod llamux
step "no engine memory leaked at the final unload" sh -c "dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep -q ': 0 bytes'"
finish
