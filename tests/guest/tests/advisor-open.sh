#!/bin/sh
# Open guard (BPF-LSM file_open): per file (its inode), the model's DENY makes
# open() fail with EPERM; the ALLOWed file opens; decisions equal advise.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf P=/llamux/policies/open-guard.toml
T=/run/llamux/trace.jsonl
decision() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"file:$1\"" | tail -1; }
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }
# secret-b / secret-python: Y / N with the tiny q8_0 model (llamux advise on the host).
A=secret-b B=secret-python
echo a >/tmp/$A
echo b >/tmp/$B
step "load open-guard (detached)" $L load $P --model $M --detach
step "status lists lsm/file_open" sh -c "$L status | grep -q lsm/file_open"
step "miss is fail-open: both files open" sh -c "cat /tmp/$A /tmp/$B >/dev/null"
step "decisions for both arrive" wait_for 120 sh -c "grep -q '\"key\":\"file:$A\"' $T && grep -q '\"key\":\"file:$B\"' $T"
da=$(decision $A) db=$(decision $B)
if [ -z "$da" ] || [ -z "$db" ]; then
	fail "decisions present" "no decision for $A or $B"
	$L unload
	finish
	exit 1
fi
aa=$(echo "$da" | field action | tr -d '"') ab=$(echo "$db" | field action | tr -d '"')
step "the model decides the two differently ($aa / $ab)" test "$aa" != "$ab"
for f in $A $B; do
	d=$(decision $f)
	if echo "$d" | grep -q '"action":"deny"'; then
		step "$f decided DENY: open fails with EPERM" sh -c "cat /tmp/$f 2>&1 | grep -q 'Operation not permitted'"
	else
		step "$f decided ALLOW: opens" cat /tmp/$f
	fi
	# file_open records (and counts) every open of a decided file: only it
	# knows the inode the decision is keyed by.
	step "$f: file_open hit record with the file's identity" wait_for 30 sh -c "cat /tmp/$f >/dev/null 2>&1; grep '\"type\":\"hit\"' $T | grep '\"key\":\"file:$f\"' | grep 'lsm/file_open' | grep -q '\"file_id\":'"
	ev=$(echo "$d" | sed -n 's/.*"event":\({[^}]*}\).*/\1/p')
	adv=$($L advise -m $M -p $P -e "$ev" --json)
	step "$f: decision equals llamux advise" test "$(echo "$d" | field answer_index)" = "$(echo "$adv" | field answer_index)"
done
step "other files are not governed" sh -c "echo x >/tmp/plain && cat /tmp/plain >/dev/null"
step "unload" $L unload
step "every file opens after unload" sh -c "cat /tmp/$A /tmp/$B >/dev/null"
step_not "pins removed" test -e /sys/fs/bpf/llamux
finish
