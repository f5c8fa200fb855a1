#!/bin/sh
# /init of the Llamux test initramfs (busybox). Settings come from
# /llamux/guest.conf written by run-guest.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /run /mnt/host
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
# bpffs root-only: its default 1777 lets any user make /sys/fs/bpf/llamux.
mkdir -p /sys/fs/bpf && mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
ln -sf /proc/self/fd /dev/fd 2>/dev/null
# busybox modinfo/modprobe want a modules.dep even for a .ko given by path.
mkdir -p "/lib/modules/$(uname -r)" && touch "/lib/modules/$(uname -r)/modules.dep"
LLAMUX_SHARE=""
LLAMUX_TEST=/llamux/test.sh
LLAMUX_TEST_ARGS=""
LLAMUX_KMEMLEAK=0
. /llamux/guest.conf
if [ -n "$LLAMUX_SHARE" ]; then
	mount -t 9p -o trans=virtio,version=9p2000.L,ro llamux /mnt/host ||
		echo "LLAMUX-TEST FAIL mount-share: 9p mount failed"
fi
echo "LLAMUX-GUEST START $(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem=$(awk '/MemTotal/{print $2}' /proc/meminfo)kB"
cd /llamux
# shellcheck disable=SC2086
sh "$LLAMUX_TEST" $LLAMUX_TEST_ARGS
rc=$?
if [ "$LLAMUX_KMEMLEAK" = 1 ] && [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak
	echo "LLAMUX-GUEST kmemleak scanned, $(grep -c '^unreferenced' /sys/kernel/debug/kmemleak) leak(s) reported"
fi
echo "LLAMUX-GUEST END rc=$rc"
sync
poweroff -f
