package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Executor runs builds.
type Executor interface {
	// Run runs b, which must be valid (Build.Validate), writing what the
	// program writes to its standard output and error to log as it comes
	// (log is written from one goroutine at a time, never after Run
	// returns). When the program exits successfully it returns the output
	// trees, which the caller must Close; otherwise it returns an error:
	// an *ExitError for a program that failed, one wrapping ErrUnsupported
	// when b cannot run here, ctx.Err() (wrapped) when ctx ended the build.
	// Nothing of the build (processes, mounts) outlives Run, except the
	// output trees until Close.
	Run(ctx context.Context, b *Build, log io.Writer) (Outputs, error)
}

// Outputs are the trees a successful build left at its output paths.
type Outputs interface {
	// WriteNAR writes the tree at b.Outputs[i] as a NAR to w, or returns
	// an error wrapping ErrNoOutput when the build did not create it. It
	// may be called once per output, in any order, concurrently for
	// different outputs.
	WriteNAR(ctx context.Context, i int, w io.Writer) error
	// Close releases the trees. It is safe to call more than once.
	Close() error
}

// ExitError is a build program that did not exit successfully.
type ExitError struct {
	// Code is the exit status, or -1 when a signal killed the program.
	Code int
	// Signal is the signal's name when one killed the program.
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "builder killed by signal " + e.Signal
	}
	return fmt.Sprintf("builder failed with exit code %d", e.Code)
}

// Limits bound builds; zero fields mean no limit.
type Limits struct {
	// Timeout is how long one build may run.
	Timeout time.Duration
	// MaxLogBytes is how much log one build may write.
	MaxLogBytes int64
	// MaxJobs is how many builds may run at once.
	MaxJobs int
}

// Limit wraps e so that its builds respect l: a build past its timeout
// fails with an error wrapping ErrTimeout, one that writes more than
// MaxLogBytes fails with ErrLogLimit (the log keeps the first MaxLogBytes),
// and at most MaxJobs builds run at once (the others wait, honouring ctx).
func Limit(e Executor, l Limits) Executor {
	le := &limited{next: e, l: l}
	if l.MaxJobs > 0 {
		le.slots = make(chan struct{}, l.MaxJobs)
	}
	return le
}

type limited struct {
	next  Executor
	l     Limits
	slots chan struct{}
}

var _ Executor = (*limited)(nil)

func (le *limited) Run(ctx context.Context, b *Build, log io.Writer) (Outputs, error) {
	if le.slots != nil {
		select {
		case le.slots <- struct{}{}:
			defer func() { <-le.slots }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if le.l.Timeout > 0 {
		t := time.AfterFunc(le.l.Timeout, func() {
			cancel(fmt.Errorf("%w after %v", ErrTimeout, le.l.Timeout))
		})
		defer t.Stop()
	}
	if le.l.MaxLogBytes > 0 {
		log = &limitWriter{w: log, left: le.l.MaxLogBytes, exceeded: func() {
			cancel(fmt.Errorf("%w: more than %d bytes", ErrLogLimit, le.l.MaxLogBytes))
		}}
	}
	outs, err := le.next.Run(runCtx, b, log)
	if cause := context.Cause(runCtx); err != nil && cause != nil && ctx.Err() == nil &&
		(errors.Is(cause, ErrTimeout) || errors.Is(cause, ErrLogLimit)) {
		// The executor saw a cancelled context; say why it was cancelled.
		return nil, cause
	}
	return outs, err
}

// limitWriter passes on at most left bytes and calls exceeded once when
// more come.
type limitWriter struct {
	w        io.Writer
	left     int64
	once     sync.Once
	exceeded func()
}

func (lw *limitWriter) Write(p []byte) (int, error) {
	n := len(p)
	if int64(len(p)) > lw.left {
		p = p[:lw.left]
		lw.once.Do(lw.exceeded)
	}
	lw.left -= int64(len(p))
	if len(p) > 0 {
		if _, err := lw.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}
