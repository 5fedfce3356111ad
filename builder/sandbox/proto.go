package sandbox

// What the executor tells its helper (as JSON on fd 3) and the helper
// answers (as JSON messages on the control socket, fd 4).

// helperEnv marks a process started as the sandbox helper.
const helperEnv = "CASTOR_SANDBOX_HELPER"

// File descriptors the helper inherits.
const (
	fdConfig  = 3 // read end of a pipe carrying the config
	fdControl = 4 // SOCK_SEQPACKET socket to the executor
)

// mountKind says what a mount is.
type mountKind string

const (
	mountBind   mountKind = "bind"   // Source (a host path, or under FuseDir) on Target
	mountTmpfs  mountKind = "tmpfs"  // a fresh tmpfs on Target
	mountDevpts mountKind = "devpts" // a new devpts instance on Target
	mountProc   mountKind = "proc"   // the helper's PID namespace's procfs
)

// mountSpec is one mount, Target relative to the sandbox root, which must
// already exist (the executor creates every mountpoint).
type mountSpec struct {
	Kind     mountKind
	Source   string `json:",omitempty"`
	Target   string
	ReadOnly bool `json:",omitempty"`
	// Optional mounts that fail are skipped.
	Optional bool `json:",omitempty"`
}

// helperConfig is everything the helper needs.
type helperConfig struct {
	// Root is the host directory that becomes "/".
	Root string
	// FuseDir is the host directory where the helper mounts the castor
	// filesystem before binding inputs from it. It never becomes visible
	// to the builder.
	FuseDir string
	// FuseOptions are the mount(2) data for the FUSE mount, without fd=.
	FuseOptions string
	// Mounts, done in order after the FUSE mount.
	Mounts []mountSpec
	// Command is the program (a path inside the sandbox) and arguments;
	// Argv0 what it sees as argv[0].
	Command []string
	Argv0   string
	Env     []string
	// Dir is the working directory inside the sandbox.
	Dir string
	// LoopbackOnly brings up lo in the helper's own network namespace.
	LoopbackOnly bool
	// UID and GID are the builder's identity inside its user namespace;
	// HostUID and HostGID the host identity they map to.
	UID, GID         int
	HostUID, HostGID int
}

// helperMsg is one message on the control socket from the helper. A
// message with FUSE set carries the /dev/fuse descriptor; the last one has
// Done set.
type helperMsg struct {
	FUSE bool `json:",omitempty"`
	Done bool `json:",omitempty"`
	// Setup is a failure before the builder ran.
	Setup string `json:",omitempty"`
	// Exit is the builder's exit status, or -1 with Signal set.
	Exit   int    `json:",omitempty"`
	Signal string `json:",omitempty"`
}
