#!/bin/sh
# Syscall-rate and scheduler advisors on real events, next to the exec
# guard, under a syscall flood: decisions from both appear in the trace,
# ring-buffer drops are counted, nothing wedges, unload cleans up.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf D=/llamux/policies
T=/run/llamux/trace.jsonl
# A variant of the syscall policy reporting every syscall: floods the ring.
sed -e 's/^sample = .*/sample = 1/' -e 's/^min_rate = .*/min_rate = 100/' $D/syscall-rate.toml >/tmp/syscall-flood.toml
step "load syscall, sched and exec policies" $L load /tmp/syscall-flood.toml $D/sched-advisor.toml $D/exec-guard.toml --model $M --detach
step "status lists the tracepoints" sh -c "$L status | grep -q 'raw_syscalls/sys_enter' && $L status | grep -q 'sched/sched_switch'"
t0=$(date +%s)
step "syscall flood (dd, 1-byte reads and writes)" sh -c "dd if=/dev/zero of=/dev/null bs=1 count=300000 2>&1 | tail -1"
echo "flood took $(( $(date +%s) - t0 )) s"
step "syscall-rate decisions from real events" wait_for 60 sh -c "grep '\"type\":\"decision\"' $T | grep -q '\"policy\":\"syscall-rate\"'"
step "sched-advisor decisions from real events" wait_for 60 sh -c "grep '\"type\":\"decision\"' $T | grep -q '\"policy\":\"sched-advisor\"'"
grep '"type":"decision"' $T | grep -E 'syscall-rate|sched-advisor' | head -3
$L status
step "ring-buffer drops are counted" sh -c "$L status --json | grep -q '\"events_dropped\":[1-9]'"
step "relay still alive" sh -c "$L status | grep -q running"
printf '#!/bin/sh\necho after-ran\n' >/tmp/after && chmod +x /tmp/after
step "exec guard still decides after the flood" sh -c "/tmp/after >/dev/null; $L trace --all --no-follow --json >/dev/null; i=0; while [ \$i -lt 60 ]; do grep -q 'exe:/tmp/after' $T && exit 0; sleep 1; i=\$((i+1)); done; exit 1"
step "human trace shows the advisors" sh -c "$L trace --all --no-follow | grep -E 'syscall-rate|sched-advisor' | head -5"
step "unload" $L unload
step_not "pins removed" test -e /sys/fs/bpf/llamux
step "guest healthy after unload" sh -c "dd if=/dev/zero of=/dev/null bs=4k count=100 2>/dev/null && echo ok"
finish
