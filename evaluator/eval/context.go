package eval

import (
	"slices"
	"strings"
)

// Context is the string context of a string: the store paths it refers to,
// sorted and without duplicates, in Nix's encoding:
//
//	/nix/store/...-name          a plain store path (from a path or toFile)
//	=/nix/store/...-name.drv     a derivation with all its outputs (drvPath)
//	!out!/nix/store/...-name.drv one output of a derivation (outPath)
//
// Every string operation carries the contexts of its inputs into its
// result; only the unsafeDiscard* builtins drop them.
type Context []string

// union returns the union of two contexts, reusing one when possible.
func (c Context) union(d Context) Context {
	if len(d) == 0 {
		return c
	}
	if len(c) == 0 {
		return d
	}
	out := make(Context, 0, len(c)+len(d))
	i, j := 0, 0
	for i < len(c) && j < len(d) {
		switch strings.Compare(c[i], d[j]) {
		case -1:
			out = append(out, c[i])
			i++
		case 1:
			out = append(out, d[j])
			j++
		default:
			out = append(out, c[i])
			i++
			j++
		}
	}
	out = append(out, c[i:]...)
	return append(out, d[j:]...)
}

// ctxBuilder accumulates contexts cheaply: most strings have none.
type ctxBuilder struct {
	ctx Context
}

func (b *ctxBuilder) add(c Context) {
	if len(c) == 0 {
		return
	}
	if len(b.ctx) == 0 {
		b.ctx = c
		return
	}
	b.ctx = b.ctx.union(c)
}

func (b *ctxBuilder) addPath(p string) {
	b.add(Context{p})
}

func (b *ctxBuilder) result() Context { return b.ctx }

func newContext(elems ...string) Context {
	c := Context(slices.Clone(elems))
	slices.Sort(c)
	return slices.Compact(c)
}
