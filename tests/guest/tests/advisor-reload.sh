#!/bin/sh
# The advisor across module unloads, and who may load policies.
#   - uid 65534 cannot load or unload policies: a clean error, nothing
#     attached (a fail-closed policy it tried to load governs nothing);
#   - `llamux load --advisor kernel` (no user-space fallback) relays events
#     to /proc/llamux/advise while llamux.ko is unloaded and reloaded in a
#     loop: the relay survives, reports the missing module, the policy's
#     default applies on a miss (fail-open: runs; fail-closed: EPERM), and
#     decisions come from the kernel again once the module is back; every
#     unload frees all engine memory.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf KO=/llamux/llamux.ko
PO=/llamux/policies/exec-guard.toml PC=/llamux/policies/exec-guard-closed.toml
T=/run/llamux/trace.jsonl LOG=/run/llamux/relay.log
LOOPS=${1:-3}
mkprog() { printf '#!/bin/sh\necho %s-ran\n' "$(basename "$1")" >"$1" && chmod +x "$1"; }
decided() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"exe:$1\"" | grep -q "\"advisor\":\"$2\""; }
relay_pid() { $L status --json | sed -n 's/.*"relay_pid":\([0-9]*\).*/\1/p'; }
unload_line() { dmesg | grep 'engine memory outstanding at unload' | tail -n1 | grep ': 0 bytes$'; }
mkdir -p /tmp/closed
mkprog /tmp/closed/tool

# ---- Permissions ----
grep -q '^nobody:' /etc/passwd 2>/dev/null || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> /etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >> /etc/group
nobody_load() {
	out=$(su -s /bin/sh nobody -c "$L load $PC --model $M --detach" 2>&1)
	rc=$?
	echo "exit $rc: $out"
	[ $rc -ne 0 ] && [ -n "$out" ]
}
step "uid 65534: llamux load fails with a message" nobody_load
step_not "uid 65534: nothing pinned" test -e /sys/fs/bpf/llamux
step "uid 65534: status says no policy" sh -c "$L status | grep -x 'llamux: no policy loaded'"
step "uid 65534: the fail-closed policy governs nothing" sh -c "/tmp/closed/tool | grep -q tool-ran"
step "root loads the fail-closed policy" $L load $PC --model $M --detach
step "it governs: miss is EPERM" sh -c "env /tmp/closed/tool 2>&1 | grep -q 'Operation not permitted'"
step_not "uid 65534 cannot unload it" su -s /bin/sh nobody -c "$L unload"
step "still loaded after that" sh -c "$L status | grep -q running"
step "root unloads" $L unload
step_not "pins removed" test -e /sys/fs/bpf/llamux

# ---- Unload/reload loop under the kernel advisor ----
step "insmod with the model" insmod $KO model=$M
step "load exec-guard with --advisor kernel" $L load $PO --advisor kernel --detach
step "status: advisor kernel" sh -c "$L status | grep -q 'advisor kernel'"
pid=$(relay_pid)
echo "relay pid $pid"
# Each program is written once: rewriting it would change its ctime, and a
# changed file is asked about again (docs/security.md), flooding the queue.
# Keep exec events flowing through the relay during the whole loop.
(n=0; while [ -e /tmp/churn-on ]; do p=/tmp/churn$((n % 7)); [ -e $p ] || mkprog $p; $p >/dev/null 2>&1; n=$((n + 1)); sleep 0.2; done) &
touch /tmp/churn-on
churn=$!
reload() { # I
	a=/tmp/a$1 b=/tmp/b$1
	mkprog $a
	mkprog $b
	$a | grep -q a$1-ran || { echo "$a did not run"; return 1; }
	wait_for 60 decided $a kernel || { echo "no kernel decision for $a"; return 1; }
	n0=$(grep -c 'kernel advisor' $LOG)
	rmmod llamux || return 1
	unload_line || return 1
	# Module gone: the miss takes the default (fail-open), the relay lives on.
	$b | grep -q b$1-ran || { echo "$b did not run with the module gone"; return 1; }
	wait_for 30 sh -c "[ \$(grep -c 'kernel advisor' $LOG) -gt $n0 ]" || { echo "relay did not report the module gone"; return 1; }
	kill -0 $pid || { echo "relay died"; return 1; }
	insmod $KO model=$M || return 1
	# A fresh program: decided by the kernel again (b may be too, once retried).
	c=/tmp/c$1
	mkprog $c
	$c >/dev/null
	wait_for 60 decided $c kernel || { echo "no kernel decision for $c after reload"; return 1; }
}
i=1
while [ $i -le $LOOPS ]; do
	step "reload $i/$LOOPS while relaying" reload $i
	i=$((i + 1))
done
rm -f /tmp/churn-on
wait $churn
echo "relay log (kernel advisor lines: $(grep -c 'kernel advisor' $LOG)):"
grep 'kernel advisor' $LOG | sort | uniq -c | head -5
step "relay alive after the loop" kill -0 $pid
step "unload" $L unload
step "rmmod" rmmod llamux
step "no engine memory leaked" unload_line

# ---- Fail-closed policy with the module gone ----
step "insmod again" insmod $KO model=$M
step "load exec-guard-closed with --advisor kernel" $L load $PC --advisor kernel --detach
step "rmmod under the relay" rmmod llamux
mkprog /tmp/closed/late
step "module gone, fail-closed: EPERM" sh -c "env /tmp/closed/late 2>&1 | grep -q 'Operation not permitted'"
step "the relay reports the module gone" wait_for 30 sh -c "grep -q 'kernel advisor.*No such file' $LOG"
step "relay alive" sh -c "$L status | grep -q running"
step "insmod back" insmod $KO model=$M
# The relay asks once per miss: exec again until the kernel decided it.
late() { env /tmp/closed/late >/dev/null 2>&1; decided /tmp/closed/late kernel; }
step "decided by the kernel after the module returns" wait_for 60 late
step "unload closed" $L unload
step "final rmmod" rmmod llamux
step "no engine memory leaked at the end" unload_line
finish
