// Package expr parses, checks and evaluates the Python expressions that
// valohai.yaml uses: a step's or task's `stop-condition`, and the `if:` of a
// pipeline node's actions (`metadata.accuracy < .8`).
//
// Valohai validates these with the Python library leval: the expression is
// parsed by Python's own parser after leval renamed the keywords that cannot
// appear in an expression (`if` becomes `_if`), and the tree is then walked
// with leval's verifier and a depth limit of 8. This package reproduces that
// in Go, with Python's and leval's error texts, so that
//
//	err := expr.Check("can't stop me now")
//
// reports "unterminated string literal (detected at line 1) (<expression>,
// line 1)" as Valohai does.
//
// Parse reads any Python 3.11 expression (syntax only). Check is what a
// linter calls. Compile is Check that also returns the expression, for Eval
// and Names.
package expr

import "strings"

// Expr is a parsed expression.
type Expr struct {
	root node
	src  string
	offs []int // parser input offset -> source offset; nil means the same
}

// Parse parses src as a Python expression (CPython 3.11's `eval` mode),
// without leval's keyword renaming or verification. The error is a
// *SyntaxError.
func Parse(src string) (*Expr, error) {
	e, err := parse(src, false)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Check validates src the way Valohai's linter validates a `stop-condition`:
// leval's keyword renaming, Python's parser, and leval's verifier with a
// depth limit of 8. It returns nil, a *SyntaxError, or a *CheckError; the
// error's text is what follows "`stop-condition` is not a valid expression: "
// in Valohai's message.
func Check(src string) error {
	_, err := Compile(src)
	return err
}

// Compile is Check that also returns the expression as leval sees it (with
// renamed keywords: `metadata.class` refers to `metadata._class`).
func Compile(src string) (*Expr, error) {
	e, err := parse(src, true)
	if err != nil {
		return nil, err
	}
	if err := verify(e.root); err != nil {
		if ce, ok := err.(*CheckError); ok {
			ce.Offset = e.srcOffset(ce.Offset)
		}
		return nil, err
	}
	return e, nil
}

func parse(src string, rewrite bool) (*Expr, error) {
	if se := checkSource(src); se != nil {
		return nil, se
	}
	text := src
	var offs []int
	if rewrite {
		rw, m, tokenErr, indentErr := levalRewrite(src)
		if indentErr != nil {
			return nil, indentErr
		}
		if !tokenErr {
			text, offs = rw, m
		}
	}
	text, offs = translateNewlines(text, offs)
	root, se := parseText(text, false)
	e := &Expr{root: root, src: src, offs: offs}
	if se != nil {
		se.Offset = e.srcOffset(se.Offset)
		return nil, se
	}
	return e, nil
}

// translateNewlines turns "\r\n" and "\r" into "\n", as CPython does before
// tokenizing, and composes the offset map.
func translateNewlines(text string, offs []int) (string, []int) {
	if strings.IndexByte(text, '\r') < 0 {
		return text, offs
	}
	var b strings.Builder
	m := make([]int, 0, len(text)+1)
	at := func(i int) int {
		if offs == nil {
			return i
		}
		return offs[i]
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\r' {
			b.WriteByte('\n')
			m = append(m, at(i))
			if i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			continue
		}
		b.WriteByte(c)
		m = append(m, at(i))
	}
	m = append(m, at(len(text)))
	return b.String(), m
}

func (e *Expr) srcOffset(pos int) int {
	if e.offs == nil {
		if pos > len(e.src) {
			return len(e.src)
		}
		return pos
	}
	if pos >= len(e.offs) {
		pos = len(e.offs) - 1
	}
	if pos < 0 {
		return 0
	}
	return e.offs[pos]
}

// String returns the canonical text of the expression: Python syntax with
// minimal parentheses and Python's repr for literals, in the manner of
// ast.unparse. Parsing it gives back the same expression.
func (e *Expr) String() string { return unparse(e.root) }

// Source returns the text the expression was parsed from.
func (e *Expr) Source() string { return e.src }

// Eval evaluates the expression with Python's semantics, looking names up in
// env. The error is an *EvalError.
func (e *Expr) Eval(env Env) (Value, error) {
	ev := &evaluator{env: env}
	v, err := ev.eval(e.root)
	if err != nil {
		if ee, ok := err.(*EvalError); ok {
			ee.Offset = e.srcOffset(ee.Offset)
		}
		return Value{}, err
	}
	return v, nil
}

// Names returns the names the expression reads, dotted for attribute chains
// on a name ("metadata.accuracy", "parameter.lr"), each once, in the order
// they first appear. The names of called functions and of variables bound
// inside the expression (lambda parameters, comprehension and := targets)
// are not included.
func (e *Expr) Names() []string {
	c := &nameCollector{seen: map[string]bool{}}
	c.walk(e.root, nil)
	return c.names
}

type nameCollector struct {
	names []string
	seen  map[string]bool
}

func (c *nameCollector) add(s string, bound map[string]bool) {
	if bound[strings.SplitN(s, ".", 2)[0]] || c.seen[s] {
		return
	}
	c.seen[s] = true
	c.names = append(c.names, s)
}

func withBound(bound map[string]bool, names ...string) map[string]bool {
	nb := make(map[string]bool, len(bound)+len(names))
	for k := range bound {
		nb[k] = true
	}
	for _, n := range names {
		nb[n] = true
	}
	return nb
}

func targetNames(t node, out *[]string) {
	switch t := t.(type) {
	case *name:
		*out = append(*out, t.id)
	case *starred:
		targetNames(t.value, out)
	case *tuple:
		for _, x := range t.elts {
			targetNames(x, out)
		}
	case *list:
		for _, x := range t.elts {
			targetNames(x, out)
		}
	}
}

func (c *nameCollector) walk(n node, bound map[string]bool) {
	if n == nil {
		return
	}
	if path, ok := dottedName(n); ok {
		c.add(strings.Join(path, "."), bound)
		return
	}
	switch n := n.(type) {
	case *joinedStr:
		for _, x := range n.exprs {
			c.walk(x, bound)
		}
	case *attribute:
		c.walk(n.value, bound)
	case *subscript:
		c.walk(n.value, bound)
		c.walk(n.index, bound)
	case *slice:
		c.walk(n.lower, bound)
		c.walk(n.upper, bound)
		c.walk(n.step, bound)
	case *starred:
		c.walk(n.value, bound)
	case *call:
		if _, ok := n.fn.(*name); !ok {
			c.walk(n.fn, bound)
		}
		for _, a := range n.args {
			c.walk(a, bound)
		}
		for _, k := range n.keywords {
			c.walk(k.value, bound)
		}
	case *unaryOp:
		c.walk(n.operand, bound)
	case *binOp:
		c.walk(n.left, bound)
		c.walk(n.right, bound)
	case *boolOp:
		for _, v := range n.values {
			c.walk(v, bound)
		}
	case *compare:
		c.walk(n.left, bound)
		for _, v := range n.comparators {
			c.walk(v, bound)
		}
	case *ifExp:
		c.walk(n.body, bound)
		c.walk(n.test, bound)
		c.walk(n.orelse, bound)
	case *lambda:
		var ps []string
		for _, list := range [][]param{n.params.posonly, n.params.args, n.params.kwonly} {
			for _, p := range list {
				c.walk(p.def, bound)
				ps = append(ps, p.name)
			}
		}
		if n.params.vararg != "" {
			ps = append(ps, n.params.vararg)
		}
		if n.params.kwarg != "" {
			ps = append(ps, n.params.kwarg)
		}
		c.walk(n.body, withBound(bound, ps...))
	case *namedExpr:
		c.walk(n.value, bound)
	case *tuple:
		for _, x := range n.elts {
			c.walk(x, bound)
		}
	case *list:
		for _, x := range n.elts {
			c.walk(x, bound)
		}
	case *set:
		for _, x := range n.elts {
			c.walk(x, bound)
		}
	case *dict:
		for i := range n.keys {
			c.walk(n.keys[i], bound)
			c.walk(n.values[i], bound)
		}
	case *comp:
		inner := bound
		for _, g := range n.gens {
			c.walk(g.iter, inner)
			var ts []string
			targetNames(g.target, &ts)
			inner = withBound(inner, ts...)
			for _, x := range g.ifs {
				c.walk(x, inner)
			}
		}
		c.walk(n.elt, inner)
		c.walk(n.value, inner)
	case *await:
		c.walk(n.value, bound)
	case *yield:
		c.walk(n.value, bound)
	}
}
