package syntax

// Node is an expression of the abstract syntax tree. Every node carries the
// position Nix attaches to the corresponding expression (for most nodes the
// position of its first token; for binary operators, the operator's).
type Node interface {
	Pos() Pos
}

// Int is an integer literal.
type Int struct {
	P Pos
	V int64
}

// Float is a floating-point literal.
type Float struct {
	P Pos
	V float64
}

// String is a string without interpolation (after unescaping and, for
// indented strings, indentation stripping).
type String struct {
	P Pos
	V string
}

// Path is a path literal without interpolation, already made absolute
// (relative paths against the file's directory, ~ against $HOME).
type Path struct {
	P Pos
	V string
}

// Var is a variable reference.
type Var struct {
	P    Pos
	Name string
}

// CurPos is the __curPos keyword-like variable.
type CurPos struct {
	P Pos
}

// AttrName is one element of an attribute path: a static name, or a
// dynamic name given by an expression (Expr != nil).
type AttrName struct {
	P    Pos
	Name string
	Expr Node
}

// Select is e.a.b.c [or Default].
type Select struct {
	P       Pos
	E       Node
	Path    []AttrName
	Default Node // nil without `or`
}

// HasAttr is e ? a.b.c.
type HasAttr struct {
	P    Pos
	E    Node
	Path []AttrName
}

// AttrDef is a static attribute definition of an attribute set or let.
type AttrDef struct {
	Name string
	// P is the position of the definition (the attribute path, or the
	// inherited name).
	P Pos
	// Value is the defining expression. For `inherit x` it is a Var, for
	// `inherit (e) x` a Select of the shared From expression.
	Value Node
	// Inherited is true for `inherit x;` (not for `inherit (e) x;`): the
	// variable is resolved in the scope outside a rec set or let.
	Inherited bool
}

// DynAttrDef is an attribute definition whose name is computed.
type DynAttrDef struct {
	Name  Node
	Value Node
	P     Pos
}

// Attrs is an attribute set literal, rec or not; it is also the binding
// list of let.
type Attrs struct {
	P   Pos
	Rec bool
	// Defs are the static attributes in definition order; names are unique.
	Defs []*AttrDef
	// Dyn are the dynamic attributes in definition order.
	Dyn []*DynAttrDef

	index map[string]int
}

// Lookup returns the static definition of name, or nil.
func (a *Attrs) Lookup(name string) *AttrDef {
	if i, ok := a.index[name]; ok {
		return a.Defs[i]
	}
	return nil
}

func (a *Attrs) add(d *AttrDef) {
	if a.index == nil {
		a.index = make(map[string]int)
	}
	a.index[d.Name] = len(a.Defs)
	a.Defs = append(a.Defs, d)
}

// List is a list literal.
type List struct {
	P     Pos
	Elems []Node
}

// Formal is one formal argument of a lambda with a pattern.
type Formal struct {
	P       Pos
	Name    string
	Default Node // nil when required
}

// Formals is the { a, b ? e, ... } pattern of a lambda.
type Formals struct {
	// List is in declaration order.
	List     []Formal
	Ellipsis bool
}

// Has reports whether name is a formal.
func (f *Formals) Has(name string) bool {
	for i := range f.List {
		if f.List[i].Name == name {
			return true
		}
	}
	return false
}

// Lambda is a function.
type Lambda struct {
	P Pos
	// Arg is the name bound to the whole argument ("" for none).
	Arg     string
	Formals *Formals // nil for a plain x: body lambda
	Body    Node
	// Name is the name of the attribute or let binding this lambda was
	// defined as, if any; Nix uses it in messages.
	Name string
}

// Call is a function application f a1 a2 ...
type Call struct {
	P    Pos
	Fn   Node
	Args []Node
}

// Let is let binds in body.
type Let struct {
	P     Pos
	Binds *Attrs
	Body  Node
}

// With is with e; body.
type With struct {
	P     Pos
	Attrs Node
	Body  Node
}

// If is if c then t else e.
type If struct {
	P                Pos
	Cond, Then, Else Node
}

// Assert is assert c; body.
type Assert struct {
	P    Pos
	Cond Node
	Body Node
}

// Not is !e.
type Not struct {
	P Pos
	E Node
}

// Op identifies a binary operator that has its own node (the arithmetic
// and comparison operators are desugared into calls, as in Nix).
type Op int

// The binary operators with their own node.
const (
	OpEq Op = iota
	OpNEq
	OpAnd
	OpOr
	OpImpl
	OpUpdate
	OpConcat
)

func (o Op) String() string {
	return [...]string{"==", "!=", "&&", "||", "->", "//", "++"}[o]
}

// BinOp is a binary operator.
type BinOp struct {
	P    Pos // position of the operator
	Op   Op
	L, R Node
}

// StringPart is one part of a ConcatStrings.
type StringPart struct {
	P Pos
	E Node
}

// ConcatStrings is string interpolation ("a${b}c", ./a/${b}) and the +
// operator. With ForceString (interpolation) the result is a string; without
// it (+), the first operand decides: path, string, or numeric addition.
type ConcatStrings struct {
	P           Pos
	ForceString bool
	Parts       []StringPart
}

func (n *Int) Pos() Pos           { return n.P }
func (n *Float) Pos() Pos         { return n.P }
func (n *String) Pos() Pos        { return n.P }
func (n *Path) Pos() Pos          { return n.P }
func (n *Var) Pos() Pos           { return n.P }
func (n *CurPos) Pos() Pos        { return n.P }
func (n *Select) Pos() Pos        { return n.P }
func (n *HasAttr) Pos() Pos       { return n.P }
func (n *Attrs) Pos() Pos         { return n.P }
func (n *List) Pos() Pos          { return n.P }
func (n *Lambda) Pos() Pos        { return n.P }
func (n *Call) Pos() Pos          { return n.P }
func (n *Let) Pos() Pos           { return n.P }
func (n *With) Pos() Pos          { return n.P }
func (n *If) Pos() Pos            { return n.P }
func (n *Assert) Pos() Pos        { return n.P }
func (n *Not) Pos() Pos           { return n.P }
func (n *BinOp) Pos() Pos         { return n.P }
func (n *ConcatStrings) Pos() Pos { return n.P }
