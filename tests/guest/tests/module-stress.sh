#!/bin/sh
# Guest test: hostile use of /proc/llamux (run through
# tests/guest/test-stress.sh). /llamux/procio makes exact write()/read()
# calls and prints errno names. What module-generate.sh covers (uid 65534,
# E2BIG via the shell, bad GGUFs, a killed reader, one rmmod mid-generation)
# is not repeated. Semantics tested here:
#   - one write() is one whole prompt / path / params set / advise record;
#     a second write() while a prompt is pending or running gets EBUSY, on
#     the same descriptor too (no appending);
#   - the first reader of a pending prompt owns the generation; other readers
#     get EBUSY while it runs and EOF when nothing is pending;
#   - a read interrupted by a signal returns EINTR (or restarts with
#     SA_RESTART) between tokens and the completion goes on, token-exact;
#   - rmmod at any time (idle, pending, running, advise in flight) frees
#     every engine byte; readers end with EOF, ESHUTDOWN or EIO.
# Needs /llamux/{llamux.ko,procio,tiny-q4_k_m.gguf,tiny-mixed.gguf}.
. /llamux/lib.sh
KO=/llamux/llamux.ko
IO=/llamux/procio
MQ=/llamux/tiny-q4_k_m.gguf
MM=/llamux/tiny-mixed.gguf
P=/proc/llamux
G=$P/generate
LOOPS=${1:-10}
# A valid advise record (llamux_engine::advise::request): prefix "Pre\nfix", event "ev",
# answers "Y" and "No".
REC=$(printf 'llxa2 512 0 7 2 0 2 1 2\nPre\nfixevYNo')
RESP_RE='^[01] [0-9]+ [0-9]+ 2 [0-9a-f]{8} [0-9a-f]{8}$'

# is WANT CMD...: CMD's output (stdout and stderr) is exactly WANT.
is() {
	_want=$1
	shift
	_got=$("$@" 2>&1)
	echo "got: $_got"
	[ "$_got" = "$_want" ]
}
idle() { grep -x 'state: idle' $P/status; }
params() { echo "$1" > $P/params; }
# ref PROMPT: the completion of PROMPT with the current params, read alone.
ref() { printf '%s' "$1" > $G && cat $G; }
unloads() { dmesg | grep -c 'engine memory outstanding at unload:'; }
clean_unloads() { dmesg | grep -c 'engine memory outstanding at unload: 0 bytes$'; }
# is_prefix FILE FULLFILE: FILE's bytes are the start of FULLFILE's.
is_prefix() { n=$(wc -c < "$1"); [ "$(head -c "$n" "$2" | md5sum)" = "$(md5sum < "$1")" ]; }
# same_files A B
same() { cmp "$1" "$2"; }

# ---- Without a model ----
step "insmod without a model" insmod $KO threads=2
step "read before any prompt: EOF, no error" is "" $IO r $G
step "write generate without a model: ENODEV" is ENODEV $IO w $G hello
step "advise without a model: ENODEV" is "write ENODEV" $IO rw $P/advise "$REC"
step "read advise before any write: EOF" is "" $IO r $P/advise
step "load: empty write EINVAL" is EINVAL $IO w $P/load ""
step "load: path of PATH_MAX bytes EINVAL" is EINVAL $IO w $P/load "/$(head -c 4095 /dev/zero | tr '\0' a)"
step "load: non-UTF-8 path ENOENT" is ENOENT $IO w $P/load "$(printf '/llamux/\377\376.gguf')"
step "load: a path split over two writes is two paths" is "ENOENT ENOENT" $IO w $P/load /llamux/tiny- q4_k_m.gguf
step "model still none" grep -x none $P/model
step "load q4_k_m in one write" is "ok:${#MQ}" $IO w $P/load $MQ

# ---- Sizes and bytes on every writable file ----
params "temperature=0 n_predict=8"
step "generate: empty write EINVAL" is EINVAL $IO w $G ""
step "generate: max_prompt+1 bytes E2BIG" is E2BIG $IO w $G "$(head -c 4097 /dev/zero | tr '\0' a)"
step "params: empty write EINVAL" is EINVAL $IO w $P/params ""
step "params: 1025 bytes E2BIG" is E2BIG $IO w $P/params "n_predict=8 $(head -c 1013 /dev/zero | tr '\0' ' ')"
step "params: non-UTF-8 EINVAL" is EINVAL $IO w $P/params "$(printf 'temperature=\377')"
step "params: top_p=5 EINVAL (out of range)" is EINVAL $IO w $P/params "top_p=5"
step "params: temperature=-1 EINVAL" is EINVAL $IO w $P/params "temperature=-1"
step "params: temperature=inf EINVAL" is EINVAL $IO w $P/params "temperature=inf"
step "params: top_k=1048577 EINVAL" is EINVAL $IO w $P/params "top_k=1048577"
bad_key() {
	[ "$($IO w $P/params 'temperature=1 bogus=2')" = EINVAL ] && cat $P/params &&
		grep -q '^temperature=0.000 .* n_predict=8$' $P/params
}
step "params: a bad key rejects the whole write" bad_key
two_params() {
	[ "$($IO w $P/params 'temperature=0' ' n_predict=5')" = 'ok:13 ok:12' ] && cat $P/params &&
		grep -q '^temperature=0.000 .* n_predict=5$' $P/params
}
step "params: two writes are two settings" two_params
params "temperature=0 n_predict=8"
step "advise: empty write EINVAL" is EINVAL $IO w $P/advise ""
step "advise: 16385 bytes E2BIG" is E2BIG $IO w $P/advise "$(head -c 16385 /dev/zero | tr '\0' a)"
step "advise: non-UTF-8 record EINVAL" is EINVAL $IO w $P/advise "$(printf 'llxa2 \377\n')"
step "advise: a record split over two writes is two bad records" is "EINVAL EINVAL" \
	$IO w $P/advise "$(printf 'llxa2 512 0 7 2 0 2 1 2\n')" "$(printf 'Pre\nfixevYNo')"
advise_ok() { r=$($IO rw $P/advise "$REC") && echo "$r" && echo "$r" | grep -Eq "$RESP_RE"; }
step "advise: the whole record in one write answers" advise_ok
non_utf8() {
	[ "$($IO w $G "$(printf 'caf\351 \377\376 na\303')")" = ok:11 ] && $IO r $G > /tmp/nonutf8 &&
		grep -x 'last_error: 0' $P/status && grep -Ex 'last_generated_tokens: [1-9][0-9]*' $P/status &&
		grep -Ex 'last_prompt_tokens: [1-9][0-9]*' $P/status
}
step "generate: a non-UTF-8 prompt is generated from" non_utf8

# ---- One prompt per write ----
RA=/tmp/ref-a RB=/tmp/ref-b
ref "Once upon a time" > $RA
ref "The quick brown fox" > $RB
ref "Once upon" > /tmp/ref-once
step "references differ" sh -c "! cmp -s $RA $RB && ! cmp -s $RA /tmp/ref-once"
step "a prompt split over two writes: the second gets EBUSY" is "ok:9 EBUSY" $IO w $G "Once upon" " a time"
split_first() { $IO r $G > /tmp/split && same /tmp/split /tmp/ref-once; }
step "... and the first write alone is the prompt" split_first
step "read with no pending prompt: EOF" is "" $IO r $G
one_byte() { printf 'Once upon a time' > $G && $IO r $G -b 1 > /tmp/b1 && same /tmp/b1 $RA; }
step "1-byte reads give the same completion" one_byte
params "temperature=0 n_predict=64"
ref "Once upon a time" > /tmp/ref-long
early_close() {
	printf 'Once upon a time' > $G && $IO r $G -c 3 > /tmp/c3 && [ $(wc -c < /tmp/c3) = 3 ] &&
		is_prefix /tmp/c3 /tmp/ref-long && idle
}
step "a reader closing after 3 bytes ends the request" early_close
again() { ref 'Once upon a time' > /tmp/again && same /tmp/again /tmp/ref-long; }
step "next request after it is whole" again

# ---- Concurrency ----
params "temperature=0 n_predict=8"
cw() {
	i=0
	while [ $i -lt 8 ]; do $IO w $G "Once upon a time" > /tmp/w$i & i=$((i + 1)); done
	wait
	cat /tmp/w?
	[ "$(cat /tmp/w? | grep -c '^ok:16$')" = 1 ] && [ "$(cat /tmp/w? | grep -c '^EBUSY$')" = 7 ] &&
		$IO r $G > /tmp/cw && same /tmp/cw $RA
}
step "8 concurrent writers: one ok, 7 EBUSY, one whole completion" cw
cr() {
	printf 'The quick brown fox' > $G
	i=0
	while [ $i -lt 6 ]; do $IO r $G > /tmp/r$i 2> /tmp/e$i & i=$((i + 1)); done
	wait
	won=0
	i=0
	while [ $i -lt 6 ]; do
		echo "reader $i: $(wc -c < /tmp/r$i) bytes, $(cat /tmp/e$i)"
		if [ -s /tmp/r$i ]; then
			same /tmp/r$i $RB || return 1
			won=$((won + 1))
		else	# lost: EBUSY while the winner ran, or EOF after it
			[ ! -s /tmp/e$i ] || grep -qx 'read EBUSY' /tmp/e$i || return 1
		fi
		i=$((i + 1))
	done
	[ $won = 1 ] && idle
}
step "6 concurrent readers: one whole completion, the rest EBUSY or EOF" cr
# Storm: writers and readers of two prompts at once; every completion
# anyone gets is exactly one of the two references (never interleaved).
storm() {
	w=0
	while [ $w -lt 4 ]; do
		(
			k=0
			while [ $k -lt 6 ]; do
				if [ $(((w + k) % 2)) = 0 ]; then pr="Once upon a time"; else pr="The quick brown fox"; fi
				r=$($IO w $G "$pr")
				case "$r" in ok:*|EBUSY) ;; *) echo "worker $w: write: $r" >> /tmp/sfail ;; esac
				$IO r $G > /tmp/s$w-$k 2> /tmp/se$w-$k
				[ ! -s /tmp/se$w-$k ] || grep -qx 'read EBUSY' /tmp/se$w-$k ||
					echo "worker $w: $(cat /tmp/se$w-$k)" >> /tmp/sfail
				k=$((k + 1))
			done
		) &
		w=$((w + 1))
	done
	fails=0
	wait
	# A prompt left pending by the last writer is drained here.
	cat $G > /dev/null
	got=0
	for f in /tmp/s?-?; do
		[ -s $f ] || continue
		got=$((got + 1))
		cmp -s $f $RA || cmp -s $f $RB || { echo "$f is neither reference:"; cat $f; fails=1; }
	done
	echo "$got completions, $(cat /tmp/se?-? | grep -c EBUSY) EBUSY reads"
	cat /tmp/sfail 2>/dev/null
	[ $fails = 0 ] && [ ! -e /tmp/sfail ] && [ $got -ge 1 ] && idle
}
step "storm of 4 writer/readers x 6: completions never interleave" storm

# ---- Signals ----
params "temperature=0 n_predict=32"
ref "Once upon a time" > /tmp/ref-a32
sig_read() { # FLAGS...: completion under a 5 ms SIGALRM timer equals the reference
	printf 'Once upon a time' > $G && $IO r $G -b 1 -i 5 "$@" > /tmp/sig 2> /tmp/sige
	rc=$?
	cat /tmp/sige
	[ $rc = 0 ] && grep -q '^eintr [0-9]' /tmp/sige && same /tmp/sig /tmp/ref-a32 && idle
}
step "SIGALRM every 5 ms, no SA_RESTART: EINTR retried, completion token-exact" sig_read
step "SIGALRM every 5 ms with SA_RESTART: completion token-exact" sig_read -R
stop_cont() {
	printf 'Once upon a time' > $G || return 1
	$IO r $G -b 1 > /tmp/stop &
	pid=$!
	sleep 0.2
	kill -STOP $pid
	sleep 0.5
	kill -CONT $pid
	wait $pid && same /tmp/stop /tmp/ref-a32
}
step "SIGSTOP/SIGCONT of a reader: completion whole" stop_cont

# ---- Model replace and advise while busy ----
params "temperature=0 n_predict=64"
busy() {
	# 256 tokens, and the load tried as soon as the reader has started the
	# generation: a fixed wait raced the generation's end once the kernels
	# got faster (64 tokens were over within 0.3 s under TCG).
	params "temperature=0 n_predict=256"
	ref 'Once upon a time' > /tmp/ref-256 || return 1
	printf 'Once upon a time' > $G || return 1
	[ "$($IO w $P/load $MM)" = EBUSY ] || { echo "load while pending not EBUSY"; return 1; }
	$IO r $G > /tmp/busy &
	rd=$!
	n=0
	until grep -qx 'state: running' $P/status || [ $n -ge 500 ]; do sleep 0.01; n=$((n + 1)); done
	l=$($IO w $P/load $MM)
	a=$($IO rw $P/advise "$REC")
	grep -x 'state: running' $P/status || echo "(generation over before the advise was served)"
	wait $rd
	params "temperature=0 n_predict=64"
	echo "load while running: $l; advise while running: $a"
	# Advise requests are served between the generation's tokens (the
	# kernel advisor is not starved by a generation).
	[ "$l" = EBUSY ] && echo "$a" | grep -Eq "$RESP_RE" && same /tmp/busy /tmp/ref-256 && grep -qx "path: $MQ" $P/model
}
step "load while a generation is pending/running: EBUSY; advise served; completion intact" busy
step "replace the model once idle" is "ok:${#MM}" $IO w $P/load $MM
step "model is tiny-mixed" grep -x "path: $MM" $P/model
step "replace back while idle" is "ok:${#MQ}" $IO w $P/load $MQ
back() { ref 'Once upon a time' > /tmp/back && same /tmp/back /tmp/ref-long; }
step "same completion as before the replace" back
step "rmmod" rmmod llamux

# ---- Unload/reload loop: idle, pending, running, advise in flight ----
u0=$(unloads)
reload() { # I
	case $(($1 % 4)) in
	0) what=idle ;;
	1) what=pending ;;
	2) what=running ;;
	3) what=advise ;;
	esac
	echo "iteration $1: rmmod while $what"
	insmod $KO model=$MQ threads=$(($1 % 2 + 1)) || return 1
	params "temperature=0 n_predict=64"
	rd=
	case $what in
	pending) printf 'Once upon a time' > $G || return 1 ;;
	running)
		printf 'Once upon a time' > $G || return 1
		$IO r $G > /tmp/cut 2> /tmp/cute &
		rd=$!
		sleep 0.5 ;;
	advise)
		( while $IO rw $P/advise "$REC" > /dev/null 2>&1; do :; done ) &
		rd=$!
		sleep 0.5 ;;
	esac
	rmmod llamux || return 1
	if [ -n "$rd" ]; then wait $rd; fi
	if [ $what = running ]; then
		echo "reader got $(wc -c < /tmp/cut) bytes, $(cat /tmp/cute)"
		is_prefix /tmp/cut /tmp/ref-long || return 1
		[ ! -s /tmp/cute ] || grep -Eqx 'read (ESHUTDOWN|EIO)' /tmp/cute || return 1
	fi
	! grep -q '^llamux ' /proc/modules && dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep ': 0 bytes$'
}
i=1
while [ $i -le $LOOPS ]; do
	step "reload $i/$LOOPS" reload $i
	i=$((i + 1))
done
loop_clean() { echo "$(($(unloads) - u0)) unloads"; [ $(($(unloads) - u0)) = $LOOPS ]; }
step "the loop unloaded $LOOPS times" loop_clean
step "insmod after the loop" insmod $KO model=$MQ threads=2
params "temperature=0 n_predict=64"
after() { ref 'Once upon a time' > /tmp/after && same /tmp/after /tmp/ref-long; }
step "whole completion after the loop" after
step "advise after the loop" advise_ok
step "final rmmod" rmmod llamux
all_clean() { echo "$(unloads) unloads, $(clean_unloads) with 0 bytes"; [ $(unloads) -ge 1 ] && [ $(unloads) = $(clean_unloads) ]; }
step "every unload of this test freed all engine memory" all_clean
finish
