package builder_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castor-nix/castor/builder"
)

// blockingExecutor writes its log, then runs until released or its
// context ends, counting how many run at once.
type blockingExecutor struct {
	log     string
	release chan struct{}
	mu      sync.Mutex
	running int
	max     int
	started chan struct{}
}

func (b *blockingExecutor) Run(ctx context.Context, _ *builder.Build, log io.Writer) (builder.Outputs, error) {
	b.mu.Lock()
	b.running++
	b.max = max(b.max, b.running)
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.running--; b.mu.Unlock() }()
	b.started <- struct{}{}
	io.WriteString(log, b.log)
	select {
	case <-b.release:
		return &builder.DirOutputs{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestLimitJobs(t *testing.T) {
	x := &blockingExecutor{release: make(chan struct{}), started: make(chan struct{}, 10)}
	e := builder.Limit(x, builder.Limits{MaxJobs: 2})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Run(context.Background(), &builder.Build{}, io.Discard)
		}()
	}
	<-x.started
	<-x.started
	// Two run; the others wait for a slot. Release them one by one.
	for range 5 {
		x.release <- struct{}{}
	}
	wg.Wait()
	if x.max != 2 {
		t.Errorf("%d ran at once with MaxJobs 2", x.max)
	}
}

func TestLimitTimeoutAndLog(t *testing.T) {
	x := &blockingExecutor{release: make(chan struct{}), started: make(chan struct{}, 10)}
	_, err := builder.Limit(x, builder.Limits{Timeout: 10 * time.Millisecond}).Run(context.Background(), &builder.Build{}, io.Discard)
	if !errors.Is(err, builder.ErrTimeout) {
		t.Errorf("timeout: %v", err)
	}
	x.log = strings.Repeat("x", 100)
	var log bytes.Buffer
	_, err = builder.Limit(x, builder.Limits{MaxLogBytes: 10}).Run(context.Background(), &builder.Build{}, &log)
	if !errors.Is(err, builder.ErrLogLimit) || log.String() != "xxxxxxxxxx" {
		t.Errorf("log limit: %v, log %q", err, log.String())
	}
	// A cancelled caller gets its own error, not a limit's.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-x.started; cancel() }()
	x.log = ""
	_, err = builder.Limit(x, builder.Limits{Timeout: time.Hour}).Run(ctx, &builder.Build{}, io.Discard)
	if !errors.Is(err, context.Canceled) || errors.Is(err, builder.ErrTimeout) {
		t.Errorf("cancel: %v", err)
	}
}
