package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}` + "\r\n"

// fakeQEMU answers QMP commands as QEMU does: by id, with events in
// between; it is a fake, for the client's tests.
func fakeQEMU(t *testing.T, conn net.Conn, answer func(cmd string, args json.RawMessage) string) {
	t.Helper()
	conn.Write([]byte(greeting))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		var msg struct {
			Execute   string          `json:"execute"`
			ID        json.RawMessage `json:"id"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			t.Errorf("fake QEMU got %q: %v", line, err)
			return
		}
		a := answer(msg.Execute, msg.Arguments)
		if a == "" {
			continue
		}
		// Events first, then the reply with the command's id.
		for _, part := range strings.Split(a, "\n") {
			if strings.HasPrefix(part, `{"event"`) {
				conn.Write([]byte(part + "\r\n"))
				continue
			}
			conn.Write([]byte(fmt.Sprintf(`{%s, "id": %s}`+"\r\n", strings.TrimSuffix(strings.TrimPrefix(part, "{"), "}"), msg.ID)))
		}
	}
}

func TestClient(t *testing.T) {
	a, b := net.Pipe()
	go fakeQEMU(t, b, func(cmd string, args json.RawMessage) string {
		switch cmd {
		case "qmp_capabilities":
			return `{"return": {}}`
		case "query-status":
			return `{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\n" + `{"return": {"status": "prelaunch", "running": false}}`
		case "system_powerdown":
			return `{"error": {"class": "GenericError", "desc": "no ACPI"}}`
		case "quit":
			return `{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}, "timestamp": {"seconds": 3, "microseconds": 0}}` + "\n" + `{"return": {}}`
		case "stall":
			return ""
		}
		return `{"error": {"class": "CommandNotFound", "desc": "unknown"}}`
	})
	ctx := context.Background()
	c, err := New(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if c.Greeting.QMP.Version.QEMU.Major != 7 {
		t.Errorf("greeting %+v", c.Greeting)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != "prelaunch" || st.Running {
		t.Errorf("status %+v %v", st, err)
	}
	if ev := <-c.Events; ev.Name != "RESUME" || ev.Time().Unix() != 1 {
		t.Errorf("event %+v", ev)
	}
	var qerr *Error
	if err := c.Execute(ctx, "system_powerdown", nil, nil); !errors.As(err, &qerr) || qerr.Class != "GenericError" || !strings.Contains(err.Error(), "system_powerdown") {
		t.Errorf("error reply: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Execute(short, "stall", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered command: %v", err)
	}
	if err := c.Execute(ctx, "quit", nil, nil); err != nil {
		t.Errorf("quit: %v", err)
	}
	ev := <-c.Events
	var sd ShutdownData
	if ev.Name != "SHUTDOWN" || json.Unmarshal(ev.Data, &sd) != nil || sd.Reason != "host-qmp-quit" {
		t.Errorf("shutdown event %+v", ev)
	}
	b.Close()
	if err := c.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("end: %v", err)
	}
	if _, ok := <-c.Events; ok {
		t.Error("events still open after the end")
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after the end: %v", err)
	}
}

func TestNotQMP(t *testing.T) {
	a, b := net.Pipe()
	go func() { b.Write([]byte("SSH-2.0-OpenSSH\r\n")); b.Close() }()
	if _, err := New(context.Background(), a); err == nil || !strings.Contains(err.Error(), "not a QMP greeting") {
		t.Errorf("not QMP: %v", err)
	}
	c, d := net.Pipe()
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := New(ctx, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent peer: %v", err)
	}
}

// FuzzClient feeds arbitrary QEMU output after the greeting: the client
// never panics and ends cleanly.
func FuzzClient(f *testing.F) {
	f.Add([]byte(`{"return": {}, "id": "castor-1"}` + "\n" + `{"event": "STOP"}` + "\n"))
	f.Add([]byte(`{"error": {"class": "x"}, "id": "castor-1"}` + "\n"))
	f.Add([]byte("garbage\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		go func() {
			b.Write([]byte(greeting))
			br := bufio.NewReader(b)
			br.ReadBytes('\n')
			b.Write(in)
			b.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := New(ctx, a)
		if err == nil {
			c.Close()
		}
	})
}
