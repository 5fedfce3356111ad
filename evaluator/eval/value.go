package eval

import (
	"math"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// kind is the dynamic type of a Value.
type kind uint8

const (
	kInvalid kind = iota
	kNull
	kBool
	kInt
	kFloat
	kString
	kPath
	kAttrs
	kList
	kLambda
	kPrimop
	kPrimopApp
	kThunk
	kBlackhole // only in Thunk.val while the thunk is being forced
)

// Value flags.
const (
	fCtx uint8 = 1 << iota // kString: p points to a ctxString
)

// Value is a Nix value. It is three machine words and is passed by value:
// scalars (null, bools, integers, floats) live in the Value itself, so
// arithmetic never allocates; strings without context point straight at
// their bytes; attribute sets and lists are (pointer to first element,
// length), so they need no header object; everything else points to its
// object. A Value of kind kThunk is lazy: force it before looking at it.
//
// Values are immutable once built, except that a thunk's memoised result
// may be copied into the slot that referred to it.
type Value struct {
	k kind
	f uint8
	n uint64
	p unsafe.Pointer
}

// ctxString is a string that carries a string context.
type ctxString struct {
	s   string
	ctx Context
}

// Thunk is a suspended computation, forced at most once. While pending,
// code and env describe it; while being forced, val.k is kBlackhole (a
// second force is infinite recursion); afterwards code is nil and val is
// the result.
type Thunk struct {
	code code
	env  *Env
	val  Value
}

// Attr is one attribute of a set.
type Attr struct {
	Name Sym
	Pos  syntax.Pos
	Val  Value
}

// Closure is a lambda value: compiled code plus its environment.
type Closure struct {
	lam *lambdaCode
	env *Env
}

// Primop is a built-in function of fixed arity (1 to 3). Its arguments
// arrive unevaluated.
type Primop struct {
	Name  string
	Arity int
	fn1   func(ev *Evaluator, pos syntax.Pos, a Value) Value
	fn2   func(ev *Evaluator, pos syntax.Pos, a, b Value) Value
	fn3   func(ev *Evaluator, pos syntax.Pos, a, b, c Value) Value
}

// primopApp is a primop applied to fewer arguments than its arity.
type primopApp struct {
	prim *Primop
	args [2]Value
	n    int
}

var (
	Null  = Value{k: kNull}
	True  = Value{k: kBool, n: 1}
	False = Value{k: kBool}
)

// Int returns an integer value.
func Int(i int64) Value { return Value{k: kInt, n: uint64(i)} }

// Float returns a float value.
func Float(f float64) Value { return Value{k: kFloat, n: math.Float64bits(f)} }

// Bool returns a Boolean value.
func Bool(b bool) Value {
	if b {
		return True
	}
	return False
}

// Str returns a string value without context.
func Str(s string) Value {
	return Value{k: kString, n: uint64(len(s)), p: unsafe.Pointer(unsafe.StringData(s))}
}

// StrCtx returns a string value with context ctx (which may be empty).
func StrCtx(s string, ctx Context) Value {
	if len(ctx) == 0 {
		return Str(s)
	}
	return Value{k: kString, f: fCtx, p: unsafe.Pointer(&ctxString{s: s, ctx: ctx})}
}

// Path returns a path value; p must be absolute and canonical.
func Path(p string) Value {
	return Value{k: kPath, n: uint64(len(p)), p: unsafe.Pointer(unsafe.StringData(p))}
}

func listValue(l []Value) Value {
	if len(l) == 0 {
		return Value{k: kList}
	}
	return Value{k: kList, n: uint64(len(l)), p: unsafe.Pointer(&l[0])}
}

func attrsValue(a []Attr) Value {
	if len(a) == 0 {
		return Value{k: kAttrs}
	}
	return Value{k: kAttrs, n: uint64(len(a)), p: unsafe.Pointer(&a[0])}
}

func closureValue(c *Closure) Value     { return Value{k: kLambda, p: unsafe.Pointer(c)} }
func primopValue(p *Primop) Value       { return Value{k: kPrimop, p: unsafe.Pointer(p)} }
func primopAppValue(p *primopApp) Value { return Value{k: kPrimopApp, p: unsafe.Pointer(p)} }
func thunkValue(t *Thunk) Value         { return Value{k: kThunk, p: unsafe.Pointer(t)} }

func (v Value) int() int64        { return int64(v.n) }
func (v Value) float() float64    { return math.Float64frombits(v.n) }
func (v Value) bool() bool        { return v.n != 0 }
func (v Value) thunk() *Thunk     { return (*Thunk)(v.p) }
func (v Value) closure() *Closure { return (*Closure)(v.p) }
func (v Value) primop() *Primop   { return (*Primop)(v.p) }
func (v Value) primopApp() *primopApp {
	return (*primopApp)(v.p)
}

// str returns the bytes of a string or path value.
func (v Value) str() string {
	if v.f&fCtx != 0 {
		return (*ctxString)(v.p).s
	}
	return unsafe.String((*byte)(v.p), int(v.n))
}

// ctx returns the context of a string value (nil for none).
func (v Value) ctx() Context {
	if v.f&fCtx != 0 {
		return (*ctxString)(v.p).ctx
	}
	return nil
}

func (v Value) list() []Value {
	if v.n == 0 {
		return nil
	}
	return unsafe.Slice((*Value)(v.p), int(v.n))
}

func (v Value) attrs() []Attr {
	if v.n == 0 {
		return nil
	}
	return unsafe.Slice((*Attr)(v.p), int(v.n))
}

// same reports whether two values are the same object (Nix compares some
// values by identity before comparing them structurally).
func (v Value) same(w Value) bool {
	return v.k == w.k && v.p == w.p && v.n == w.n && v.p != nil
}

// IsThunk reports whether v still has to be forced.
func (v Value) IsThunk() bool { return v.k == kThunk }

// Type names as builtins.typeOf returns them.
func (v Value) typeOf() string {
	switch v.k {
	case kNull:
		return "null"
	case kBool:
		return "bool"
	case kInt:
		return "int"
	case kFloat:
		return "float"
	case kString:
		return "string"
	case kPath:
		return "path"
	case kAttrs:
		return "set"
	case kList:
		return "list"
	case kLambda, kPrimop, kPrimopApp:
		return "lambda"
	}
	return "thunk"
}

// showType describes a value's type as Nix's error messages do.
func showType(v Value) string {
	switch v.k {
	case kNull:
		return "null"
	case kBool:
		return "a Boolean"
	case kInt:
		return "an integer"
	case kFloat:
		return "a float"
	case kString:
		if v.f&fCtx != 0 {
			return "a string with context"
		}
		return "a string"
	case kPath:
		return "a path"
	case kAttrs:
		return "a set"
	case kList:
		return "a list"
	case kLambda:
		return "a function"
	case kPrimop:
		return "the built-in function '" + v.primop().Name + "'"
	case kPrimopApp:
		return "the partially applied built-in function '" + v.primopApp().prim.Name + "'"
	case kThunk:
		return "a thunk"
	}
	return "an invalid value"
}

// Lookup finds name in a sorted attribute array.
func lookupAttr(as []Attr, name Sym) *Attr {
	if len(as) <= 8 {
		for i := range as {
			if as[i].Name == name {
				return &as[i]
			}
		}
		return nil
	}
	lo, hi := 0, len(as)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if as[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(as) && as[lo].Name == name {
		return &as[lo]
	}
	return nil
}
