package expr

// The syntax tree mirrors Python's ast module for expressions, so that the
// verification can apply leval's rules node by node (node kinds, nesting
// depth) exactly as leval does on Python's tree.

type node interface {
	// span returns the byte offsets of the node in the parser input.
	span() (pos, end int)
	// depth is the height of the node's subtree: 1 for a leaf.
	depth() int
	// pyName is the class name of the node in Python's ast module.
	pyName() string
}

type base struct{ pos, end, dep int }

func (b *base) span() (int, int) { return b.pos, b.end }
func (b *base) depth() int       { return b.dep }

type constKind uint8

const (
	cNone constKind = iota
	cBool
	cInt
	cFloat
	cComplex // imaginary literal; f holds the imaginary part
	cStr
	cBytes
	cEllipsis
)

type constant struct {
	base
	kind constKind
	b    bool
	i    int64
	big  string // an integer literal too large for int64, as written
	f    float64
	s    string
}

// joinedStr is an f-string (possibly concatenated with plain strings).
type joinedStr struct {
	base
	raw   []string // the literal tokens as written
	exprs []node   // the replacement-field expressions, for Names
}

type name struct {
	base
	id string
}

type attribute struct {
	base
	value node
	attr  string
}

type subscript struct {
	base
	value, index node
}

type slice struct {
	base
	lower, upper, step node // each may be nil
}

type starred struct {
	base
	value node
}

type keyword struct {
	pos   int
	arg   string // "" for **value
	value node
}

type call struct {
	base
	fn       node
	args     []node
	keywords []keyword
}

type unaryOp struct {
	base
	op      string // "+", "-", "~", "not"
	operand node
}

type binOp struct {
	base
	op          string
	left, right node
}

type boolOp struct {
	base
	op     string // "and", "or"
	values []node
}

type compare struct {
	base
	left        node
	ops         []string
	comparators []node
}

type ifExp struct {
	base
	test, body, orelse node
}

type param struct {
	name string
	def  node
}

type params struct {
	posonly []param
	args    []param
	vararg  string // "" if none
	kwonly  []param
	kwarg   string // "" if none
	star    bool   // a bare or named * was given
}

type lambda struct {
	base
	params *params
	body   node
}

type namedExpr struct {
	base
	target *name
	value  node
}

type tuple struct {
	base
	elts []node
}

type list struct {
	base
	elts []node
}

type set struct {
	base
	elts []node
}

type dict struct {
	base
	keys   []node // nil key: **value
	values []node
}

type comprehension struct {
	target, iter node
	ifs          []node
	async        bool
}

type compKind uint8

const (
	listComp compKind = iota
	setComp
	genExp
	dictComp
)

type comp struct {
	base
	kind       compKind
	elt, value node // value only for dict comprehensions
	gens       []comprehension
}

type await struct {
	base
	value node
}

type yield struct {
	base
	value node // may be nil
	from  bool
}

func (*constant) pyName() string  { return "Constant" }
func (*joinedStr) pyName() string { return "JoinedStr" }
func (*name) pyName() string      { return "Name" }
func (*attribute) pyName() string { return "Attribute" }
func (*subscript) pyName() string { return "Subscript" }
func (*slice) pyName() string     { return "Slice" }
func (*starred) pyName() string   { return "Starred" }
func (*call) pyName() string      { return "Call" }
func (*unaryOp) pyName() string   { return "UnaryOp" }
func (*binOp) pyName() string     { return "BinOp" }
func (*boolOp) pyName() string    { return "BoolOp" }
func (*compare) pyName() string   { return "Compare" }
func (*ifExp) pyName() string     { return "IfExp" }
func (*lambda) pyName() string    { return "Lambda" }
func (*namedExpr) pyName() string { return "NamedExpr" }
func (*tuple) pyName() string     { return "Tuple" }
func (*list) pyName() string      { return "List" }
func (*set) pyName() string       { return "Set" }
func (*dict) pyName() string      { return "Dict" }
func (*await) pyName() string     { return "Await" }
func (n *yield) pyName() string {
	if n.from {
		return "YieldFrom"
	}
	return "Yield"
}
func (n *comp) pyName() string {
	switch n.kind {
	case listComp:
		return "ListComp"
	case setComp:
		return "SetComp"
	case genExp:
		return "GeneratorExp"
	}
	return "DictComp"
}

// exprName is how CPython names an expression in "cannot assign to ..."
// messages.
func exprName(n node) string {
	switch n := n.(type) {
	case *attribute:
		return "attribute"
	case *subscript:
		return "subscript"
	case *starred:
		return "starred"
	case *name:
		return "name"
	case *list:
		return "list"
	case *tuple:
		return "tuple"
	case *lambda:
		return "lambda"
	case *call:
		return "function call"
	case *boolOp, *binOp, *unaryOp:
		return "expression"
	case *comp:
		switch n.kind {
		case genExp:
			return "generator expression"
		case listComp:
			return "list comprehension"
		case setComp:
			return "set comprehension"
		}
		return "dict comprehension"
	case *yield:
		return "yield expression"
	case *await:
		return "await expression"
	case *dict:
		return "dict literal"
	case *set:
		return "set display"
	case *joinedStr:
		return "f-string expression"
	case *constant:
		switch {
		case n.kind == cNone:
			return "None"
		case n.kind == cBool && n.b:
			return "True"
		case n.kind == cBool:
			return "False"
		case n.kind == cEllipsis:
			return "ellipsis"
		}
		return "literal"
	case *compare:
		return "comparison"
	case *ifExp:
		return "conditional expression"
	case *namedExpr:
		return "named expression"
	}
	return "expression"
}
