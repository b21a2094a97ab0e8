package expr

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Canonical text of a tree, in the spirit of Python's ast.unparse: minimal
// parentheses by precedence, Python's repr for literals, tuples always in
// parentheses. Parsing the canonical text gives back the same tree.

const (
	precTuple = iota + 1
	precTest  // if-else, lambda
	precOr
	precAnd
	precNot
	precCmp
	precBor
	precBxor
	precBand
	precShift
	precArith
	precTerm
	precFactor
	precPower
	precAwait
	precAtom
)

var binPrec = map[string]int{
	"|": precBor, "^": precBxor, "&": precBand, "<<": precShift, ">>": precShift,
	"+": precArith, "-": precArith, "*": precTerm, "/": precTerm, "//": precTerm,
	"%": precTerm, "@": precTerm, "**": precPower,
}

func unparse(n node) string {
	var b strings.Builder
	writeNode(&b, n, 0)
	return b.String()
}

func writeNode(b *strings.Builder, n node, prec int) {
	own := nodePrec(n)
	paren := own < prec
	if paren {
		b.WriteByte('(')
	}
	writeBare(b, n)
	if paren {
		b.WriteByte(')')
	}
}

func nodePrec(n node) int {
	switch n := n.(type) {
	case *ifExp, *lambda:
		return precTest
	case *boolOp:
		if n.op == "or" {
			return precOr
		}
		return precAnd
	case *unaryOp:
		if n.op == "not" {
			return precNot
		}
		return precFactor
	case *compare:
		return precCmp
	case *binOp:
		return binPrec[n.op]
	case *await:
		return precAwait
	case *starred:
		return precBor
	}
	return precAtom
}

func writeNodes(b *strings.Builder, ns []node, prec int) {
	for i, n := range ns {
		if i > 0 {
			b.WriteString(", ")
		}
		writeNode(b, n, prec)
	}
}

func writeBare(b *strings.Builder, n node) {
	switch n := n.(type) {
	case *constant:
		b.WriteString(constRepr(n, true))
	case *joinedStr:
		b.WriteString(strings.Join(n.raw, " "))
	case *name:
		b.WriteString(n.id)
	case *attribute:
		if c, ok := n.value.(*constant); ok && (c.kind == cInt || c.kind == cFloat || c.kind == cComplex) {
			b.WriteByte('(')
			writeBare(b, c)
			b.WriteByte(')')
		} else {
			writeNode(b, n.value, precAtom)
		}
		b.WriteByte('.')
		b.WriteString(n.attr)
	case *subscript:
		writeNode(b, n.value, precAtom)
		b.WriteByte('[')
		if t, ok := n.index.(*tuple); ok {
			if len(t.elts) == 0 {
				b.WriteString("()")
			}
			for i, e := range t.elts {
				if i > 0 {
					b.WriteString(", ")
				}
				writeIndex(b, e)
			}
			if len(t.elts) == 1 {
				b.WriteByte(',')
			}
		} else {
			writeIndex(b, n.index)
		}
		b.WriteByte(']')
	case *slice:
		writeIndex(b, n)
	case *starred:
		b.WriteByte('*')
		writeNode(b, n.value, precBor)
	case *call:
		writeNode(b, n.fn, precAtom)
		b.WriteByte('(')
		if g, ok := soleGenerator(n); ok {
			writeComp(b, g)
		} else {
			writeNodes(b, n.args, precTest)
			for i, k := range n.keywords {
				if i > 0 || len(n.args) > 0 {
					b.WriteString(", ")
				}
				if k.arg == "" {
					b.WriteString("**")
				} else {
					b.WriteString(k.arg)
					b.WriteByte('=')
				}
				writeNode(b, k.value, precTest)
			}
		}
		b.WriteByte(')')
	case *unaryOp:
		if n.op == "not" {
			b.WriteString("not ")
			writeNode(b, n.operand, precNot)
		} else {
			b.WriteString(n.op)
			writeNode(b, n.operand, precFactor)
		}
	case *binOp:
		p := binPrec[n.op]
		if n.op == "**" {
			writeNode(b, n.left, precAwait)
			b.WriteString(" ** ")
			writeNode(b, n.right, precFactor)
		} else {
			writeNode(b, n.left, p)
			b.WriteString(" " + n.op + " ")
			writeNode(b, n.right, p+1)
		}
	case *boolOp:
		p := nodePrec(n)
		for i, v := range n.values {
			if i > 0 {
				b.WriteString(" " + n.op + " ")
			}
			writeNode(b, v, p+1)
		}
	case *compare:
		writeNode(b, n.left, precCmp+1)
		for i, op := range n.ops {
			b.WriteString(" " + op + " ")
			writeNode(b, n.comparators[i], precCmp+1)
		}
	case *ifExp:
		writeNode(b, n.body, precTest+1)
		b.WriteString(" if ")
		writeNode(b, n.test, precTest+1)
		b.WriteString(" else ")
		writeNode(b, n.orelse, precTest)
	case *lambda:
		b.WriteString("lambda")
		if ps := paramsText(n.params); ps != "" {
			b.WriteString(" " + ps)
		}
		b.WriteString(": ")
		writeNode(b, n.body, precTest)
	case *namedExpr:
		b.WriteString("(" + n.target.id + " := ")
		writeNode(b, n.value, precTest)
		b.WriteByte(')')
	case *tuple:
		b.WriteByte('(')
		writeNodes(b, n.elts, precTest)
		if len(n.elts) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case *list:
		b.WriteByte('[')
		writeNodes(b, n.elts, precTest)
		b.WriteByte(']')
	case *set:
		b.WriteByte('{')
		writeNodes(b, n.elts, precTest)
		b.WriteByte('}')
	case *dict:
		b.WriteByte('{')
		for i := range n.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			if n.keys[i] == nil {
				b.WriteString("**")
				writeNode(b, n.values[i], precBor)
				continue
			}
			writeNode(b, n.keys[i], precTest)
			b.WriteString(": ")
			writeNode(b, n.values[i], precTest)
		}
		b.WriteByte('}')
	case *comp:
		open, closer := "[", "]"
		switch n.kind {
		case setComp, dictComp:
			open, closer = "{", "}"
		case genExp:
			open, closer = "(", ")"
		}
		b.WriteString(open)
		writeComp(b, n)
		b.WriteString(closer)
	case *await:
		b.WriteString("await ")
		writeNode(b, n.value, precAtom)
	case *yield:
		b.WriteString("(yield")
		if n.from {
			b.WriteString(" from")
		}
		if n.value != nil {
			b.WriteByte(' ')
			writeNode(b, n.value, precTest)
		}
		b.WriteByte(')')
	}
}

func soleGenerator(c *call) (*comp, bool) {
	if len(c.args) == 1 && len(c.keywords) == 0 {
		if g, ok := c.args[0].(*comp); ok && g.kind == genExp {
			return g, true
		}
	}
	return nil, false
}

func writeComp(b *strings.Builder, n *comp) {
	writeNode(b, n.elt, precTest)
	if n.kind == dictComp {
		b.WriteString(": ")
		writeNode(b, n.value, precTest)
	}
	for _, g := range n.gens {
		if g.async {
			b.WriteString(" async")
		}
		b.WriteString(" for ")
		writeNode(b, g.target, precTest)
		b.WriteString(" in ")
		writeNode(b, g.iter, precOr)
		for _, c := range g.ifs {
			b.WriteString(" if ")
			writeNode(b, c, precOr)
		}
	}
}

func writeIndex(b *strings.Builder, n node) {
	s, ok := n.(*slice)
	if !ok {
		writeNode(b, n, precTest)
		return
	}
	if s.lower != nil {
		writeNode(b, s.lower, precTest)
	}
	b.WriteByte(':')
	if s.upper != nil {
		writeNode(b, s.upper, precTest)
	}
	if s.step != nil {
		b.WriteByte(':')
		writeNode(b, s.step, precTest)
	}
}

func paramsText(ps *params) string {
	var parts []string
	one := func(p param) string {
		if p.def == nil {
			return p.name
		}
		var b strings.Builder
		b.WriteString(p.name + "=")
		writeNode(&b, p.def, precTest)
		return b.String()
	}
	for _, p := range ps.posonly {
		parts = append(parts, one(p))
	}
	if len(ps.posonly) > 0 {
		parts = append(parts, "/")
	}
	for _, p := range ps.args {
		parts = append(parts, one(p))
	}
	if ps.vararg != "" {
		parts = append(parts, "*"+ps.vararg)
	} else if len(ps.kwonly) > 0 {
		parts = append(parts, "*")
	}
	for _, p := range ps.kwonly {
		parts = append(parts, one(p))
	}
	if ps.kwarg != "" {
		parts = append(parts, "**"+ps.kwarg)
	}
	return strings.Join(parts, ", ")
}

// constRepr renders a constant as Python's repr does; for source text
// (source=true) an infinite float is written as 1e309, as ast.unparse does.
func constRepr(c *constant, source bool) string {
	switch c.kind {
	case cNone:
		return "None"
	case cBool:
		if c.b {
			return "True"
		}
		return "False"
	case cInt:
		if c.big != "" {
			return c.big
		}
		return strconv.FormatInt(c.i, 10)
	case cFloat:
		if source && math.IsInf(c.f, 1) {
			return "1e309"
		}
		return floatRepr(c.f)
	case cComplex:
		if source && math.IsInf(c.f, 1) {
			return "1e309j"
		}
		return strings.TrimSuffix(floatRepr(c.f), ".0") + "j"
	case cStr:
		return strRepr(c.s)
	case cBytes:
		return bytesRepr(c.s)
	}
	return "..."
}

// floatRepr is Python's repr of a float: the shortest text that reads back
// the same, in fixed notation between 1e-4 and 1e16.
func floatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	ePos := strings.IndexByte(s, 'e')
	digits := strings.Replace(s[:ePos], ".", "", 1)
	exp, _ := strconv.Atoi(s[ePos+1:])
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	}
	return sign + digits[:decpt] + "." + digits[decpt:]
}

func chooseQuote(s string) byte {
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		return '"'
	}
	return '\''
}

// strRepr is Python's repr of a str.
func strRepr(s string) string {
	q := chooseQuote(s)
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < utf8.RuneSelf || unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// bytesRepr is Python's repr of a bytes value.
func bytesRepr(s string) string {
	q := chooseQuote(s)
	var b strings.Builder
	b.WriteString("b")
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == q:
			b.WriteByte('\\')
			b.WriteByte(q)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < ' ' || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// FloatRepr prints a float as Python's repr() does: 1e-05, 1000.0, inf.
func FloatRepr(f float64) string { return floatRepr(f) }

// StrRepr quotes a string as Python's repr() does: 'text', "it's".
func StrRepr(s string) string { return strRepr(s) }
