package expr

import (
	"fmt"
	"strconv"
	"strings"
)

// The parser is a recursive-descent reading of CPython 3.11's PEG grammar for
// `eval` input (Grammar/python.gram). Like a PEG parser it backtracks where an
// optional continuation fails (so "a +" parses as far as "a"), and it reports
// errors the way CPython decides them:
//
//   - errors of the tokenizer win over parser errors;
//   - where CPython's second pass has a dedicated "invalid_*" rule, the same
//     message is raised at the same construct ("Perhaps you forgot a comma?");
//   - otherwise the error is "invalid syntax" at the furthest token read.

var pyKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true,
	"async": true, "await": true, "break": true, "class": true, "continue": true, "def": true,
	"del": true, "elif": true, "else": true, "except": true, "finally": true, "for": true,
	"from": true, "global": true, "if": true, "import": true, "in": true, "is": true,
	"lambda": true, "nonlocal": true, "not": true, "or": true, "pass": true, "raise": true,
	"return": true, "try": true, "while": true, "with": true, "yield": true,
}

type parser struct {
	toks []token
	i    int
	src  string

	hard        *SyntaxError // the error, once one is final
	overridable bool         // hard may be replaced by a later tokenizer error
	soft        bool         // a plain failure: backtrack, or "invalid syntax"
	far, farAll int          // furthest token read (in the first pass / overall)
	nest        int
	trial       int             // >0 under expression_without_invalid: no invalid_* rules
	fstr        bool            // parsing an f-string replacement field
	pass2       bool            // the second pass, with CPython's invalid_* rules
	memo        map[int]memoVal // expression, by position
	memoDisj    map[int]memoVal // disjunction, by position
}

// memoVal memoizes the expression rule per position, as CPython
// does; the second pass re-reads the same text in many ways.
type memoVal struct {
	n   node
	end int
}

var stopTok = token{kind: tkErr}

func newParser(src string, fstr bool) *parser {
	return &parser{toks: scan(src), src: src, fstr: fstr, memo: map[int]memoVal{}, memoDisj: map[int]memoVal{}}
}

// parseText parses src as a Python expression (eval mode). Like CPython it
// parses twice when the first pass fails: the second pass enables the
// rules that find a more specific message.
func parseText(src string, fstr bool) (node, *SyntaxError) {
	p := newParser(src, fstr)
	root := p.top()
	if root == nil && p.hard == nil {
		p.i, p.soft, p.nest = 0, false, 0
		p.pass2 = true
		p.memo = map[int]memoVal{}
		p.memoDisj = map[int]memoVal{}
		if p.top() != nil && p.hard == nil {
			p.soft = true // the second pass cannot accept what the first refused
		}
		root = nil
	}
	return p.finish(root)
}

func (p *parser) top() node {
	if p.fstr {
		return p.starExpressions()
	}
	return p.parseEval()
}

// invalidOn tells whether CPython's invalid_* rules apply: in the second
// pass.
func (p *parser) invalidOn() bool { return p.pass2 && p.trial == 0 }

func (p *parser) tokAt(k int) *token {
	if p.hard != nil {
		return &stopTok
	}
	j := p.i + k
	if j >= len(p.toks) {
		j = len(p.toks) - 1
	}
	if !p.pass2 && j > p.far {
		p.far = j
	}
	if j > p.farAll {
		p.farAll = j
	}
	t := &p.toks[j]
	if t.kind == tkErr {
		p.hard = t.err.errorFor()
		p.overridable = false
		return &stopTok
	}
	return t
}

func (p *parser) tok() *token { return p.tokAt(0) }

func (p *parser) advance() {
	if p.i < len(p.toks)-1 {
		p.i++
	}
}

func (p *parser) mark() int { return p.i }

// rewind is what a rule does when a part it tried from mark m failed: after
// a hard error it reports false, and the rule returns nil; otherwise it goes
// back to m and reports true, and the rule goes on without the part.
func (p *parser) rewind(m int) bool {
	if p.hard != nil {
		return false
	}
	p.reset(m)
	return true
}

// try reads f from here. When f fails softly (nil, no hard error), the
// parser goes back to where it began and try returns nil and true: the
// caller goes on without the part. ok is false after a hard error.
func (p *parser) try(f func() node) (x node, ok bool) {
	m := p.mark()
	if x = f(); x == nil && !p.rewind(m) {
		return nil, false
	}
	return x, true
}

// tryAfter is try of an operator (the current token) and then f.
func (p *parser) tryAfter(f func() node) (node, bool) {
	return p.try(func() node {
		p.advance()
		return f()
	})
}

func (p *parser) reset(m int) {
	p.i = m
	p.soft = false
}

// pos is the offset of the current token; end is the end of the last token
// consumed.
func (p *parser) pos() int { return p.toks[p.i].pos }

func (p *parser) end() int {
	if p.i == 0 {
		return p.toks[0].pos
	}
	return p.toks[p.i-1].end
}

func (p *parser) isOp(s string) bool {
	t := p.tok()
	return t.kind == tkOp && t.text == s
}

func (p *parser) isKw(s string) bool {
	t := p.tok()
	return t.kind == tkName && t.text == s
}

func isPlainName(t *token) bool { return t.kind == tkName && !pyKeywords[t.text] }

func (p *parser) fail() node {
	p.soft = true
	return nil
}

func (p *parser) lineAt(pos int) int {
	if pos > len(p.src) {
		pos = len(p.src)
	}
	return 1 + strings.Count(p.src[:pos], "\n")
}

// raise reports one of CPython's specific syntax errors (its invalid_*
// rules). Those rules are only on in the second pass; in the first, raise is
// a plain failure.
func (p *parser) raise(pos int, msg string) node {
	if !p.invalidOn() {
		return p.fail()
	}
	return p.raiseAlways(pos, msg)
}

// raiseAlways reports an error raised by a grammar action (strings,
// f-strings), which CPython raises in every pass.
func (p *parser) raiseAlways(pos int, msg string) node {
	if p.hard == nil {
		if p.fstr {
			msg = "f-string: " + msg
		}
		p.hard = &SyntaxError{Msg: msg, Line: p.lineAt(pos), Offset: pos}
		p.overridable = true
	}
	return nil
}

func (p *parser) raiseErr(se *SyntaxError) node {
	if p.hard == nil {
		p.hard = se
		p.overridable = true
	}
	return nil
}

func (p *parser) enter() bool {
	p.nest++
	if p.nest > maxDepth {
		if p.hard == nil {
			p.hard = &SyntaxError{Msg: msgTooDeep, Offset: p.toks[p.i].pos, Line: p.toks[p.i].line, bare: true}
			p.overridable = false
		}
		return false
	}
	return true
}

func (p *parser) leave() { p.nest-- }

// nested is f one level of nesting deeper: nil, with the error, past
// maxDepth.
func (p *parser) nested(f func() node) func() node {
	return func() node {
		if !p.enter() {
			return nil
		}
		defer p.leave()
		return f()
	}
}

// mk computes the base of a node that starts at pos and ends at the last
// token consumed, with the given children.
func (p *parser) mk(pos int, kids ...node) base {
	d := 0
	for _, k := range kids {
		if k != nil && k.depth() > d {
			d = k.depth()
		}
	}
	d++
	if d > maxDepth && p.hard == nil {
		p.hard = &SyntaxError{Msg: msgTooDeep, Offset: pos, Line: p.lineAt(pos), bare: true}
		p.overridable = false
	}
	return base{pos: pos, end: p.end(), dep: d}
}

func (p *parser) mkList(pos int, kids []node, more ...node) base {
	all := append(append([]node(nil), kids...), more...)
	return p.mk(pos, all...)
}

// finish turns the parser's state into the result, choosing the error the
// way CPython's _PyPegen_set_syntax_error does.
func (p *parser) finish(root node) (node, *SyntaxError) {
	if p.hard == nil && root != nil {
		return root, nil
	}
	if p.hard != nil {
		if p.overridable {
			if se := p.fullSourceCheck(); se != nil {
				return nil, se
			}
		}
		return nil, p.hard
	}
	ft := &p.toks[p.far]
	if ft.kind == tkIndent {
		return nil, &SyntaxError{Msg: "unexpected indent", Line: ft.line, Offset: ft.pos}
	}
	msg := "invalid syntax"
	if p.fstr {
		msg = "f-string: " + msg
	}
	generic := &SyntaxError{Msg: msg, Line: ft.line, Offset: ft.pos}
	if se := p.fullSourceCheck(); se != nil {
		return nil, se
	}
	return nil, generic
}

// fullSourceCheck mirrors CPython reading the rest of the input after a
// parser error: an error of the tokenizer found there takes precedence.
func (p *parser) fullSourceCheck() *SyntaxError {
	last := &p.toks[len(p.toks)-1]
	if last.kind != tkErr {
		return nil
	}
	if last.err.lazy == lazyNone {
		return last.err.errorFor()
	}
	if open := last.err.open; open != nil && p.toks[p.farAll].line > open.line {
		return unclosedError(open)
	}
	return nil
}

// ---- top level -----------------------------------------------------------

// eval: expressions NEWLINE* ENDMARKER
func (p *parser) parseEval() node {
	e := p.expressions()
	if e == nil {
		return nil
	}
	for p.tok().kind == tkNewline {
		p.advance()
	}
	if p.tok().kind != tkEnd {
		return p.fail()
	}
	return e
}

// expressions: expression (',' expression)* [',']
func (p *parser) expressions() node {
	return p.exprList(p.expression)
}

// star_expressions: star_expression (',' star_expression)* [',']
func (p *parser) starExpressions() node {
	return p.exprList(p.starExpression)
}

// exprList reads item (',' item)* [',']: one item alone, or a tuple.
func (p *parser) exprList(item func() node) node {
	pos := p.pos()
	first := item()
	if first == nil || !p.isOp(",") {
		return first
	}
	return p.tupleRest(pos, first, item)
}

// tupleRest reads the items after first, a tuple that begins at pos.
func (p *parser) tupleRest(pos int, first node, item func() node) node {
	elts, _, ok := p.commaItems(first, item, "")
	if !ok {
		return nil
	}
	return &tuple{base: p.mkList(pos, elts), elts: elts}
}

// commaItems reads (',' item)* after first and returns first and the
// items. A comma that no item follows ends the list (a trailing comma);
// with a closer (")", "]", "}"), a comma before it does. comma tells
// whether a comma was read; ok is false after a hard error.
func (p *parser) commaItems(first node, item func() node, closer string) (elts []node, comma, ok bool) {
	elts = []node{first}
	for p.isOp(",") {
		comma = true
		p.advance()
		if closer != "" && p.isOp(closer) {
			break
		}
		x, ok := p.try(item)
		if !ok {
			return nil, comma, false
		}
		if x == nil {
			break
		}
		elts = append(elts, x)
	}
	return elts, comma, true
}

// star_expression: '*' bitwise_or | expression
func (p *parser) starExpression() node {
	if p.isOp("*") {
		return p.starredBitwiseOr()
	}
	return p.expression()
}

func (p *parser) starredBitwiseOr() node { return p.starredOf(p.bitwiseOr) }

// prefixed skips a prefix operator (the current token) and reads its
// operand. It returns the operator's position and the operand, nil when
// there is none.
func (p *parser) prefixed(operand func() node) (int, node) {
	pos := p.pos()
	p.advance()
	return pos, operand()
}

// starredOf reads '*' operand.
func (p *parser) starredOf(operand func() node) node {
	pos, v := p.prefixed(operand)
	if v == nil {
		return nil
	}
	return &starred{base: p.mk(pos, v), value: v}
}

// unary reads the unary operator op (the current token) and its operand,
// one level of nesting deeper.
func (p *parser) unary(op string, operand func() node) node {
	pos, x := p.prefixed(p.nested(operand))
	if x == nil {
		return nil
	}
	return &unaryOp{base: p.mk(pos, x), op: op, operand: x}
}

// ---- expression ----------------------------------------------------------

// expression:
//
//	| disjunction 'if' disjunction 'else' expression
//	| disjunction
//	| lambdef
func (p *parser) expression() node {
	key := p.i
	if r, ok := p.memo[key]; ok {
		if r.n == nil {
			return p.fail()
		}
		p.i = r.end
		return r.n
	}
	n := p.expressionRule(true)
	if p.hard == nil {
		if n == nil {
			p.memo[key] = memoVal{}
		} else {
			p.memo[key] = memoVal{n: n, end: p.i}
		}
	}
	return n
}

// expressionRule parses an expression; withInvalid adds CPython's
// invalid_expression and invalid_legacy_expression alternatives (in the
// second pass). Without them it is CPython's expression_without_invalid.
func (p *parser) expressionRule(withInvalid bool) node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	if p.isKw("lambda") {
		return p.lambdef()
	}
	startIdx := p.i
	pos := p.pos()
	a := p.disjunction()
	if a == nil {
		return nil
	}
	inv := withInvalid && p.invalidOn()
	if !p.isKw("if") {
		if inv && (!p.checkAdjacent(startIdx, a) || !p.checkLegacy(startIdx)) {
			return nil
		}
		return a
	}
	m := p.mark()
	p.advance()
	b := p.disjunction()
	if b == nil || !p.isKw("else") {
		if b != nil && !p.isOp(":") && inv {
			ap, _ := a.span()
			return p.raise(ap, "expected 'else' after 'if' expression")
		}
		if !p.rewind(m) {
			return nil
		}
		if inv && !p.checkLegacy(startIdx) {
			return nil
		}
		return a
	}
	if inv && !p.checkLegacy(startIdx) {
		return nil
	}
	p.advance()
	c := p.expression()
	if c == nil {
		if !p.rewind(m) {
			return nil
		}
		return a
	}
	return &ifExp{base: p.mk(pos, a, b, c), test: b, body: a, orelse: c}
}

// startsExpression tells whether t can begin an expression (CPython's
// expression_without_invalid).
func startsExpression(t *token) bool {
	switch t.kind {
	case tkNumber, tkString:
		return true
	case tkName:
		if !pyKeywords[t.text] {
			return true
		}
		switch t.text {
		case "True", "False", "None", "not", "lambda", "await":
			return true
		}
	case tkOp:
		switch t.text {
		case "(", "[", "{", "-", "+", "~", "...":
			return true
		}
	}
	return false
}

// checkAdjacent applies CPython's invalid_expression rule to an expression a
// that is directly followed by the start of another one: "Perhaps you forgot
// a comma?" inside brackets. It reports false after raising.
func (p *parser) checkAdjacent(startIdx int, a node) bool {
	t := p.tok()
	if p.hard != nil {
		return false
	}
	if !startsExpression(t) {
		return true
	}
	first := &p.toks[startIdx]
	if isPlainName(first) && startIdx+1 < len(p.toks) && p.toks[startIdx+1].kind == tkString {
		return true
	}
	if isSoftKeyword(first) {
		return true
	}
	if n, ok := a.(*name); ok && (n.id == "print" || n.id == "exec") {
		return true // left to invalid_legacy_expression
	}
	m := p.mark()
	p.trial++
	b := p.expressionRule(false)
	p.trial--
	if p.hard != nil {
		return false
	}
	p.reset(m)
	if b != nil && p.toks[p.i-1].level > 0 {
		ap, _ := a.span()
		p.raise(ap, "invalid syntax. Perhaps you forgot a comma?")
		return false
	}
	return true
}

// isSoftKeyword is CPython 3.11's soft-keyword test, which compares only
// as many characters as the name has: "c" and "matc" count, as prefixes of
// "case" and "match".
func isSoftKeyword(t *token) bool {
	if t.kind != tkName || t.text == "" {
		return false
	}
	for _, kw := range []string{"_", "case", "match"} {
		if strings.HasPrefix(kw, t.text) {
			return true
		}
	}
	return false
}

// checkLegacy applies CPython's invalid_legacy_expression rule to the
// expression starting at startIdx: NAME !'(' star_expressions. The
// star_expressions are parsed for real (and may raise); the message itself
// is for print and exec. It reports false after raising.
func (p *parser) checkLegacy(startIdx int) bool {
	first := &p.toks[startIdx]
	if !isPlainName(first) || startIdx+1 >= len(p.toks) {
		return true
	}
	next := &p.toks[startIdx+1]
	if next.kind == tkOp && next.text == "(" {
		return true
	}
	if !startsExpression(next) && !(next.kind == tkOp && next.text == "*") {
		return true
	}
	save := p.mark()
	p.i = startIdx + 1
	b := p.starExpressions()
	if p.hard != nil {
		return false
	}
	p.reset(save)
	if b != nil && (first.text == "print" || first.text == "exec") {
		p.raise(first.pos, fmt.Sprintf("Missing parentheses in call to '%s'. Did you mean %s(...)?", first.text, first.text))
		return false
	}
	return true
}

// disjunction: conjunction ('or' conjunction)*
func (p *parser) disjunction() node {
	key := p.i
	if r, ok := p.memoDisj[key]; ok {
		if r.n == nil {
			return p.fail()
		}
		p.i = r.end
		return r.n
	}
	n := p.boolChain("or", p.conjunction)
	if p.hard == nil {
		if n == nil {
			p.memoDisj[key] = memoVal{}
		} else {
			p.memoDisj[key] = memoVal{n: n, end: p.i}
		}
	}
	return n
}

// conjunction: inversion ('and' inversion)*
func (p *parser) conjunction() node { return p.boolChain("and", p.inversion) }

func (p *parser) boolChain(op string, next func() node) node {
	pos := p.pos()
	a := next()
	if a == nil || !p.isKw(op) {
		return a
	}
	vals := []node{a}
	for p.isKw(op) {
		b, ok := p.tryAfter(next)
		if !ok {
			return nil
		}
		if b == nil {
			break
		}
		vals = append(vals, b)
	}
	if len(vals) == 1 {
		return a
	}
	return &boolOp{base: p.mkList(pos, vals), op: op, values: vals}
}

// inversion: 'not' inversion | comparison
func (p *parser) inversion() node {
	if p.isKw("not") {
		return p.unary("not", p.inversion)
	}
	return p.comparison()
}

// compareOp reads a comparison operator and reports it, or "".
func (p *parser) compareOp() string {
	t := p.tok()
	switch t.kind {
	case tkOp:
		switch t.text {
		case "==", "!=", "<", "<=", ">", ">=":
			p.advance()
			return t.text
		}
	case tkName:
		switch t.text {
		case "in":
			p.advance()
			return "in"
		case "not":
			if n := p.tokAt(1); n.kind == tkName && n.text == "in" {
				p.advance()
				p.advance()
				return "not in"
			}
		case "is":
			if n := p.tokAt(1); n.kind == tkName && n.text == "not" {
				m := p.mark()
				p.advance()
				p.advance()
				// 'is' 'not' bitwise_or; when no operand follows, CPython
				// tries 'is' alone, which fails too.
				if startsOperand(p.tok()) {
					return "is not"
				}
				p.reset(m)
			}
			p.advance()
			return "is"
		}
	}
	return ""
}

// startsOperand: could a bitwise_or begin at t?
func startsOperand(t *token) bool {
	if t.kind == tkName && (t.text == "not" || t.text == "lambda") {
		return false
	}
	return startsExpression(t)
}

// comparison: bitwise_or (compare_op bitwise_or)*
func (p *parser) comparison() node {
	pos := p.pos()
	a := p.bitwiseOr()
	if a == nil {
		return nil
	}
	var ops []string
	var cmps []node
	for {
		m := p.mark()
		op := p.compareOp()
		if op == "" {
			if p.hard != nil {
				return nil
			}
			break
		}
		b := p.bitwiseOr()
		if b == nil {
			if !p.rewind(m) {
				return nil
			}
			break
		}
		ops = append(ops, op)
		cmps = append(cmps, b)
	}
	if len(ops) == 0 {
		return a
	}
	return &compare{base: p.mkList(pos, cmps, a), left: a, ops: ops, comparators: cmps}
}

func (p *parser) binChain(next func() node, ops ...string) node {
	pos := p.pos()
	left := next()
	if left == nil {
		return nil
	}
	for {
		t := p.tok()
		if t.kind != tkOp {
			return left
		}
		op := ""
		for _, o := range ops {
			if t.text == o {
				op = o
			}
		}
		if op == "" {
			return left
		}
		right, ok := p.tryAfter(next)
		if !ok {
			return nil
		}
		if right == nil {
			return left
		}
		left = &binOp{base: p.mk(pos, left, right), op: op, left: left, right: right}
	}
}

func (p *parser) bitwiseOr() node  { return p.binChain(p.bitwiseXor, "|") }
func (p *parser) bitwiseXor() node { return p.binChain(p.bitwiseAnd, "^") }
func (p *parser) bitwiseAnd() node { return p.binChain(p.shiftExpr, "&") }
func (p *parser) shiftExpr() node  { return p.binChain(p.sum, "<<", ">>") }
func (p *parser) sum() node        { return p.binChain(p.term, "+", "-") }
func (p *parser) term() node       { return p.binChain(p.factor, "*", "/", "//", "%", "@") }

// factor: '+' factor | '-' factor | '~' factor | power
func (p *parser) factor() node {
	t := p.tok()
	if t.kind == tkOp && (t.text == "+" || t.text == "-" || t.text == "~") {
		return p.unary(t.text, p.factor)
	}
	return p.power()
}

// power: await_primary '**' factor | await_primary
func (p *parser) power() node {
	pos := p.pos()
	a := p.awaitPrimary()
	if a == nil || !p.isOp("**") {
		return a
	}
	b, ok := p.tryAfter(p.nested(p.factor))
	if !ok {
		return nil
	}
	if b == nil {
		return a
	}
	return &binOp{base: p.mk(pos, a, b), op: "**", left: a, right: b}
}

// await_primary: AWAIT primary | primary
func (p *parser) awaitPrimary() node {
	if p.isKw("await") {
		pos, x := p.prefixed(p.primary)
		if x == nil {
			return nil
		}
		return &await{base: p.mk(pos, x), value: x}
	}
	return p.primary()
}

// primary: atom followed by '.' NAME, a call, or a subscript, any number of
// times.
func (p *parser) primary() node {
	pos := p.pos()
	a := p.atom()
	if a == nil {
		return nil
	}
	for {
		t := p.tok()
		if t.kind != tkOp {
			return a
		}
		m := p.mark()
		switch t.text {
		case ".":
			p.advance()
			n := p.tok()
			if !isPlainName(n) {
				if !p.rewind(m) {
					return nil
				}
				return a
			}
			p.advance()
			a = &attribute{base: p.mk(pos, a), value: a, attr: n.text}
		case "(":
			c := p.callArgs(pos, a)
			if c == nil {
				if !p.rewind(m) {
					return nil
				}
				return a
			}
			a = c
		case "[":
			p.advance()
			idx := p.slices()
			if idx == nil || !p.isOp("]") {
				if !p.rewind(m) {
					return nil
				}
				return a
			}
			p.advance()
			a = &subscript{base: p.mk(pos, a, idx), value: a, index: idx}
		default:
			return a
		}
	}
}

// ---- atoms ---------------------------------------------------------------

func (p *parser) atom() node {
	t := p.tok()
	switch t.kind {
	case tkName:
		pos := t.pos
		switch t.text {
		case "True", "False":
			p.advance()
			return &constant{base: p.mk(pos), kind: cBool, b: t.text == "True"}
		case "None":
			p.advance()
			return &constant{base: p.mk(pos), kind: cNone}
		}
		if pyKeywords[t.text] {
			return p.fail()
		}
		p.advance()
		return &name{base: p.mk(pos), id: t.text}
	case tkNumber:
		p.advance()
		c, msg := numberConstant(t.text)
		if msg != "" {
			return p.raiseAlways(t.pos, msg)
		}
		c.base = p.mk(t.pos)
		return c
	case tkString:
		return p.strings()
	case tkOp:
		switch t.text {
		case "(":
			return p.parenAtom()
		case "[":
			return p.listAtom()
		case "{":
			return p.braceAtom()
		case "...":
			p.advance()
			return &constant{base: p.mk(t.pos), kind: cEllipsis}
		}
	}
	return p.fail()
}

// maxIntDigits is CPython's limit on decimal digits in an int literal
// (sys.get_int_max_str_digits()).
const maxIntDigits = 4300

func numberConstant(text string) (*constant, string) {
	t := strings.ReplaceAll(text, "_", "")
	if last := t[len(t)-1]; last == 'j' || last == 'J' {
		f, _ := strconv.ParseFloat(t[:len(t)-1], 64)
		return &constant{kind: cComplex, f: f}, ""
	}
	base := 10
	digits := t
	if len(t) > 1 && t[0] == '0' {
		switch t[1] {
		case 'x', 'X':
			base, digits = 16, t[2:]
		case 'o', 'O':
			base, digits = 8, t[2:]
		case 'b', 'B':
			base, digits = 2, t[2:]
		}
	}
	if base == 10 && strings.ContainsAny(t, ".eE") {
		f, _ := strconv.ParseFloat(t, 64) // out of range gives ±Inf, as in Python
		return &constant{kind: cFloat, f: f}, ""
	}
	if i, err := strconv.ParseInt(digits, base, 64); err == nil {
		return &constant{kind: cInt, i: i}, ""
	}
	if base == 10 && len(digits) > maxIntDigits {
		return nil, fmt.Sprintf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; "+
			"use sys.set_int_max_str_digits() to increase the limit - Consider hexadecimal for huge integer literals "+
			"to avoid decimal conversion limits.", maxIntDigits, len(digits))
	}
	// Too large for int64: kept as written (normalized), which is how it is
	// printed back.
	return &constant{kind: cInt, big: strings.ToLower(t)}, ""
}

func (p *parser) isForClause() bool {
	if p.isKw("for") {
		return true
	}
	if p.isKw("async") {
		n := p.tokAt(1)
		return n.kind == tkName && n.text == "for"
	}
	return false
}

// parenAtom: tuple | group | genexp (and the yield group)
func (p *parser) parenAtom() node {
	pos := p.pos()
	startIdx := p.i
	p.advance()
	if p.isOp(")") {
		p.advance()
		return &tuple{base: p.mk(pos)}
	}
	if p.isKw("yield") {
		y := p.yieldExpr()
		if y == nil {
			return nil
		}
		if !p.isOp(")") {
			return p.fail()
		}
		p.advance()
		return y
	}
	var first node
	switch {
	case p.isOp("**"):
		// invalid_group: '(' '**' expression ')'
		starPos := p.pos()
		p.advance()
		if e := p.expression(); e != nil && p.isOp(")") {
			return p.raise(starPos, "cannot use double starred expression here")
		}
		return p.fail()
	case p.isOp("*"):
		first = p.starredBitwiseOr()
		if first == nil {
			return nil
		}
		if p.isOp(")") {
			return p.raise(pos+1, "cannot use starred expression here")
		}
		if p.isForClause() {
			sp, _ := first.span()
			return p.raise(sp, "iterable unpacking cannot be used in comprehension")
		}
		if !p.isOp(",") && p.invalidOn() {
			// invalid_group: '(' '*' expression ')'
			m := p.mark()
			p.i = startIdx + 1
			p.advance()
			e := p.expression()
			if p.hard != nil {
				return nil
			}
			if e != nil && p.isOp(")") {
				return p.raise(pos+1, "cannot use starred expression here")
			}
			p.reset(m)
		}
	default:
		first = p.namedExpression()
		if first == nil {
			return nil
		}
	}
	if p.isForClause() {
		return p.comprehension(pos, genExp, first, nil, ")")
	}
	if p.isOp(")") {
		p.advance()
		return first
	}
	if !p.isOp(",") {
		return p.fail()
	}
	elts, _, ok := p.commaItems(first, p.starNamedExpression, ")")
	if !ok {
		return nil
	}
	if !p.isOp(")") {
		return p.fail()
	}
	p.advance()
	return &tuple{base: p.mkList(pos, elts), elts: elts}
}

func compKids(elt, value node, gens []comprehension) []node {
	kids := []node{elt, value}
	for _, g := range gens {
		kids = append(kids, g.target, g.iter)
		kids = append(kids, g.ifs...)
	}
	return kids
}

// yield_expr: 'yield' 'from' expression | 'yield' [star_expressions]
func (p *parser) yieldExpr() node {
	pos := p.pos()
	p.advance()
	if p.isKw("from") {
		p.advance()
		v := p.expression()
		if v == nil {
			return nil
		}
		return &yield{base: p.mk(pos, v), value: v, from: true}
	}
	v, ok := p.try(p.starExpressions)
	if !ok {
		return nil
	}
	if v == nil {
		return &yield{base: p.mk(pos)}
	}
	return &yield{base: p.mk(pos, v), value: v}
}

// star_named_expression: '*' bitwise_or | named_expression
func (p *parser) starNamedExpression() node {
	if p.isOp("*") {
		return p.starredBitwiseOr()
	}
	return p.namedExpression()
}

// named_expression: NAME ':=' expression | expression !':='
// with CPython's invalid_named_expression rules.
func (p *parser) namedExpression() node {
	t := p.tok()
	if isPlainName(t) {
		if n := p.tokAt(1); n.kind == tkOp && n.text == ":=" {
			pos := t.pos
			p.advance()
			target := &name{base: p.mk(pos), id: t.text}
			p.advance()
			v := p.expression()
			if v == nil {
				return nil
			}
			return &namedExpr{base: p.mk(pos, target, v), target: target, value: v}
		}
	}
	startIdx := p.i
	a := p.expression()
	if a == nil {
		return nil
	}
	if p.isOp(":=") {
		// invalid_named_expression: a=expression ':=' expression
		m := p.mark()
		p.advance()
		v := p.expression()
		if !p.rewind(m) {
			return nil
		}
		if v != nil {
			ap, _ := a.span()
			return p.raise(ap, "cannot use assignment expressions with "+exprName(a))
		}
		return p.fail()
	}
	if p.isOp("=") && p.invalidOn() {
		if !p.checkAssignInNamed(startIdx, a) {
			return nil
		}
	}
	return a
}

// isBitwiseOrLevel: would a bitwise_or parse produce exactly a?
func isBitwiseOrLevel(a node) bool {
	switch a := a.(type) {
	case *compare, *boolOp, *ifExp, *lambda, *namedExpr:
		return false
	case *unaryOp:
		return a.op != "not"
	}
	return true
}

// checkAssignInNamed applies the '=' alternatives of CPython's
// invalid_named_expression to a (followed by '='). It reports false after
// raising.
func (p *parser) checkAssignInNamed(startIdx int, a node) bool {
	if !isBitwiseOrLevel(a) {
		return true
	}
	m := p.mark()
	p.advance() // '='
	rhs := p.bitwiseOr()
	if p.hard != nil {
		return false
	}
	ok := rhs != nil && !p.isOp("=") && !p.isOp(":=")
	if p.hard != nil {
		return false
	}
	p.reset(m)
	if !ok {
		return true
	}
	first := &p.toks[startIdx]
	ap, _ := a.span()
	if n, isName := a.(*name); isName && isPlainName(first) && first.pos == n.pos && p.toks[startIdx+1].kind == tkOp && p.toks[startIdx+1].text == "=" {
		p.raise(ap, "invalid syntax. Maybe you meant '==' or ':=' instead of '='?")
		return false
	}
	// !(list|tuple|genexp|'True'|'None'|'False')
	if first.kind == tkName && (first.text == "True" || first.text == "None" || first.text == "False") {
		return true
	}
	if first.kind == tkOp && (first.text == "[" || first.text == "(") {
		save := p.mark()
		p.i = startIdx
		at := p.atom()
		if p.hard != nil {
			return false
		}
		p.reset(save)
		switch at := at.(type) {
		case *list, *tuple:
			return true
		case *comp:
			if at.kind == genExp {
				return true
			}
		}
	}
	p.raise(ap, "cannot assign to "+exprName(a)+" here. Maybe you meant '==' instead of '='?")
	return false
}

// listAtom: list | listcomp
func (p *parser) listAtom() node {
	pos := p.pos()
	p.advance()
	if p.isOp("]") {
		p.advance()
		return &list{base: p.mk(pos)}
	}
	first := p.starNamedExpression()
	if first == nil {
		return nil
	}
	if p.isForClause() {
		return p.elementComprehension(pos, listComp, first, "]")
	}
	elts, ok := p.displayRest(first, "]")
	if !ok {
		return nil
	}
	return &list{base: p.mkList(pos, elts), elts: elts}
}

// comprehension reads the for and if clauses of a comprehension that
// begins at pos, of elt (and value, in a dict), and the closing bracket.
func (p *parser) comprehension(pos int, kind compKind, elt, value node, closer string) node {
	gens := p.forIfClauses()
	if gens == nil {
		return nil
	}
	if !p.isOp(closer) {
		return p.fail()
	}
	p.advance()
	return &comp{base: p.mk(pos, compKids(elt, value, gens)...), kind: kind, elt: elt, value: value, gens: gens}
}

// elementComprehension is comprehension for a list or a set, whose element
// may not be starred.
func (p *parser) elementComprehension(pos int, kind compKind, elt node, closer string) node {
	if _, ok := elt.(*starred); ok {
		sp, _ := elt.span()
		return p.raise(sp, "iterable unpacking cannot be used in comprehension")
	}
	return p.comprehension(pos, kind, elt, nil, closer)
}

// displayRest reads the elements after the first one of a list or set
// display, up to and including the closing bracket.
func (p *parser) displayRest(first node, closer string) ([]node, bool) {
	elts, comma, ok := p.commaItems(first, p.starNamedExpression, closer)
	if !ok {
		return nil, false
	}
	if comma && p.isForClause() && p.invalidOn() {
		// invalid_comprehension: a target list without parentheses
		if gens := p.forIfClauses(); gens != nil {
			fp, _ := first.span()
			p.raise(fp, "did you forget parentheses around the comprehension target?")
		}
		return nil, false
	}
	if !p.isOp(closer) {
		p.fail()
		return nil, false
	}
	p.advance()
	return elts, true
}

// braceAtom: dict | set | dictcomp | setcomp
func (p *parser) braceAtom() node {
	pos := p.pos()
	p.advance()
	if p.isOp("}") {
		p.advance()
		return &dict{base: p.mk(pos)}
	}
	if p.isOp("**") {
		starPos := p.pos()
		p.advance()
		v := p.bitwiseOr()
		if v == nil {
			return nil
		}
		if p.isForClause() {
			if gens := p.forIfClauses(); gens != nil {
				return p.raise(starPos, "dict unpacking cannot be used in dict comprehension")
			}
			return nil
		}
		return p.dictRest(pos, []node{nil}, []node{v})
	}
	first := p.starNamedExpression()
	if first == nil {
		return nil
	}
	_, isStar := first.(*starred)
	_, isNamed := first.(*namedExpr)
	if p.isOp(":") && !isStar && !isNamed {
		p.advance()
		v := p.dictValue()
		if v == nil {
			return nil
		}
		if p.isForClause() {
			return p.comprehension(pos, dictComp, first, v, "}")
		}
		return p.dictRest(pos, []node{first}, []node{v})
	}
	if p.isForClause() {
		return p.elementComprehension(pos, setComp, first, "}")
	}
	elts, ok := p.displayRest(first, "}")
	if !ok {
		return nil
	}
	return &set{base: p.mkList(pos, elts), elts: elts}
}

// dictValue reads the value after "key:", with CPython's checks.
func (p *parser) dictValue() node {
	if p.isOp("*") {
		return p.raise(p.pos(), "cannot use a starred expression in a dictionary value")
	}
	if p.isOp("}") || p.isOp(",") {
		return p.raise(p.toks[p.i-1].pos, "expression expected after dictionary key and ':'")
	}
	return p.expression()
}

func (p *parser) dictRest(pos int, keys, values []node) node {
	for p.isOp(",") {
		p.advance()
		if p.isOp("}") {
			break
		}
		if p.isOp("**") {
			v, ok := p.tryAfter(p.bitwiseOr)
			if !ok {
				return nil
			}
			if v == nil {
				break
			}
			keys = append(keys, nil)
			values = append(values, v)
			continue
		}
		k, ok := p.try(p.expression)
		if !ok {
			return nil
		}
		if k == nil {
			break
		}
		if !p.isOp(":") {
			kp, _ := k.span()
			return p.raise(kp, "':' expected after dictionary key")
		}
		p.advance()
		v := p.dictValue()
		if v == nil {
			return nil
		}
		keys = append(keys, k)
		values = append(values, v)
	}
	if !p.isOp("}") {
		return p.fail()
	}
	p.advance()
	var kids []node
	for i := range keys {
		kids = append(kids, keys[i], values[i])
	}
	return &dict{base: p.mkList(pos, kids), keys: keys, values: values}
}

// ---- comprehensions ------------------------------------------------------

// for_if_clauses: ([ASYNC] 'for' star_targets 'in' ~ disjunction ('if' disjunction)*)+
func (p *parser) forIfClauses() []comprehension {
	var gens []comprehension
	for {
		m := p.mark()
		async := false
		if p.isKw("async") {
			n := p.tokAt(1)
			if n.kind == tkName && n.text == "for" {
				async = true
				p.advance()
			}
		}
		if !p.isKw("for") {
			if len(gens) == 0 {
				p.fail()
				return nil
			}
			p.reset(m)
			return gens
		}
		p.advance()
		afterFor := p.mark()
		target := p.starTargets()
		if target == nil || !p.isKw("in") {
			if p.hard != nil {
				return nil
			}
			if p.invalidOn() {
				// invalid_for_target
				p.reset(afterFor)
				e := p.starExpressions()
				if p.hard != nil {
					return nil
				}
				if e != nil {
					if bad := invalidTarget(e); bad != nil {
						bp, _ := bad.span()
						p.raise(bp, "cannot assign to "+exprName(bad))
						return nil
					}
				}
			}
			p.fail()
			return nil
		}
		p.advance() // 'in'
		iter := p.disjunction()
		if iter == nil {
			return nil
		}
		var ifs []node
		for p.isKw("if") {
			mi := p.mark()
			p.advance()
			c := p.disjunction()
			if c == nil {
				if p.hard != nil {
					return nil
				}
				p.reset(mi)
				break
			}
			ifs = append(ifs, c)
		}
		gens = append(gens, comprehension{target: target, iter: iter, ifs: ifs, async: async})
	}
}

// invalidTarget finds what makes e an invalid for-loop target
// (CPython's _PyPegen_get_invalid_target), or nil.
func invalidTarget(e node) node {
	switch e := e.(type) {
	case *tuple:
		for _, x := range e.elts {
			if bad := invalidTarget(x); bad != nil {
				return bad
			}
		}
		return nil
	case *list:
		for _, x := range e.elts {
			if bad := invalidTarget(x); bad != nil {
				return bad
			}
		}
		return nil
	case *starred:
		return invalidTarget(e.value)
	case *compare:
		if e.ops[0] == "in" {
			return invalidTarget(e.left)
		}
		return e
	case *name, *subscript, *attribute:
		return nil
	}
	return e
}

func (p *parser) starTargets() node {
	return p.exprList(p.starTarget)
}

func (p *parser) starTarget() node {
	if p.isOp("*") {
		if n := p.tokAt(1); n.kind == tkOp && n.text == "*" {
			p.advance()
			return p.fail()
		}
		return p.starredOf(p.target)
	}
	return p.target()
}

func (p *parser) target() node {
	x := p.primary()
	if x == nil {
		return nil
	}
	if !validTarget(x) {
		return p.fail()
	}
	return x
}

func validTarget(x node) bool {
	switch x := x.(type) {
	case *name, *attribute, *subscript:
		return true
	case *tuple:
		return validTargets(x.elts)
	case *list:
		return validTargets(x.elts)
	}
	return false
}

func validTargets(elts []node) bool {
	for _, e := range elts {
		if s, ok := e.(*starred); ok {
			e = s.value
		}
		if !validTarget(e) {
			return false
		}
	}
	return true
}

// ---- calls and subscripts ------------------------------------------------

// callArgs parses '(' [arguments] ')' after fn, with CPython's
// invalid_arguments and invalid_kwarg rules.
func (p *parser) callArgs(pos int, fn node) node {
	p.advance() // '('
	var args []node
	var kws []keyword
	seenKw, seenDStar := false, false
	nargs := 0
	for !p.isOp(")") {
		t := p.tok()
		if p.hard != nil {
			return nil
		}
		nargs++
		switch {
		case t.kind == tkOp && t.text == "*":
			spos := t.pos
			p.advance()
			v := p.expression()
			if v == nil {
				return nil
			}
			if seenDStar {
				return p.raise(spos, "iterable argument unpacking follows keyword argument unpacking")
			}
			args = append(args, &starred{base: p.mk(spos, v), value: v})
		case t.kind == tkOp && t.text == "**":
			kpos := t.pos
			p.advance()
			v := p.expression()
			if v == nil {
				return nil
			}
			kws = append(kws, keyword{pos: kpos, value: v})
			seenDStar = true
		case t.kind == tkName && (t.text == "True" || t.text == "False" || t.text == "None") && p.nextIsOp("="):
			return p.raise(t.pos, "cannot assign to "+t.text)
		case isPlainName(t) && p.nextIsOp("="):
			kpos := t.pos
			p.advance()
			p.advance()
			v := p.expression()
			if v == nil {
				return nil
			}
			if p.isForClause() && p.invalidOn() {
				if gens := p.forIfClauses(); gens != nil {
					return p.raise(kpos, "invalid syntax. Maybe you meant '==' or ':=' instead of '='?")
				}
				return nil
			}
			kws = append(kws, keyword{pos: kpos, arg: t.text, value: v})
			seenKw = true
		default:
			apos := t.pos
			var a node
			if isPlainName(t) && p.nextIsOp(":=") {
				a = p.namedExpression()
			} else {
				a = p.expression()
			}
			if a == nil {
				return nil
			}
			if p.isOp(":=") {
				return p.fail()
			}
			if p.isOp("=") {
				return p.raise(apos, "expression cannot contain assignment, perhaps you meant \"==\"?")
			}
			if p.isForClause() {
				gens := p.forIfClauses()
				if gens == nil {
					return nil
				}
				ge := &comp{base: p.mk(apos, compKids(a, nil, gens)...), kind: genExp, elt: a, gens: gens}
				if nargs != 1 || !p.isOp(")") {
					return p.raise(apos, "Generator expression must be parenthesized")
				}
				a = ge
			}
			if seenKw || seenDStar {
				if seenDStar {
					return p.raise(apos, "positional argument follows keyword argument unpacking")
				}
				return p.raise(apos, "positional argument follows keyword argument")
			}
			args = append(args, a)
		}
		if !p.isOp(",") {
			break
		}
		p.advance()
	}
	if !p.isOp(")") {
		return p.fail()
	}
	p.advance()
	kids := append([]node{fn}, args...)
	for _, k := range kws {
		kids = append(kids, k.value)
	}
	return &call{base: p.mk(pos, kids...), fn: fn, args: args, keywords: kws}
}

func (p *parser) nextIsOp(s string) bool {
	n := p.tokAt(1)
	return n.kind == tkOp && n.text == s
}

// slices: slice !',' | ','.(slice | starred_expression)+ [',']
func (p *parser) slices() node {
	pos := p.pos()
	first := p.sliceItem()
	if first == nil {
		return nil
	}
	_, isStar := first.(*starred)
	if !p.isOp(",") && !isStar {
		return first
	}
	return p.tupleRest(pos, first, p.sliceItem)
}

func (p *parser) sliceItem() node {
	if p.isOp("*") {
		return p.starredOf(p.expression)
	}
	pos := p.pos()
	var lower node
	if !p.isOp(":") {
		e := p.namedExpression()
		if e == nil || !p.isOp(":") {
			return e
		}
		if _, ok := e.(*namedExpr); ok {
			return p.fail()
		}
		lower = e
	}
	p.advance() // ':'
	upper, ok := p.optExpression()
	if !ok {
		return nil
	}
	var step node
	if p.isOp(":") {
		p.advance()
		if step, ok = p.optExpression(); !ok {
			return nil
		}
	}
	return &slice{base: p.mk(pos, lower, upper, step), lower: lower, upper: upper, step: step}
}

// optExpression parses [expression]; ok is false only on a final error.
func (p *parser) optExpression() (node, bool) {
	m := p.mark()
	e := p.expression()
	if e == nil {
		if p.hard != nil {
			return nil, false
		}
		p.reset(m)
	}
	return e, true
}

// ---- lambda --------------------------------------------------------------

func (p *parser) lambdef() node {
	pos := p.pos()
	p.advance() // 'lambda'
	ps := p.lambdaParams()
	if ps == nil {
		return nil
	}
	if !p.isOp(":") {
		return p.fail()
	}
	p.advance()
	body := p.expression()
	if body == nil {
		return nil
	}
	kids := []node{body}
	for _, list := range [][]param{ps.posonly, ps.args, ps.kwonly} {
		for _, a := range list {
			kids = append(kids, a.def)
		}
	}
	return &lambda{base: p.mk(pos, kids...), params: ps, body: body}
}

// parenthesizedParams: is the current '(' followed by NAME (',' NAME)*
// [','] ')'?
func (p *parser) parenthesizedParams() bool {
	j := p.i + 1
	for n := 0; j < len(p.toks); n++ {
		if !isPlainName(&p.toks[j]) {
			return false
		}
		j++
		if j < len(p.toks) && p.toks[j].kind == tkOp && p.toks[j].text == "," {
			j++
		}
		if j < len(p.toks) && p.toks[j].kind == tkOp && p.toks[j].text == ")" {
			return true
		}
	}
	return false
}

func (p *parser) lambdaParams() *params {
	ps := &params{}
	seenDefault, seenSlash, seenKwarg := false, false, false
	for !p.isOp(":") {
		t := p.tok()
		if p.hard != nil {
			return nil
		}
		switch {
		case seenKwarg:
			if isPlainName(t) || (t.kind == tkOp && (t.text == "*" || t.text == "**" || t.text == "/")) {
				p.raise(t.pos, "arguments cannot follow var-keyword argument")
				return nil
			}
			p.fail()
			return nil
		case t.kind == tkOp && t.text == "/":
			switch {
			case ps.star:
				p.raise(t.pos, "/ must be ahead of *")
				return nil
			case seenSlash:
				p.raise(t.pos, "/ may appear only once")
				return nil
			case len(ps.args) == 0:
				if p.nextIsOp(",") {
					p.raise(t.pos, "at least one argument must precede /")
					return nil
				}
				p.fail()
				return nil
			}
			seenSlash = true
			ps.posonly, ps.args = ps.args, nil
			p.advance()
		case t.kind == tkOp && t.text == "*":
			if ps.star {
				p.raise(t.pos, "* argument may appear only once")
				return nil
			}
			ps.star = true
			p.advance()
			if n := p.tok(); isPlainName(n) {
				ps.vararg = n.text
				p.advance()
				if p.isOp("=") {
					p.raise(p.pos(), "var-positional argument cannot have default value")
					return nil
				}
			} else {
				// a bare * must be followed by a keyword-only parameter
				bad := p.isOp(":")
				if p.isOp(",") {
					n2 := p.tokAt(1)
					bad = n2.kind == tkOp && (n2.text == ":" || n2.text == "**")
				}
				if bad {
					p.raise(t.pos, "named arguments must follow bare *")
					return nil
				}
				if !p.isOp(",") {
					p.fail()
					return nil
				}
			}
		case t.kind == tkOp && t.text == "**":
			p.advance()
			n := p.tok()
			if !isPlainName(n) {
				p.fail()
				return nil
			}
			ps.kwarg = n.text
			p.advance()
			if p.isOp("=") {
				p.raise(p.pos(), "var-keyword argument cannot have default value")
				return nil
			}
			seenKwarg = true
		case isPlainName(t):
			p.advance()
			pr := param{name: t.text}
			if p.isOp("=") {
				p.advance()
				d := p.expression()
				if d == nil {
					return nil
				}
				pr.def = d
				if !ps.star {
					seenDefault = true
				}
			} else if seenDefault && !ps.star {
				p.raise(t.pos, "non-default argument follows default argument")
				return nil
			}
			if ps.star {
				ps.kwonly = append(ps.kwonly, pr)
			} else {
				ps.args = append(ps.args, pr)
			}
		case t.kind == tkOp && t.text == "(" && p.parenthesizedParams():
			p.raise(t.pos, "Lambda expression parameters cannot be parenthesized")
			return nil
		default:
			p.fail()
			return nil
		}
		if p.isOp(",") {
			p.advance()
			continue
		}
		if !p.isOp(":") {
			p.fail()
			return nil
		}
	}
	return ps
}
