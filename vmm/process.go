package vmm

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// process is the VMM process.
type process struct {
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
	err    error // valid once done is closed
}

func (p *process) pid() int {
	if p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *process) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
}

// spawn starts the VMM with m.args and m.extraFiles. The serial console
// (the VMM's standard output) goes to the machine's console buffer and
// Config.Console; standard error is kept for error messages.
//
// The VMM gets SIGKILL when castor dies (Pdeathsig). Pdeathsig fires
// when the thread that started the child exits, so the starting thread is
// locked until the VMM is gone. The VMM gets its own process group, so a
// terminal's ^C reaches castor, which then stops the VM in order.
func (m *Machine) spawn() error {
	var out io.Writer = m.console
	if m.cfg.Console != nil {
		out = io.MultiWriter(m.console, m.cfg.Console)
	}
	p := &process{stderr: newTailBuffer(16 << 10), done: make(chan struct{})}
	p.cmd = &exec.Cmd{
		Path:       m.cfg.Binary,
		Args:       append([]string{m.cfg.Binary}, m.args...),
		Stdout:     out,
		Stderr:     p.stderr,
		ExtraFiles: m.extraFiles,
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true,
		},
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting %s: %w", m.cfg.Binary, err)
	}
	m.mu.Lock()
	m.proc = p // also read by event readers (killOnEvent)
	m.mu.Unlock()
	// The VMM has its copies of the descriptors now.
	for _, f := range m.extraFiles {
		f.Close()
	}
	m.extraFiles = nil
	m.log.Debug("vmm: started", "pid", p.pid(), "args", m.args)
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		// Trim in chunks so appends stay amortised.
		if over < t.max/4 {
			over = min(t.max/4, len(t.buf))
		}
		t.buf = append(t.buf[:0:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}

func (t *tailBuffer) String() string { return string(t.Bytes()) }

// socketPair returns a connected pair of unix stream sockets as files:
// one end for castor, one for the VMM.
func socketPair() (ours, theirs *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "castor-end"), os.NewFile(uintptr(fds[1]), "vmm-end"), nil
}

// killOnEvent kills the VMM from an event reader's goroutine (which may
// run before spawn has recorded the process).
func (m *Machine) killOnEvent() {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		p.kill()
	}
}
