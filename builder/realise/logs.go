package realise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/castor-nix/castor/store/nixpath"
)

// ErrNoLog: no log is kept for that derivation.
var ErrNoLog = errors.New("no build log")

// LogStore keeps build logs by .drv path.
type LogStore interface {
	// Create starts the log of a build of drvPath. The log replaces any
	// earlier one when the writer is closed; until then readers see the
	// earlier one, if any.
	Create(drvPath string) (io.WriteCloser, error)
	// Open returns the log of the last build of drvPath, or an error
	// wrapping ErrNoLog. The caller closes it.
	Open(drvPath string) (io.ReadCloser, error)
}

// LogDir keeps logs as files in a directory, laid out like Nix's
// /nix/var/log/nix/drvs: the first two characters of the .drv's base name,
// then the rest.
type LogDir string

var _ LogStore = LogDir("")

func (d LogDir) file(drvPath string) (string, error) {
	sp, err := nixpath.ParseAbsolute(drvPath)
	if err != nil {
		return "", err
	}
	base := sp.String()
	return filepath.Join(string(d), base[:2], base[2:]), nil
}

// Create implements LogStore.
func (d LogDir) Create(drvPath string) (io.WriteCloser, error) {
	p, err := d.file(drvPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".log-")
	if err != nil {
		return nil, err
	}
	return &renameOnClose{File: f, dst: p}, nil
}

type renameOnClose struct {
	*os.File
	dst string
}

func (r *renameOnClose) Close() error {
	if err := r.File.Close(); err != nil {
		os.Remove(r.Name())
		return err
	}
	return os.Rename(r.Name(), r.dst)
}

// Open implements LogStore.
func (d LogDir) Open(drvPath string) (io.ReadCloser, error) {
	p, err := d.file(drvPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", drvPath, ErrNoLog)
	}
	return f, err
}

// MemoryLogs keeps logs in memory (for tests and memory:// stores).
type MemoryLogs struct {
	mu   sync.Mutex
	logs map[string][]byte
}

var _ LogStore = (*MemoryLogs)(nil)

// Create implements LogStore.
func (m *MemoryLogs) Create(drvPath string) (io.WriteCloser, error) {
	return &memLog{m: m, drv: drvPath}, nil
}

// Open implements LogStore.
func (m *MemoryLogs) Open(drvPath string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.logs[drvPath]
	if !ok {
		return nil, fmt.Errorf("%s: %w", drvPath, ErrNoLog)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type memLog struct {
	m   *MemoryLogs
	drv string
	buf bytes.Buffer
}

func (l *memLog) Write(p []byte) (int, error) { return l.buf.Write(p) }

func (l *memLog) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.logs == nil {
		l.m.logs = map[string][]byte{}
	}
	l.m.logs[l.drv] = bytes.Clone(l.buf.Bytes())
	return nil
}

// prefixWriter writes each complete line to out with a prefix, holding a
// partial line until it ends (or Flush). Writes to out go through mu, which
// all builds share, so lines never interleave.
type prefixWriter struct {
	mu     *sync.Mutex
	out    io.Writer
	prefix string
	part   []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.part = append(p.part, b...)
			break
		}
		line := append(p.part, b[:i]...)
		p.part = nil
		p.emit(line)
		b = b[i+1:]
	}
	return n, nil
}

func (p *prefixWriter) emit(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s> %s\n", p.prefix, strings.TrimRight(string(line), "\r"))
}

// Flush writes a pending partial line.
func (p *prefixWriter) Flush() {
	if len(p.part) > 0 {
		p.emit(p.part)
		p.part = nil
	}
}

// tailWriter remembers the last n lines written.
type tailWriter struct {
	n     int
	lines []string
	part  []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.part = append(t.part, b...)
			if len(t.part) > 64<<10 {
				t.part = t.part[len(t.part)-64<<10:]
			}
			break
		}
		t.add(string(append(t.part, b[:i]...)))
		t.part = nil
		b = b[i+1:]
	}
	return n, nil
}

func (t *tailWriter) add(line string) {
	t.lines = append(t.lines, strings.TrimRight(line, "\r"))
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

// Tail returns the last lines, the partial one included.
func (t *tailWriter) Tail() []string {
	if len(t.part) > 0 {
		t.add(string(t.part))
		t.part = nil
	}
	return t.lines
}
