# Guest-side helpers for Llamux test scripts (busybox sh). Sourced by tests:
#   . /llamux/lib.sh
#   step "module loads" insmod /llamux/llamux.ko
#   step "status readable" sh -c 'grep -q "^state:" /proc/llamux/status'
#   step_not "proc gone" test -e /proc/llamux
# Each step prints exactly one `LLAMUX-TEST PASS name` or
# `LLAMUX-TEST FAIL name: detail` line; run-guest.sh counts these.
# The command's output is shown indented with "  | ".

LLAMUX_PASSED=0
LLAMUX_FAILED=0

pass() {
	LLAMUX_PASSED=$((LLAMUX_PASSED + 1))
	echo "LLAMUX-TEST PASS $1"
}

# fail NAME DETAIL
fail() {
	LLAMUX_FAILED=$((LLAMUX_FAILED + 1))
	echo "LLAMUX-TEST FAIL $1: $2"
}

# step NAME CMD [ARGS...]: PASS when CMD exits 0.
step() {
	_name=$1
	shift
	_out=$("$@" 2>&1)
	_rc=$?
	[ -n "$_out" ] && printf '%s\n' "$_out" | sed 's/^/  | /'
	if [ $_rc -eq 0 ]; then
		pass "$_name"
	else
		fail "$_name" "exit $_rc from: $* $(printf '%s' "$_out" | tail -n 2 | tr '\n' ' ')"
	fi
	return $_rc
}

# step_not NAME CMD [ARGS...]: PASS when CMD exits non-zero.
step_not() {
	_name=$1
	shift
	_out=$("$@" 2>&1)
	_rc=$?
	[ -n "$_out" ] && printf '%s\n' "$_out" | sed 's/^/  | /'
	if [ $_rc -ne 0 ]; then
		pass "$_name"
	else
		fail "$_name" "expected failure but succeeded: $*"
		return 1
	fi
}

# dmesg_has PATTERN: the kernel log contains an (extended) regex.
dmesg_has() {
	dmesg | grep -E -- "$1"
}

# wait_for SECONDS CMD...: retry CMD once a second until it succeeds.
wait_for() {
	_t=$1
	shift
	while [ "$_t" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 1
		_t=$((_t - 1))
	done
	"$@"
}

# finish: summary line; the script's exit status is non-zero on failures.
finish() {
	echo "LLAMUX-TEST SUMMARY passed=$LLAMUX_PASSED failed=$LLAMUX_FAILED"
	[ "$LLAMUX_FAILED" -eq 0 ]
}
