#!/bin/sh
# Guest test: the llamux.ko that `dkms build/install` made from the Debian
# package's source (run through tests/guest/test-dkms.sh) loads on this
# kernel and answers prompts as `llamux run` does. Argument: the kernel
# release DKMS built for.
. /llamux/lib.sh
KO=/llamux/llamux.ko
U=/llamux/llamux
MQ=/llamux/tiny-q4_k_m.gguf
P=/proc/llamux
KREL="$1"

step "running kernel is the one DKMS built for ($KREL)" sh -c "[ \"\$(uname -r)\" = '$KREL' ]"
step "modinfo vermagic names this kernel" sh -c "modinfo -F vermagic $KO | grep -q \"^\$(uname -r) \""
step "insmod the DKMS-built module with a model" insmod $KO model=$MQ
step "load line in dmesg" dmesg_has "llamux: loaded $MQ"
answer() { # PROMPT: kernel greedy ids equal user space's
	echo "temperature=0 n_predict=16" > $P/params || return 1
	printf '%s' "$1" > $P/generate || return 1
	text=$(cat $P/generate) || return 1
	k=$(sed -n 's/^last_ids: *//p' $P/status)
	u=$("$U" run --model $MQ -t 2 --prompt "$1" -n 16 --json |
		sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p' | tr ',' ' ')
	echo "prompt: $1"; echo "kernel text: $text"; echo "kernel ids: $k"; echo "user ids:   $u"
	[ -n "$k" ] && [ "$k" = "$u" ]
}
step "answers 'Once upon a time' as llamux run" answer "Once upon a time"
step "answers 'Hello, world' as llamux run" answer "Hello, world"
step "llamux query streams the answer" sh -c "$U query 'The quick brown fox' | grep -q ."
step "rmmod" rmmod llamux
step "no engine memory leaked" sh -c "dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep -q ': 0 bytes'"
finish
