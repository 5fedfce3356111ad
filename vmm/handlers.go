package vmm

import (
	"context"
	"fmt"
)

// Handler is one named step of a VM's life, such as "qemu.spawn" or
// "vmm.virtiofs". Steps run in order; the first error stops the list.
type Handler struct {
	Name string
	Fn   func(ctx context.Context, m *Machine) error
}

// HandlerList is an ordered list of steps. Its methods return a new list
// and never modify the receiver, so a list can be shared and edited
// safely (as in firecracker-go-sdk).
type HandlerList struct {
	list []Handler
}

// NewHandlerList returns a list of hs in order.
func NewHandlerList(hs ...Handler) HandlerList {
	return HandlerList{list: append([]Handler(nil), hs...)}
}

// Len is the number of steps.
func (l HandlerList) Len() int { return len(l.list) }

// Names lists the steps' names in order.
func (l HandlerList) Names() []string {
	names := make([]string, len(l.list))
	for i, h := range l.list {
		names[i] = h.Name
	}
	return names
}

// Has reports whether a step is named name.
func (l HandlerList) Has(name string) bool { return l.index(name) >= 0 }

func (l HandlerList) index(name string) int {
	for i, h := range l.list {
		if h.Name == name {
			return i
		}
	}
	return -1
}

// Append adds hs at the end.
func (l HandlerList) Append(hs ...Handler) HandlerList {
	return HandlerList{list: append(append([]Handler(nil), l.list...), hs...)}
}

// Prepend adds hs at the beginning.
func (l HandlerList) Prepend(hs ...Handler) HandlerList {
	return HandlerList{list: append(append([]Handler(nil), hs...), l.list...)}
}

// AppendAfter inserts h right after the step named name, or at the end
// when there is none.
func (l HandlerList) AppendAfter(name string, h Handler) HandlerList {
	i := l.index(name)
	if i < 0 {
		return l.Append(h)
	}
	out := make([]Handler, 0, len(l.list)+1)
	out = append(out, l.list[:i+1]...)
	out = append(out, h)
	out = append(out, l.list[i+1:]...)
	return HandlerList{list: out}
}

// Remove drops every step named name.
func (l HandlerList) Remove(name string) HandlerList {
	out := make([]Handler, 0, len(l.list))
	for _, h := range l.list {
		if h.Name != name {
			out = append(out, h)
		}
	}
	return HandlerList{list: out}
}

// Swap replaces every step named h.Name with h.
func (l HandlerList) Swap(h Handler) HandlerList {
	out := append([]Handler(nil), l.list...)
	for i := range out {
		if out[i].Name == h.Name {
			out[i] = h
		}
	}
	return HandlerList{list: out}
}

// Run runs the steps in order, stopping at the first error (wrapped with
// the step's name) or when ctx is done.
func (l HandlerList) Run(ctx context.Context, m *Machine) error {
	for _, h := range l.list {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if err := h.Fn(ctx, m); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	return nil
}

// Handlers are a machine's step lists. Create brings the VMM up with the
// guest not yet running (devices connected, configuration accepted);
// Start lets the guest run.
type Handlers struct {
	Create HandlerList
	Start  HandlerList
}
