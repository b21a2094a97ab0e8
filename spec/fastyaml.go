package spec

import (
	"bytes"
	"strings"
)

// The quick reader: most of a large valohai.yaml is block mappings and lists
// of one-line scalars (`name: train`, `- name: lr`). For a chunk written only
// that way, sluice builds the values itself, without the YAML reader's
// tokens, events and node tree, which are most of the time and memory of
// reading. Anything else in the chunk (flow collections, anchors, tags,
// block or multi-line scalars, escapes, tabs, empty values, non-ASCII text,
// keys or scalars that begin with an indicator) makes it give up on the
// chunk, which the YAML reader then reads. What it accepts it reads as the
// YAML reader and the converter together do: the same values, positions and
// findings (TestQuickReaderMatches and FuzzQuickReader check that).

// qline is one line of content: its number in the file, its indentation and
// its text after the indentation, trailing spaces removed.
type qline struct {
	num, indent int
	text        string
}

type quick struct {
	c     *converter
	lines []qline
	i     int
	ok    bool
}

// quickItems reads a chunk of whole top-level items starting at line first of
// the file, or returns false when the chunk is not written in the plain way
// the quick reader knows. Findings go to c.r only when it succeeds.
func quickItems(c *converter, data []byte, first int) ([]*Value, Pos, bool) {
	q := &quick{c: c, ok: true}
	for num, start := first, 0; start < len(data); num++ {
		end := bytes.IndexByte(data[start:], '\n')
		next := len(data)
		if end >= 0 {
			next = start + end + 1
			end += start
		} else {
			end = len(data)
		}
		line := string(data[start:end])
		start = next
		for i := 0; i < len(line); i++ {
			if b := line[i]; b == '\t' || b == '\r' || b >= 0x80 || b < 0x20 || b == 0x7f {
				return nil, Pos{}, false
			}
		}
		text := strings.TrimLeft(line, " ")
		if text == "" || text[0] == '#' {
			continue
		}
		q.lines = append(q.lines, qline{num: num, indent: len(line) - len(text), text: strings.TrimRight(text, " ")})
	}
	if len(q.lines) == 0 || q.lines[0].indent != 0 || !isEntry(q.lines[0].text) {
		return nil, Pos{}, false
	}
	// Findings wait in a reporter of their own until the chunk is read.
	real, total := c.r, c.total
	c.r = &reporter{file: real.file, ctx: real.ctx}
	defer func() { c.r = real }()
	seq := q.seq(0, 1)
	c.total-- // the top-level list is counted once, at the end of the file
	if !q.ok || q.i != len(q.lines) || c.total > maxValues {
		c.total = total
		return nil, Pos{}, false
	}
	real.merge(c.r)
	return seq.Items, seq.Pos, true
}

func isEntry(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func (q *quick) fail() *Value {
	q.ok = false
	return &Value{Kind: KindNull}
}

func (q *quick) peek() (qline, bool) {
	if !q.ok || q.i >= len(q.lines) {
		return qline{}, false
	}
	return q.lines[q.i], true
}

// block reads the value that starts at the next line, indented at least min.
func (q *quick) block(min, depth int) *Value {
	l, ok := q.peek()
	if !ok || l.indent < min {
		return q.fail()
	}
	if isEntry(l.text) {
		return q.seq(l.indent, depth)
	}
	return q.mapping(l.indent, depth)
}

// seq reads a block list whose entries are at column indent.
func (q *quick) seq(indent, depth int) *Value {
	if depth > maxDepth {
		return q.fail()
	}
	first := q.lines[q.i]
	v := &Value{Kind: KindList, Pos: Pos{Line: first.num, Col: indent + 1}}
	for {
		l, ok := q.peek()
		if !ok || l.indent < indent {
			break
		}
		if l.indent > indent {
			return q.fail()
		}
		if !isEntry(l.text) {
			break // the mapping that holds the list goes on
		}
		if l.text == "-" {
			return q.fail() // an empty entry, or one whose value starts below
		}
		rest := strings.TrimLeft(l.text[2:], " ")
		col := indent + len(l.text) - len(rest)
		if isEntry(rest) || rest == "" {
			return q.fail()
		}
		if _, _, isKey := splitKey(rest); isKey && !strings.ContainsRune("[{'\"", rune(rest[0])) {
			// `- key: value`: a mapping whose keys are at col.
			q.lines[q.i] = qline{num: l.num, indent: col, text: rest}
			v.Items = append(v.Items, q.mapping(col, depth+1))
		} else {
			q.i++
			v.Items = append(v.Items, q.scalar(rest, l.num, col+1))
			if next, ok := q.peek(); ok && next.indent > indent {
				return q.fail() // a scalar that goes on below
			}
		}
		if !q.ok {
			return v
		}
	}
	q.c.total++
	return v
}

// mapping reads a block mapping whose keys are at column indent, as the
// converter builds one (duplicate keys: the last wins, with a warning).
func (q *quick) mapping(indent, depth int) *Value {
	if depth > maxDepth {
		return q.fail()
	}
	first := q.lines[q.i]
	v := &Value{Kind: KindMap, Pos: Pos{Line: first.num, Col: indent + 1}}
	var pairs []Pair
	keys := pairSet{}
	for {
		l, ok := q.peek()
		if !ok || l.indent < indent {
			break
		}
		if l.indent > indent {
			return q.fail()
		}
		if isEntry(l.text) {
			break
		}
		keyText, value, isKey := splitKey(l.text)
		if !isKey || !quickKey(keyText) {
			return q.fail()
		}
		key := q.plain(keyText, l.num, indent+1)
		q.i++
		var val *Value
		if value == "" {
			// The value is the block below: more indented, or a list at
			// the key's own column.
			next, ok := q.peek()
			switch {
			case ok && next.indent > indent:
				val = q.block(next.indent, depth+1)
			case ok && next.indent == indent && isEntry(next.text):
				val = q.seq(indent, depth+1)
			default:
				return q.fail() // an empty value
			}
		} else {
			col := indent + len(l.text) - len(value) + 1
			val = q.scalar(value, l.num, col)
			if next, ok := q.peek(); ok && next.indent > indent {
				return q.fail()
			}
		}
		if !q.ok {
			return v
		}
		pairs, keys = q.addPair(pairs, keys, key, val)
	}
	v.Pairs = pairs
	q.c.total++
	return v
}

// addPair adds a key and its value to a mapping's pairs as the converter
// does: a repeated key replaces the earlier value, with a warning.
func (q *quick) addPair(pairs []Pair, keys pairSet, key, val *Value) ([]Pair, pairSet) {
	if len(pairs) == pairSetScan && keys.idx == nil {
		keys = newPairSet(pairSetScan + 1)
		for i, p := range pairs {
			keys.add(p.Key, i)
		}
	}
	if j := keys.find(pairs, key); j >= 0 {
		q.c.r.warnf(key.Pos, "", "duplicate key %s: the value on line %d is ignored and this one is used (as Valohai does)", key.Repr(), pairs[j].Key.Pos.Line)
		pairs[j].Value = val
		return pairs, keys
	}
	keys.add(key, len(pairs))
	return append(pairs, Pair{Key: key, Value: val}), keys
}

// flow reads a one-line flow list or mapping of scalars ([a, b], {k: v}),
// with nothing after it but a comment.
func (q *quick) flow(text string, num, col int) *Value {
	open := text[0]
	end := byte(']')
	v := &Value{Kind: KindList, Pos: Pos{Line: num, Col: col}, Items: []*Value{}}
	if open == '{' {
		end = '}'
		v = &Value{Kind: KindMap, Pos: Pos{Line: num, Col: col}}
	}
	var pairs []Pair
	keys := pairSet{}
	i := skipSpaces(text, 1)
	if i < len(text) && text[i] == end {
		i++
	} else {
		for {
			var key *Value
			if open == '{' {
				j := i
				for j < len(text) && text[j] != ':' && text[j] != ',' && text[j] != end {
					j++
				}
				if j+1 >= len(text) || text[j] != ':' || text[j+1] != ' ' || !quickKey(text[i:j]) {
					return q.fail()
				}
				key = q.plain(text[i:j], num, col+i)
				i = skipSpaces(text, j+1)
			}
			item, next := q.flowScalar(text, i, end, num, col)
			if !q.ok {
				return v
			}
			if open == '{' {
				pairs, keys = q.addPair(pairs, keys, key, item)
			} else {
				v.Items = append(v.Items, item)
			}
			i = skipSpaces(text, next)
			if i >= len(text) {
				return q.fail()
			}
			if text[i] == end {
				i++
				break
			}
			if text[i] != ',' {
				return q.fail()
			}
			if i = skipSpaces(text, i+1); i >= len(text) || text[i] == end {
				return q.fail() // a trailing comma
			}
		}
	}
	if rest := text[i:]; rest != "" && !strings.HasPrefix(rest, " ") || strings.TrimLeft(rest, " ") != "" && !strings.HasPrefix(strings.TrimLeft(rest, " "), "#") {
		return q.fail()
	}
	if open == '{' {
		v.Pairs = pairs
	}
	q.c.total++
	return v
}

// flowScalar reads the scalar at text[i:] inside a flow collection that
// ends with end, and returns where it stops.
func (q *quick) flowScalar(text string, i int, end byte, num, col int) (*Value, int) {
	if i >= len(text) {
		return q.fail(), i
	}
	if c := text[i]; c == '\'' || c == '"' {
		j := strings.IndexByte(text[i+1:], c)
		if j < 0 {
			return q.fail(), i
		}
		body := text[i+1 : i+1+j]
		if c == '"' && strings.ContainsRune(body, '\\') {
			return q.fail(), i
		}
		q.c.total++
		return &Value{Kind: KindString, Str: body, Pos: Pos{Line: num, Col: col + i}, Text: body}, i + j + 2
	}
	j := i
	for j < len(text) && text[j] != ',' && text[j] != end {
		switch text[j] {
		case ':', '#', '?', '[', ']', '{', '}':
			return q.fail(), j
		}
		j++
	}
	return q.plain(strings.TrimRight(text[i:j], " "), num, col+i), j
}

func skipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

// splitKey splits `key: value` (or `key:`) at the first colon that ends the
// key; value has its comment removed.
func splitKey(text string) (key, value string, ok bool) {
	for i := 0; i < len(text); i++ {
		if text[i] != ':' {
			continue
		}
		if i+1 == len(text) {
			return text[:i], "", true
		}
		if text[i+1] == ' ' {
			value = strings.TrimLeft(text[i+1:], " ")
			if strings.HasPrefix(value, "#") {
				value = ""
			}
			return text[:i], value, true
		}
	}
	return "", "", false
}

// quickKey reports whether a key is one the quick reader reads: letters,
// digits and _ . / - (not first), and short (YAML takes a key without a ?
// to be at most 1024 characters long).
func quickKey(k string) bool {
	if k == "" || len(k) > 1000 {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_':
		case (b == '.' || b == '/' || b == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// scalar reads a one-line scalar at line num, column col: plain, or quoted
// without escapes, with an optional comment after it.
func (q *quick) scalar(text string, num, col int) *Value {
	switch text[0] {
	case '[', '{':
		return q.flow(text, num, col)
	case '\'', '"':
		end := strings.IndexByte(text[1:], text[0])
		if end < 0 {
			return q.fail()
		}
		body := text[1 : end+1]
		if text[0] == '"' && strings.ContainsRune(body, '\\') {
			return q.fail()
		}
		if after := text[end+2:]; after != "" && !strings.HasPrefix(strings.TrimLeft(after, " "), "#") || strings.HasPrefix(after, "#") {
			return q.fail()
		}
		q.c.total++
		return &Value{Kind: KindString, Str: body, Pos: Pos{Line: num, Col: col}, Text: body}
	}
	if i := strings.Index(text, " #"); i >= 0 {
		text = strings.TrimRight(text[:i], " ")
	}
	return q.plain(text, num, col)
}

// plain reads a plain scalar as the converter does.
func (q *quick) plain(text string, num, col int) *Value {
	if text == "" || strings.Contains(text, ": ") || strings.HasSuffix(text, ":") || strings.Contains(text, " #") {
		return q.fail()
	}
	switch c := text[0]; c {
	case '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return q.fail()
	case '-':
		if len(text) == 1 || !(text[1] >= '0' && text[1] <= '9' || text[1] == '.') {
			return q.fail()
		}
	}
	v, err := resolveYAML11(text)
	if err != nil {
		return q.fail() // the YAML reader's path reports it
	}
	v.Pos, v.Text, v.Plain = Pos{Line: num, Col: col}, text, true
	q.c.total++
	return v
}
