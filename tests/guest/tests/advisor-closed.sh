#!/bin/sh
# Fail-closed exec guard: a governed program without a decision is refused
# (EPERM) and triggers a decision request; ungoverned programs run.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf P=/llamux/policies/exec-guard-closed.toml
T=/run/llamux/trace.jsonl
mkprog() { printf '#!/bin/sh\necho %s-ran\n' "$(basename "$1")" >"$1" && chmod +x "$1"; }
mkdir -p /tmp/closed
mkprog /tmp/closed/tool
mkprog /tmp/outside
step "load exec-guard-closed (detached)" $L load $P --model $M --detach
step "miss is fail-closed: governed program gets EPERM" sh -c "env /tmp/closed/tool 2>&1 | grep -q 'Operation not permitted'"
step "ungoverned program runs" sh -c "/tmp/outside | grep -q outside-ran"
step "the miss asked for a decision" wait_for 120 grep -q '"key":"exe:/tmp/closed/tool"' $T
d=$(grep '"type":"decision"' $T | grep '"key":"exe:/tmp/closed/tool"' | tail -1)
echo "decision: $d"
if echo "$d" | grep -q '"action":"allow"'; then
	step "decided ALLOW: now runs" sh -c "/tmp/closed/tool | grep -q tool-ran"
else
	step "decided DENY: still EPERM" sh -c "env /tmp/closed/tool 2>&1 | grep -q 'Operation not permitted'"
fi
step "probe counters show misses" sh -c "$L status | grep -q 'misses=[1-9]'"
step "unload" $L unload
step "governed program runs after unload" sh -c "/tmp/closed/tool | grep -q tool-ran"
step_not "pins removed" test -e /sys/fs/bpf/llamux

# A bad policy: an error naming file, line and field; nothing attached.
sed 's/action = "deny"/action = "deyn"/' $P >/tmp/bad.toml
out=$($L load /tmp/bad.toml --model $M 2>&1)
echo "$out"
step "bad policy: error names file, line and field" sh -c "echo '$out' | grep -q '^llamux: /tmp/bad.toml:[0-9][0-9]*: field .answer\[1\].action.'"
step_not "bad policy: nothing attached" test -e /sys/fs/bpf/llamux

# Foreground load (no --detach): runs until `llamux unload` stops it.
$L load $P --model $M >/tmp/fg.log 2>&1 &
fg=$!
step "foreground load runs" wait_for 60 sh -c "$L status | grep -q running"
step "unload stops the foreground relay" $L unload
wait $fg
step "foreground relay exited cleanly" test $? -eq 0
step_not "pins removed after foreground run" test -e /sys/fs/bpf/llamux
cat /tmp/fg.log
finish
