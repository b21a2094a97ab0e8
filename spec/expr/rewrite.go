package expr

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Before parsing, leval's RewriterEvaluator runs the expression through
// Python's pure-Python tokenize module (Lib/tokenize.py, 3.11), renames every
// keyword that is not one of
//
//	False None True and for in is not or
//
// (Valohai's linter renames `kw` to `_kw`), and puts the text back together
// with tokenize.untokenize. If tokenize raises TokenError (an unclosed
// bracket or string at the end), the original text is parsed instead. This
// file reproduces that: the same tokens, the same rewritten text, and an
// offset map back to the original.

var levalExpressionKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "for": true,
	"in": true, "is": true, "not": true, "or": true,
}

type pyTokType uint8

const (
	pyName pyTokType = iota
	pyNumber
	pyString
	pyOp
	pyComment
	pyNL
	pyNewline
	pyIndent
	pyDedent
	pyError
	pyEnd
)

type pyTok struct {
	typ        pyTokType
	str        string
	srow, scol int
	erow, ecol int
	off        int // offset of the token's start in the source
	offEnd     int // offset of its end, before any rewriting
}

// levalRewrite returns the text leval parses, and for each byte of it (and
// one past the end) the offset in src it comes from. tokenErr reports that
// tokenize raised TokenError, so src itself is parsed; indentErr is the
// IndentationError tokenize can raise.
func levalRewrite(src string) (text string, offs []int, tokenErr bool, indentErr *SyntaxError) {
	toks, tokenErr, indentErr := pyTokenize(src)
	if tokenErr || indentErr != nil {
		return "", nil, tokenErr, indentErr
	}
	for i := range toks {
		t := &toks[i]
		if t.typ == pyName && pyKeywords[t.str] && !levalExpressionKeywords[t.str] {
			t.str = "_" + t.str
		}
	}
	text, offs = untokenize(toks, src)
	return text, offs, false, nil
}

// splitLines splits like io.StringIO.readline: at "\n" only, keeping it.
func splitLines(src string) []string {
	var lines []string
	for len(src) > 0 {
		i := strings.IndexByte(src, '\n')
		if i < 0 {
			lines = append(lines, src)
			break
		}
		lines = append(lines, src[:i+1])
		src = src[i+1:]
	}
	return lines
}

// pyTokenize follows tokenize._tokenize of CPython 3.11.
func pyTokenize(src string) (toks []pyTok, tokenErr bool, indentErr *SyntaxError) {
	lines := splitLines(src)
	toks = make([]pyTok, 0, len(src)/4+8)
	lineOff := make([]int, len(lines)+1)
	for i, l := range lines {
		lineOff[i+1] = lineOff[i] + len(l)
	}
	lnum, parenlev := 0, 0
	continued := false
	indents := []int{0}
	var (
		contstr  bool
		needcont bool
		strstart [2]int
		strOff   int
		endQuote string // the closing quote of the string being continued
	)
	lastLine, line := "", ""
	emit := func(typ pyTokType, str string, srow, scol, erow, ecol, off int) {
		toks = append(toks, pyTok{typ: typ, str: str, srow: srow, scol: scol, erow: erow, ecol: ecol, off: off, offEnd: off + len(str)})
	}
	li := 0
outer:
	for {
		lastLine = line
		if li < len(lines) {
			line = lines[li]
		} else {
			line = ""
		}
		off := lineOff[min(li, len(lines))]
		li++
		lnum++
		pos, max := 0, len(line)
		if contstr {
			if line == "" {
				return nil, true, nil
			}
			if end := matchStringEnd(line, 0, endQuote); end >= 0 {
				pos = end
				emit(pyString, src[strOff:off+end], strstart[0], strstart[1], lnum, end, strOff)
				contstr, needcont = false, false
			} else if needcont && !strings.HasSuffix(line, "\\\n") && !strings.HasSuffix(line, "\\\r\n") {
				emit(pyError, src[strOff:off+len(line)], strstart[0], strstart[1], lnum, len(line), strOff)
				contstr = false
				continue
			} else {
				continue
			}
		} else if parenlev == 0 && !continued {
			if line == "" {
				break
			}
			column := 0
		measure:
			for pos < max {
				switch line[pos] {
				case ' ':
					column++
				case '\t':
					column = (column/8 + 1) * 8
				case '\f':
					column = 0
				default:
					break measure
				}
				pos++
			}
			if pos == max {
				break outer
			}
			if c := line[pos]; c == '#' || c == '\r' || c == '\n' {
				if c == '#' {
					comment := strings.TrimRight(line[pos:], "\r\n")
					emit(pyComment, comment, lnum, pos, lnum, pos+len(comment), off+pos)
					pos += len(comment)
				}
				emit(pyNL, line[pos:], lnum, pos, lnum, len(line), off+pos)
				continue
			}
			if column > indents[len(indents)-1] {
				indents = append(indents, column)
				emit(pyIndent, line[:pos], lnum, 0, lnum, pos, off)
			}
			for column < indents[len(indents)-1] {
				found := false
				for _, c := range indents {
					found = found || c == column
				}
				if !found {
					return nil, false, &SyntaxError{Msg: "unindent does not match any outer indentation level", Line: lnum, Offset: off + pos, file: "<tokenize>"}
				}
				indents = indents[:len(indents)-1]
				emit(pyDedent, "", lnum, pos, lnum, pos, off+pos)
			}
		} else {
			if line == "" {
				return nil, true, nil
			}
			continued = false
		}
	lineLoop:
		for pos < max {
			start, end, ok := pseudoMatch(line, pos)
			if !ok {
				_, size := utf8.DecodeRuneInString(line[pos:])
				emit(pyError, line[pos:pos+size], lnum, pos, lnum, pos+size, off+pos)
				pos += size
				continue
			}
			pos = end
			if start == end {
				continue
			}
			tok := line[start:end]
			initial := tok[0]
			switch {
			case isDigit(int(initial)) || (initial == '.' && tok != "." && tok != "..."):
				emit(pyNumber, tok, lnum, start, lnum, end, off+start)
			case initial == '\r' || initial == '\n':
				if parenlev > 0 {
					emit(pyNL, tok, lnum, start, lnum, end, off+start)
				} else {
					emit(pyNewline, tok, lnum, start, lnum, end, off+start)
				}
			case initial == '#':
				emit(pyComment, tok, lnum, start, lnum, end, off+start)
			case isTripleOpener(tok):
				q := tok[len(tok)-3:]
				if e := matchStringEnd(line, pos, q); e >= 0 {
					pos = e
					emit(pyString, line[start:pos], lnum, start, lnum, pos, off+start)
				} else {
					strstart = [2]int{lnum, start}
					strOff = off + start
					endQuote = q
					contstr = true
					break lineLoop
				}
			case isSingleQuoted(tok):
				if tok[len(tok)-1] == '\n' {
					strstart = [2]int{lnum, start}
					strOff = off + start
					endQuote = string(tok[strings.IndexAny(tok, "'\"")])
					contstr, needcont = true, true
					break lineLoop
				}
				emit(pyString, tok, lnum, start, lnum, end, off+start)
			case isIdentifierStart(tok):
				emit(pyName, tok, lnum, start, lnum, end, off+start)
			case initial == '\\':
				continued = true
			default:
				if strings.IndexByte("([{", initial) >= 0 {
					parenlev++
				} else if strings.IndexByte(")]}", initial) >= 0 {
					parenlev--
				}
				emit(pyOp, tok, lnum, start, lnum, end, off+start)
			}
		}
	}
	if lastLine != "" && !strings.HasSuffix(lastLine, "\n") && !strings.HasSuffix(lastLine, "\r") &&
		!strings.HasPrefix(strings.TrimSpace(lastLine), "#") {
		emit(pyNewline, "", lnum-1, len(lastLine), lnum-1, len(lastLine)+1, len(src))
	}
	for range indents[1:] {
		emit(pyDedent, "", lnum, 0, lnum, 0, len(src))
	}
	emit(pyEnd, "", lnum, 0, lnum, 0, len(src))
	return toks, false, nil
}

func isIdentifierStart(tok string) bool {
	r, _ := utf8.DecodeRuneInString(tok)
	return r == '_' || isXIDStart(r)
}

// stringPrefixLen returns the length of a valid string prefix at s[j:]
// followed by a quote, or -1.
func stringPrefixLen(s string, j int) int {
	for n := 0; n <= 2 && j+n < len(s); n++ {
		if c := s[j+n]; c == '\'' || c == '"' {
			if validPrefix(s[j : j+n]) {
				return n
			}
			return -1
		}
	}
	return -1
}

func validPrefix(p string) bool {
	switch strings.ToLower(p) {
	case "", "b", "r", "u", "f", "br", "rb", "fr", "rf":
		return true
	}
	return false
}

func isTripleOpener(tok string) bool {
	if len(tok) < 3 {
		return false
	}
	q := tok[len(tok)-3:]
	return (q == "'''" || q == `"""`) && validPrefix(tok[:len(tok)-3])
}

func isSingleQuoted(tok string) bool {
	for n := 0; n <= 2 && n < len(tok); n++ {
		if c := tok[n]; c == '\'' || c == '"' {
			return validPrefix(tok[:n])
		}
	}
	return false
}

// matchStringEnd finds the end of a string that continues at line[j:],
// closed by quote (one or three characters), like tokenize's endpats. It
// returns the index after the closing quote, or -1.
func matchStringEnd(line string, j int, quote string) int {
	q := quote[0]
	for k := j; k < len(line); {
		c := line[k]
		switch {
		case c == '\\':
			if k+1 >= len(line) || line[k+1] == '\n' {
				return -1
			}
			k += 2
		case c == q:
			if len(quote) == 1 {
				return k + 1
			}
			if strings.HasPrefix(line[k:], quote) {
				return k + 3
			}
			k++
		default:
			k++
		}
	}
	return -1
}

var exactOps = []string{
	"**=", "...", "//=", "<<=", ">>=",
	"!=", "%=", "&=", "**", "*=", "+=", "-=", "->", "//", "/=", ":=", "<<", "<=", "==", ">=", ">>", "@=", "^=", "|=",
	"%", "&", "(", ")", "*", "+", ",", "-", ".", "/", ":", ";", "<", "=", ">", "@", "[", "]", "^", "{", "|", "}", "~",
}

// pseudoMatch is tokenize's PseudoToken regular expression at line[pos:]:
// whitespace, then the first of PseudoExtras, Number, Funny, ContStr, Name.
func pseudoMatch(line string, pos int) (start, end int, ok bool) {
	j := pos
	for j < len(line) && (line[j] == ' ' || line[j] == '\f' || line[j] == '\t') {
		j++
	}
	rest := line[j:]
	switch {
	case strings.HasPrefix(rest, "\\\n"):
		return j, j + 2, true
	case strings.HasPrefix(rest, "\\\r\n"):
		return j, j + 3, true
	case rest == "":
		return j, j, true
	case rest[0] == '#':
		e := strings.IndexAny(rest, "\r\n")
		if e < 0 {
			e = len(rest)
		}
		return j, j + e, true
	}
	if n := stringPrefixLen(line, j); n >= 0 && j+n+3 <= len(line) {
		q := line[j+n]
		if line[j+n+1] == q && line[j+n+2] == q {
			return j, j + n + 3, true
		}
	}
	if e := matchNumber(line, j); e > j {
		return j, e, true
	}
	if strings.HasPrefix(rest, "\r\n") {
		return j, j + 2, true
	}
	if rest[0] == '\n' {
		return j, j + 1, true
	}
	for _, op := range exactOps {
		if strings.HasPrefix(rest, op) {
			return j, j + len(op), true
		}
	}
	if e := matchContStr(line, j); e > 0 {
		return j, e, true
	}
	e := j
	for e < len(line) {
		r, size := utf8.DecodeRuneInString(line[e:])
		if !(r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)) {
			break
		}
		e += size
	}
	if e > j {
		return j, e, true
	}
	return 0, 0, false
}

// matchContStr is tokenize's ContStr: a one-line string, or one continued by
// a backslash at the end of the line.
func matchContStr(line string, j int) int {
	n := stringPrefixLen(line, j)
	if n < 0 {
		return -1
	}
	q := line[j+n]
	for k := j + n + 1; k < len(line); {
		c := line[k]
		switch {
		case c == q:
			return k + 1
		case c == '\n':
			return -1
		case c == '\\':
			if strings.HasPrefix(line[k+1:], "\n") {
				return k + 2
			}
			if strings.HasPrefix(line[k+1:], "\r\n") {
				return k + 3
			}
			if k+1 >= len(line) {
				return -1
			}
			_, size := utf8.DecodeRuneInString(line[k+1:])
			k += 1 + size
		default:
			k++
		}
	}
	return -1
}

// digitPart matches [0-9](?:_?[0-9])* at j; it returns the end, or -1.
func digitPart(s string, j int) int {
	if j >= len(s) || !isDigit(int(s[j])) {
		return -1
	}
	j++
	for {
		if j < len(s) && isDigit(int(s[j])) {
			j++
		} else if j+1 < len(s) && s[j] == '_' && isDigit(int(s[j+1])) {
			j += 2
		} else {
			return j
		}
	}
}

func exponentPart(s string, j int) int {
	if j >= len(s) || (s[j] != 'e' && s[j] != 'E') {
		return -1
	}
	j++
	if j < len(s) && (s[j] == '+' || s[j] == '-') {
		j++
	}
	return digitPart(s, j)
}

func floatNumber(s string, j int) int {
	// Pointfloat: digitpart '.' [digitpart] | '.' digitpart, then [exponent]
	e := -1
	if d := digitPart(s, j); d >= 0 && d < len(s) && s[d] == '.' {
		e = d + 1
		if f := digitPart(s, e); f >= 0 {
			e = f
		}
	} else if j < len(s) && s[j] == '.' {
		e = digitPart(s, j+1)
	}
	if e >= 0 {
		if x := exponentPart(s, e); x >= 0 {
			e = x
		}
		return e
	}
	// Expfloat: digitpart exponent
	if d := digitPart(s, j); d >= 0 {
		return exponentPart(s, d)
	}
	return -1
}

func radixPart(s string, j int, valid func(byte) bool) int {
	e := j
	for {
		if e < len(s) && valid(s[e]) {
			e++
		} else if e+1 < len(s) && s[e] == '_' && valid(s[e+1]) {
			e += 2
		} else {
			break
		}
	}
	if e == j {
		return -1
	}
	return e
}

// matchNumber is tokenize's Number pattern (Imagnumber | Floatnumber |
// Intnumber) at j; it returns the end, or -1.
func matchNumber(s string, j int) int {
	isJ := func(e int) bool { return e >= 0 && e < len(s) && (s[e] == 'j' || s[e] == 'J') }
	if d := digitPart(s, j); isJ(d) {
		return d + 1
	}
	if f := floatNumber(s, j); isJ(f) {
		return f + 1
	}
	if f := floatNumber(s, j); f >= 0 {
		return f
	}
	if j+1 < len(s) && s[j] == '0' {
		var valid func(byte) bool
		switch s[j+1] {
		case 'x', 'X':
			valid = func(c byte) bool { return isXDigit(int(c)) }
		case 'b', 'B':
			valid = func(c byte) bool { return c == '0' || c == '1' }
		case 'o', 'O':
			valid = func(c byte) bool { return c >= '0' && c <= '7' }
		}
		if valid != nil {
			if e := radixPart(s, j+2, valid); e >= 0 {
				return e
			}
		}
	}
	// Decnumber: 0(?:_?0)* | [1-9](?:_?[0-9])*
	if j < len(s) && s[j] == '0' {
		e := j + 1
		for {
			if e < len(s) && s[e] == '0' {
				e++
			} else if e+1 < len(s) && s[e] == '_' && s[e+1] == '0' {
				e += 2
			} else {
				return e
			}
		}
	}
	return digitPart(s, j)
}

// untokenize follows tokenize.Untokenizer.untokenize for full tokens, and
// records where each byte of its output comes from.
func untokenize(toks []pyTok, src string) (string, []int) {
	var out strings.Builder
	var offs []int
	write := func(s string, off, limit int) {
		out.WriteString(s)
		for k := 0; k < len(s); k++ {
			o := off + k
			if o > limit {
				o = limit
			}
			offs = append(offs, o)
		}
	}
	prevRow, prevCol, prevOff := 1, 0, 0
	var indents []string
	startline := false
	addWhitespace := func(row, col, off int) {
		if rowOffset := row - prevRow; rowOffset > 0 {
			write(strings.Repeat("\\\n", rowOffset), prevOff, off)
			prevCol = 0
		}
		if colOffset := col - prevCol; colOffset > 0 {
			write(strings.Repeat(" ", colOffset), prevOff, off)
		}
	}
	for _, t := range toks {
		switch t.typ {
		case pyEnd:
			offs = append(offs, len(src))
			return out.String(), offs
		case pyIndent:
			indents = append(indents, t.str)
			continue
		case pyDedent:
			if len(indents) > 0 {
				indents = indents[:len(indents)-1]
			}
			prevRow, prevCol = t.erow, t.ecol
			continue
		case pyNewline, pyNL:
			startline = true
		default:
			if startline && len(indents) > 0 {
				indent := indents[len(indents)-1]
				if t.scol >= len(indent) {
					write(indent, t.off-t.scol, t.off)
					prevCol = len(indent)
				}
				startline = false
			}
		}
		addWhitespace(t.srow, t.scol, t.off)
		if strings.HasPrefix(t.str, "_") && t.typ == pyName && len(t.str) > 1 && pyKeywords[t.str[1:]] {
			// a rewritten keyword: the "_" maps to the keyword's start
			write("_", t.off, t.off)
			write(t.str[1:], t.off, len(src))
		} else {
			write(t.str, t.off, len(src))
		}
		prevRow, prevCol = t.erow, t.ecol
		prevOff = t.offEnd
		if t.typ == pyNewline || t.typ == pyNL {
			prevRow++
			prevCol = 0
		}
	}
	offs = append(offs, len(src))
	return out.String(), offs
}
