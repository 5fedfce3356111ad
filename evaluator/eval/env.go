package eval

// Env is a runtime environment: the values of one scope's variables, and
// the enclosing environment. The compiler resolves every variable to a
// (level, index) pair, so lookups never search by name; a `with` scope is
// an Env of one slot holding the (lazy) attribute set.
type Env struct {
	up   *Env
	vals []Value
}

// Small environments are allocated together with their slots: one
// allocation instead of two on every function call.
type (
	env1 struct {
		Env
		a [1]Value
	}
	env2 struct {
		Env
		a [2]Value
	}
	env3 struct {
		Env
		a [3]Value
	}
	env4 struct {
		Env
		a [4]Value
	}
)

func newEnv(up *Env, n int) *Env {
	switch n {
	case 0:
		return &Env{up: up}
	case 1:
		e := &env1{}
		e.up, e.vals = up, e.a[:]
		return &e.Env
	case 2:
		e := &env2{}
		e.up, e.vals = up, e.a[:]
		return &e.Env
	case 3:
		e := &env3{}
		e.up, e.vals = up, e.a[:]
		return &e.Env
	case 4:
		e := &env4{}
		e.up, e.vals = up, e.a[:]
		return &e.Env
	}
	return &Env{up: up, vals: make([]Value, n)}
}
