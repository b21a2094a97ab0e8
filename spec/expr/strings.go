package expr

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// String literals: prefixes, escapes, concatenation and f-strings, with the
// errors CPython 3.11 raises for them (Parser/string_parser.c).

type strToken struct {
	bytes, raw, f bool
	body          string
	bodyPos       int // offset of the body in the parser input
}

func splitString(t *token) strToken {
	var st strToken
	i := 0
	for ; i < len(t.text) && t.text[i] != '\'' && t.text[i] != '"'; i++ {
		switch t.text[i] {
		case 'b', 'B':
			st.bytes = true
		case 'r', 'R':
			st.raw = true
		case 'f', 'F':
			st.f = true
		}
	}
	q := 1
	if len(t.text)-i >= 6 && t.text[i+1] == t.text[i] && t.text[i+2] == t.text[i] {
		q = 3
	}
	st.body = t.text[i+q : len(t.text)-q]
	st.bodyPos = t.pos + i + q
	return st
}

// strings: STRING+ — adjacent literals are concatenated.
func (p *parser) strings() node {
	pos := p.pos()
	var toks []*token
	for p.tok().kind == tkString {
		toks = append(toks, &p.toks[p.i])
		p.advance()
	}
	if p.hard != nil {
		return nil
	}
	var sb strings.Builder
	var raws []string
	var exprs []node
	bytesMode, isF := false, false
	for i, t := range toks {
		st := splitString(t)
		raws = append(raws, t.text)
		var val string
		if st.bytes {
			for k := 0; k < len(st.body); k++ {
				if st.body[k] >= 0x80 {
					return p.raiseAlways(t.pos, "bytes can only contain ASCII literal characters")
				}
			}
		}
		if !st.f {
			var msg string
			switch {
			case st.raw:
				val = st.body
			case st.bytes:
				val, msg = decodeBytes(st.body)
			default:
				val, msg = decodeUnicode(st.body)
			}
			if msg != "" {
				return p.raiseAlways(t.pos, msg)
			}
		}
		if i != 0 && bytesMode != st.bytes {
			return p.raiseAlways(t.pos, "cannot mix bytes and nonbytes literals")
		}
		bytesMode = st.bytes
		if st.f {
			isF = true
			if !p.fstring(st, t, &exprs) {
				return nil
			}
		} else {
			sb.WriteString(val)
		}
	}
	if isF {
		return &joinedStr{base: p.mkList(pos, exprs), raw: raws, exprs: exprs}
	}
	kind := cStr
	if bytesMode {
		kind = cBytes
	}
	return &constant{base: p.mk(pos), kind: kind, s: sb.String()}
}

// escapeBuffer prepares a str literal body the way CPython does before
// decoding escapes: non-ASCII characters become \UXXXXXXXX escapes, so error
// positions count them as 10 bytes each.
func escapeBuffer(body string) string {
	var b strings.Builder
	for i := 0; i < len(body); {
		if body[i] == '\\' {
			b.WriteByte('\\')
			i++
			if i >= len(body) || body[i] >= 0x80 {
				b.WriteString("u005c")
				if i >= len(body) {
					break
				}
			}
		}
		if body[i] >= 0x80 {
			for i < len(body) && body[i] >= 0x80 {
				r, size := utf8.DecodeRuneInString(body[i:])
				fmt.Fprintf(&b, "\\U%08x", r)
				i += size
			}
			continue
		}
		b.WriteByte(body[i])
		i++
	}
	return b.String()
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decodeUnicode decodes the escapes of a (non-raw) str literal body. On error
// it returns CPython's message.
func decodeUnicode(body string) (string, string) {
	if strings.IndexByte(body, '\\') < 0 {
		return body, ""
	}
	buf := escapeBuffer(body)
	var out strings.Builder
	fail := func(start, end int, msg string) (string, string) {
		return "", fmt.Sprintf("(unicode error) 'unicodeescape' codec can't decode bytes in position %d-%d: %s", start, end-1, msg)
	}
	for k := 0; k < len(buf); {
		c := buf[k]
		if c != '\\' {
			out.WriteByte(c)
			k++
			continue
		}
		start := k
		k++
		if k >= len(buf) {
			return fail(start, k, "\\ at end of string")
		}
		c = buf[k]
		k++
		switch c {
		case '\n':
		case '\\', '\'', '"':
			out.WriteByte(c)
		case 'b':
			out.WriteByte('\b')
		case 'f':
			out.WriteByte('\f')
		case 't':
			out.WriteByte('\t')
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 'v':
			out.WriteByte('\v')
		case 'a':
			out.WriteByte('\a')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 0; n < 2 && k < len(buf) && buf[k] >= '0' && buf[k] <= '7'; n++ {
				v = v*8 + int(buf[k]-'0')
				k++
			}
			out.WriteRune(rune(v))
		case 'x', 'u', 'U':
			count, msg := 2, "truncated \\xXX escape"
			if c == 'u' {
				count, msg = 4, "truncated \\uXXXX escape"
			} else if c == 'U' {
				count, msg = 8, "truncated \\UXXXXXXXX escape"
			}
			v := 0
			for ; count > 0; count-- {
				if k >= len(buf) || hexVal(buf[k]) < 0 {
					return fail(start, k, msg)
				}
				v = v<<4 + hexVal(buf[k])
				k++
			}
			if v > utf8.MaxRune {
				return fail(start, k, "illegal Unicode character")
			}
			out.WriteRune(rune(v))
		case 'N':
			// \N{NAME}: Go has no Unicode name table, so any well-formed
			// name is accepted and kept as written.
			if k < len(buf) && buf[k] == '{' {
				k++
				nameStart := k
				for k < len(buf) && buf[k] != '}' {
					k++
				}
				if k < len(buf) && k > nameStart {
					k++
					out.WriteString(buf[start:k])
					continue
				}
			}
			return fail(start, k, "malformed \\N character escape")
		default:
			out.WriteByte('\\')
			out.WriteByte(c)
		}
	}
	return out.String(), ""
}

// decodeBytes decodes the escapes of a (non-raw) bytes literal body.
func decodeBytes(body string) (string, string) {
	if strings.IndexByte(body, '\\') < 0 {
		return body, ""
	}
	var out []byte
	for k := 0; k < len(body); {
		c := body[k]
		if c != '\\' {
			out = append(out, c)
			k++
			continue
		}
		start := k
		k++
		if k >= len(body) {
			return "", "(value error) Trailing \\ in string"
		}
		c = body[k]
		k++
		switch c {
		case '\n':
		case '\\', '\'', '"':
			out = append(out, c)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 't':
			out = append(out, '\t')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'v':
			out = append(out, '\v')
		case 'a':
			out = append(out, '\a')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 0; n < 2 && k < len(body) && body[k] >= '0' && body[k] <= '7'; n++ {
				v = v*8 + int(body[k]-'0')
				k++
			}
			out = append(out, byte(v))
		case 'x':
			if k+1 < len(body) && hexVal(body[k]) >= 0 && hexVal(body[k+1]) >= 0 {
				out = append(out, byte(hexVal(body[k])<<4|hexVal(body[k+1])))
				k += 2
				continue
			}
			return "", fmt.Sprintf("(value error) invalid \\x escape at position %d", start)
		default:
			out = append(out, '\\', c)
		}
	}
	return string(out), ""
}

// ---- f-strings -----------------------------------------------------------

// fstring checks an f-string's body, parsing its replacement fields, and
// reports false after raising an error.
func (p *parser) fstring(st strToken, t *token, exprs *[]node) bool {
	fs := &fstringScanner{p: p, body: st.body, raw: st.raw, t: t, bodyPos: st.bodyPos, exprs: exprs}
	_, ok := fs.parse(0, 0)
	return ok
}

type fstringScanner struct {
	p       *parser
	body    string
	raw     bool
	t       *token
	bodyPos int
	exprs   *[]node
}

func (fs *fstringScanner) fail(i int, msg string) (int, bool) {
	if i > len(fs.body) {
		i = len(fs.body)
	}
	fs.p.raiseAlways(fs.bodyPos+i, msg)
	return 0, false
}

// parse scans literal text and replacement fields from i, at nesting level
// lvl (0 for the f-string itself, 1 for a format spec).
func (fs *fstringScanner) parse(i, lvl int) (int, bool) {
	for {
		j, doubled, ok := fs.literal(i, lvl)
		if !ok {
			return 0, false
		}
		i = j
		if doubled {
			continue
		}
		if i >= len(fs.body) || fs.body[i] == '}' {
			break
		}
		if i, ok = fs.field(i, lvl); !ok {
			return 0, false
		}
	}
	if lvl != 0 && (i >= len(fs.body) || fs.body[i] != '}') {
		return fs.fail(i, "f-string: expecting '}'")
	}
	return i, true
}

// literal scans literal text up to a brace. doubled reports "{{" or "}}",
// after which scanning goes on.
func (fs *fstringScanner) literal(i, lvl int) (int, bool, bool) {
	b := fs.body
	s := i
	doubled := false
	for s < len(b) {
		ch := b[s]
		s++
		if !fs.raw && ch == '\\' && s < len(b) {
			ch = b[s]
			s++
			if ch == 'N' {
				if s < len(b) {
					c := b[s]
					s++
					if c == '{' {
						for s < len(b) {
							c2 := b[s]
							s++
							if c2 == '}' {
								break
							}
						}
					}
				}
				continue
			}
		}
		if ch == '{' || ch == '}' {
			if lvl == 0 {
				if s < len(b) && b[s] == ch {
					doubled = true
					break
				}
				if ch == '}' {
					_, ok := fs.fail(s-1, "f-string: single '}' is not allowed")
					return 0, false, ok
				}
			}
			s--
			break
		}
	}
	if !fs.raw && s > i {
		if _, msg := decodeUnicode(b[i:s]); msg != "" {
			_, ok := fs.fail(i, msg)
			return 0, false, ok
		}
	}
	if doubled {
		s++
	}
	return s, doubled, true
}

// field scans a replacement field starting at its '{'.
func (fs *fstringScanner) field(i, lvl int) (int, bool) {
	b := fs.body
	if lvl >= 2 {
		return fs.fail(i, "f-string: expressions nested too deeply")
	}
	i++
	exprStart := i
	var quote byte
	strType := 0
	var stack []byte
	for ; i < len(b); i++ {
		ch := b[i]
		if ch == '\\' {
			return fs.fail(i, "f-string expression part cannot include a backslash")
		}
		if quote != 0 {
			if ch == quote {
				if strType == 3 {
					if i+2 < len(b) && b[i+1] == ch && b[i+2] == ch {
						i += 2
						strType, quote = 0, 0
					}
				} else {
					strType, quote = 0, 0
				}
			}
			continue
		}
		switch {
		case ch == '\'' || ch == '"':
			if i+2 < len(b) && b[i+1] == ch && b[i+2] == ch {
				strType = 3
				i += 2
			} else {
				strType = 1
			}
			quote = ch
		case ch == '[' || ch == '{' || ch == '(':
			if len(stack) >= maxParenLevel {
				return fs.fail(i, "f-string: too many nested parenthesis")
			}
			stack = append(stack, ch)
		case ch == '#':
			return fs.fail(i, "f-string expression part cannot include '#'")
		case len(stack) == 0 && strings.IndexByte("!:}=<>", ch) >= 0:
			if i+1 < len(b) {
				next := b[i+1]
				if next == '=' && (ch == '!' || ch == '=' || ch == '<' || ch == '>') {
					i++
					continue
				}
			}
			if ch == '<' || ch == '>' {
				continue
			}
			goto exprEnd
		case ch == ']' || ch == '}' || ch == ')':
			if len(stack) == 0 {
				return fs.fail(i, fmt.Sprintf("f-string: unmatched '%c'", ch))
			}
			open := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !(open == '(' && ch == ')' || open == '[' && ch == ']' || open == '{' && ch == '}') {
				return fs.fail(i, fmt.Sprintf("f-string: closing parenthesis '%c' does not match opening parenthesis '%c'", ch, open))
			}
		}
	}
exprEnd:
	if quote != 0 {
		return fs.fail(i, "f-string: unterminated string")
	}
	if len(stack) > 0 {
		return fs.fail(i, fmt.Sprintf("f-string: unmatched '%c'", stack[len(stack)-1]))
	}
	if i >= len(b) {
		return fs.fail(i, "f-string: expecting '}'")
	}
	if !fs.compile(exprStart, i) {
		return 0, false
	}
	if b[i] == '=' {
		i++
		for i < len(b) && strings.IndexByte(" \t\n\r\f\v", b[i]) >= 0 {
			i++
		}
		if i >= len(b) {
			return fs.fail(i, "f-string: expecting '}'")
		}
	}
	if b[i] == '!' {
		i++
		if i >= len(b) {
			return fs.fail(i, "f-string: expecting '}'")
		}
		conv := b[i]
		i++
		if conv != 's' && conv != 'r' && conv != 'a' {
			return fs.fail(i, "f-string: invalid conversion character: expected 's', 'r', or 'a'")
		}
	}
	if i < len(b) && b[i] == ':' {
		i++
		if i >= len(b) {
			return fs.fail(i, "f-string: expecting '}'")
		}
		var ok bool
		if i, ok = fs.parse(i, lvl+1); !ok {
			return 0, false
		}
	}
	if i >= len(b) || b[i] != '}' {
		return fs.fail(i, "f-string: expecting '}'")
	}
	return i + 1, true
}

// compile parses the expression of a replacement field, as CPython does:
// wrapped in parentheses, with "f-string: " before parser errors.
func (fs *fstringScanner) compile(start, end int) bool {
	src := fs.body[start:end]
	if strings.Trim(src, " \t\n\f") == "" {
		if c := fs.body[end]; c == '!' || c == ':' || c == '=' {
			fs.fail(end, fmt.Sprintf("f-string: expression required before '%c'", c))
		} else {
			fs.fail(end, "f-string: empty expression not allowed")
		}
		return false
	}
	n, se := parseText("("+src+")", true)
	if se != nil {
		se.Line += fs.t.line - 1 + strings.Count(fs.body[:start], "\n")
		se.Offset = fs.bodyPos + start + se.Offset - 1
		if se.Offset < fs.bodyPos {
			se.Offset = fs.bodyPos
		}
		fs.p.raiseErr(se)
		return false
	}
	*fs.exprs = append(*fs.exprs, n)
	return true
}
