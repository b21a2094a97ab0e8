package expr

import "fmt"

// The verification Valohai's linter applies: leval's Evaluator walking the
// tree with VerifierUniverse and max_depth=8. The facts it rests on:
//
//   - The walk starts at Python's Expression node, at depth 0; a node is
//     refused with "Expression is too complex (8 > 8)" when it is reached at
//     depth 8, before its kind is looked at. An attribute chain counts once;
//     a call's function name does not count; its arguments do.
//   - Allowed nodes: Constant (str, int, bool, float, None), Name,
//     Attribute on a chain of names, Call of a plain name without keyword
//     arguments, UnaryOp, BinOp with + - * / //, BoolOp, Compare with one
//     operator, Tuple and Set. Anything else: "Operation X is not allowed".
//   - The verifier returns True for names, calls, comparisons and binary and
//     boolean operations, and the constant itself for constants; unary
//     operators and sets are really computed on those values, so -"a" and
//     {{1}} fail the way Python does.

const levalMaxDepth = 8

var astOpNames = map[string]string{
	"+": "Add", "-": "Sub", "*": "Mult", "/": "Div", "//": "FloorDiv", "%": "Mod",
	"**": "Pow", "<<": "LShift", ">>": "RShift", "|": "BitOr", "^": "BitXor",
	"&": "BitAnd", "@": "MatMult",
}

var levalBinOps = map[string]bool{"+": true, "-": true, "*": true, "/": true, "//": true}

// vkind is the Python type of a value the verifier computes.
type vkind uint8

const (
	vBool vkind = iota
	vInt
	vFloat
	vStr
	vNone
	vTuple
	vSet
)

type vval struct {
	kind  vkind
	elems []vval // tuples only
}

func (v vval) typeName() string {
	return [...]string{"bool", "int", "float", "str", "NoneType", "tuple", "set"}[v.kind]
}

func (v vval) unhashable() bool {
	if v.kind == vSet {
		return true
	}
	for _, e := range v.elems {
		if e.unhashable() {
			return true
		}
	}
	return false
}

type checker struct{ depth int }

func checkErr(n node, format string, args ...any) error {
	pos, _ := n.span()
	return &CheckError{Msg: fmt.Sprintf(format, args...), Offset: pos}
}

// verify applies leval's verification to the body of the expression.
func verify(root node) error {
	c := &checker{depth: 1} // the Expression node took depth 0
	_, err := c.visit(root)
	return err
}

func (c *checker) visit(n node) (vval, error) {
	if c.depth >= levalMaxDepth {
		return vval{}, checkErr(n, "Expression is too complex (%d > %d)", c.depth, levalMaxDepth)
	}
	c.depth++
	defer func() { c.depth-- }()
	truth := vval{kind: vBool}
	switch n := n.(type) {
	case *compare:
		if len(n.ops) != 1 {
			return vval{}, checkErr(n, "Only simple comparisons are supported")
		}
		if _, err := c.visit(n.left); err != nil {
			return vval{}, err
		}
		if _, err := c.visit(n.comparators[0]); err != nil {
			return vval{}, err
		}
		return truth, nil
	case *call:
		if _, ok := n.fn.(*name); !ok {
			return vval{}, checkErr(n, "Invalid call to func <ast.%s object>", n.fn.pyName())
		}
		if len(n.keywords) > 0 {
			return vval{}, checkErr(n, "Kwarg calls are not allowed")
		}
		for _, a := range n.args {
			if _, err := c.visit(a); err != nil {
				return vval{}, err
			}
		}
		return truth, nil
	case *constant:
		switch n.kind {
		case cNone:
			return vval{kind: vNone}, nil
		case cBool:
			return truth, nil
		case cInt:
			return vval{kind: vInt}, nil
		case cFloat:
			return vval{kind: vFloat}, nil
		case cStr:
			return vval{kind: vStr}, nil
		}
		class := map[constKind]string{cBytes: "bytes", cComplex: "complex", cEllipsis: "ellipsis"}[n.kind]
		return vval{}, checkErr(n, "Invalid constant <ast.Constant object> (<class '%s'>)", class)
	case *name:
		return truth, nil
	case *attribute:
		v := n.value
		for {
			a, ok := v.(*attribute)
			if !ok {
				break
			}
			v = a.value
		}
		switch v.(type) {
		case *name:
			return truth, nil
		case *constant:
			return vval{}, checkErr(n, "Accessing attributes of constants (<ast.Constant object>) is not allowed")
		}
		return vval{}, checkErr(n, "Unsupported attribute structure in <ast.Attribute object>")
	case *binOp:
		if _, err := c.visit(n.left); err != nil {
			return vval{}, err
		}
		if _, err := c.visit(n.right); err != nil {
			return vval{}, err
		}
		if !levalBinOps[n.op] {
			return vval{}, checkErr(n, "Binary operator <ast.%s object> is not allowed", astOpNames[n.op])
		}
		return truth, nil
	case *boolOp:
		for _, v := range n.values {
			if _, err := c.visit(v); err != nil {
				return vval{}, err
			}
		}
		return truth, nil
	case *unaryOp:
		v, err := c.visit(n.operand)
		if err != nil {
			return vval{}, err
		}
		switch n.op {
		case "not":
			return truth, nil
		case "+", "-":
			switch v.kind {
			case vBool, vInt:
				return vval{kind: vInt}, nil
			case vFloat:
				return v, nil
			}
			return vval{}, checkErr(n, "bad operand type for unary %s: '%s'", n.op, v.typeName())
		}
		return vval{}, checkErr(n, "invalid unary op: <ast.Invert object>")
	case *set:
		for _, e := range n.elts {
			v, err := c.visit(e)
			if err != nil {
				return vval{}, err
			}
			if v.unhashable() {
				return vval{}, checkErr(e, "unhashable type: 'set'")
			}
		}
		return vval{kind: vSet}, nil
	case *tuple:
		t := vval{kind: vTuple}
		for _, e := range n.elts {
			v, err := c.visit(e)
			if err != nil {
				return vval{}, err
			}
			t.elems = append(t.elems, v)
		}
		return t, nil
	}
	return vval{}, checkErr(n, "Operation %s is not allowed", n.pyName())
}
