#!/bin/sh
# Boot time of castor's micro-VMs under QEMU (TCG here): `castor vm run --
# true` from start to agent ready and to exit, beside the same kernel
# booting a bare busybox init, interleaved in the same run. Needs
# qemu-system-x86, linux-image-cloud-amd64 and busybox-static.
# Flags go to the Go program (-runs N, -castor PATH).
set -e
cd "$(dirname "$0")/../.."
exec go run ./bench/vm/boottime "$@"
