package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Conn is the host's end of an agent's control connection. Its methods
// are not concurrent with each other (one request at a time), except
// Close.
type Conn struct {
	// Hello is what the agent said when it connected.
	Hello Hello

	c   net.Conn
	br  *bufio.Reader
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

// Accept waits on l for the agent's connection and its Hello. It returns
// when ctx ends (with ctx's error), or the agent connected. It does not
// close l.
func Accept(ctx context.Context, l net.Listener, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		l.Close()
		if r := <-ch; r.c != nil {
			r.c.Close()
		}
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, fmt.Errorf("waiting for the guest agent: %w", r.err)
	}
	c := &Conn{c: r.c, br: bufio.NewReaderSize(r.c, 64<<10), log: log}
	stop := c.cancelOn(ctx)
	typ, payload, err := readFrame(c.br, nil)
	stop()
	if err != nil {
		c.c.Close()
		return nil, c.ctxErr(ctx, fmt.Errorf("reading the agent's hello: %w", err))
	}
	if typ != msgHello {
		c.c.Close()
		return nil, fmt.Errorf("%w: the agent said %q before hello", ErrProtocol, typ)
	}
	if err := decode(typ, payload, &c.Hello); err != nil {
		c.c.Close()
		return nil, err
	}
	if c.Hello.Version != Version {
		c.c.Close()
		return nil, fmt.Errorf("%w: agent speaks protocol %d, castor %d (rebuild the image)", ErrProtocol, c.Hello.Version, Version)
	}
	return c, nil
}

// cancelOn makes blocked reads and writes fail when ctx ends; the
// returned function undoes it.
func (c *Conn) cancelOn(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		if !stop() {
			// ctx ended: leave the deadline, the connection is done.
			return
		}
	}
}

func (c *Conn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// next reads the next message, passing the agent's log lines to the
// logger.
func (c *Conn) next() (byte, []byte, error) {
	for {
		typ, payload, err := readFrame(c.br, c.buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, fmt.Errorf("the guest agent hung up: %w", err)
			}
			return 0, nil, err
		}
		c.buf = payload[:0]
		if typ == msgLog {
			c.log.Debug("guest agent: " + string(payload))
			continue
		}
		return typ, payload, nil
	}
}

// Setup sends s and waits for the agent to have done it. A failed step
// comes back as an error with the agent's message.
func (c *Conn) Setup(ctx context.Context, s *Setup) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cancelOn(ctx)()
	if err := writeJSON(c.c, msgSetup, s); err != nil {
		return c.ctxErr(ctx, fmt.Errorf("sending the set-up: %w", err))
	}
	typ, payload, err := c.next()
	if err != nil {
		return c.ctxErr(ctx, err)
	}
	if typ != msgSetupDone {
		return fmt.Errorf("%w: %q in answer to the set-up", ErrProtocol, typ)
	}
	var r Result
	if err := decode(typ, payload, &r); err != nil {
		return err
	}
	if r.Error != "" {
		return &GuestError{Op: "set-up", Msg: r.Error}
	}
	return nil
}

// GuestError is a failure the agent reported (a set-up step that failed,
// a tree it could not send); the VM and the connection are fine.
type GuestError struct {
	Op  string
	Msg string
	// NotExist: the failure is a path that does not exist (errors.Is
	// finds fs.ErrNotExist).
	NotExist bool
}

func (e *GuestError) Error() string { return "guest " + e.Op + ": " + e.Msg }

func (e *GuestError) Unwrap() error {
	if e.NotExist {
		return fs.ErrNotExist
	}
	return nil
}

// Run runs r in the guest, copying its output to stdout and stderr as it
// comes (from this goroutine), and returns how it ended. If ctx ends
// first, Run returns ctx's error and the connection is no longer usable.
// An error writing to stdout or stderr ends Run with that error.
func (c *Conn) Run(ctx context.Context, r *Run, stdout, stderr io.Writer) (Exit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cancelOn(ctx)()
	if err := writeJSON(c.c, msgRun, r); err != nil {
		return Exit{}, c.ctxErr(ctx, fmt.Errorf("sending the command: %w", err))
	}
	for {
		typ, payload, err := c.next()
		if err != nil {
			return Exit{}, c.ctxErr(ctx, err)
		}
		switch typ {
		case msgStdout:
			if _, err := stdout.Write(payload); err != nil {
				return Exit{}, err
			}
		case msgStderr:
			if _, err := stderr.Write(payload); err != nil {
				return Exit{}, err
			}
		case msgExit:
			var ex Exit
			err := decode(typ, payload, &ex)
			return ex, err
		default:
			return Exit{}, fmt.Errorf("%w: %q while a command runs", ErrProtocol, typ)
		}
	}
}

// PowerOff tells the agent to power the VM off. It does not wait for the
// VM to go; the VMM's exit says that.
func (c *Conn) PowerOff(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cancelOn(ctx)()
	return writeFrame(c.c, msgPowerOff, nil)
}

// Close closes the control connection (the agent then powers off).
func (c *Conn) Close() error { return c.c.Close() }

// SendDir asks the agent, over conn (a new connection to the guest's
// DataPort), for the tree at path as a NAR and copies it to w. It closes
// conn. An error the agent reports (no such path, an unsupported file
// type) comes back as an error; w may then have received part of the
// NAR.
func SendDir(ctx context.Context, conn net.Conn, path string, w io.Writer) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeJSON(conn, msgSendDir, DirRequest{Path: path}); err != nil {
		return ctxOr(ctx, fmt.Errorf("asking for %s: %w", path, err))
	}
	br := bufio.NewReaderSize(conn, 256<<10)
	buf := make([]byte, 0, 1<<20)
	for {
		typ, payload, err := readFrame(br, buf)
		if err != nil {
			return ctxOr(ctx, fmt.Errorf("receiving %s: %w", path, err))
		}
		buf = payload[:0]
		switch typ {
		case msgData:
			if _, err := w.Write(payload); err != nil {
				return err
			}
		case msgEnd:
			var r Result
			if err := decode(typ, payload, &r); err != nil {
				return err
			}
			if r.Error != "" {
				return &GuestError{Op: "sending " + path, Msg: r.Error, NotExist: r.NotExist}
			}
			return nil
		default:
			return fmt.Errorf("%w: %q in a directory stream", ErrProtocol, typ)
		}
	}
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
