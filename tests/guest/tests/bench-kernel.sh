#!/bin/sh
# Guest side of tests/guest/bench-kernel.sh (opt-in): for each thread count
# and model, llamux.ko is loaded with that model and thread count, and
# `llamux bench --kernel` runs the same protocol in user space and in the
# module, interleaved over rounds; one LLAMUX-BENCH line per run.
#   bench-kernel.sh THREADS ARGS MODEL... [-- ARGS MODEL...]
# Commas for spaces (the harness splits the arguments at spaces): THREADS
# e.g. 1,2; ARGS the bench flags for the models after it, e.g.
# -p,16,-n,32,-r,3,--rounds,3.
. /llamux/lib.sh
KO=/llamux/llamux.ko
U=/llamux/llamux
THREADS=$(echo "$1" | tr ',' ' ')
shift
echo "guest: $(nproc) CPUs, load: $(cat /proc/loadavg)"
args=""
for m in "$@"; do
	case "$m" in
	--) args=""; continue ;;
	esac
	if [ -z "$args" ]; then
		args=$(echo "$m" | tr ',' ' ')
		continue
	fi
	for t in $THREADS; do
		name="$(basename "$m" .gguf) threads=$t"
		step "$name: insmod" insmod $KO threads=$t model="$m" || continue
		# stdout is the JSON alone (the load's messages go to stderr).
		out=$($U bench --kernel -m "$m" -t $t $args --json 2>/tmp/bench.err)
		rc=$?
		sed 's/^/  | /' /tmp/bench.err
		echo "$out" | sed 's/^/  | /'
		if [ $rc -eq 0 ]; then
			pass "$name: bench --kernel $args"
			echo "LLAMUX-BENCH $name $out"
		else
			fail "$name: bench --kernel $args" "exit $rc"
		fi
		step "$name: rmmod" rmmod llamux
	done
done
finish
