package expr

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// Evaluation with Python's semantics on None, bool, int, float and str (and
// tuple, list and set displays, for `in`): bool counts as int, int and float
// mix, `and`/`or` return an operand and short-circuit, `==` across unrelated
// types is False and ordering them is a TypeError naming both types. Ints are
// 64 bits; where Python would grow the integer, evaluation fails instead.

// maxStringResult bounds the length of a string or sequence built by `*` or
// `+`, so that an expression cannot ask for unbounded memory.
const maxStringResult = 1 << 20

type evaluator struct {
	env Env
}

func evalErr(n node, format string, args ...any) error {
	pos, _ := n.span()
	return &EvalError{Msg: fmt.Sprintf(format, args...), Offset: pos}
}

// dottedName returns the path of a name or a chain of attributes on a name.
func dottedName(n node) ([]string, bool) {
	var rev []string
	for {
		switch x := n.(type) {
		case *name:
			rev = append(rev, x.id)
			path := make([]string, len(rev))
			for i := range rev {
				path[i] = rev[len(rev)-1-i]
			}
			return path, true
		case *attribute:
			rev = append(rev, x.attr)
			n = x.value
		default:
			return nil, false
		}
	}
}

func (e *evaluator) lookup(n node) (Value, bool, error) {
	path, ok := dottedName(n)
	if !ok {
		return Value{}, false, evalErr(n, "attribute access is only supported on names")
	}
	if e.env == nil {
		return Value{}, false, nil
	}
	v, found := e.env.Lookup(path)
	return v, found, nil
}

func (e *evaluator) eval(n node) (Value, error) {
	switch n := n.(type) {
	case *constant:
		switch n.kind {
		case cNone:
			return None(), nil
		case cBool:
			return Bool(n.b), nil
		case cInt:
			if n.big != "" {
				lit := n.big
				if len(lit) > 40 {
					lit = lit[:40] + "..."
				}
				return Value{}, evalErr(n, "integer literal too large: %s", lit)
			}
			return Int(n.i), nil
		case cFloat:
			return Float(n.f), nil
		case cStr:
			return String(n.s), nil
		}
		return Value{}, evalErr(n, "%s literals are not supported", map[constKind]string{cBytes: "bytes", cComplex: "complex", cEllipsis: "Ellipsis"}[n.kind])
	case *name, *attribute:
		v, found, err := e.lookup(n)
		if err != nil {
			return Value{}, err
		}
		if !found {
			path, _ := dottedName(n)
			return Value{}, evalErr(n, "name '%s' is not defined", strings.Join(path, "."))
		}
		return v, nil
	case *unaryOp:
		v, err := e.eval(n.operand)
		if err != nil {
			return Value{}, err
		}
		return unary(n, v)
	case *binOp:
		l, err := e.eval(n.left)
		if err != nil {
			return Value{}, err
		}
		r, err := e.eval(n.right)
		if err != nil {
			return Value{}, err
		}
		return binary(n, n.op, l, r)
	case *boolOp:
		var v Value
		for _, x := range n.values {
			var err error
			if v, err = e.eval(x); err != nil {
				return Value{}, err
			}
			if v.Truth() == (n.op == "or") {
				return v, nil
			}
		}
		return v, nil
	case *compare:
		return e.compare(n)
	case *ifExp:
		t, err := e.eval(n.test)
		if err != nil {
			return Value{}, err
		}
		if t.Truth() {
			return e.eval(n.body)
		}
		return e.eval(n.orelse)
	case *tuple:
		return e.display(n, TupleKind, n.elts)
	case *list:
		return e.display(n, ListKind, n.elts)
	case *set:
		return e.display(n, SetKind, n.elts)
	case *call:
		return e.call(n)
	case *subscript:
		return e.subscript(n)
	}
	return Value{}, evalErr(n, "%s is not supported in evaluation", n.pyName())
}

func (e *evaluator) display(n node, kind Kind, elts []node) (Value, error) {
	items := make([]Value, 0, len(elts))
	for _, x := range elts {
		v, err := e.eval(x)
		if err != nil {
			return Value{}, err
		}
		if kind == SetKind && (v.kind == ListKind || v.kind == SetKind) {
			return Value{}, evalErr(x, "unhashable type: '%s'", v.kind)
		}
		items = append(items, v)
	}
	return Value{kind: kind, items: items}, nil
}

func (e *evaluator) operand(n node, loose bool) (Value, error) {
	if loose {
		if _, ok := dottedName(n); ok {
			v, found, err := e.lookup(n)
			if err != nil {
				return Value{}, err
			}
			if !found {
				return None(), nil
			}
			return v, nil
		}
	}
	return e.eval(n)
}

// compare evaluates a (possibly chained) comparison. Like leval, the
// operands of `is` and `is not` that name an unknown value count as None.
func (e *evaluator) compare(n *compare) (Value, error) {
	left, err := e.operand(n.left, n.ops[0] == "is" || n.ops[0] == "is not")
	if err != nil {
		return Value{}, err
	}
	for i, op := range n.ops {
		loose := op == "is" || op == "is not"
		right, err := e.operand(n.comparators[i], loose)
		if err != nil {
			return Value{}, err
		}
		ok, err := compareValues(n, op, left, right)
		if err != nil {
			return Value{}, err
		}
		if !ok {
			return Bool(false), nil
		}
		left = right
	}
	return Bool(true), nil
}

func (e *evaluator) call(n *call) (Value, error) {
	fn, ok := n.fn.(*name)
	if !ok {
		return Value{}, evalErr(n, "only calls of functions by name are supported")
	}
	if len(n.keywords) > 0 {
		return Value{}, evalErr(n, "keyword arguments are not supported")
	}
	args := make([]Value, 0, len(n.args))
	for _, a := range n.args {
		v, err := e.eval(a)
		if err != nil {
			return Value{}, err
		}
		args = append(args, v)
	}
	switch fn.id {
	case "abs":
		if len(args) != 1 {
			return Value{}, evalErr(n, "abs() takes exactly one argument (%d given)", len(args))
		}
		switch v := args[0]; v.kind {
		case BoolKind, IntKind:
			i := asInt(v)
			if i == math.MinInt64 {
				return Value{}, evalErr(n, "integer overflow")
			}
			if i < 0 {
				i = -i
			}
			return Int(i), nil
		case FloatKind:
			return Float(math.Abs(v.f)), nil
		default:
			return Value{}, evalErr(n, "bad operand type for abs(): '%s'", v.kind)
		}
	case "min", "max":
		if len(args) == 0 {
			return Value{}, evalErr(n, "%s expected at least 1 argument, got 0", fn.id)
		}
		items := args
		if len(args) == 1 {
			switch a := args[0]; a.kind {
			case TupleKind, ListKind, SetKind:
				items = a.items
			case StringKind:
				items = nil
				for _, r := range a.s {
					items = append(items, String(string(r)))
				}
			default:
				return Value{}, evalErr(n, "'%s' object is not iterable", a.kind)
			}
			if len(items) == 0 {
				return Value{}, evalErr(n, "%s() arg is an empty sequence", fn.id)
			}
		}
		best := items[0]
		for _, it := range items[1:] {
			op := "<"
			if fn.id == "max" {
				op = ">"
			}
			better, err := compareValues(n, op, it, best)
			if err != nil {
				return Value{}, err
			}
			if better {
				best = it
			}
		}
		return best, nil
	}
	return Value{}, evalErr(n, "name '%s' is not defined", fn.id)
}

func (e *evaluator) subscript(n *subscript) (Value, error) {
	if _, ok := n.index.(*slice); ok {
		return Value{}, evalErr(n, "slices are not supported in evaluation")
	}
	v, err := e.eval(n.value)
	if err != nil {
		return Value{}, err
	}
	idx, err := e.eval(n.index)
	if err != nil {
		return Value{}, err
	}
	var length int
	switch v.kind {
	case StringKind:
		length = len([]rune(v.s))
	case TupleKind, ListKind:
		length = len(v.items)
	default:
		return Value{}, evalErr(n, "'%s' object is not subscriptable", v.kind)
	}
	if idx.kind != IntKind && idx.kind != BoolKind {
		return Value{}, evalErr(n, "%s indices must be integers, not %s", v.kind, idx.kind)
	}
	i := asInt(idx)
	if i < 0 {
		i += int64(length)
	}
	if i < 0 || i >= int64(length) {
		what := "string"
		if v.kind != StringKind {
			what = v.kind.String()
		}
		return Value{}, evalErr(n, "%s index out of range", what)
	}
	if v.kind == StringKind {
		return String(string([]rune(v.s)[i])), nil
	}
	return v.items[i], nil
}

func asInt(v Value) int64 {
	if v.kind == BoolKind {
		if v.b {
			return 1
		}
		return 0
	}
	return v.i
}

func isIntLike(v Value) bool  { return v.kind == IntKind || v.kind == BoolKind }
func isNumber(v Value) bool   { return isIntLike(v) || v.kind == FloatKind }
func isSequence(v Value) bool { return v.kind == TupleKind || v.kind == ListKind }

func asFloat(v Value) float64 {
	if v.kind == FloatKind {
		return v.f
	}
	return float64(asInt(v))
}

func unary(n node, v Value) (Value, error) {
	op := n.(*unaryOp).op
	switch op {
	case "not":
		return Bool(!v.Truth()), nil
	case "-", "+":
		switch {
		case isIntLike(v):
			i := asInt(v)
			if op == "-" {
				if i == math.MinInt64 {
					return Value{}, evalErr(n, "integer overflow")
				}
				i = -i
			}
			return Int(i), nil
		case v.kind == FloatKind:
			if op == "-" {
				return Float(-v.f), nil
			}
			return v, nil
		}
	case "~":
		if isIntLike(v) {
			return Int(^asInt(v)), nil
		}
	}
	return Value{}, evalErr(n, "bad operand type for unary %s: '%s'", op, v.kind)
}

func unsupported(n node, op string, l, r Value) error {
	return evalErr(n, "unsupported operand type(s) for %s: '%s' and '%s'", op, l.kind, r.kind)
}

func binary(n node, op string, l, r Value) (Value, error) {
	if isNumber(l) && isNumber(r) {
		if op == "@" {
			return Value{}, unsupported(n, op, l, r)
		}
		if l.kind == BoolKind && r.kind == BoolKind && (op == "&" || op == "|" || op == "^") {
			switch op {
			case "&":
				return Bool(l.b && r.b), nil
			case "|":
				return Bool(l.b || r.b), nil
			}
			return Bool(l.b != r.b), nil
		}
		if isIntLike(l) && isIntLike(r) {
			return intBinary(n, op, asInt(l), asInt(r))
		}
		switch op {
		case "<<", ">>", "&", "|", "^":
			return Value{}, unsupported(n, op, l, r)
		}
		return floatBinary(n, op, asFloat(l), asFloat(r))
	}
	switch op {
	case "+":
		switch {
		case l.kind == StringKind && r.kind == StringKind:
			if len(l.s)+len(r.s) > maxStringResult {
				return Value{}, evalErr(n, "result is too large")
			}
			return String(l.s + r.s), nil
		case isSequence(l) && l.kind == r.kind:
			if len(l.items)+len(r.items) > maxStringResult {
				return Value{}, evalErr(n, "result is too large")
			}
			items := append(append([]Value(nil), l.items...), r.items...)
			return Value{kind: l.kind, items: items}, nil
		case l.kind == StringKind || isSequence(l):
			return Value{}, evalErr(n, "can only concatenate %s (not \"%s\") to %s", l.kind, r.kind, l.kind)
		}
	case "*":
		seq, count := l, r
		if isIntLike(l) {
			seq, count = r, l
		}
		if seq.kind == StringKind || isSequence(seq) {
			if !isIntLike(count) {
				return Value{}, evalErr(n, "can't multiply sequence by non-int of type '%s'", count.kind)
			}
			k := asInt(count)
			if k < 0 {
				k = 0
			}
			size := int64(len(seq.s) + len(seq.items))
			if size > 0 && k > maxStringResult/size {
				return Value{}, evalErr(n, "result is too large")
			}
			if seq.kind == StringKind {
				return String(strings.Repeat(seq.s, int(k))), nil
			}
			var items []Value
			for j := int64(0); j < k; j++ {
				items = append(items, seq.items...)
			}
			return Value{kind: seq.kind, items: items}, nil
		}
	case "%":
		if l.kind == StringKind {
			return Value{}, evalErr(n, "string formatting with %% is not supported")
		}
	}
	return Value{}, unsupported(n, op, l, r)
}

func intBinary(n node, op string, a, b int64) (Value, error) {
	overflow := func() (Value, error) { return Value{}, evalErr(n, "integer overflow") }
	switch op {
	case "+":
		s := a + b
		if (s > a) != (b > 0) {
			return overflow()
		}
		return Int(s), nil
	case "-":
		s := a - b
		if (s < a) != (b > 0) {
			return overflow()
		}
		return Int(s), nil
	case "*":
		if a == 0 || b == 0 {
			return Int(0), nil
		}
		p := a * b
		if p/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
			return overflow()
		}
		return Int(p), nil
	case "/":
		if b == 0 {
			return Value{}, evalErr(n, "division by zero")
		}
		f, _ := new(big.Rat).SetFrac(big.NewInt(a), big.NewInt(b)).Float64()
		return Float(f), nil
	case "//", "%":
		if b == 0 {
			if op == "%" {
				return Value{}, evalErr(n, "integer modulo by zero")
			}
			return Value{}, evalErr(n, "integer division or modulo by zero")
		}
		if a == math.MinInt64 && b == -1 {
			if op == "%" {
				return Int(0), nil
			}
			return overflow()
		}
		q, m := a/b, a%b
		if m != 0 && (m < 0) != (b < 0) {
			q--
			m += b
		}
		if op == "//" {
			return Int(q), nil
		}
		return Int(m), nil
	case "**":
		if b < 0 {
			if a == 0 {
				return Value{}, evalErr(n, "0.0 cannot be raised to a negative power")
			}
			return Float(math.Pow(float64(a), float64(b))), nil
		}
		result := int64(1)
		base := a
		for e := b; e > 0; e >>= 1 {
			if e&1 == 1 {
				v, err := intBinary(n, "*", result, base)
				if err != nil {
					return v, err
				}
				result = v.i
			}
			if e > 1 {
				v, err := intBinary(n, "*", base, base)
				if err != nil {
					return v, err
				}
				base = v.i
			}
		}
		return Int(result), nil
	case "<<":
		if b < 0 {
			return Value{}, evalErr(n, "negative shift count")
		}
		if a == 0 {
			return Int(0), nil
		}
		if b >= 63 || a > math.MaxInt64>>b || a < math.MinInt64>>b {
			return overflow()
		}
		return Int(a << b), nil
	case ">>":
		if b < 0 {
			return Value{}, evalErr(n, "negative shift count")
		}
		if b >= 63 {
			if a < 0 {
				return Int(-1), nil
			}
			return Int(0), nil
		}
		return Int(a >> b), nil
	case "&":
		return Int(a & b), nil
	case "|":
		return Int(a | b), nil
	case "^":
		return Int(a ^ b), nil
	}
	return Value{}, evalErr(n, "unsupported operator %s", op)
}

func floatBinary(n node, op string, a, b float64) (Value, error) {
	switch op {
	case "+":
		return Float(a + b), nil
	case "-":
		return Float(a - b), nil
	case "*":
		return Float(a * b), nil
	case "/":
		if b == 0 {
			return Value{}, evalErr(n, "float division by zero")
		}
		return Float(a / b), nil
	case "//", "%":
		if b == 0 {
			if op == "%" {
				return Value{}, evalErr(n, "float modulo")
			}
			return Value{}, evalErr(n, "float floor division by zero")
		}
		mod := math.Mod(a, b)
		div := (a - mod) / b
		if mod != 0 {
			if (b < 0) != (mod < 0) {
				mod += b
				div -= 1.0
			}
		} else {
			mod = math.Copysign(0, b)
		}
		if op == "%" {
			return Float(mod), nil
		}
		var floordiv float64
		if div != 0 {
			floordiv = math.Floor(div)
			if div-floordiv > 0.5 {
				floordiv += 1.0
			}
		} else {
			floordiv = math.Copysign(0, a/b)
		}
		return Float(floordiv), nil
	case "**":
		if a == 0 && b < 0 {
			return Value{}, evalErr(n, "0.0 cannot be raised to a negative power")
		}
		if a < 0 && b != math.Trunc(b) && !math.IsInf(b, 0) {
			return Value{}, evalErr(n, "complex results are not supported")
		}
		r := math.Pow(a, b)
		if math.IsInf(r, 0) && !math.IsInf(a, 0) && !math.IsInf(b, 0) {
			return Value{}, evalErr(n, "(34, 'Numerical result out of range')")
		}
		return Float(r), nil
	}
	return Value{}, evalErr(n, "unsupported operator %s", op)
}

// numCmp compares two numbers exactly, as Python does across int and float.
// It reports -1, 0 or 1, and false when either is NaN.
func numCmp(a, b Value) (int, bool) {
	if isIntLike(a) && isIntLike(b) {
		x, y := asInt(a), asInt(b)
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	fa, fb := asFloat(a), asFloat(b)
	if math.IsNaN(fa) || math.IsNaN(fb) {
		return 0, false
	}
	if a.kind == FloatKind && b.kind == FloatKind {
		switch {
		case fa < fb:
			return -1, true
		case fa > fb:
			return 1, true
		}
		return 0, true
	}
	return exact(a).Cmp(exact(b)), true
}

func exact(v Value) *big.Float {
	if v.kind == FloatKind {
		return new(big.Float).SetFloat64(v.f)
	}
	return new(big.Float).SetInt64(asInt(v))
}

func equal(a, b Value) bool {
	switch {
	case isNumber(a) && isNumber(b):
		c, ok := numCmp(a, b)
		return ok && c == 0
	case a.kind == NoneKind || b.kind == NoneKind:
		return a.kind == b.kind
	case a.kind == StringKind && b.kind == StringKind:
		return a.s == b.s
	case a.kind != b.kind:
		return false
	case a.kind == SetKind:
		return subset(a, b) && subset(b, a)
	}
	if len(a.items) != len(b.items) {
		return false
	}
	for i := range a.items {
		if !equal(a.items[i], b.items[i]) {
			return false
		}
	}
	return true
}

func subset(a, b Value) bool {
	for _, x := range a.items {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

func contains(container, x Value) bool {
	for _, it := range container.items {
		if equal(it, x) {
			return true
		}
	}
	return false
}

// order compares a and b for <, <=, >, >=: -1, 0 or 1; ok is false when
// unordered (NaN); err names both types when Python raises TypeError.
func order(n node, op string, a, b Value) (int, bool, error) {
	switch {
	case isNumber(a) && isNumber(b):
		c, ok := numCmp(a, b)
		return c, ok, nil
	case a.kind == StringKind && b.kind == StringKind:
		return strings.Compare(a.s, b.s), true, nil
	case isSequence(a) && a.kind == b.kind:
		for i := 0; i < len(a.items) && i < len(b.items); i++ {
			if equal(a.items[i], b.items[i]) {
				continue
			}
			return order(n, op, a.items[i], b.items[i])
		}
		switch {
		case len(a.items) < len(b.items):
			return -1, true, nil
		case len(a.items) > len(b.items):
			return 1, true, nil
		}
		return 0, true, nil
	}
	return 0, false, evalErr(n, "'%s' not supported between instances of '%s' and '%s'", op, a.kind, b.kind)
}

func compareValues(n node, op string, a, b Value) (bool, error) {
	switch op {
	case "==":
		return equal(a, b), nil
	case "!=":
		return !equal(a, b), nil
	case "<", "<=", ">", ">=":
		c, ok, err := order(n, op, a, b)
		if err != nil || !ok {
			return false, err
		}
		switch op {
		case "<":
			return c < 0, nil
		case "<=":
			return c <= 0, nil
		case ">":
			return c > 0, nil
		}
		return c >= 0, nil
	case "in", "not in":
		var found bool
		switch b.kind {
		case StringKind:
			if a.kind != StringKind {
				return false, evalErr(n, "'in <string>' requires string as left operand, not %s", a.kind)
			}
			found = strings.Contains(b.s, a.s)
		case TupleKind, ListKind, SetKind:
			found = contains(b, a)
		default:
			return false, evalErr(n, "argument of type '%s' is not iterable", b.kind)
		}
		return found == (op == "in"), nil
	case "is", "is not":
		same := a.kind == b.kind && equal(a, b)
		return same == (op == "is"), nil
	}
	return false, evalErr(n, "unsupported comparison %s", op)
}
