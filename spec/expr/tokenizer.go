package expr

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The tokenizer follows the lexical rules of CPython 3.11's C tokenizer
// (Parser/tokenizer.c), which is what ast.parse uses: the same tokens, and the
// same errors with the same words.

// maxParenLevel is CPython's MAXLEVEL: the deepest bracket nesting accepted.
const maxParenLevel = 200

type tokKind uint8

const (
	tkEnd tokKind = iota // ENDMARKER
	tkNewline
	tkIndent
	tkName
	tkNumber
	tkString
	tkOp
	tkErr // a tokenizer error; see tokError
)

type token struct {
	kind  tokKind
	text  string
	pos   int // byte offset in the tokenizer input
	end   int
	line  int
	level int // bracket nesting after this token
	err   *tokError
}

type paren struct {
	ch   byte
	line int
	pos  int
}

// lazyKind tells which error a lazy error token raises when the parser
// fetches it. Eager errors (Python sets an exception at once) also override
// parser errors found earlier in the input; lazy ones only count when the
// parser reaches them.
type lazyKind uint8

const (
	lazyNone     lazyKind = iota
	lazyEOF               // "unexpected EOF while parsing", or an unclosed bracket
	lazyLineCont          // "unexpected character after line continuation character"
	lazyDedent            // "unindent does not match any outer indentation level"
	lazyTab               // "inconsistent use of tabs and spaces in indentation"
	lazyTooDeep           // "too many levels of indentation"
)

type tokError struct {
	msg  string // for eager errors
	line int
	pos  int
	lazy lazyKind
	open *paren // innermost unclosed bracket when the error happened
}

// errorFor returns the syntax error the parser raises when it fetches an
// error token.
func (e *tokError) errorFor() *SyntaxError {
	switch e.lazy {
	case lazyNone:
		return &SyntaxError{Msg: e.msg, Line: e.line, Offset: e.pos}
	case lazyEOF:
		if e.open != nil {
			return unclosedError(e.open)
		}
		return &SyntaxError{Msg: "unexpected EOF while parsing", Line: e.line, Offset: e.pos}
	case lazyLineCont:
		return &SyntaxError{Msg: "unexpected character after line continuation character", Line: e.line, Offset: e.pos}
	case lazyDedent:
		return &SyntaxError{Msg: "unindent does not match any outer indentation level", Line: e.line, Offset: e.pos}
	case lazyTab:
		return &SyntaxError{Msg: "inconsistent use of tabs and spaces in indentation", Line: e.line, Offset: e.pos}
	default:
		return &SyntaxError{Msg: "too many levels of indentation", Line: e.line, Offset: e.pos}
	}
}

func unclosedError(p *paren) *SyntaxError {
	return &SyntaxError{Msg: fmt.Sprintf("'%c' was never closed", p.ch), Line: p.line, Offset: p.pos}
}

type scanner struct {
	s      string
	i      int
	line   int
	parens []paren
	toks   []token
	// indentation stacks (columns with tab size 8, and with tab size 1)
	ind, altind []int
	blank       bool
}

// scan tokenizes s. The result always ends with a tkEnd or a tkErr token;
// scanning stops at the first error.
func scan(s string) []token {
	sc := &scanner{s: s, line: 1, ind: []int{0}, altind: []int{0}, toks: make([]token, 0, len(s)/4+8)}
	sc.run()
	return sc.toks
}

func (sc *scanner) at(j int) int {
	if j < len(sc.s) {
		return int(sc.s[j])
	}
	return -1
}

func (sc *scanner) level() int { return len(sc.parens) }

func (sc *scanner) emit(kind tokKind, start, end, line int) {
	sc.toks = append(sc.toks, token{kind: kind, text: sc.s[start:end], pos: start, end: end, line: line, level: sc.level()})
}

func (sc *scanner) innermost() *paren {
	if len(sc.parens) == 0 {
		return nil
	}
	p := sc.parens[len(sc.parens)-1]
	return &p
}

// fail appends an eager error token and stops the scan.
func (sc *scanner) fail(pos, line int, format string, args ...any) {
	sc.toks = append(sc.toks, token{kind: tkErr, pos: pos, end: pos, line: line, level: sc.level(),
		err: &tokError{msg: fmt.Sprintf(format, args...), line: line, pos: pos, open: sc.innermost()}})
}

// failLazy appends a lazy error token and stops the scan.
func (sc *scanner) failLazy(kind lazyKind, pos, line int) {
	sc.toks = append(sc.toks, token{kind: tkErr, pos: pos, end: pos, line: line, level: sc.level(),
		err: &tokError{lazy: kind, line: line, pos: pos, open: sc.innermost()}})
}

// linesRead is the line number CPython reports for the end of input: the
// number of lines it has read.
func linesRead(s string) int {
	n := strings.Count(s, "\n")
	if len(s) > 0 && s[len(s)-1] != '\n' {
		n++
	}
	return n
}

func (sc *scanner) run() {
	atbol := true
	for {
		if atbol {
			atbol = false
			if !sc.indentation() {
				return
			}
		}
		// skip spaces, tabs and form feeds
		for sc.i < len(sc.s) && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t' || sc.s[sc.i] == '\f') {
			sc.i++
		}
		// comment
		if sc.at(sc.i) == '#' {
			for sc.i < len(sc.s) && sc.s[sc.i] != '\n' {
				sc.i++
			}
		}
		if sc.i >= len(sc.s) {
			if sc.level() > 0 {
				sc.failLazy(lazyEOF, sc.i, sc.line)
				return
			}
			sc.toks = append(sc.toks, token{kind: tkEnd, pos: sc.i, end: sc.i, line: linesRead(sc.s)})
			return
		}
		start := sc.i
		c := sc.s[sc.i]
		switch {
		case c == '\n':
			sc.i++
			if !sc.blank && sc.level() == 0 {
				sc.emit(tkNewline, start, sc.i, sc.line)
			}
			sc.line++
			atbol = true
		case isIdentStart(c):
			if !sc.nameOrString() {
				return
			}
		case c == '.' && isDigit(sc.at(sc.i+1)):
			if !sc.number() {
				return
			}
		case c == '.':
			if strings.HasPrefix(sc.s[sc.i:], "...") {
				sc.i += 3
			} else {
				sc.i++
			}
			sc.emit(tkOp, start, sc.i, sc.line)
		case isDigit(int(c)):
			if !sc.number() {
				return
			}
		case c == '\'' || c == '"':
			if !sc.str(start, sc.i) {
				return
			}
		case c == '\\':
			// line continuation
			if sc.at(sc.i+1) != '\n' {
				sc.failLazy(lazyLineCont, sc.i, sc.line)
				return
			}
			sc.i += 2
			sc.line++
			if sc.i >= len(sc.s) {
				sc.failLazy(lazyEOF, sc.i, sc.line-1)
				return
			}
		default:
			if !sc.operator() {
				return
			}
		}
	}
}

// indentation handles the start of a line: blank lines, and indentation at
// bracket level 0. It reports false when it appended an error token.
func (sc *scanner) indentation() bool {
	col, altcol, contCol := 0, 0, 0
	for {
		c := sc.at(sc.i)
		switch c {
		case ' ':
			col++
			altcol++
		case '\t':
			col = (col/8 + 1) * 8
			altcol++
		case '\f':
			col, altcol = 0, 0
		case '\\':
			if contCol == 0 {
				contCol = col
			}
			if sc.at(sc.i+1) != '\n' {
				sc.failLazy(lazyLineCont, sc.i, sc.line)
				return false
			}
			sc.i += 2
			sc.line++
			if sc.i >= len(sc.s) {
				sc.failLazy(lazyEOF, sc.i, sc.line-1)
				return false
			}
			continue
		default:
			goto measured
		}
		sc.i++
	}
measured:
	c := sc.at(sc.i)
	sc.blank = c == '#' || c == '\n'
	if sc.blank || sc.level() != 0 {
		return true
	}
	if contCol != 0 {
		col, altcol = contCol, contCol
	}
	top := len(sc.ind) - 1
	switch {
	case col == sc.ind[top]:
		if altcol != sc.altind[top] {
			sc.failLazy(lazyTab, sc.i, sc.line)
			return false
		}
	case col > sc.ind[top]:
		if len(sc.ind) >= 100 {
			sc.failLazy(lazyTooDeep, sc.i, sc.line)
			return false
		}
		if altcol <= sc.altind[top] {
			sc.failLazy(lazyTab, sc.i, sc.line)
			return false
		}
		sc.ind = append(sc.ind, col)
		sc.altind = append(sc.altind, altcol)
		sc.toks = append(sc.toks, token{kind: tkIndent, pos: sc.i, end: sc.i, line: sc.line})
	default:
		for len(sc.ind) > 1 && col < sc.ind[len(sc.ind)-1] {
			sc.ind = sc.ind[:len(sc.ind)-1]
			sc.altind = sc.altind[:len(sc.altind)-1]
		}
		top = len(sc.ind) - 1
		if col != sc.ind[top] {
			sc.failLazy(lazyDedent, sc.i, sc.line)
			return false
		}
		if altcol != sc.altind[top] {
			sc.failLazy(lazyTab, sc.i, sc.line)
			return false
		}
	}
	return true
}

func isDigit(c int) bool  { return c >= '0' && c <= '9' }
func isXDigit(c int) bool { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }

func isIdentStart(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80
}

func isIdentChar(c int) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || isDigit(c) || c >= 0x80
}

// isXIDStart and isXIDContinue approximate Unicode's XID_Start and
// XID_Continue with the tables Go ships.
func isXIDStart(r rune) bool {
	if r == '_' {
		return false
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_ID_Start, r)
}

func isXIDContinue(r rune) bool {
	return r == '_' || isXIDStart(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Pc, unicode.Other_ID_Continue)
}

// nameOrString scans an identifier, or a string with a prefix.
func (sc *scanner) nameOrString() bool {
	start := sc.i
	sawB, sawR, sawU, sawF := false, false, false, false
	for j := sc.i; j < len(sc.s); {
		c := sc.s[j]
		switch {
		case !(sawB || sawU || sawF) && (c == 'b' || c == 'B'):
			sawB = true
		case !(sawB || sawU || sawR || sawF) && (c == 'u' || c == 'U'):
			sawU = true
		case !(sawR || sawU) && (c == 'r' || c == 'R'):
			sawR = true
		case !(sawF || sawB || sawU) && (c == 'f' || c == 'F'):
			sawF = true
		default:
			j = len(sc.s)
			continue
		}
		j++
		if q := sc.at(j); q == '\'' || q == '"' {
			return sc.str(start, j)
		}
	}
	nonASCII := false
	for sc.i < len(sc.s) && isIdentChar(int(sc.s[sc.i])) {
		if sc.s[sc.i] >= 0x80 {
			nonASCII = true
		}
		sc.i++
	}
	if nonASCII {
		word := sc.s[start:sc.i]
		for k, r := range word {
			ok := isXIDContinue(r)
			if k == 0 {
				ok = r == '_' || isXIDStart(r)
			}
			if ok {
				continue
			}
			if unicode.IsPrint(r) {
				sc.fail(start+k, sc.line, "invalid character '%c' (U+%04X)", r, r)
			} else {
				sc.fail(start+k, sc.line, "invalid non-printable character U+%04X", r)
			}
			return false
		}
	}
	sc.emit(tkName, start, sc.i, sc.line)
	return true
}

// verifyEnd checks what follows a number, as CPython does: a keyword that
// can follow a number in valid code is allowed (with a warning in Python),
// any other identifier character makes the literal invalid.
func (sc *scanner) verifyEnd(j int, kind string) bool {
	c := sc.at(j)
	rest := ""
	if j+1 <= len(sc.s) {
		rest = sc.s[j+1:]
	}
	kw := func(tail string) bool {
		return strings.HasPrefix(rest, tail) && !isIdentChar(sc.at(j+1+len(tail)))
	}
	ok := false
	switch c {
	case 'a':
		ok = kw("nd")
	case 'e':
		ok = kw("lse")
	case 'f':
		ok = kw("or")
	case 'i':
		c2 := sc.at(j + 1)
		ok = c2 == 'f' || c2 == 'n' || c2 == 's'
	case 'o':
		ok = kw("r")
	case 'n':
		ok = kw("ot")
	}
	if !ok && isIdentChar(c) {
		sc.fail(j, sc.line, "invalid %s literal", kind)
		return false
	}
	return true
}

// decimalTail consumes digits and single underscores between digits,
// starting at j (a digit). It returns the index after them, or -1 after
// appending an error.
func (sc *scanner) decimalTail(j int) int {
	for {
		for isDigit(sc.at(j)) {
			j++
		}
		if sc.at(j) != '_' {
			return j
		}
		j++
		if !isDigit(sc.at(j)) {
			sc.fail(j, sc.line, "invalid decimal literal")
			return -1
		}
	}
}

func (sc *scanner) number() bool {
	start := sc.i
	j := sc.i
	done := func(end int) bool {
		sc.i = end
		sc.emit(tkNumber, start, end, sc.line)
		return true
	}
	radix := func(kind string, valid func(int) bool) bool {
		j += 2
		for {
			if sc.at(j) == '_' {
				j++
			}
			if !valid(sc.at(j)) {
				if kind != "hexadecimal" && isDigit(sc.at(j)) {
					sc.fail(j, sc.line, "invalid digit '%c' in %s literal", sc.s[j], kind)
				} else {
					sc.fail(j, sc.line, "invalid %s literal", kind)
				}
				return false
			}
			for valid(sc.at(j)) {
				j++
			}
			if sc.at(j) != '_' {
				break
			}
		}
		if kind != "hexadecimal" && isDigit(sc.at(j)) {
			sc.fail(j, sc.line, "invalid digit '%c' in %s literal", sc.s[j], kind)
			return false
		}
		if !sc.verifyEnd(j, kind) {
			return false
		}
		return done(j)
	}
	if sc.s[j] == '.' {
		j++
		goto fraction
	}
	if sc.s[j] == '0' {
		switch sc.at(j + 1) {
		case 'x', 'X':
			return radix("hexadecimal", isXDigit)
		case 'o', 'O':
			return radix("octal", func(c int) bool { return c >= '0' && c <= '7' })
		case 'b', 'B':
			return radix("binary", func(c int) bool { return c == '0' || c == '1' })
		}
		j++
		nonzero := false
		for {
			if sc.at(j) == '_' {
				j++
				if !isDigit(sc.at(j)) {
					sc.fail(j, sc.line, "invalid decimal literal")
					return false
				}
			}
			if sc.at(j) != '0' {
				break
			}
			j++
		}
		if isDigit(sc.at(j)) {
			nonzero = true
			if j = sc.decimalTail(j); j < 0 {
				return false
			}
		}
		switch c := sc.at(j); {
		case c == '.':
			j++
			goto fraction
		case c == 'e' || c == 'E':
			goto exponent
		case c == 'j' || c == 'J':
			goto imaginary
		case nonzero:
			sc.fail(start, sc.line, "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers")
			return false
		}
		if !sc.verifyEnd(j, "decimal") {
			return false
		}
		return done(j)
	}
	if j = sc.decimalTail(j); j < 0 {
		return false
	}
	if sc.at(j) == '.' {
		j++
		goto fraction
	}
	goto exponentCheck
fraction:
	if isDigit(sc.at(j)) {
		if j = sc.decimalTail(j); j < 0 {
			return false
		}
	}
exponentCheck:
	if c := sc.at(j); c == 'e' || c == 'E' {
		goto exponent
	}
	if c := sc.at(j); c == 'j' || c == 'J' {
		goto imaginary
	}
	if !sc.verifyEnd(j, "decimal") {
		return false
	}
	return done(j)
exponent:
	{
		e := j
		j++
		if c := sc.at(j); c == '+' || c == '-' {
			j++
			if !isDigit(sc.at(j)) {
				sc.fail(j, sc.line, "invalid decimal literal")
				return false
			}
		} else if !isDigit(c) {
			if !sc.verifyEnd(e, "decimal") {
				return false
			}
			return done(e)
		}
		if j = sc.decimalTail(j); j < 0 {
			return false
		}
		if c := sc.at(j); c == 'j' || c == 'J' {
			goto imaginary
		}
		if !sc.verifyEnd(j, "decimal") {
			return false
		}
		return done(j)
	}
imaginary:
	j++
	if !sc.verifyEnd(j, "imaginary") {
		return false
	}
	return done(j)
}

// str scans a string literal whose prefix starts at start and whose opening
// quote is at q.
func (sc *scanner) str(start, q int) bool {
	quote := sc.s[q]
	firstLine := sc.line
	j := q + 1
	quoteSize, endQuoteSize := 1, 0
	if sc.at(j) == int(quote) {
		j++
		if sc.at(j) == int(quote) {
			quoteSize = 3
			j++
		} else {
			endQuoteSize = 1
		}
	}
	for endQuoteSize != quoteSize {
		c := sc.at(j)
		if c < 0 || (quoteSize == 1 && c == '\n') {
			detected := sc.line
			if c < 0 {
				detected = linesRead(sc.s)
			}
			if quoteSize == 3 {
				sc.fail(q, firstLine, "unterminated triple-quoted string literal (detected at line %d)", detected)
			} else {
				sc.fail(q, firstLine, "unterminated string literal (detected at line %d)", detected)
			}
			return false
		}
		j++
		if c == '\n' {
			sc.line++
		}
		if c == int(quote) {
			endQuoteSize++
			continue
		}
		endQuoteSize = 0
		if c == '\\' {
			if n := sc.at(j); n >= 0 {
				if n == '\n' {
					sc.line++
				}
				j++
			}
		}
	}
	sc.i = j
	sc.toks = append(sc.toks, token{kind: tkString, text: sc.s[start:j], pos: start, end: j, line: firstLine, level: sc.level()})
	return true
}

var threeCharOps = []string{"**=", "//=", "<<=", ">>="}

var twoCharOps = map[string]bool{
	"!=": true, "%=": true, "&=": true, "**": true, "*=": true, "+=": true, "-=": true, "->": true,
	"//": true, "/=": true, ":=": true, "<<": true, "<=": true, "<>": true, "==": true, ">=": true,
	">>": true, "@=": true, "^=": true, "|=": true,
}

func (sc *scanner) operator() bool {
	start := sc.i
	for _, op := range threeCharOps {
		if strings.HasPrefix(sc.s[sc.i:], op) {
			sc.i += 3
			sc.emit(tkOp, start, sc.i, sc.line)
			return true
		}
	}
	if sc.i+2 <= len(sc.s) && twoCharOps[sc.s[sc.i:sc.i+2]] {
		sc.i += 2
		sc.emit(tkOp, start, sc.i, sc.line)
		return true
	}
	c := sc.s[sc.i]
	switch c {
	case '(', '[', '{':
		if sc.level() >= maxParenLevel {
			sc.fail(sc.i, sc.line, "too many nested parentheses")
			return false
		}
		sc.parens = append(sc.parens, paren{ch: c, line: sc.line, pos: sc.i})
	case ')', ']', '}':
		if sc.level() == 0 {
			sc.fail(sc.i, sc.line, "unmatched '%c'", c)
			return false
		}
		open := sc.parens[len(sc.parens)-1]
		sc.parens = sc.parens[:len(sc.parens)-1]
		if !(open.ch == '(' && c == ')' || open.ch == '[' && c == ']' || open.ch == '{' && c == '}') {
			if open.line != sc.line {
				sc.fail(sc.i, sc.line, "closing parenthesis '%c' does not match opening parenthesis '%c' on line %d", c, open.ch, open.line)
			} else {
				sc.fail(sc.i, sc.line, "closing parenthesis '%c' does not match opening parenthesis '%c'", c, open.ch)
			}
			return false
		}
	default:
		if c < 0x20 || c == 0x7f {
			sc.fail(sc.i, sc.line, "invalid non-printable character U+%04X", c)
			return false
		}
	}
	sc.i++
	sc.emit(tkOp, start, sc.i, sc.line)
	return true
}

// checkSource rejects input CPython refuses before tokenizing: null bytes
// and (a Go concern: Python strings are always decodable) invalid UTF-8.
func checkSource(s string) *SyntaxError {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return &SyntaxError{Msg: "source code string cannot contain null bytes", Offset: i, bare: true}
	}
	if utf8.ValidString(s) {
		return nil
	}
	line := 1
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			reason := "invalid start byte"
			b := s[i]
			if b >= 0xc2 && b <= 0xf4 {
				if i+1 >= len(s) {
					reason = "unexpected end of data"
				} else {
					reason = "invalid continuation byte"
				}
			}
			return &SyntaxError{Msg: fmt.Sprintf("(unicode error) 'utf-8' codec can't decode byte 0x%02x in position %d: %s", b, i, reason), Line: line, Offset: i}
		}
		if r == '\n' {
			line++
		}
		i += size
	}
	return nil
}
