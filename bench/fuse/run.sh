#!/bin/sh
# Benchmark castor's FUSE mount against tmpfs: sequential read of a 1 GiB
# file (first and second read), find + stat of a 100k-file tree (warm),
# and the time and memory to mount and list a store of 10k store paths
# with --list-root. The store is the embedded default (chunked, zstd blob
# store on disk + bbolt). Prints figures and ratios; asserts nothing.
#
# Needs root and /dev/fuse; runs in a private mount namespace, so nothing
# is mounted on the host. Extra flags go to the Go program:
#   bench/fuse/run.sh -size 256M -files 20000 -paths 2000 -runs 3 -only seq,tree,list
#   bench/fuse/run.sh -drop-caches    # cold means the disk too (drops the host's page cache)
set -e
cd "$(dirname "$0")/../.."
go build -o /tmp/castor-fusebench ./bench/fuse/fusebench
exec unshare --mount --propagation private /tmp/castor-fusebench "$@"
