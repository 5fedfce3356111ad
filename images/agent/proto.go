package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Ports on which the agent and the host meet over vsock.
const (
	// ControlPort is the host port the agent connects to at boot (the
	// host listens on <vsock socket>_1024).
	ControlPort = 1024
	// DataPort is the guest port on which the agent serves SendDir
	// requests, one per connection, from the host only.
	DataPort = 1025
)

// Version is the protocol version the agent announces in Hello.
const Version = 1

// ErrProtocol is wrapped by errors about malformed or unexpected
// messages.
var ErrProtocol = errors.New("agent protocol error")

// Message types. Every message is a frame: one type byte, a big-endian
// uint32 payload length, the payload (JSON for structured messages, raw
// bytes for output and data).
const (
	// guest -> host, control connection
	msgHello     byte = 'H' // Hello
	msgSetupDone byte = 'D' // Result
	msgStdout    byte = 'o' // raw bytes
	msgStderr    byte = 'e' // raw bytes
	msgExit      byte = 'X' // Exit
	msgLog       byte = 'L' // text: the agent's own diagnostics
	// host -> guest, control connection
	msgSetup    byte = 'S' // Setup
	msgRun      byte = 'R' // Run
	msgPowerOff byte = 'P' // empty
	// data connection
	msgSendDir byte = 's' // host -> guest: DirRequest
	msgData    byte = 'd' // guest -> host: raw bytes of the stream
	msgEnd     byte = 'E' // guest -> host: Result; the stream is complete if Error is ""
)

// maxFrame bounds a payload, so a broken peer cannot make the other side
// allocate without limit.
const maxFrame = 4 << 20

// Hello is the agent's first message: it is up and its devices work.
type Hello struct {
	Version int
	// Kernel is the guest kernel's release.
	Kernel string
	// Uptime is the guest's uptime when the agent said hello, in
	// nanoseconds (how long the kernel and the agent's set-up took).
	Uptime int64
	// InitStart is the guest's uptime when the agent started.
	InitStart int64
}

// Setup prepares the guest before commands run: steps in order.
type Setup struct {
	// Hostname of the guest ("localhost" when empty).
	Hostname string
	// Steps are done in order; the first failure stops the set-up.
	Steps []Step
	// Net configures eth0 for QEMU's user-mode network (10.0.2.15/24,
	// gateway 10.0.2.2, DNS 10.0.2.3). The loopback interface is always
	// brought up.
	Net bool
}

// Step is one set-up action; exactly one field is set.
type Step struct {
	Mkdir   *Dir     `json:",omitempty"`
	Mount   *Mount   `json:",omitempty"`
	File    *File    `json:",omitempty"`
	Symlink *Symlink `json:",omitempty"`
}

// Dir is a directory to create (with its parents) with this mode and
// owner.
type Dir struct {
	Path     string
	Mode     uint32 // permission bits, setgid and sticky (unix values)
	UID, GID int
}

// VirtiofsReadAheadKB is the read-ahead the agent gives virtio-fs mounts,
// as castor's host mounts have (fs.DefaultReadAheadKB). The kernel gives
// a FUSE mount 128 KiB whatever the server asks at INIT, so a sequential
// reader sends 128 KiB READs; with 2 MiB it sends them as large as the
// device allows (1 MiB). Under TCG a 256 MiB read took 1.87 s instead of
// 2.08 s, with half the server's CPU (bench/vm/run.sh).
const VirtiofsReadAheadKB = 2048

// Mount is a file system to mount; the mountpoint is created when
// missing (an empty file for a bind mount of a file).
type Mount struct {
	// Type: "virtiofs" (Source is the tag), "tmpfs", "proc", "devtmpfs",
	// "devpts", "sysfs", or "bind" (Source is a path).
	Type     string
	Source   string
	Target   string
	ReadOnly bool
	// Data is the file system's options ("size=64m,mode=0755").
	Data string
}

// File is a file to write.
type File struct {
	Path     string
	Mode     uint32
	UID, GID int
	Data     []byte
}

// Symlink is a symbolic link to create.
type Symlink struct {
	Path, Target string
}

// Run is a command to run.
type Run struct {
	// Command is the program (absolute, inside Chroot when set) and its
	// arguments.
	Command []string
	// Argv0 is the program's argv[0] (Command[0] when empty).
	Argv0 string
	// Env is the whole environment ("KEY=value").
	Env []string
	// Dir is the working directory ("/" when empty).
	Dir string
	// UID and GID the program runs as (no supplementary groups).
	UID, GID int
	// Chroot is the root the program sees ("" for the agent's).
	Chroot string
}

// Exit is how a command ended.
type Exit struct {
	// Code is the exit status, -1 when a signal killed the program.
	Code int
	// Signal is the signal's name when one killed it.
	Signal string
	// Error says why the program could not start ("no such file or
	// directory"; Code is then 127).
	Error string `json:",omitempty"`
}

// Result is the outcome of a set-up or a SendDir stream.
type Result struct {
	Error string `json:",omitempty"`
	// NotExist: the error is a path that does not exist.
	NotExist bool `json:",omitempty"`
}

// DirRequest asks for the tree at Path as a NAR.
type DirRequest struct {
	Path string
}

// writeFrame writes one message.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("%w: %d-byte message", ErrProtocol, len(payload))
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if len(payload) <= 4096 {
		// One write for small messages: fewer vsock packets.
		buf := make([]byte, 0, 5+len(payload))
		_, err := w.Write(append(append(buf, hdr[:]...), payload...))
		return err
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func writeJSON(w io.Writer, typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFrame(w, typ, b)
}

// readFrame reads one message; buf is reused when large enough.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: %d-byte message", ErrProtocol, n)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

func decode(typ byte, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: message %q: %v", ErrProtocol, typ, err)
	}
	return nil
}
