#!/bin/sh
# Guest test: load/unload the minimal llamux.ko, its parameter and /proc/llamux.
# Needs /llamux/llamux.ko (run through tests/guest/test-module.sh).
. /llamux/lib.sh
KO=/llamux/llamux.ko

step "modinfo lists max_threads" sh -c "modinfo $KO | grep -E '^parm: +max_threads:'"
step "insmod max_threads=1" insmod "$KO" max_threads=1
step "load line in dmesg" dmesg_has 'llamux: loaded version [0-9.]+ \(max_threads=1, worker_threads=1\)'
step "module listed" grep -E '^llamux ' /proc/modules
step "module BTF registered" test -e /sys/kernel/btf/llamux
step "parameter in sysfs" sh -c '[ "$(cat /sys/module/llamux/parameters/max_threads)" = 1 ]'
step "read /proc/llamux/status" cat /proc/llamux/status
step "status content" sh -c 'grep -qx "state: idle" /proc/llamux/status && grep -qx "max_threads: 1" /proc/llamux/status && grep -qx "worker_threads: 1" /proc/llamux/status'
step "status read counter" sh -c '
	a=$(sed -n "s/^status_reads: //p" /proc/llamux/status)
	b=$(sed -n "s/^status_reads: //p" /proc/llamux/status)
	[ "$b" -eq $((a + 1)) ]'
step "rmmod" rmmod llamux
step "unload line in dmesg" dmesg_has 'llamux: unloaded'
step_not "/proc/llamux removed" test -e /proc/llamux
step_not "module gone" grep -E '^llamux ' /proc/modules
step "insmod default parameters" insmod "$KO"
step "worker_threads defaults to CPU count" sh -c '
	n=$(grep -c ^processor /proc/cpuinfo)
	grep -qx "worker_threads: $n" /proc/llamux/status || { cat /proc/llamux/status; echo "cpus=$n"; exit 1; }'
step "rmmod again" rmmod llamux
finish
