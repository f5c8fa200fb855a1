#!/bin/sh
# Guest smoke test: the initramfs and the mounts the harness promises.
. /llamux/lib.sh
step "proc mounted" test -r /proc/self/status
step "sysfs mounted" test -d /sys/kernel
step "devtmpfs mounted" test -c /dev/null
step "debugfs mounted" grep -q ' /sys/kernel/debug debugfs ' /proc/mounts
step "tracefs mounted" grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts
step "bpffs mounted" grep -q ' /sys/fs/bpf bpf ' /proc/mounts
step "securityfs mounted" grep -q ' /sys/kernel/security securityfs ' /proc/mounts
step "bpf in active LSMs" grep -q bpf /sys/kernel/security/lsm
step "kernel BTF present" test -s /sys/kernel/btf/vmlinux
step "CONFIG_RUST=y" sh -c 'zcat /proc/config.gz | grep -qx CONFIG_RUST=y'
step "all CPUs online" sh -c '[ "$(grep -c ^processor /proc/cpuinfo)" -ge 1 ]'
for f in "$@"; do
	step "extra file $f present" test -e "$f"
done
finish
