#!/bin/sh
# Benchmark castor's virtiofs against QEMU's virtiofsd inside a QEMU (TCG)
# guest: sequential read of a 256 MiB file and `ls -l` of 2000 files.
# Needs qemu-system-x86, linux-image-cloud-amd64, busybox-static and root
# (virtiofsd). Extra flags go to the Go program (-runs N, -size MiB, -files N, -only NAME).
set -e
cd "$(dirname "$0")/../.."
exec go run ./bench/vm/virtiofsbench "$@"
