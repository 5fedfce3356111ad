package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
)

// ErrSocketInUse is returned by Listen when another live process listens
// on the socket path.
var ErrSocketInUse = errors.New("socket in use by a live listener")

// Listen listens on the unix socket at path for a VMM to connect. A stale
// socket file (one nobody accepts on) is removed first; a live listener
// gives ErrSocketInUse, and a path that exists but is not a socket is left
// alone with an error. The listener removes the file when closed.
func Listen(path string) (*net.UnixListener, error) {
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	l, err := net.ListenUnix("unix", addr)
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("vhost-user: listen on %s: %w", path, err)
	}
	fi, serr := os.Lstat(path)
	if serr != nil {
		return nil, fmt.Errorf("vhost-user: listen on %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("vhost-user: listen on %s: path exists and is not a socket", path)
	}
	if c, derr := net.DialUnix("unix", nil, addr); derr == nil {
		c.Close()
		return nil, fmt.Errorf("vhost-user: %s: %w", path, ErrSocketInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("vhost-user: remove stale socket %s: %w", path, err)
	}
	l, err = net.ListenUnix("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("vhost-user: listen on %s: %w", path, err)
	}
	return l, nil
}

// Server serves a vhost-user device to every VMM that connects.
type Server struct {
	// NewDevice makes the device for one connection (one VM). It is
	// called once per accepted connection; an error closes that
	// connection and the server goes on.
	NewDevice func(ctx context.Context) (Device, error)

	// Logger receives connection-level events at info/warn and
	// per-message detail at debug; nil means slog.Default().
	Logger *slog.Logger

	// MaxConns, when positive, makes Serve return after that many
	// connections have ended (e.g. 1 for "serve this VM, then exit").
	MaxConns int
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Serve accepts connections on l until ctx is done, l is closed, or
// MaxConns connections have ended; each connection gets its own session
// and Device, served concurrently. Serve closes l, ends the sessions
// still running when it returns, and waits for them. It returns nil when
// stopped by ctx or MaxConns.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	// ended counts finished connections for MaxConns; its capacity keeps
	// a finishing session from ever blocking on it.
	ended := make(chan struct{}, max(s.MaxConns, 1))
	accepted, finished := 0, 0
	for {
		if s.MaxConns > 0 && accepted >= s.MaxConns {
			for finished < accepted {
				select {
				case <-ended:
					finished++
				case <-ctx.Done():
					return nil
				}
			}
			return nil
		}
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("vhost-user: accept: %w", err)
		}
		accepted++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if s.MaxConns > 0 {
					ended <- struct{}{}
				}
			}()
			if err := s.ServeConn(ctx, conn); err != nil {
				s.logger().Warn("vhost-user: connection ended with an error", "err", err)
			}
		}()
	}
}

// ServeConn serves one connection with a fresh device until the peer
// hangs up (nil) or ctx is done (nil), or the stream breaks (an error).
// It closes conn.
func (s *Server) ServeConn(ctx context.Context, conn *net.UnixConn) error {
	log := s.logger()
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	dev, err := s.NewDevice(ctx)
	if err != nil {
		return fmt.Errorf("vhost-user: new device: %w", err)
	}
	log.Debug("vhost-user: front-end connected")
	err = newSession(ctx, conn, dev, log).serve()
	if ctx.Err() != nil {
		err = nil
	}
	log.Debug("vhost-user: front-end gone", "err", err)
	return err
}
