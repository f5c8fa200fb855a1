#!/bin/sh
# Guest side of tests/demo.sh.
#   demo.sh                 the tiny model at /llamux/model.gguf, raw prompt
#   demo.sh MODEL N         a chat model (tests/demo.sh --real): greedy, N
#                           tokens, the prompt in the model's chat template
. /llamux/lib.sh
L=/bin/llamux P=/proc/llamux
M=${1:-/llamux/model.gguf} N=${2:-}
wait_s=180
say() { printf '\n--- %s\n' "$*"; }

say "insmod llamux.ko model=$M"
if [ -n "$N" ]; then
	step "insmod" insmod /llamux/llamux.ko model="$M"
	echo "temperature=0 n_predict=$N" > $P/params
	wait_s=1200   # a 1.5B model prefills the policy prompt slowly under TCG
else
	step "insmod" insmod /llamux/llamux.ko model="$M"
fi
dmesg | grep llamux
say "modinfo"
modinfo /llamux/llamux.ko | grep -E '^(description|parm)'
say "/proc/llamux/model"
head -n 12 $P/model
say "prompt: $(cat /llamux/prompt.txt)"
if [ -n "$N" ]; then
	# llamux query --instruct writes the ChatML-wrapped prompt to /proc/llamux/generate.
	step "completion through /proc/llamux/generate" sh -c "$L query --instruct \"\$(cat /llamux/prompt.txt)\" > /tmp/answer.txt"
else
	cat /llamux/prompt.txt > $P/generate
	step "completion through /proc/llamux/generate" sh -c "cat $P/generate > /tmp/answer.txt"
fi
cat /tmp/answer.txt; echo
say "/proc/llamux/status"
cat $P/status

say "exec guard: the model decides which programs may run"
printf '#!/bin/sh\necho tool-ran\n' > /tmp/tool
printf '#!/bin/sh\necho python-ran\n' > /tmp/python
chmod +x /tmp/tool /tmp/python
say "the decisions come from the model inside the kernel (/proc/llamux/advise): no --model for user space"
step "load policies/exec-guard.toml --advisor kernel" $L load /llamux/policies/exec-guard.toml --advisor kernel --detach
/tmp/tool; /tmp/python   # first execs: policy default (fail-open), decisions requested
step "decisions arrive" wait_for $wait_s sh -c "[ \$($L trace --json --all --no-follow | grep -c '\"type\":\"decision\"') -ge 2 ]"
say "decisions (llamux trace)"
$L trace --all --no-follow
step "the kernel advisor made them" sh -c "$L trace --json --all --no-follow | grep '\"type\":\"decision\"' | grep -q '\"advisor\":\"kernel\"'"
$L trace --json --all --no-follow | grep '"type":"decision"' | sed -n 's/.*"advisor":"\([a-z]*\)".*"key":"\([^"]*\)".*"score_list":\(\[[^]]*\]\).*/\2: advisor \1, scores \3/p'
grep -E '^(advise_requests|advise_errors|last_advise_ms):' $P/status
say "run both again"
for p in /tmp/tool /tmp/python; do
    if out=$($p 2>&1); then echo "$p: $out"; else echo "$p: refused: $out"; fi
done
step "one exec was refused with EPERM" sh -c "{ /tmp/tool; /tmp/python; } 2>&1 | grep -q 'Operation not permitted'"
$L status
step "unload" $L unload
step "rmmod" rmmod llamux
finish
