#!/usr/bin/env bash
# Boot the Llamux guest kernel under qemu (TCG) with a busybox initramfs, run
# one test script inside, power off, and judge the serial log.
#
#   run-guest.sh [options] TEST_SCRIPT [ARGS...]
#     --debug            debug kernel (lockdep, KASAN, kmemleak...); default mem 2G
#     --smp N            guest CPUs (default 2)
#     --mem SIZE         guest memory, qemu syntax (default 1G)
#     --timeout SEC      wall-clock limit for the whole boot (default 300; x3 with --debug)
#     --file SRC[:DEST]  add a file to the initramfs (default DEST /llamux/<name>);
#                        repeatable; user-space binaries must be static
#     --disk IMG         attach IMG read-only as virtio-blk (/dev/vda in the guest)
#     --share DIR        export DIR read-only over 9p, mounted at /mnt/host
#     --kernel IMG       boot this image (default: the cached PVH vmlinux; a bzImage works too)
#     --append ARGS      extra kernel command line
#     --allow REGEX      ignore kernel-check hits on lines matching REGEX (repeatable)
#     --log FILE         serial log (default $LLAMUX_CACHE/logs/<test>.log)
#     --quiet            do not echo the serial console
# The test script runs as /llamux/test.sh with /llamux/lib.sh beside it; it
# reports steps with lib.sh (LLAMUX-TEST PASS/FAIL lines). The last line is
# `guest: N passed, N failed`; exit status is non-zero on any failure, a
# timeout, a missing end marker or a kernel problem in the log (Oops, BUG:,
# WARNING:, lockdep, KASAN, soft lockup, RCU stall, Call Trace...).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/env.sh"

DEBUG=0 SMP=2 MEM="" TIMEOUT="" KERNEL="" APPEND="" LOG="" QUIET=0
FILES=() ALLOW=() DISK="" SHARE=""
while (($#)); do
  case "$1" in
    --debug) DEBUG=1 ;;
    --smp) SMP="$2"; shift ;;
    --mem) MEM="$2"; shift ;;
    --timeout) TIMEOUT="$2"; shift ;;
    --file) FILES+=("$2"); shift ;;
    --disk) DISK="$2"; shift ;;
    --share) SHARE="$2"; shift ;;
    --kernel) KERNEL="$2"; shift ;;
    --append) APPEND="$2"; shift ;;
    --allow) ALLOW+=("$2"); shift ;;
    --log) LOG="$2"; shift ;;
    --quiet) QUIET=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "run-guest: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
(($#)) || { echo "usage: run-guest.sh [options] TEST_SCRIPT [ARGS...]" >&2; exit 2; }
TEST="$1"; shift
TEST_ARGS="$*"
[[ -f "$TEST" ]] || { echo "run-guest: no test script $TEST" >&2; exit 2; }
[[ -z "$MEM" ]] && { ((DEBUG)) && MEM=2G || MEM=1G; }
[[ -z "$TIMEOUT" ]] && { ((DEBUG)) && TIMEOUT=900 || TIMEOUT=300; }

if [[ -z "$KERNEL" ]]; then
  kargs=(); ((DEBUG)) && kargs=(--debug)
  KERNEL="$("$HERE/build-kernel.sh" "${kargs[@]}" --print-vmlinux)" || { echo "run-guest: no kernel" >&2; exit 1; }
fi
NAME="$(basename "$TEST" .sh)"
[[ -z "$LOG" ]] && LOG="$LLAMUX_CACHE/logs/$NAME$( ((DEBUG)) && echo -debug)$( [[ ${LLAMUX_KERNEL_VARIANT:-} == mitigations ]] && echo -mitigations).log"
mkdir -p "$(dirname "$LOG")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llamux-guest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Base archive: busybox, applet links, /init, lib.sh, test script, config.
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt/host,llamux,lib/modules}
BB=/bin/busybox
[[ -x $BB ]] || BB=/usr/bin/busybox
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do
  [[ $a == busybox ]] && continue   # a self-link makes /init fail with ELOOP
  ln -sf busybox "$R/bin/$a"
done
install -m 0755 "$HERE/init.sh" "$R/init"
install -m 0644 "$HERE/lib.sh" "$R/llamux/lib.sh"
install -m 0755 "$TEST" "$R/llamux/test.sh"
{
  echo "LLAMUX_TEST=/llamux/test.sh"
  printf 'LLAMUX_TEST_ARGS=%q\n' "$TEST_ARGS"
  echo "LLAMUX_DEBUG=$DEBUG"
  echo "LLAMUX_KMEMLEAK=$DEBUG"
  [[ -n "$SHARE" ]] && echo "LLAMUX_SHARE=1"
} > "$R/llamux/guest.conf"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) > "$WORK/initrd.cpio"

# Extra files: a second, concatenated archive built from symlinks with -L,
# so big files (models) are read once and never copied into the staging dir.
if ((${#FILES[@]})); then
  X="$WORK/extra"
  mkdir -p "$X"
  for spec in "${FILES[@]}"; do
    src="${spec%%:*}" dest="/llamux/$(basename "${spec%%:*}")"
    [[ $spec == *:* ]] && dest="${spec#*:}"
    [[ $dest == */ ]] && dest="$dest$(basename "$src")"
    [[ -e "$src" ]] || { echo "run-guest: --file $src does not exist" >&2; exit 2; }
    mkdir -p "$X$(dirname "$dest")"
    ln -sfn "$(realpath "$src")" "$X$dest"
  done
  (cd "$X" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -L -R 0:0) >> "$WORK/initrd.cpio"
fi

QEMU=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM"
      -nographic -monitor none -no-reboot
      -kernel "$KERNEL" -initrd "$WORK/initrd.cpio"
      -append "console=ttyS0 rdinit=/init panic=-1 printk.time=1 no_timer_check $APPEND")
[[ -n "$DISK" ]] && QEMU+=(-drive "file=$DISK,if=virtio,format=raw,readonly=on")
[[ -n "$SHARE" ]] && QEMU+=(-virtfs "local,path=$SHARE,mount_tag=llamux,security_model=none,readonly=on")

echo "run-guest: $NAME on $(basename "$(dirname "$KERNEL")") smp=$SMP mem=$MEM initrd=$(du -h "$WORK/initrd.cpio" | cut -f1) log=$LOG"
T0=$(date +%s.%N)
if ((QUIET)); then
  timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$LOG" 2>&1
else
  timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | tee "$LOG"
fi
QRC=${PIPESTATUS[0]}
T1=$(date +%s.%N)
SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')

# Judge the log (strip CRs; console lines may carry CR from the serial port).
tr -d '\r' < "$LOG" > "$WORK/log"
PASSED=$(grep -acE 'LLAMUX-TEST PASS ' "$WORK/log")
FAILED=$(grep -acE 'LLAMUX-TEST FAIL ' "$WORK/log")
extra_fail() { echo "LLAMUX-TEST FAIL $1: $2"; FAILED=$((FAILED + 1)); }

if ((QRC == 124 || QRC == 137)); then
  extra_fail timeout "guest did not power off within ${TIMEOUT}s"
elif ((QRC != 0)); then
  extra_fail qemu "qemu exited with status $QRC"
fi
if ! grep -aq 'LLAMUX-GUEST END' "$WORK/log"; then
  extra_fail guest-end "no LLAMUX-GUEST END marker (init or test script did not finish)"
else
  # -a: a serial glitch can put NUL bytes in the log (grep then says
  # "binary file matches" instead of printing the marker).
  rc=$(grep -ao 'LLAMUX-GUEST END rc=[0-9]*' "$WORK/log" | tail -1 | cut -d= -f2)
  if [[ "$rc" != 0 ]] && ((FAILED == 0)); then
    extra_fail test-script "test script exited with status $rc"
  fi
fi
((PASSED + FAILED == 0)) && extra_fail no-steps "the test script reported no step"

KPAT='Oops|BUG:|WARNING:|\blockdep\b|possible (circular|recursive) locking|DEBUG_LOCKS_WARN_ON|KASAN:|soft lockup|hard LOCKUP|rcu_sched self-detected stall|self-detected stall|detected stalls on CPUs|RCU stall|scheduling while atomic|Call Trace|Kernel panic|kernel BUG at|general protection fault|blocked for more than|unreferenced object|UBSAN:|invalid opcode'
# The debug kernel announces lockdep at boot: not a problem.
hits="$(grep -anE "$KPAT" "$WORK/log" | grep -v 'LLAMUX-TEST ' | grep -v 'RCU lockdep checking is enabled')"
for a in "${ALLOW[@]+"${ALLOW[@]}"}"; do
  hits="$(printf '%s\n' "$hits" | grep -vE -- "$a")"
done
hits="$(printf '%s\n' "$hits" | sed '/^$/d')"
if [[ -n "$hits" ]]; then
  extra_fail kernel-log "$(printf '%s\n' "$hits" | wc -l) problem line(s) in $LOG, first: $(printf '%s\n' "$hits" | head -1)"
  printf '%s\n' "$hits" | head -20 | sed 's/^/run-guest:   /'
fi

if ((QUIET)) && ((FAILED)); then
  echo "run-guest: last lines of $LOG:"; tail -40 "$WORK/log" | sed 's/^/  /'
fi
grep -aE 'LLAMUX-TEST (PASS|FAIL) ' "$WORK/log" | sed 's/^.*\(LLAMUX-TEST \)/\1/' > "$WORK/steps"
((QUIET)) && cat "$WORK/steps"
echo "run-guest: $NAME finished in ${SECS}s (qemu status $QRC)"
echo "guest: $PASSED passed, $FAILED failed"
((FAILED == 0))
