#!/bin/sh
# Guest test: model paths that are neither a regular file nor a block
# device are refused at once with a clear errno, without blocking (issue
# 24: a FIFO as model path blocked the writer, every later load and rmmod
# until something opened the FIFO). Needs /llamux/{llamux.ko,procio,
# tiny-q4_k_m.gguf} (run through tests/guest/test-stress.sh).
. /llamux/lib.sh
KO=/llamux/llamux.ko IO=/llamux/procio MQ=/llamux/tiny-q4_k_m.gguf
P=/proc/llamux
# at_once WANT PATH: a load of PATH fails with WANT within 10 s.
at_once() {
	t0=$(date +%s)
	got=$(timeout 20 $IO w $P/load "$2" 2>&1)
	dt=$(($(date +%s) - t0))
	echo "got: $got after $dt s"
	[ "$got" = "$1" ] && [ $dt -lt 10 ]
}
mkfifo /tmp/fifo
mkdir -p /tmp/dir
step "insmod with a model" insmod $KO model=$MQ
step "FIFO as model path: EINVAL at once" at_once EINVAL /tmp/fifo
step "dmesg says why" dmesg_has 'llamux: /tmp/fifo: not a regular file or block device'
step "directory: EISDIR at once" at_once EISDIR /tmp/dir
step "/dev/zero (character device): EINVAL at once" at_once EINVAL /dev/zero
step "/dev/null: EINVAL at once" at_once EINVAL /dev/null
ln -s /tmp/fifo /tmp/link
step "a symlink to the FIFO: EINVAL at once" at_once EINVAL /tmp/link
step "the model is still the old one" grep -x "path: $MQ" $P/model
step "status records the last error" grep -x 'last_load_error: -22' $P/status
step "a regular file still loads" sh -c "[ \"\$($IO w $P/load $MQ)\" = ok:${#MQ} ]"
step "model= a FIFO at insmod: module loads without a model, at once" sh -c "
	rmmod llamux && t0=\$(date +%s) && timeout 20 insmod $KO model=/tmp/fifo &&
	[ \$((\$(date +%s) - t0)) -lt 10 ] && grep -x 'model_loaded: no' $P/status"
step "dmesg names the bad model=" dmesg_has 'llamux: model=/tmp/fifo not loaded \(errno -22\)'
step "rmmod right after" timeout 20 rmmod llamux
step_not "module gone" grep -E '^llamux ' /proc/modules
step "insmod, FIFO load, rmmod at once" sh -c "
	insmod $KO model=$MQ && timeout 20 $IO w $P/load /tmp/fifo; timeout 20 rmmod llamux"
step_not "module gone again" grep -E '^llamux ' /proc/modules
finish
