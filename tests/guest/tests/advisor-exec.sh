#!/bin/sh
# Exec guard end to end (fail-open): two programs the model decides
# differently; the DENY one gets EPERM from the BPF-LSM program, the other
# runs; each decision equals `llamux advise` for the same event; trace shows
# both with scores and latency; unload removes every program and map.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf P=/llamux/policies/exec-guard.toml
T=/run/llamux/trace.jsonl
mkprog() { printf '#!/bin/sh\necho %s-ran\n' "$(basename "$1")" >"$1" && chmod +x "$1"; }
decision() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"exe:$1\"" | tail -1; }
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }

# /tmp/tool and /tmp/python: `llamux advise` on the host gives Y and N
# for them with the tiny q8_0 model; the test reads the guest's own answers
# from the trace and only requires that they differ.
A=/tmp/tool B=/tmp/python
mkprog $A
mkprog $B
step "llamux runs in the guest" $L --version
step "load exec-guard (detached)" $L load $P --model $M --detach
step "status lists the LSM program" sh -c "$L status | grep -q lsm/bprm_check_security"
step "maps pinned under /sys/fs/bpf/llamux" test -e /sys/fs/bpf/llamux/LLAMUX_DECISIONS
step "miss is fail-open: $A runs" sh -c "$A | grep -q tool-ran"
step "miss is fail-open: $B runs" sh -c "$B | grep -q python-ran"
step "decisions for both arrive" wait_for 120 sh -c "decision() { grep '\"type\":\"decision\"' $T | grep \"\\\"key\\\":\\\"exe:\$1\\\"\"; }; decision $A && decision $B"
da=$(decision $A) db=$(decision $B)
echo "decision $A: $da"
echo "decision $B: $db"
aa=$(echo "$da" | field action | tr -d '"') ab=$(echo "$db" | field action | tr -d '"')
if [ -z "$da" ] || [ -z "$db" ]; then
	fail "decisions present" "no decision for $A or $B: the rest cannot run"
	$L status
	$L unload
	finish
	exit 1
fi
step "the model decides the two differently ($aa / $ab)" test "$aa" != "$ab"
for p in $A $B; do
	d=$(decision $p)
	act=$(echo "$d" | field action | tr -d '"')
	if [ "$act" = deny ]; then
		step "$p decided DENY: exec fails with EPERM" sh -c "env $p 2>&1 | grep -q 'Operation not permitted'"
		step_not "$p decided DENY: does not run" sh -c "$p 2>/dev/null | grep -q ran"
		denied=$p
	else
		step "$p decided ALLOW ($act): runs" sh -c "$p | grep -q ran"
	fi
	ev=$(echo "$d" | sed -n 's/.*"event":\({[^}]*}\).*/\1/p')
	adv=$($L advise -m $M -p $P -e "$ev" --json)
	echo "advise $p: $adv"
	step "$p: decision equals llamux advise (answer)" test "$(echo "$d" | field answer_index)" = "$(echo "$adv" | field answer_index)"
	step "$p: scores equal llamux advise" test "$(echo "$d" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p')" = "$(echo "$adv" | sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p')"
	step "$p: trace has scores and latency" sh -c "echo '$d' | grep -q '\"scores\":{' && echo '$d' | grep -q '\"latency_us\":[0-9]'"
done
# The tracepoint sched_process_exec counts every exec of the ALLOWed
# program (LLAMUX_HITCOUNT, `status`) and records it (at most once a second).
ok=$A
[ "$aa" = allow ] || ok=$B
for i in 1 2 3; do $ok >/dev/null; done
step "sched_process_exec hit record for $ok" wait_for 60 sh -c "grep '\"type\":\"hit\"' $T | grep '\"key\":\"exe:$ok\"' | grep -q 'tracepoint/sched/sched_process_exec'"
step "per-decision counter: at least 3 exec hits of $ok" wait_for 10 sh -c "[ \$($L status | sed -n 's|.* exe:$ok=\([0-9]*\).*|\1|p') -ge 3 ]"
step "the LSM program records its hits too" sh -c "grep '\"type\":\"hit\"' $T | grep '\"key\":\"exe:$ok\"' | grep -q 'lsm/bprm_check_security'"
step "trace --json shows both decisions" sh -c "[ \$($L trace --json --all --no-follow | grep '\"type\":\"decision\"' | grep -c 'exe:/tmp/') -ge 2 ]"
step "trace records the denied exec as a hit" sh -c "$L trace --json --all --no-follow | grep '\"type\":\"hit\"' | grep -q '\"action\":\"deny\"'"
step "human trace" sh -c "$L trace --all --no-follow | grep -q 'exec-guard'"
step "probe-side aya-log reached the relay log" grep -q 'deny hook 0' /run/llamux/relay.log
$L status
step "status counts the denial" sh -c "$L status | grep -q 'denied=[1-9]'"
step "unload" $L unload
step_not "pinned maps and links removed" test -e /sys/fs/bpf/llamux
step_not "relay stopped" sh -c "ps | grep -v grep | grep -q 'llamux load'"
[ -n "${denied:-}" ] && step "$denied runs again after unload" sh -c "$denied | grep -q ran"
step "status after unload" sh -c "$L status | grep -q 'no policy loaded'"
finish
