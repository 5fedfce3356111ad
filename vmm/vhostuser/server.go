package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
// and Device, served concurrently. A connection that closes without
// sending a message (such as Listen's liveness probe from another process)
// does not count toward MaxConns. Serve closes l (removing the socket
// file), ends the sessions still running and waits for them before it
// returns. It returns nil when stopped by ctx or MaxConns.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		l.Close()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var served atomic.Int32
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("vhost-user: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs, err := s.serveConn(ctx, conn)
			if err != nil {
				s.logger().Warn("vhost-user: connection ended with an error", "err", err)
			}
			if msgs > 0 && s.MaxConns > 0 && int(served.Add(1)) >= s.MaxConns {
				cancel()
			}
		}()
	}
}

// ServeConn serves one connection with a fresh device until the peer
// hangs up (nil) or ctx is done (nil), or the stream breaks (an error).
// It closes conn.
func (s *Server) ServeConn(ctx context.Context, conn *net.UnixConn) error {
	_, err := s.serveConn(ctx, conn)
	return err
}

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) (int, error) {
	log := s.logger()
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	dev, err := s.NewDevice(ctx)
	if err != nil {
		return 0, fmt.Errorf("vhost-user: new device: %w", err)
	}
	log.Debug("vhost-user: front-end connected")
	sess := newSession(ctx, conn, dev, log)
	err = sess.serve()
	if ctx.Err() != nil {
		err = nil
	}
	log.Debug("vhost-user: front-end gone", "messages", sess.messages, "err", err)
	return sess.messages, err
}
