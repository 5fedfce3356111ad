package nar

import "context"

// tokens is a counting semaphore over a budget of bytes, in units. One
// goroutine acquires (so partial acquisitions cannot deadlock each other);
// any goroutine releases.
type tokens chan struct{}

const tokenUnit = 64 << 10

func newTokens(bytes int) tokens { return make(tokens, bytes/tokenUnit) }

// units is how many units n bytes cost: at least one, so that many empty
// or tiny items are bounded too.
func units(n int64) int { return max(1, int((n+tokenUnit-1)/tokenUnit)) }

// acquire takes n units, or gives back what it took and returns the
// context's error.
func (t tokens) acquire(ctx context.Context, n int) error {
	for i := range n {
		select {
		case t <- struct{}{}:
		case <-ctx.Done():
			t.release(i)
			return context.Cause(ctx)
		}
	}
	return nil
}

func (t tokens) release(n int) {
	for range n {
		<-t
	}
}
