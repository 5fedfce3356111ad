package virtiofs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/vmm/vhostuser"
)

// Options configure the device.
type Options struct {
	// RequestQueues is the number of request queues offered (queue 0, the
	// high-priority queue, comes on top). Default 1. The VMM decides how
	// many it uses (QEMU: the device's num-request-queues, Cloud
	// Hypervisor: --fs num_queues).
	RequestQueues int

	// Workers bounds the requests served concurrently per request queue.
	// Default 16.
	Workers int

	// MountOptions are handed to fuse.NewProtocolServer (MaxWrite sets
	// the largest read/write the guest will send). Nil gets 1 MiB
	// MaxWrite and go-fuse's defaults otherwise; a nil Logger in them
	// sends go-fuse's messages to Logger at debug level.
	MountOptions *fuse.MountOptions

	// Logger for session events (per-request detail at debug); nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	r := Options{}
	if o != nil {
		r = *o
	}
	if r.RequestQueues <= 0 {
		r.RequestQueues = 1
	}
	if r.Workers <= 0 {
		r.Workers = 16
	}
	if r.MountOptions == nil {
		r.MountOptions = &fuse.MountOptions{MaxWrite: 1 << 20}
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.MountOptions.Logger == nil {
		// go-fuse logs per-request oddities (unimplemented opcodes such
		// as SYNCFS at guest shutdown): debug detail, not news.
		mo := *r.MountOptions
		mo.Logger = slog.NewLogLogger(r.Logger.Handler(), slog.LevelDebug)
		r.MountOptions = &mo
	}
	return r
}

// NewFS makes the filesystem for one VM session. It is called once per
// connection; the device closes nothing it returns, so a maker that needs
// cleanup returns an io.Closer too (see CloserFS).
type NewFS func(ctx context.Context) (fuse.RawFileSystem, error)

// CloserFS is a filesystem with per-session cleanup: when the VM's session
// ends, Close is called after every request finished.
type CloserFS interface {
	fuse.RawFileSystem
	Close() error
}

// Device is one VM session of a virtio-fs device.
type Device struct {
	fs   fuse.RawFileSystem
	ps   *fuse.ProtocolServer
	opts Options

	// inits counts the INITs answered. go-fuse keeps what INIT
	// negotiated in plain fields that every request reads. The guest
	// sends nothing before INIT's reply, so INIT comes first, but that
	// order reaches us through guest memory and eventfds, which the Go
	// memory model (and the race detector) know nothing of, and other
	// requests may be served on another queue's goroutines. Adding after
	// INIT and loading before every other request makes it an order Go
	// knows.
	inits atomic.Uint64
}

var _ vhostuser.Device = (*Device)(nil)

// NewDevice returns a virtio-fs device session serving fs.
func NewDevice(fs fuse.RawFileSystem, opts *Options) *Device {
	o := opts.withDefaults()
	return &Device{fs: fs, ps: fuse.NewProtocolServer(fs, o.MountOptions), opts: o}
}

// Features: virtio-fs defines no device feature bits that matter here
// (VIRTIO_FS_F_NOTIFICATION is not offered: go-fuse cannot notify over
// virtio-fs).
func (d *Device) Features() uint64 { return 0 }

// NumQueues is the high-priority queue plus the request queues.
func (d *Device) NumQueues() int { return 1 + d.opts.RequestQueues }

// Close ends the session, closing the filesystem if it is a CloserFS.
func (d *Device) Close() error {
	if c, ok := d.fs.(CloserFS); ok {
		return c.Close()
	}
	return nil
}

// RunQueue serves FUSE requests from q until ctx is done, then waits for
// the requests in flight.
//
// One goroutine at a time, the popper, takes requests from the ring and
// waits for kicks. It serves what it pops itself, so a request is served
// by the goroutine the guest's kick woke, without a hand-off to another
// (each costs a wake-up and, on a busy machine, a wait for a CPU). While
// it serves, a vhostuser.Standby watches for kicks: if the guest sends
// another request meanwhile, the goroutine waiting on the Standby makes a
// new goroutine the popper, so a slow request (a store path being
// fetched) holds up no other. When requests are waiting already, the
// popper hands the ring on before serving. Up to Workers requests are
// served at once; past that the popper serves before it pops again. The
// high-priority queue's FORGETs are served in order by the popper alone.
func (d *Device) RunQueue(ctx context.Context, q *vhostuser.Queue) error {
	r := &runner{d: d, q: q, ctx: ctx}
	if q.Index() != 0 {
		r.slots = make(chan struct{}, d.opts.Workers-1)
		if s, err := q.NewStandby(); err == nil {
			// One token per takeover not yet answered, of which there
			// are fewer than Workers: the watcher never blocks on one.
			r.standby, r.takeover = s, make(chan struct{}, d.opts.Workers)
			watched := make(chan struct{})
			go func() { defer close(watched); r.watch() }()
			defer func() { s.Stop(); <-watched; s.Close() }()
		} else {
			d.opts.Logger.Debug("virtiofs: no standby; handing the ring on for every request", "queue", q.Index(), "err", err)
		}
	}
	r.wg.Add(1)
	r.pop()
	r.wg.Wait()
	return r.err
}

// runner is one running queue.
type runner struct {
	d     *Device
	q     *vhostuser.Queue
	ctx   context.Context
	slots chan struct{} // a token per goroutine serving besides the popper; nil: the popper serves all
	wg    sync.WaitGroup

	// standby, if not nil, watches for kicks while the popper serves
	// (nil on the high-priority queue). serving is servingNone,
	// servingArmed while the popper serves with the standby armed, and
	// servingTaken once the watcher made another goroutine the popper;
	// the watcher then sends on takeover after counting that goroutine
	// in wg, which the old popper waits for before it ends (so wg never
	// drops to zero in between).
	standby  *vhostuser.Standby
	serving  atomic.Int32
	takeover chan struct{}

	errOnce sync.Once
	err     error // why the queue stopped, if not ctx
}

const (
	servingNone = iota
	servingArmed
	servingTaken
)

// pop is the popper's loop; it returns when the queue stops or when it
// handed the popper's role to another goroutine.
func (r *runner) pop() {
	defer r.wg.Done()
	for r.ctx.Err() == nil {
		c, err := r.q.Pop()
		if err != nil {
			r.fail(err)
			return
		}
		if c == nil {
			if err := r.q.WaitKick(); err != nil {
				if !errors.Is(err, vhostuser.ErrStopped) {
					r.fail(err)
				}
				return
			}
			continue
		}
		if r.standby != nil {
			if !r.serveArmed(c) {
				return
			}
			continue
		}
		if !r.handOn(c) {
			return
		}
	}
}

// handOn serves c, first making a new goroutine the popper if a worker
// slot is free. It reports whether the caller is still the popper.
func (r *runner) handOn(c *vhostuser.Chain) bool {
	select {
	case r.slots <- struct{}{}:
		r.wg.Add(1)
		go r.pop()
		r.d.serve(r.q, c)
		<-r.slots
		return false
	default:
		r.d.serve(r.q, c)
		return true
	}
}

// serveArmed serves c with the standby armed. It reports whether the
// caller is still the popper.
func (r *runner) serveArmed(c *vhostuser.Chain) bool {
	if r.standby.Ready() {
		return r.handOn(c)
	}
	// From here on the watcher may make another goroutine the popper:
	// this one must not touch the ring's popping side again.
	r.serving.Store(servingArmed)
	if err := r.standby.Arm(); err != nil {
		if r.serving.CompareAndSwap(servingArmed, servingNone) {
			return r.handOn(c)
		}
		r.d.serve(r.q, c)
		r.handedOver()
		return false
	}
	n := r.d.handle(r.q, c)
	// Disarm before the reply goes out: the guest's next request, which
	// the reply may prompt at once, is this goroutine's to pop.
	still := r.serving.CompareAndSwap(servingArmed, servingNone)
	if still {
		r.standby.Disarm()
	}
	r.q.Done(c, n)
	if !still {
		r.handedOver()
	}
	return still
}

// handedOver is the end of a popper the watcher replaced: it waits until
// the new popper is counted, then gives back the slot taken for it.
func (r *runner) handedOver() {
	<-r.takeover
	<-r.slots
}

// watch waits on the standby. When the guest kicked while the popper
// serves, it takes a worker slot for the serving goroutine and makes a
// new goroutine the popper.
func (r *runner) watch() {
	for r.standby.Wait() == nil {
		select {
		case r.slots <- struct{}{}:
		default:
			continue // every worker busy: the popper sees the kick when it pops again
		}
		if !r.serving.CompareAndSwap(servingArmed, servingTaken) {
			<-r.slots // the popper finished first and will pop the request itself
			continue
		}
		r.wg.Add(1) // the old popper still counts, so wg is above zero
		go r.pop()
		r.takeover <- struct{}{}
	}
}

func (r *runner) fail(err error) { r.errOnce.Do(func() { r.err = err }) }

// fuseInit is FUSE_INIT's opcode.
const fuseInit = 26

func (d *Device) serve(q *vhostuser.Queue, c *vhostuser.Chain) {
	q.Done(c, d.handle(q, c))
}

// handle serves c's request and returns the bytes written into its
// writable buffers; the caller returns the chain to the guest.
func (d *Device) handle(q *vhostuser.Queue, c *vhostuser.Chain) uint32 {
	isInit := len(c.Readable) > 0 && len(c.Readable[0]) >= 8 && binary.LittleEndian.Uint32(c.Readable[0][4:]) == fuseInit
	if !isInit {
		_ = d.inits.Load()
	}
	n, st := d.ps.HandleRequest(c.Readable, c.Writable)
	if isInit {
		d.inits.Add(1)
	}
	if !st.Ok() {
		// Undecodable request: nothing sensible to reply; return the
		// chain empty so the guest does not wait forever.
		d.opts.Logger.Debug("virtiofs: bad request", "queue", q.Index(), "status", st)
	}
	return uint32(n)
}

// Serve serves virtio-fs on l to every VM that connects (one at a time or
// several), with a fresh filesystem from newFS per VM, until ctx is done
// (nil) or the listener fails. With once, it returns nil after the first
// VM went away.
func Serve(ctx context.Context, l *net.UnixListener, newFS NewFS, opts *Options, once bool) error {
	o := opts.withDefaults()
	srv := &vhostuser.Server{
		Logger: o.Logger,
		NewDevice: func(ctx context.Context) (vhostuser.Device, error) {
			fs, err := newFS(ctx)
			if err != nil {
				return nil, fmt.Errorf("virtiofs: new filesystem: %w", err)
			}
			return NewDevice(fs, &o), nil
		},
	}
	if once {
		srv.MaxConns = 1
	}
	err := srv.Serve(ctx, l)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
