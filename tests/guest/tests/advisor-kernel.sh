#!/bin/sh
# Exec guard decided by the kernel module's advisor: llamux.ko is loaded
# with the model, `llamux load` (no --advisor: auto) relays events through
# /proc/llamux/advise; the DENY program gets EPERM, the other runs; the
# trace says advisor "kernel" and every kernel decision's scores equal
# `llamux advise` in user space bit for bit. Then /proc/llamux/advise's
# bounds checks, and the fallback to user space once the module is gone.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf P=/llamux/policies/exec-guard.toml
T=/run/llamux/trace.jsonl A=/proc/llamux/advise
mkprog() { printf '#!/bin/sh\necho %s-ran\n' "$(basename "$1")" >"$1" && chmod +x "$1"; }
decision() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"exe:$1\"" | tail -1; }
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }
scores() { sed -n 's/.*"score_list":\(\[[^]]*\]\).*/\1/p'; }

step "insmod llamux.ko model=$M" insmod /llamux/llamux.ko model=$M
step "/proc/llamux/advise is 0600" sh -c "ls -l $A | grep -q '^-rw-------'"
step "malformed request: EINVAL" sh -c "sh -c 'echo garbage >$A' 2>&1 | grep -q 'Invalid argument'"
step "oversized request: E2BIG" sh -c "dd if=/dev/zero of=$A bs=20000 count=1 2>&1 | grep -q 'Argument list too long'"

Bx=/tmp/tool By=/tmp/python
mkprog $Bx
mkprog $By
step "load exec-guard (detached, advisor auto)" $L load $P --model $M --detach
step "status: advisor kernel" sh -c "$L status | grep -q 'advisor kernel'"
step "miss is fail-open: $Bx runs" sh -c "$Bx | grep -q tool-ran"
step "miss is fail-open: $By runs" sh -c "$By | grep -q python-ran"
step "decisions for both arrive" wait_for 120 sh -c "decision() { grep '\"type\":\"decision\"' $T | grep \"\\\"key\\\":\\\"exe:\$1\\\"\"; }; decision $Bx && decision $By"
da=$(decision $Bx) db=$(decision $By)
echo "decision $Bx: $da"
echo "decision $By: $db"
if [ -z "$da" ] || [ -z "$db" ]; then
	fail "decisions present" "no decision for $Bx or $By: the rest cannot run"
	cat /run/llamux/relay.log
	$L unload
	finish
	exit 1
fi
for p in $Bx $By; do
	d=$(decision $p)
	step "$p: decided by the kernel advisor" sh -c "echo '$d' | grep -q '\"advisor\":\"kernel\"'"
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
	echo "advise (user space) $p: $adv"
	step "$p: kernel answer equals llamux advise" test "$(echo "$d" | field answer_index)" = "$(echo "$adv" | field answer_index)"
	step "$p: kernel scores equal llamux advise" test -n "$(echo "$d" | scores)" -a "$(echo "$d" | scores)" = "$(echo "$adv" | scores)"
done
step "/tmp/python is denied with EPERM" sh -c "/tmp/python 2>&1 | grep -q 'Operation not permitted'"
step "/tmp/tool runs" sh -c "/tmp/tool | grep -q tool-ran"
step "the module counted the requests" sh -c "grep -q '^advise_requests: [1-9]' /proc/llamux/status"
grep '^advise\|^last_advise' /proc/llamux/status
step "no user-space fallback was needed" sh -c "! grep -q 'deciding in user space' /run/llamux/relay.log"
step "unload" $L unload

# Two policies in turn through the kernel advisor: each policy's prefix is
# prefilled once (a slot per policy, LRU), the later requests reuse it, and
# the scores still equal user space's.
st() { sed -n "s/^$1: //p" /proc/llamux/status; }
E=$(echo "$da" | sed -n 's/.*"event":\({[^}]*}\).*/\1/p')
O='{"comm":"cat","path":"secret-python","pid":7,"time":"0","uid":0}'
PO=/llamux/policies/open-guard.toml
ue=$($L advise -m $M -p $P -e "$E" --json | scores) uo=$($L advise -m $M -p $PO -e "$O" --json | scores)
p0=$(st advise_prefills) r0=$(st advise_reuses)
echo "before: advise_prefills $p0, advise_reuses $r0, slots $(st advise_slots)"
step "exec-guard's prefix is cached from the relay's requests" test "$p0" = 1
for i in 1 2 3; do
	step "round $i: exec-guard in the kernel equals user space" test "$($L advise --advisor kernel -p $P -e "$E" --json | scores)" = "$ue"
	step "round $i: open-guard in the kernel equals user space" test "$($L advise --advisor kernel -p $PO -e "$O" --json | scores)" = "$uo"
done
grep '^advise' /proc/llamux/status
step "alternating policies: one prefill per policy (2 in all)" test "$(st advise_prefills)" = 2
step "the other 5 requests reused a cached prefix" test $(($(st advise_reuses) - r0)) = 5
step "two of the slots in use" sh -c "grep -q '^advise_slots: 2/4' /proc/llamux/status"
step "rmmod" rmmod llamux
# One slot: every switch of policy evicts the other and prefills again.
step "insmod advise_slots=1" insmod /llamux/llamux.ko model=$M advise_slots=1
for i in 1 2; do
	step "1 slot, round $i: exec-guard equals user space" test "$($L advise --advisor kernel -p $P -e "$E" --json | scores)" = "$ue"
	step "1 slot, round $i: open-guard equals user space" test "$($L advise --advisor kernel -p $PO -e "$O" --json | scores)" = "$uo"
done
grep '^advise' /proc/llamux/status
step "1 slot: 4 requests in turn, 4 prefills" test "$(st advise_prefills)" = 4
step "rmmod (1 slot)" rmmod llamux

# Without the module the relay decides in user space.
step "load without the module: user-space advisor" $L load $P --model $M --detach
step "status: advisor user" sh -c "$L status | grep -q 'advisor user'"
step "unload again" $L unload
finish
