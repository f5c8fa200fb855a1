#!/bin/sh
# The scheduler advisor's renice, applied by the kernel and recorded by a
# probe: BPF-LSM task_setnice records ("applied" in the trace) the nice
# change of a CPU-bound process the sched policy decided on, and the
# process's nice really changes (/proc/PID/stat); a renice of a process
# without a decision is not recorded, a manual one of the advised process is.
# Decision hits recorded by a tracepoint: raw_syscalls/sys_enter counts every
# syscall of the advised process (one trace record per second at most).
# (advisor-exec.sh: sched_process_exec hits of exec decisions.)
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf D=/llamux/policies
T=/run/llamux/trace.jsonl
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p" | head -1; }
nice_of() { awk '{print $19}' /proc/$1/stat; }
rec() { grep "\"type\":\"$1\"" $T 2>/dev/null | grep "\"key\":\"$2\""; }
hits_of() { $L status | sed -n "s/.* $1=\([0-9]*\).*/\1/p" | head -1; }

# Three CPU-bound, syscall-heavy processes on CPU 1: they preempt each
# other, so the sched tracepoint samples them; CPU 0 stays for the relay.
# All start at nice 3, so either of the policy's answers (nice 0 or 5) is a
# change.
for i in 1 2 3; do
	taskset 2 dd if=/dev/zero of=/dev/null bs=1 2>/dev/null &
	eval W$i=$!
done
W=$W1
step "renice the workers to 3 (before any policy)" renice 3 -p $W1 $W2 $W3
step "worker nice is 3" test "$(nice_of $W)" = 3
step "load sched-advisor" $L load $D/sched-advisor.toml --model $M --detach
step "status lists lsm/task_setnice" sh -c "$L status | grep -q lsm/task_setnice"
step "sched decision for worker pid $W" wait_for 180 sh -c "grep '\"type\":\"decision\"' $T | grep -q '\"key\":\"pid:$W\"'"
dec=$(rec decision pid:$W | tail -1)
echo "decision: $dec"
n=$(echo "$dec" | sed -n 's/.*"action":"renice(\(-*[0-9]*\))".*/\1/p')
step "the decision is a renice ($n)" test -n "$n"
step "probe recorded the nice change" wait_for 60 sh -c "grep '\"type\":\"applied\"' $T | grep -q '\"key\":\"pid:$W\"'"
ap=$(rec applied pid:$W | head -1)
echo "applied: $ap"
step "applied: nice 3 before" test "$(echo "$ap" | field nice_old)" = 3
step "applied: the decision's nice ($n)" test "$(echo "$ap" | field nice_new)" = "$n"
step "applied: set by the relay" test "$(echo "$ap" | field by_comm)" = '"llamux"'
step "applied: recorded by lsm/task_setnice" sh -c "echo '$ap' | grep -q '\"probe\":\"lsm/task_setnice\"'"
step "/proc/$W/stat: nice is $n" test "$(nice_of $W)" = "$n"

# Control: a process without a decision is reniced but not recorded; the
# advised one reniced by hand is recorded with the new value.
sleep 600 &
S=$!
step "renice a process without a decision" renice 4 -p $S
step "its nice changed" test "$(nice_of $S)" = 4
step "manual renice of the advised worker" renice 7 -p $W
step "probe recorded the manual renice" wait_for 60 sh -c "grep '\"type\":\"applied\"' $T | grep '\"key\":\"pid:$W\"' | grep -q '\"nice_new\":7'"
step "applied: set by renice" sh -c "grep '\"type\":\"applied\"' $T | grep '\"nice_new\":7' | grep -q '\"by_comm\":\"renice\"'"
step "/proc/$W/stat: nice is 7" test "$(nice_of $W)" = 7
step_not "no record for the process without a decision" sh -c "grep '\"type\":\"applied\"' $T | grep -q '\"pid\":$S,'"
step "human trace shows applied" sh -c "$L trace --all --no-follow | grep -q 'applied: pid $W dd nice 3 -> $n'"

# Tracepoint hits of the worker's sched decision (raw_syscalls/sys_enter).
step "sys_enter hit records for pid $W" wait_for 60 sh -c "grep '\"type\":\"hit\"' $T | grep '\"key\":\"pid:$W\"' | grep -q 'tracepoint/raw_syscalls/sys_enter'"
sleep 3
h=$(hits_of pid:$W)
r=$(rec hit pid:$W | grep -c 'tracepoint/raw_syscalls/sys_enter')
echo "pid $W: $h hits counted, $r hit records"
step "per-decision counter: >= 200 hits" test "${h:-0}" -ge 200
step "rate-limited: under 1 record per 20 hits" test "$r" -ge 1 -a $((r * 20)) -lt "${h:-0}"
f=$(rec hit pid:$W | grep sys_enter | head -1 | field hits) l=$(rec hit pid:$W | grep sys_enter | tail -1 | field hits)
step "the records carry the growing counter ($f .. $l)" test "$r" -ge 2 -a "${l:-0}" -gt "${f:-0}"
step "probe counter tp_hits" sh -c "$L status | grep -q 'tp_hits=[1-9]'"

kill $W1 $W2 $W3
$L status
step "unload" $L unload
step_not "pins removed" test -e /sys/fs/bpf/llamux
kill $S
step "renice works after unload" sh -c "sleep 30 & p=\$!; renice -n 2 -p \$p && kill \$p"
finish
