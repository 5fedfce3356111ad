// Package sandbox runs builds in Linux namespaces: castor's first
// builder.Executor.
//
// # What a build sees
//
// A build runs as uid 1000, gid 100 (nixbld) in its own user, mount, PID,
// IPC and UTS namespaces, and in its own network namespace with only a
// loopback interface unless the build may use the network (fixed-output
// derivations). Its root is a fresh directory holding: the inputs, read-only,
// at /nix/store/<name>, each bind-mounted from a castor FUSE filesystem that
// knows only the build's inputs (nothing else of the store is visible);
// the outputs, written into the same /nix/store directory (mode 1775);
// /build (0700, the working directory, with the build's additional files);
// /etc with passwd, group and hosts as Nix writes them; a minimal /dev
// (null, zero, full, random, urandom, tty, a private devpts and /dev/shm);
// its own /proc; /tmp; and /bin/sh, a static busybox, when the build asks
// for one. The host name is localhost. Host processes run as root, the
// builder as an unprivileged host identity (nobody by default), so that a
// builder can write no host file and no sysctl even through /proc.
//
// # How
//
// The executor starts its own binary (/proc/self/exe) as a helper in new
// mount, PID, IPC, UTS (and network) namespaces, with SIGKILL as its
// parent-death signal. The helper is PID 1 there and root of the host. It
// opens /dev/fuse, mounts it inside its private mount namespace, and sends
// the descriptor back over a socket; the executor serves the castor
// filesystem on it (go-fuse's /dev/fd/N mode) and says so. The helper then
// bind-mounts the inputs, devices and shell into the root, brings up lo,
// pivots into the root, starts the builder in a new user namespace (so the
// builder holds no capability over any mount) and reaps processes until
// the builder exits, then reports its status and exits. When the helper
// exits — normally, killed on cancellation, or because castor died — the
// kernel kills everything left in the PID namespace and drops the mount
// namespace with every mount in it: nothing outlives the build but its
// output files in the scratch directory, which DirOutputs hands back and
// Close removes.
//
// # Why not bubblewrap
//
// Bubblewrap (Debian's bwrap 0.8) was measured on this machine for the
// same trivial build: 47 ms per run with its own network namespace, 23 ms
// without; this executor takes 30–50 ms for a whole build, FUSE mount,
// output NAR and teardown included, on the same (shared, noisy) machine, so
// speed decides nothing. What decides is the FUSE mount: it must be made
// inside the build's private mount namespace by a privileged process whose
// /dev/fuse descriptor castor then serves. Bubblewrap can bind what already
// exists but cannot mount FUSE or hand back a descriptor, so it would need
// the mount to exist in castor's own namespace, where a killed castor
// leaves it behind (and where /nix/store must not be touched). A helper of
// our own was needed anyway; with it doing the whole set-up there is one
// mechanism instead of two, no extra package, and failures come back as
// structured messages (setup error, exit status, signal) rather than bwrap's
// stderr.
package sandbox
