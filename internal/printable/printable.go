// Package printable keeps text that comes from a pipeline file, a step or the
// store from forging sluice's own output: a name with a newline, a carriage
// return or an escape sequence in it would otherwise print lines of its own,
// move the cursor or recolour the terminal.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Plain reports whether s prints as itself: valid UTF-8 with no control,
// format or separator characters (strconv.IsPrint, or a space).
func Plain(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !strconv.IsPrint(r) {
			return false
		}
		i += n
	}
	return true
}

// Name returns a name as it should be printed: itself when it is Plain,
// else quoted with Go's escapes ("a\nb"), so that it stays on one line and
// shows what it holds.
func Name(s string) string {
	if Plain(s) {
		return s
	}
	return strconv.Quote(s)
}

// Escape returns s with each character that is not Plain written as its
// Go escape (\n, \x1b, \u202e), for text that is not one name, such as a
// path of keys.
func Escape(s string) string {
	if Plain(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		if chunk := s[i : i+n]; Plain(chunk) {
			b.WriteString(chunk)
		} else {
			q := strconv.Quote(chunk)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// Arg wraps s for a fmt argument: with %s and %v it prints as Name(s), with
// %q as strconv.Quote(s), as for any string.
type Arg string

// Format implements fmt.Formatter.
func (a Arg) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = f.Write([]byte(strconv.Quote(string(a))))
		return
	}
	_, _ = f.Write([]byte(Name(string(a))))
}

// Line returns a line of a step's output as it should be printed after
// sluice's prefix: each C0 control character but tab, and DEL, becomes its
// visible picture (ESC is ␛, CR is ␍, BEL is ␇), and each C1 control
// character a \u escape, so that the line can neither move the cursor,
// overwrite sluice's prefix nor send a terminal escape. A CR that ends the
// line (a CRLF line end) is dropped. Other text, invalid UTF-8 included, is
// kept as it is.
func Line(s string) string {
	s = strings.TrimSuffix(s, "\r")
	if lineClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\t':
			b.WriteByte(c)
			i++
		case c < 0x20:
			b.WriteRune(rune(0x2400 + int(c)))
			i++
		case c == 0x7f:
			b.WriteRune('\u2421')
			i++
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r >= 0x80 && r <= 0x9f {
				b.WriteString(`\u00`)
				b.WriteString(strconv.FormatInt(int64(r), 16))
			} else {
				b.WriteString(s[i : i+n])
			}
			i += n
		}
	}
	return b.String()
}

// lineClean reports whether Line has nothing to change in s.
func lineClean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f || c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f {
			return false
		}
	}
	return true
}
