package fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// DefaultMaxRead is the largest read request the kernel sends (max_read),
// and the kernel's read-ahead: big requests amortise the round trip to the
// daemon. go-fuse warns about splice pipes above it.
const DefaultMaxRead = 512 << 10

// DefaultReadAheadKB is the read-ahead of a mount: four max_read requests.
const DefaultReadAheadKB = 4 * DefaultMaxRead >> 10

// Errors a mount can fail with that the user can fix; the messages say how.
var (
	// ErrMountpointStale: a FUSE server died and left its mount behind.
	ErrMountpointStale = errors.New("stale mount")
	// ErrMountpointBusy: something is already mounted there, or in use.
	ErrMountpointBusy = errors.New("mountpoint busy")
)

// MountOptions configure a host mount.
type MountOptions struct {
	// AllowOther lets other users than the mounting one see the mount
	// (for a non-root user this needs user_allow_other in /etc/fuse.conf).
	AllowOther bool
	// Writable leaves out the kernel's read-only flag; the filesystem
	// still answers EROFS to every write. For tests of that answer.
	Writable bool
	// MaxRead is the largest read request (DefaultMaxRead when zero).
	MaxRead int
	// ReadAheadKB sets the mount's read_ahead_kb in sysfs (root only;
	// best effort): DefaultReadAheadKB when zero, the kernel's 128 when
	// negative. The kernel caps a FUSE mount's read-ahead at 128 KiB
	// whatever the daemon asks at INIT; more lets it keep several
	// max_read requests in flight for a sequential reader.
	ReadAheadKB int
	// Debug logs every FUSE request and reply.
	Debug bool
	// Logger receives go-fuse's messages; slog.Default() when nil.
	Logger *slog.Logger
}

// Server is a live host mount.
type Server struct {
	srv        *fuse.Server
	mountpoint string
	log        *slog.Logger
}

// Mount mounts fsys at mountpoint and starts serving it. It checks the
// mountpoint first and explains stale and busy ones (errors wrapping
// ErrMountpointStale and ErrMountpointBusy). As root it calls mount(2)
// itself, else it uses fusermount3. Stop it with Unmount.
func Mount(mountpoint string, fsys fuse.RawFileSystem, opts MountOptions) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	if err := CheckMountpoint(mp); err != nil {
		return nil, err
	}
	maxRead := opts.MaxRead
	if maxRead <= 0 {
		maxRead = DefaultMaxRead
	}
	mo := &fuse.MountOptions{
		AllowOther: opts.AllowOther,
		FsName:     "castor",
		Name:       "castor",
		// The kernel checks modes itself instead of asking (ACCESS).
		Options:      []string{"default_permissions"},
		MaxWrite:     maxRead,
		MaxReadAhead: maxRead,
		// Room for the kernel's asynchronous readahead requests.
		MaxBackground:        64,
		EnableSymlinkCaching: true,
		// READDIRPLUS when attributes will be wanted, plain READDIR
		// otherwise (ls without -l).
		ExtraCapabilities: fuse.CAP_READDIRPLUS_AUTO,
		// security.capability is asked for at every exec; there are
		// none, and go-fuse can say so without calling the filesystem.
		IgnoreSecurityLabels: true,
		DirectMount:          os.Geteuid() == 0,
		Debug:                opts.Debug,
		Logger:               slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if !opts.Writable {
		mo.Options = append(mo.Options, "ro")
		mo.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
	}
	if f, ok := fsys.(*FS); ok && f.opts.DisableXattrs {
		mo.DisableXAttrs = true
	}
	srv, err := fuse.NewServer(fsys, mp, mo)
	if err != nil {
		return nil, explainMountError(mp, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("mount %s: %w", mp, err)
	}
	s := &Server{srv: srv, mountpoint: mp, log: logger}
	switch {
	case opts.ReadAheadKB == 0:
		s.setReadAhead(DefaultReadAheadKB)
	case opts.ReadAheadKB > 0:
		s.setReadAhead(opts.ReadAheadKB)
	}
	return s, nil
}

// Mountpoint returns the absolute path mounted.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Wait blocks until the mount is gone (unmounted by Unmount, or from
// outside with fusermount3 -u or umount).
func (s *Server) Wait() { s.srv.Wait() }

// Unmount unmounts and waits for the server to stop. When files are still
// in use (EBUSY), it detaches the mount lazily instead: the mount leaves
// the namespace at once, and this server goes on answering for the files
// still open until the last is closed, and only then returns. (Killing
// the process instead cuts those users off: their calls fail with
// ENOTCONN.)
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err == nil {
		return nil
	}
	s.log.Warn("mount busy: detaching it lazily and serving the files still open until they are closed (`fuser -vm "+s.mountpoint+"` lists their processes)",
		"mountpoint", s.mountpoint, "err", err)
	derr := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH)
	if derr != nil {
		// Not root: fusermount3 may detach for us.
		if out, ferr := exec.Command("fusermount3", "-u", "-z", s.mountpoint).CombinedOutput(); ferr == nil {
			derr = nil
		} else {
			derr = fmt.Errorf("%v; fusermount3 -uz: %v %s", derr, ferr, bytes.TrimSpace(out))
		}
	}
	if derr != nil {
		return fmt.Errorf("%w: unmount %s: %v (lazy unmount: %v)", ErrMountpointBusy, s.mountpoint, err, derr)
	}
	s.srv.Wait()
	return nil
}

// setReadAhead raises the read-ahead of the mount's backing device, which
// the kernel caps at 128 KiB for FUSE unless told otherwise.
func (s *Server) setReadAhead(kb int) {
	var st syscall.Stat_t
	if err := syscall.Stat(s.mountpoint, &st); err != nil {
		s.log.Debug("read_ahead_kb: stat", "err", err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unixMajor(st.Dev), unixMinor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0o644); err != nil {
		s.log.Debug("read_ahead_kb not set", "path", p, "err", err)
	}
}

func unixMajor(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func unixMinor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// Serve mounts fsys at mountpoint, calls ready (if not nil) once the mount
// answers, and serves until ctx is done, then unmounts. It returns early,
// with nil, if the mount is taken away from outside.
func Serve(ctx context.Context, mountpoint string, fsys fuse.RawFileSystem, opts MountOptions, ready func(*Server)) error {
	s, err := Mount(mountpoint, fsys, opts)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(s)
	}
	gone := make(chan struct{})
	go func() {
		s.Wait()
		close(gone)
	}()
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
	}
	return s.Unmount()
}

// CheckMountpoint reports why mountpoint cannot be mounted on, with the
// fix: missing, not a directory, a stale FUSE mount ("transport endpoint
// is not connected"), or a FUSE filesystem already mounted there.
func CheckMountpoint(mountpoint string) error {
	fi, err := os.Stat(mountpoint)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%w: %s is a dead FUSE mount (transport endpoint is not connected), left by a server that exited without unmounting; run `fusermount3 -u %s` (or `umount -l %s`) and mount again",
			ErrMountpointStale, mountpoint, mountpoint, mountpoint)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist: create it with `mkdir -p %s`", mountpoint, mountpoint)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	case !fi.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	if fstype, ok := mountedFUSE(mountpoint); ok {
		return fmt.Errorf("%w: %s already has a FUSE filesystem (%s) mounted; stop its server or run `fusermount3 -u %s` first",
			ErrMountpointBusy, mountpoint, fstype, mountpoint)
	}
	return nil
}

// mountedFUSE reports whether the topmost mount at mountpoint is a FUSE
// filesystem, from /proc/self/mountinfo. Stacking over other filesystems
// (a host's real /nix/store, a tmpfs) is allowed.
func mountedFUSE(mountpoint string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	fstype, found := topMount(f, mountpoint)
	if !found || !(fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") || fstype == "fuseblk") {
		return "", false
	}
	return fstype, true
}

// topMount returns the type of the last (topmost) filesystem mounted at
// mountpoint in a mountinfo listing.
func topMount(r io.Reader, mountpoint string) (fstype string, found bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER,
		// separated by single spaces (the kernel escapes spaces, tabs,
		// newlines and backslashes in fields, and nothing else).
		fields := strings.Split(sc.Text(), " ")
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != mountpoint {
			continue
		}
		for i, f := range fields[5:] {
			if f == "-" && 5+i+1 < len(fields) {
				// Later lines are mounted on top of earlier ones.
				fstype, found = fields[5+i+1], true
				break
			}
		}
	}
	return fstype, found
}

// unescapeMountinfo undoes the octal escapes (\040 for space…) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// explainMountError adds the fix to errors from mounting.
func explainMountError(mountpoint string, err error) error {
	switch {
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("%w: mount %s: %v; unmount what is there first (`fusermount3 -u %s`)", ErrMountpointBusy, mountpoint, err, mountpoint)
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%w: mount %s: %v; run `fusermount3 -u %s` and mount again", ErrMountpointStale, mountpoint, err, mountpoint)
	case errors.Is(err, os.ErrNotExist) && strings.Contains(err.Error(), "fusermount"):
		return fmt.Errorf("mount %s: %v; install fuse3 (fusermount3) or run as root", mountpoint, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("mount %s: %v; mounting needs root, or fusermount3 and access to /dev/fuse", mountpoint, err)
	}
	return fmt.Errorf("mount %s: %w", mountpoint, err)
}
