#!/bin/sh
# Guest test: a real model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) in llamux.ko,
# read from the host over 9p (tests/realmodel/guest.sh). A coding question in
# ChatML, greedy: the module's generated ids equal `llamux run` on the same
# file in this guest. With the BPF object present, the exec-guard policy is
# then decided by this model in the kernel and each decision equals
# `llamux advise` in user space.
# With "latency" in PARTS: the decision latency of the kernel advisor as a
# ratio to user space in this guest, exec-guard's chat prompt on the first
# LLAMUX_REAL_EVENTS (6) held-out events of /llamux/exec.jsonl, the prefix
# prefilled before timing on both sides (a LLAMUX-PERF line).
#   realmodel.sh MODEL N_TOKENS [PARTS]   PARTS: any of "gen advise latency" (default "gen advise")
. /llamux/lib.sh
M=${1:?model path} N=${2:-16}
shift 2
PARTS=${*:-gen advise}
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
L=/bin/llamux P=/proc/llamux POL=/llamux/policies/exec-guard.toml
Q="Write a Python function is_prime(n)."
T=/run/llamux/trace.jsonl
jfield() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }
jids() { sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p'; }
jtext() { sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p'; }
now() { awk '{print $1}' /proc/uptime; }

echo "model: $M ($(ls -l "$M" | awk '{print $5}') bytes), parts: $PARTS, $N tokens, question: $Q"
t0=$(now)
step "insmod llamux.ko model=<qwen over 9p> threads=2" insmod /llamux/llamux.ko model="$M" threads=2
t1=$(now)
echo "LLAMUX-PERF load_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
dmesg | grep 'llamux: loaded'
step "the module runs qwen2" sh -c "grep -x 'arch: qwen2' $P/model"
head -n 14 $P/model
grep -E '^(engine_|mem)' $P/status

# Kernel first (llamux query applies ChatML from /proc/llamux/model's arch),
# then user space on the same file.
if has gen; then
echo "t=$(now) s: kernel generation starts"
kj=$($L query --instruct --json --params "temperature=0 n_predict=$N" "$Q")
step "kernel answered" test -n "$kj"
echo "t=$(now) s: user-space generation starts"
uj=$($L run -m "$M" -t 2 --instruct -n "$N" --temperature 0 --json -p "$Q")
step "user space answered" test -n "$uj"
echo "t=$(now) s: done"
k=$(echo "$kj" | jids) u=$(echo "$uj" | jids)
echo "kernel ids: $k"
echo "user ids:   $u"
echo "kernel text: $(echo "$kj" | jtext)"
echo "user text:   $(echo "$uj" | jtext)"
step "kernel generated $N tokens" test "$(echo "$k" | tr ',' '\n' | grep -c .)" = "$N"
step "kernel ids equal llamux run (greedy, $N tokens)" test -n "$k" -a "$k" = "$u"
kp=$(echo "$kj" | jfield prefill_tokens_per_s) kd=$(echo "$kj" | jfield decode_tokens_per_s)
up=$(echo "$uj" | jfield prefill_tokens_per_s) ud=$(echo "$uj" | jfield decode_tokens_per_s)
echo "LLAMUX-PERF prompt_tokens=$(echo "$kj" | jfield prompt_tokens) kernel_prefill_tok_s=$kp kernel_decode_tok_s=$kd user_prefill_tok_s=$up user_decode_tok_s=$ud"
fi

if has advise; then
	# An advisor policy on the same in-kernel model.
	printf '#!/bin/sh\necho tool-ran\n' > /tmp/tool
	printf '#!/bin/sh\necho python-ran\n' > /tmp/python
	chmod +x /tmp/tool /tmp/python
	decision() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"exe:$1\"" | tail -1; }
	echo "t=$(now) s: exec-guard policy with the kernel advisor"
	step "load exec-guard --advisor kernel" $L load $POL --advisor kernel --detach
	/tmp/tool >/dev/null; /tmp/python >/dev/null   # misses: fail-open, decisions requested
	step "decisions for both arrive" wait_for 3600 sh -c "[ \$(grep '\"type\":\"decision\"' $T | grep -c '\"advisor\":\"kernel\"') -ge 2 ]"
	echo "t=$(now) s: decisions in"
	$L trace --all --no-follow
	for p in /tmp/tool /tmp/python; do
		d=$(decision $p)
		ev=$(echo "$d" | sed -n 's/.*"event":\({[^}]*}\).*/\1/p')
		# Both ask in the policy's chat format (ChatML from the GGUF's template).
		adv=$($L advise -m "$M" -p $POL -e "$ev" -t 2 --json)
		echo "kernel $p: answer $(echo "$d" | jfield answer) scores $(echo "$d" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p') $(echo "$d" | jfield latency_us) us"
		echo "user   $p: answer $(echo "$adv" | jfield answer) scores $(echo "$adv" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p') $(echo "$adv" | jfield latency_us) us"
		step "$p: kernel answer equals llamux advise" test -n "$d" -a "$(echo "$d" | jfield answer_index)" = "$(echo "$adv" | jfield answer_index)"
		step "$p: kernel scores equal llamux advise" test -n "$d" -a "$(echo "$d" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p')" = "$(echo "$adv" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p')"
	done
	echo "t=$(now) s: done"
	step "unload the policy" $L unload
fi
if has latency; then
	K=${LLAMUX_REAL_EVENTS:-6}
	grep '"split": "heldout"' /llamux/exec.jsonl | head -n "$K" >/tmp/lat.jsonl
	e1=$(head -n 1 /tmp/lat.jsonl | sed 's/, "label".*/}/')
	lat() { sed -n 's/.*"latency_ms":{\([^}]*\)}.*/\1/p' | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
	answers() { grep -o '"answer_index":[0-9]*' | tr '\n' ' '; }
	echo "t=$(now) s: kernel advisor: prefix prefilled by one request, then $K events"
	step "kernel prefix prefilled" $L advise --advisor kernel --ctx 1024 -p $POL -e "$e1" --json
	kj=$($L eval -p $POL --events /tmp/lat.jsonl --split heldout --advisor kernel --json)
	echo "t=$(now) s: user space, 2 threads"
	uj=$($L eval -m "$M" -p $POL --events /tmp/lat.jsonl --split heldout -t 2 --json)
	echo "t=$(now) s: done"
	step "kernel eval ran in ChatML" test "$(echo "$kj" | sed -n 's/.*"format":"\([a-z]*\)".*/\1/p')" = chatml
	step "kernel and user space decide the $K events alike" test -n "$(echo "$kj" | answers)" -a "$(echo "$kj" | answers)" = "$(echo "$uj" | answers)"
	kp=$(echo "$kj" | lat p50) up=$(echo "$uj" | lat p50) km=$(echo "$kj" | lat mean) um=$(echo "$uj" | lat mean)
	echo "LLAMUX-PERF advise_events=$K kernel_p50_ms=$kp user_p50_ms=$up kernel_mean_ms=$km user_mean_ms=$um ratio_p50=$(awk -v a="$kp" -v b="$up" 'BEGIN{if (b > 0) printf "%.2f", a/b}') ratio_mean=$(awk -v a="$km" -v b="$um" 'BEGIN{if (b > 0) printf "%.2f", a/b}')"
fi
step "rmmod" rmmod llamux
step "engine memory back to 0" dmesg_has 'llamux: engine memory outstanding at unload: 0 bytes'
finish
