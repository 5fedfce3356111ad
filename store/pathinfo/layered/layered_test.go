package layered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/memory"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
)

func TestConformance(t *testing.T) {
	pathinfotest.Run(t, func(t *testing.T) pathinfo.Service { return New(memory.New(), memory.New()) })
}

// failing is a far service that always errors (a broken substituter).
type failing struct{ calls int }

func (f *failing) Get(ctx context.Context, d [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	f.calls++
	return nil, errors.New("connection refused")
}

func TestPriorityAndMisses(t *testing.T) {
	ctx := context.Background()
	near, first, second := memory.New(), memory.New(), memory.New()
	broken := &failing{}
	a, b := pathinfotest.Sample(1), pathinfotest.Sample(2)
	first.Put(ctx, a)
	second.Put(ctx, a)
	second.Put(ctx, b)
	s := New(near, broken, first, second)
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }

	if _, err := s.Get(ctx, b.StorePath.Digest); err != nil {
		t.Fatalf("b is in the second substituter: %v", err)
	}
	if _, err := near.Get(ctx, b.StorePath.Digest); err != nil {
		t.Fatalf("b not recorded near: %v", err)
	}
	calls := broken.calls
	if _, err := s.Get(ctx, b.StorePath.Digest); err != nil || broken.calls != calls {
		t.Fatalf("second lookup of b went to the substituters (%v)", err)
	}

	// Something nobody has but a substituter failed: an error, not a miss.
	c := pathinfotest.Sample(3)
	if _, err := s.Get(ctx, c.StorePath.Digest); err == nil || errors.Is(err, pathinfo.ErrNotFound) {
		t.Fatalf("lookup with a failing substituter: %v, want its error", err)
	}
	// Without the broken one, a plain miss, remembered for a while.
	s2 := New(near, first)
	s2.now = s.now
	if _, err := s2.Get(ctx, c.StorePath.Digest); !errors.Is(err, pathinfo.ErrNotFound) {
		t.Fatalf("miss: %v", err)
	}
	first.Put(ctx, c)
	if _, err := s2.Get(ctx, c.StorePath.Digest); !errors.Is(err, pathinfo.ErrNotFound) {
		t.Fatalf("remembered miss: %v, want ErrNotFound", err)
	}
	clock = clock.Add(DefaultMissTTL + time.Second)
	if _, err := s2.Get(ctx, c.StorePath.Digest); err != nil {
		t.Fatalf("after the miss expired: %v", err)
	}
}
