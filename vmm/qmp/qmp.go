package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by commands once the connection has ended (QEMU
// exited or the client was closed).
var ErrClosed = errors.New("qmp: connection closed")

// Event is an asynchronous QMP event.
type Event struct {
	Name      string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Time is when QEMU sent the event.
func (e Event) Time() time.Time {
	return time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000)
}

// ShutdownData is the data of a SHUTDOWN event.
type ShutdownData struct {
	// Guest is true when the guest asked (poweroff, reset with -no-reboot,
	// panic), false when the host did (quit, a signal).
	Guest bool `json:"guest"`
	// Reason: "guest-shutdown", "guest-reset", "guest-panic",
	// "host-qmp-quit", "host-signal"…
	Reason string `json:"reason"`
}

// Error is an error QEMU answered a command with.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp: %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Status is the answer to query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "prelaunch", "running", "paused", "shutdown"…
}

// Greeting is what QEMU says first.
type Greeting struct {
	QMP struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// Client is a negotiated QMP connection. Its methods may be called
// concurrently.
type Client struct {
	conn     net.Conn
	Greeting Greeting

	// Events receives QEMU's events in order; it is closed when the
	// connection ends. Events that find it full are dropped (a reader
	// that cares, such as a VM waiting for SHUTDOWN, keeps up).
	Events <-chan Event
	events chan Event

	wmu     sync.Mutex // serialises writes
	mu      sync.Mutex // guards nextID, pending
	nextID  uint64
	pending map[string]chan reply

	done    chan struct{}
	readErr error // set before done is closed
}

type reply struct {
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

// New reads the greeting on conn, negotiates capabilities and returns a
// client. It closes conn on error; ctx bounds the negotiation only.
func New(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		events:  make(chan Event, 64),
		pending: map[string]chan reply{},
		done:    make(chan struct{}),
	}
	c.Events = c.events
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(conn, 64<<10)
	line, err := br.ReadBytes('\n')
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qmp: greeting: %w", ctx.Err())
		}
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	if err := json.Unmarshal(line, &c.Greeting); err != nil || c.Greeting.QMP.Capabilities == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: not a QMP greeting: %q", line)
	}
	go c.read(br)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// read dispatches what QEMU sends until the connection ends.
func (c *Client) read(br *bufio.Reader) {
	defer func() {
		c.mu.Lock()
		for id, ch := range c.pending {
			close(ch)
			delete(c.pending, id)
		}
		c.mu.Unlock()
		close(c.events)
		close(c.done)
	}()
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = ErrClosed
			}
			c.readErr = err
			return
		}
		var m struct {
			Event string `json:"event"`
			reply
		}
		if err := json.Unmarshal(line, &m); err != nil {
			c.readErr = fmt.Errorf("qmp: undecodable message %q: %w", line, err)
			c.conn.Close()
			return
		}
		if m.Event != "" {
			var ev Event
			json.Unmarshal(line, &ev)
			select {
			case c.events <- ev:
			default:
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m.reply // buffered
		}
		// A reply nobody waits for belongs to a cancelled command.
	}
}

// Execute runs command with args (nil for none) and decodes its return
// value into result (nil to ignore it). A QEMU error comes back as *Error;
// a connection that ends first gives an error wrapping ErrClosed. If ctx
// ends first the command may still run; the client stays usable.
func (c *Client) Execute(ctx context.Context, command string, args any, result any) error {
	ch := make(chan reply, 1)
	c.mu.Lock()
	c.nextID++
	id := fmt.Sprintf("castor-%d", c.nextID)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	msg := map[string]any{"execute": command, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		forget()
		return err
	}
	c.wmu.Lock()
	_, err = c.conn.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("qmp: %s: %w", command, ErrClosed)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp: %s: %w", command, ErrClosed)
		}
		if r.Error != nil {
			r.Error.Command = command
			return r.Error
		}
		if result != nil && len(r.Return) > 0 {
			if err := json.Unmarshal(r.Return, result); err != nil {
				return fmt.Errorf("qmp: %s: decoding the answer: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	}
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (ErrClosed when QEMU hung up); it waits
// for the end.
func (c *Client) Err() error {
	<-c.done
	return c.readErr
}

// Close closes the connection and waits for the reader to stop.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
