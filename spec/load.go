package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits that keep loading bounded in time and memory whatever the input.
const (
	// MaxFileSize is the largest pipeline file sluice reads. A 10,000-node
	// pipeline is about 2 MB.
	MaxFileSize = 16 << 20
	// maxValues bounds the number of values after aliases are expanded
	// (a "billion laughs" document is refused, not expanded).
	maxValues = 4_000_000
	// maxDepth bounds nesting.
	maxDepth = 200
)

// Load reads YAML the way Valohai's parser does (YAML 1.1: unquoted yes is a
// boolean, 010 is 8, 2020-09-02 is a date, merge keys work) and returns the
// document with positions. Problems come back as diagnostics naming the file,
// line and column; the value is nil when the file cannot be read as YAML.
func Load(file string, data []byte) (*Value, Diagnostics) {
	r := &reporter{file: file}
	v := load(r, data)
	return v, r.diags
}

func load(r *reporter, data []byte) *Value {
	if !precheck(r, data) {
		return nil
	}
	root := decodeOne(r, data)
	if root == nil {
		return nil
	}
	c := newConverter(r, 0)
	v := c.convert(root, 0)
	if c.failed {
		return nil
	}
	return v
}

// precheck refuses what is not a YAML text file of a size sluice reads,
// before the YAML reader sees it.
func precheck(r *reporter, data []byte) bool {
	if len(data) > MaxFileSize {
		r.errorf(Pos{}, "", "file is %s; sluice reads pipeline files of at most %d MiB", humanBytes(len(data)), MaxFileSize>>20)
		return false
	}
	if i := bytes.IndexByte(data, 0); i >= 0 && !hasUTF16BOM(data) {
		r.errorf(posAt(data, i), "", "this is a binary file (it contains a NUL byte), not a YAML text file")
		return false
	}
	if !hasUTF16BOM(data) && !utf8.Valid(data) {
		i := firstInvalidUTF8(data)
		r.errorf(posAt(data, i), "", "the file is not UTF-8 text (invalid byte 0x%02x); save it as UTF-8", data[i])
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		r.errorf(Pos{Line: 1, Col: 1}, "", "the file is empty; a valohai.yaml is a list of steps, pipelines, tasks and endpoints, e.g. `- step: {name: train, image: python:3.12, command: python train.py}`")
		return false
	}
	return true
}

// posAt gives the line and column of byte offset i, counting characters
// (an invalid byte counts as one).
func posAt(data []byte, i int) Pos {
	start := bytes.LastIndexByte(data[:i], '\n') + 1
	return Pos{Line: bytes.Count(data[:start], []byte("\n")) + 1, Col: utf8.RuneCount(data[start:i]) + 1}
}

// decodeOne reads the file's one YAML document as a node tree, or reports
// why it cannot. The reader stops when the caller's context is done.
func decodeOne(r *reporter, data []byte) *yaml.Node {
	dec := yaml.NewDecoder(&stoppableReader{r: bytes.NewReader(data), rep: r})
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if r.stopped() {
			return nil
		}
		if errors.Is(err, io.EOF) {
			r.errorf(Pos{Line: 1, Col: 1}, "", "the file holds no YAML document (only comments?); a valohai.yaml is a list of steps, pipelines, tasks and endpoints")
			return nil
		}
		reportYAMLError(r, data, err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		r.errorf(Pos{Line: extra.Line, Col: extra.Column}, "", "expected a single YAML document, but found another one here (remove the `---` separator)")
		return nil
	} else if !errors.Is(err, io.EOF) {
		if !r.stopped() {
			reportYAMLError(r, data, err)
		}
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			r.errorf(Pos{Line: 1, Col: 1}, "", "the file holds an empty YAML document")
			return nil
		}
		root = root.Content[0]
	}
	return root
}

// stoppableReader hands the YAML reader its input a piece at a time and
// fails once the caller's context is done, so that reading a large file
// stops on a signal.
type stoppableReader struct {
	r   io.Reader
	rep *reporter
}

func (s *stoppableReader) Read(p []byte) (int, error) {
	if s.rep.stopped() {
		return 0, s.rep.ctx.Err()
	}
	return s.r.Read(p)
}

func hasUTF16BOM(data []byte) bool {
	return bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE})
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return 0
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// reportYAMLError turns a YAML syntax error into a diagnostic with a line and
// column, and a hint about indentation where that is the usual cause.
func reportYAMLError(r *reporter, data []byte, err error) {
	msg := err.Error()
	pos := Pos{}
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		pos.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	line := sourceLine(data, pos.Line)
	if pos.Line > 0 {
		pos.Col = len(line) - len(strings.TrimLeft(line, " \t")) + 1
	}
	hint := ""
	switch {
	case strings.Contains(msg, "mapping values are not allowed"):
		// The colon that YAML could not place: the first `key:` after the first one.
		if i := colonAfterKey(line); i >= 0 {
			pos.Col = utf8.RuneCountInString(line[:i]) + 1
		}
		hint = "; this is usually an indentation error: keys of the same mapping must start in the same column"
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-' indicator"):
		hint = "; check the indentation of this line and the one before it"
	case strings.Contains(msg, "found character that cannot start any token") && strings.Contains(line, "\t"):
		hint = "; YAML does not allow tabs for indentation: use spaces"
	}
	r.errorf(pos, "", "invalid YAML: %s%s", msg, hint)
}

func sourceLine(data []byte, n int) string {
	if n <= 0 {
		return ""
	}
	lines := bytes.SplitN(data, []byte("\n"), n+1)
	if n > len(lines) {
		return ""
	}
	return strings.TrimRight(string(lines[n-1]), "\r")
}

// colonAfterKey finds the mapping colon YAML rejected on a line: the first
// ": " (or ":" at the end) of the line's content.
func colonAfterKey(line string) int {
	for i := 0; i < len(line); i++ {
		if line[i] == ':' && (i+1 == len(line) || line[i+1] == ' ' || line[i+1] == '\t') {
			return i
		}
	}
	return -1
}

type converter struct {
	r      *reporter
	memo   map[*yaml.Node]*Value // anchors already converted
	sizes  map[*Value]int        // logical size of shared values
	total  int
	failed bool
	// lineOff is added to the line of every node: a part of a file read on
	// its own starts at line lineOff+1 of the file.
	lineOff int
}

func newConverter(r *reporter, lineOff int) *converter {
	return &converter{r: r, memo: map[*yaml.Node]*Value{}, sizes: map[*Value]int{}, lineOff: lineOff}
}

func (c *converter) pos(n *yaml.Node) Pos { return Pos{Line: n.Line + c.lineOff, Col: n.Column} }

func (c *converter) fail(n *yaml.Node, format string, args ...any) *Value {
	if !c.failed {
		c.r.errorf(c.pos(n), "", format, args...)
	}
	c.failed = true
	return &Value{Kind: KindNull, Pos: c.pos(n)}
}

func (c *converter) convert(n *yaml.Node, depth int) *Value {
	if c.failed {
		return &Value{Kind: KindNull}
	}
	if depth > maxDepth {
		return c.fail(n, "the YAML is nested more than %d levels deep", maxDepth)
	}
	pos := c.pos(n)
	explicit := n.Style&yaml.TaggedStyle != 0
	var v *Value
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return c.fail(n, "unknown alias *%s", n.Value)
		}
		if v, ok := c.memo[n.Alias]; ok {
			return c.count(n, v)
		}
		return c.convert(n.Alias, depth+1)
	case yaml.ScalarNode:
		v = c.scalar(n, explicit)
		c.total++
	case yaml.SequenceNode:
		if explicit && n.Tag != "!!seq" {
			return c.fail(n, "unsupported YAML tag %s", n.Tag)
		}
		v = &Value{Kind: KindList, Pos: pos, Items: make([]*Value, 0, len(n.Content))}
		for _, item := range n.Content {
			v.Items = append(v.Items, c.convert(item, depth+1))
			if c.failed {
				return v
			}
		}
		c.total++
	case yaml.MappingNode:
		if explicit && n.Tag != "!!map" {
			return c.fail(n, "unsupported YAML tag %s", n.Tag)
		}
		v = c.mapping(n, depth)
		c.total++
	default:
		return c.fail(n, "unexpected YAML node")
	}
	if c.total > maxValues {
		return c.fail(n, "the YAML expands to more than %d values (aliases that multiply?); refusing to expand it", maxValues)
	}
	if n.Anchor != "" {
		c.memo[n] = v
	}
	return v
}

// count charges a reused (aliased) value's full size against the budget, so
// that documents whose aliases multiply are refused before anything walks them.
func (c *converter) count(n *yaml.Node, v *Value) *Value {
	size := c.sizeOf(v)
	c.total += size
	if c.total > maxValues {
		return c.fail(n, "the YAML expands to more than %d values (aliases that multiply?); refusing to expand it", maxValues)
	}
	return v
}

func (c *converter) sizeOf(v *Value) int {
	if s, ok := c.sizes[v]; ok {
		return s
	}
	s := 1
	for _, it := range v.Items {
		s += c.sizeOf(it)
		if s > maxValues {
			break
		}
	}
	for _, p := range v.Pairs {
		s += c.sizeOf(p.Key) + c.sizeOf(p.Value)
		if s > maxValues {
			break
		}
	}
	c.sizes[v] = s
	return s
}

func (c *converter) mapping(n *yaml.Node, depth int) *Value {
	v := &Value{Kind: KindMap, Pos: c.pos(n)}
	if len(n.Content) > 0 {
		v.Pairs = make([]Pair, 0, len(n.Content)/2)
	}
	keys := newPairSet(len(n.Content) / 2)
	var merged []Pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.Tag == "!!merge" && kn.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
			merged = append(merged, c.mergeSources(vn, depth)...)
			continue
		}
		key := c.convert(kn, depth+1)
		if c.failed {
			// What failed has no position; going on would compare it with
			// the keys before it.
			return v
		}
		if key.Kind == KindList || key.Kind == KindMap {
			c.fail(kn, "a list or a mapping cannot be a mapping key")
			return v
		}
		val := c.convert(vn, depth+1)
		if c.failed {
			return v
		}
		if j := keys.find(v.Pairs, key); j >= 0 {
			c.r.warnf(key.Pos, "", "duplicate key %s: the value on line %d is ignored and this one is used (as Valohai does)", key.Repr(), v.Pairs[j].Key.Pos.Line)
			v.Pairs[j].Value = val
			continue
		}
		keys.add(key, len(v.Pairs))
		v.Pairs = append(v.Pairs, Pair{Key: key, Value: val})
	}
	if len(merged) > 0 {
		// Keys written in the mapping win over merged ones.
		out := make([]Pair, 0, len(merged)+len(v.Pairs))
		seen := newPairSet(len(merged))
		for _, p := range merged {
			if keys.find(v.Pairs, p.Key) < 0 && seen.find(out, p.Key) < 0 {
				seen.add(p.Key, len(out))
				out = append(out, p)
			}
		}
		v.Pairs = append(out, v.Pairs...)
	}
	return v
}

// mergeSources returns the pairs a `<<` merge key brings in, the first source
// winning over later ones.
func (c *converter) mergeSources(n *yaml.Node, depth int) []Pair {
	src := n
	if src.Kind == yaml.AliasNode && src.Alias != nil {
		src = src.Alias
	}
	switch src.Kind {
	case yaml.MappingNode:
		m := c.convert(n, depth+1)
		return m.Pairs
	case yaml.SequenceNode:
		var out []Pair
		seen := newPairSet(len(src.Content))
		for _, item := range src.Content {
			target := item
			if target.Kind == yaml.AliasNode && target.Alias != nil {
				target = target.Alias
			}
			if target.Kind != yaml.MappingNode {
				c.fail(item, "a merge key `<<` takes a mapping or a list of mappings, not a %s", nodeKind(target))
				return nil
			}
			m := c.convert(item, depth+1)
			if c.failed {
				return nil
			}
			for _, p := range m.Pairs {
				if seen.find(out, p.Key) < 0 {
					seen.add(p.Key, len(out))
					out = append(out, p)
				}
			}
		}
		return out
	}
	c.fail(n, "a merge key `<<` takes a mapping or a list of mappings, not a %s", nodeKind(src))
	return nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return "scalar"
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "node"
}

func findKey(pairs []Pair, key *Value) int {
	for i, p := range pairs {
		if p.Key.Kind == key.Kind && p.Key.Equal(key) {
			return i
		}
	}
	return -1
}

// pairSet finds a key among the pairs of one mapping: by scanning them while
// there are few, through an index once there are many, so that a mapping of
// many keys is read in time proportional to its size.
type pairSet struct {
	idx map[pairKey]int
}

// pairKey is a scalar key in a comparable form: two keys of the same kind are
// Equal exactly when their pairKeys are.
type pairKey struct {
	kind Kind
	s    string
}

const pairSetScan = 16 // mappings of up to this many keys are scanned

func newPairSet(n int) pairSet {
	if n <= pairSetScan {
		return pairSet{}
	}
	return pairSet{idx: make(map[pairKey]int, n)}
}

func (ps pairSet) find(pairs []Pair, key *Value) int {
	if ps.idx == nil {
		return findKey(pairs, key)
	}
	k, ok := keyOf(key)
	if !ok {
		return -1
	}
	if i, found := ps.idx[k]; found {
		return i
	}
	return -1
}

func (ps pairSet) add(key *Value, i int) {
	if ps.idx == nil {
		return
	}
	if k, ok := keyOf(key); ok {
		ps.idx[k] = i
	}
}

// keyOf returns a scalar key's comparable form; ok is false for a key equal
// to nothing (NaN).
func keyOf(v *Value) (pairKey, bool) {
	k := pairKey{kind: v.Kind}
	switch v.Kind {
	case KindNull:
	case KindBool:
		if v.Bool {
			k.s = "1"
		}
	case KindInt:
		if v.Big != nil {
			k.s = v.Big.String()
		} else {
			k.s = strconv.FormatInt(v.Int, 10)
		}
	case KindFloat:
		if math.IsNaN(v.Float) {
			return k, false
		}
		f := v.Float
		if f == 0 {
			f = 0 // -0 == 0
		}
		k.s = strconv.FormatUint(math.Float64bits(f), 16)
	case KindString:
		k.s = v.Str
	case KindTimestamp:
		k.s = v.Time.UTC().Format(time.RFC3339Nano)
		if v.Date {
			k.s += "d"
		}
	default:
		return k, false
	}
	return k, true
}

func (c *converter) scalar(n *yaml.Node, explicit bool) *Value {
	pos := c.pos(n)
	s := n.Value
	quoted := n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0
	if explicit {
		var v *Value
		switch n.Tag {
		case "!!str", "!":
			v = &Value{Kind: KindString, Str: s}
		case "!!null":
			v = &Value{Kind: KindNull}
		case "!!bool":
			b, ok := yaml11Bools[strings.ToLower(s)]
			if !ok {
				return c.fail(n, "%q is not a boolean", s)
			}
			v = &Value{Kind: KindBool, Bool: b}
		case "!!int":
			v = parseYAML11Int(s)
		case "!!float":
			v = parseYAML11Float(s)
			if v == nil {
				v = parseYAML11Int(s)
				if v != nil {
					v = &Value{Kind: KindFloat, Float: v.Number()}
				}
			}
		case "!!timestamp":
			var err error
			v, err = parseYAML11Timestamp(s)
			if err != nil {
				return c.fail(n, "%s", err)
			}
		default:
			return c.fail(n, "unsupported YAML tag %s (Valohai reads plain YAML only)", n.Tag)
		}
		if v == nil {
			return c.fail(n, "%q cannot be read as %s", s, n.Tag)
		}
		v.Pos, v.Text = pos, s
		return v
	}
	if quoted {
		return &Value{Kind: KindString, Str: s, Pos: pos, Text: s}
	}
	v, err := resolveYAML11(s)
	if err != nil {
		return c.fail(n, "%s", err)
	}
	v.Pos, v.Text, v.Plain = pos, s, true
	return v
}

var yaml11Bools = map[string]bool{"yes": true, "no": false, "true": true, "false": false, "on": true, "off": false}

var (
	yaml11BoolRe    = regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`)
	yaml11FloatRe   = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
	yaml11IntRe     = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	yaml11NullRe    = regexp.MustCompile(`^(?:~|null|Null|NULL|)$`)
	yaml11TimeRe    = regexp.MustCompile(`^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$`)
	yaml11TimeParts = regexp.MustCompile(`^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]*))?(?:[ \t]*(Z|([-+])([0-9]{1,2})(?::([0-9]{2}))?))?)?$`)
)

// resolveYAML11 types a plain scalar by YAML 1.1's rules, as PyYAML's safe
// loader does.
func resolveYAML11(s string) (*Value, error) {
	if s == "" || s[0] == '~' || s[0] == 'n' || s[0] == 'N' {
		if yaml11NullRe.MatchString(s) {
			return &Value{Kind: KindNull}, nil
		}
	}
	if s == "" {
		return &Value{Kind: KindNull}, nil
	}
	switch s[0] {
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O':
		if yaml11BoolRe.MatchString(s) {
			return &Value{Kind: KindBool, Bool: yaml11Bools[strings.ToLower(s)]}, nil
		}
	case '=':
		if s == "=" {
			return nil, fmt.Errorf("an unquoted `=` is YAML's value key, which Valohai's YAML reader refuses; quote it: \"=\"")
		}
	case '<':
		if s == "<<" {
			return nil, fmt.Errorf("an unquoted `<<` is YAML's merge key and cannot be a value; quote it: \"<<\"")
		}
	}
	if strings.ContainsRune("-+0123456789.", rune(s[0])) {
		if yaml11FloatRe.MatchString(s) {
			if v := parseYAML11Float(s); v != nil {
				return v, nil
			}
			return nil, fmt.Errorf("%q looks like a number but is not one; quote it if it is a string", s)
		}
		if yaml11IntRe.MatchString(s) {
			if v := parseYAML11Int(s); v != nil {
				return v, nil
			}
			return nil, fmt.Errorf("%q looks like an integer but is not one; quote it if it is a string", s)
		}
		if s[0] >= '0' && s[0] <= '9' && yaml11TimeRe.MatchString(s) {
			return parseYAML11Timestamp(s)
		}
	}
	return &Value{Kind: KindString, Str: s}, nil
}

func parseYAML11Int(s string) *Value {
	t := strings.ReplaceAll(s, "_", "")
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" {
		return nil
	}
	n := new(big.Int)
	var ok bool
	switch {
	case t == "0":
		ok = true
	case strings.HasPrefix(t, "0b"):
		_, ok = n.SetString(t[2:], 2)
	case strings.HasPrefix(t, "0x"):
		_, ok = n.SetString(t[2:], 16)
	case t[0] == '0':
		_, ok = n.SetString(t, 8)
	case strings.Contains(t, ":"):
		ok = true
		for _, part := range strings.Split(t, ":") {
			d, err := strconv.ParseInt(part, 10, 64)
			if err != nil {
				return nil
			}
			n.Mul(n, big.NewInt(60))
			n.Add(n, big.NewInt(d))
		}
	default:
		_, ok = n.SetString(t, 10)
	}
	if !ok {
		return nil
	}
	if neg {
		n.Neg(n)
	}
	if n.IsInt64() {
		return &Value{Kind: KindInt, Int: n.Int64()}
	}
	return &Value{Kind: KindInt, Big: n}
}

func parseYAML11Float(s string) *Value {
	t := strings.ToLower(strings.ReplaceAll(s, "_", ""))
	sign := 1.0
	if t != "" && (t[0] == '-' || t[0] == '+') {
		if t[0] == '-' {
			sign = -1
		}
		t = t[1:]
	}
	switch {
	case t == ".inf":
		return &Value{Kind: KindFloat, Float: math.Inf(int(sign))}
	case t == ".nan":
		return &Value{Kind: KindFloat, Float: math.NaN()}
	case strings.Contains(t, ":"):
		parts := strings.Split(t, ":")
		f := 0.0
		for _, p := range parts {
			d, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return nil
			}
			f = f*60 + d
		}
		return &Value{Kind: KindFloat, Float: sign * f}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil
	}
	return &Value{Kind: KindFloat, Float: sign * f}
}

func parseYAML11Timestamp(s string) (*Value, error) {
	m := yaml11TimeParts.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%q is not a timestamp", s)
	}
	atoi := func(x string) int { n, _ := strconv.Atoi(x); return n }
	year, month, day := atoi(m[1]), atoi(m[2]), atoi(m[3])
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || year < 1 {
		return nil, fmt.Errorf("%q reads as a date (YAML 1.1), but there is no such date; quote it if it is a string", s)
	}
	if m[4] == "" {
		return &Value{Kind: KindTimestamp, Date: true, Time: time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC), Str: s}, nil
	}
	hour, minute, sec := atoi(m[4]), atoi(m[5]), atoi(m[6])
	if hour > 23 || minute > 59 || sec > 59 {
		return nil, fmt.Errorf("%q reads as a timestamp (YAML 1.1), but the time is out of range; quote it if it is a string", s)
	}
	ns := 0
	if frac := m[7]; frac != "" {
		if len(frac) > 6 {
			frac = frac[:6]
		}
		for len(frac) < 6 {
			frac += "0"
		}
		ns = atoi(frac) * 1000
	}
	loc := naiveLoc
	switch {
	case m[8] == "Z":
		loc = time.UTC
	case m[8] != "":
		off := atoi(m[10])*3600 + atoi(m[11])*60
		if m[9] == "-" {
			off = -off
		}
		loc = time.FixedZone(m[8], off)
	}
	return &Value{Kind: KindTimestamp, Time: time.Date(year, time.Month(month), day, hour, minute, sec, ns, loc), Str: s}, nil
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
