#!/bin/sh
# The kernel advisor under two faults of the old module (issue 24):
#   - an advisor context too big for memory: `llamux advise --advisor
#     kernel --ctx 131072` with three policies OOM-killed processes and
#     panicked the guest. Now CTX is bounded (advise_max_ctx, EINVAL) and a
#     context is checked against available memory before it is allocated
#     (ENOMEM); the guest stays up and nothing is OOM-killed;
#   - a prompt written to /proc/llamux/generate and never read made every
#     advise request fail with EBUSY (the relay fell back to defaults). Now
#     advise requests are served while a prompt is pending or running, and
#     a pending prompt is dropped after prompt_timeout_s (counted in status).
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf PD=/llamux/policies
P=/proc/llamux ST=/proc/llamux/status
EX='{"parent_comm":"sh","ppid":1,"path":"/tmp/tool","comm":"tool","pid":7}'
OP='{"comm":"cat","path":"secret-python","pid":7,"time":"0","uid":0}'
RT='{"comm":"spin","pid":7,"count":100,"rate":5000,"nr":0}'
st() { sed -n "s/^$1: //p" $ST; }
oom() { dmesg | grep -E 'Out of memory|oom-kill|Killed process|invoked oom-killer'; }
adv() { # CTX POLICY EVENT: llamux advise through the kernel, output shown
	$L advise --advisor kernel --ctx "$1" -p $PD/$2.toml -e "$3" --json 2>&1
}
fails_with() { # WANT CTX POLICY EVENT: the advise fails at once with WANT
	t0=$(date +%s)
	out=$(adv "$2" "$3" "$4") && { echo "unexpected success: $out"; return 1; }
	echo "$out"
	echo "$out" | grep -q "$1" && [ $(($(date +%s) - t0)) -lt 30 ]
}

step "insmod model=$M prompt_timeout_s=5" insmod /llamux/llamux.ko model=$M prompt_timeout_s=5
step "a normal kernel advise works" sh -c "$L advise --advisor kernel -p $PD/exec-guard.toml -e '$EX' --json | grep -q '\"advisor\":\"kernel\"'"

# ---- Oversized contexts ----
step "exec-guard --ctx 131072: EINVAL (over advise_max_ctx)" fails_with 'Invalid argument' 131072 exec-guard "$EX"
step "open-guard --ctx 131072: EINVAL" fails_with 'Invalid argument' 131072 open-guard "$OP"
step "syscall-rate --ctx 131072: EINVAL" fails_with 'Invalid argument' 131072 syscall-rate "$RT"
step "dmesg names the limit" dmesg_has 'advise: advisor context of 131072 positions is over the limit of 32768'
# With the limit lifted (it applies at the next load), the memory check
# refuses a context that does not fit, before allocating it.
echo 1048576 > /sys/module/llamux/parameters/advise_max_ctx
step "reload the model with advise_max_ctx=1048576" sh -c "echo $M > $P/load"
step "exec-guard --ctx 1048576: ENOMEM before allocating" fails_with 'Cannot allocate memory' 1048576 exec-guard "$EX"
step "open-guard --ctx 1048576: ENOMEM" fails_with 'Cannot allocate memory' 1048576 open-guard "$OP"
step "syscall-rate --ctx 1048576: ENOMEM" fails_with 'Cannot allocate memory' 1048576 syscall-rate "$RT"
step "dmesg says what did not fit" dmesg_has 'advise: advisor context of 1048576 positions needs [0-9]+ bytes, [0-9]+ available'
step "three policies at --ctx 131072 now fit one after another" sh -c "
	for p in exec-guard open-guard; do $L advise --advisor kernel --ctx 131072 -p $PD/\$p.toml -e '$EX' >/dev/null 2>&1 || true; done
	$L advise --advisor kernel --ctx 131072 -p $PD/syscall-rate.toml -e '$RT' >/dev/null 2>&1 || true
	grep -q '^model_loaded: yes' $ST"
step_not "nothing was OOM-killed" oom
step "the module still answers at a normal context" sh -c "$L advise --advisor kernel -p $PD/exec-guard.toml -e '$EX' --json | grep -q '\"advisor\":\"kernel\"'"
grep '^advise' $ST

# ---- An abandoned prompt ----
step "a prompt written and never read" sh -c "printf 'Once upon a time' > $P/generate && grep -x 'state: pending' $ST"
step "a second prompt meanwhile: EBUSY" sh -c "! printf 'x' > $P/generate"
r0=$(st advise_requests)
step "a kernel-advisor decision while the prompt is pending" sh -c "$L advise --advisor kernel -p $PD/exec-guard.toml -e '$EX' --json | grep -q '\"advisor\":\"kernel\"'"
step "  served by the module" sh -c "[ $(st advise_requests 2>/dev/null || echo 0) -ge 0 ] && [ \$(sed -n 's/^advise_requests: //p' $ST) -gt $r0 ]"
step "  the prompt is still pending" grep -x 'state: pending' $ST
step "the prompt is dropped after prompt_timeout_s=5" wait_for 30 grep -x 'state: idle' $ST
step "  counted in status" grep -x 'dropped_prompts: 1' $ST
step "  and in dmesg" dmesg_has 'generate: pending prompt dropped, unread for 5 s'
step "a new prompt is accepted and answered" sh -c "printf 'Hello' > $P/generate && cat $P/generate > /dev/null && grep -x 'state: idle' $ST"
# A generation in progress does not stop a decision either: advise
# requests are served between its tokens, and the completion stays whole.
echo 'temperature=0 n_predict=48' > $P/params
printf 'Once upon a time' > $P/generate && cat $P/generate > /tmp/ref
busy_advise() {
	printf 'Once upon a time' > $P/generate || return 1
	cat $P/generate > /tmp/got &
	rd=$!
	$L advise --advisor kernel -p $PD/exec-guard.toml -e "$EX" --json | grep -q '"advisor":"kernel"' || return 1
	wait $rd && cmp /tmp/got /tmp/ref
}
step "a decision during a generation, the completion unchanged" busy_advise
step "rmmod" rmmod llamux
step_not "nothing was OOM-killed in the end" oom
finish
