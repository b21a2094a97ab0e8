package spec

import (
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/spec/expr"
)

// Kind is the type of a loaded YAML value, as YAML 1.1 (and so Valohai) sees it.
type Kind uint8

// The kinds of value a valohai.yaml can hold.
const (
	KindNull Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindTimestamp
	KindList
	KindMap
)

// Pos is a position in a file: 1-based line and column.
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Value is one node of a loaded YAML document, typed the way YAML 1.1 types it
// (unquoted yes is a boolean, 010 is 8, 2020-09-02 is a date), with its position.
// Aliases share the Value of their anchor.
type Value struct {
	Kind Kind
	Bool bool
	Date bool // a timestamp that is a date only
	// Plain is true for an unquoted scalar: its type came from YAML's resolution
	// rules, which is what the hints about quoting are about.
	Plain bool
	Int   int64
	Big   *big.Int // set instead of Int when the integer does not fit in 64 bits
	Float float64
	Str   string    // the string; for timestamps, the source text
	Time  time.Time // timestamps
	Items []*Value  // lists
	Pairs []Pair    // maps, in source order, duplicate keys removed (the last one wins)
	Pos   Pos
	// Text is the scalar's source text.
	Text string
}

// Pair is one key and value of a map.
type Pair struct {
	Key   *Value
	Value *Value
}

// NewString returns a string Value.
func NewString(s string) *Value { return &Value{Kind: KindString, Str: s, Text: s} }

// NewInt returns an integer Value.
func NewInt(i int64) *Value { return &Value{Kind: KindInt, Int: i} }

// NewFloat returns a float Value.
func NewFloat(f float64) *Value { return &Value{Kind: KindFloat, Float: f} }

// NewBool returns a boolean Value.
func NewBool(b bool) *Value { return &Value{Kind: KindBool, Bool: b} }

// NewList returns a list Value.
func NewList(items ...*Value) *Value { return &Value{Kind: KindList, Items: items} }

// IsNull reports whether v is absent or null.
func (v *Value) IsNull() bool { return v == nil || v.Kind == KindNull }

// IsString reports whether v is a string.
func (v *Value) IsString() bool { return v != nil && v.Kind == KindString }

// IsNumber reports whether v is an integer or a float (booleans are not numbers here,
// as in JSON Schema).
func (v *Value) IsNumber() bool { return v != nil && (v.Kind == KindInt || v.Kind == KindFloat) }

// Get returns the value of a string key of a map, or nil.
func (v *Value) Get(key string) *Value {
	if v == nil || v.Kind != KindMap {
		return nil
	}
	for _, p := range v.Pairs {
		if p.Key.Kind == KindString && p.Key.Str == key {
			return p.Value
		}
	}
	return nil
}

// Has reports whether a map has a string key (even with a null value).
func (v *Value) Has(key string) bool {
	if v == nil || v.Kind != KindMap {
		return false
	}
	for _, p := range v.Pairs {
		if p.Key.Kind == KindString && p.Key.Str == key {
			return true
		}
	}
	return false
}

// Number returns a numeric value as a float64.
func (v *Value) Number() float64 {
	switch v.Kind {
	case KindInt:
		if v.Big != nil {
			f, _ := new(big.Float).SetInt(v.Big).Float64()
			return f
		}
		return float64(v.Int)
	case KindFloat:
		return v.Float
	case KindBool:
		if v.Bool {
			return 1
		}
	}
	return 0
}

// Truthy reports whether Python would consider the value true.
func (v *Value) Truthy() bool {
	if v == nil {
		return false
	}
	switch v.Kind {
	case KindNull:
		return false
	case KindBool:
		return v.Bool
	case KindInt:
		if v.Big != nil {
			return v.Big.Sign() != 0
		}
		return v.Int != 0
	case KindFloat:
		return v.Float != 0
	case KindString:
		return v.Str != ""
	case KindList:
		return len(v.Items) > 0
	case KindMap:
		return len(v.Pairs) > 0
	}
	return true
}

// TypeName names the value's type for messages.
func (v *Value) TypeName() string {
	if v == nil {
		return "null"
	}
	switch v.Kind {
	case KindNull:
		return "null"
	case KindBool:
		return "boolean"
	case KindInt:
		return "integer"
	case KindFloat:
		return "number"
	case KindString:
		return "string"
	case KindTimestamp:
		if v.Date {
			return "date"
		}
		return "timestamp"
	case KindList:
		return "list"
	case KindMap:
		return "mapping"
	}
	return "value"
}

// String returns the value as Python's str() prints it: True, 1e-05, 1000.0,
// a string as itself. This is what Valohai puts on command lines.
func (v *Value) String() string {
	if v == nil {
		return "None"
	}
	switch v.Kind {
	case KindString:
		return v.Str
	case KindTimestamp:
		return pyTimestamp(v)
	}
	return v.Repr()
}

// Repr returns the value as Python's repr() prints it.
func (v *Value) Repr() string {
	if v == nil {
		return "None"
	}
	switch v.Kind {
	case KindNull:
		return "None"
	case KindBool:
		if v.Bool {
			return "True"
		}
		return "False"
	case KindInt:
		if v.Big != nil {
			return v.Big.String()
		}
		return strconv.FormatInt(v.Int, 10)
	case KindFloat:
		return PyFloat(v.Float)
	case KindString:
		return pyStrRepr(v.Str)
	case KindTimestamp:
		return pyStrRepr(pyTimestamp(v))
	case KindList:
		parts := make([]string, len(v.Items))
		for i, it := range v.Items {
			parts[i] = it.Repr()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case KindMap:
		parts := make([]string, len(v.Pairs))
		for i, p := range v.Pairs {
			parts[i] = p.Key.Repr() + ": " + p.Value.Repr()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "?"
}

// Equal reports whether two values are equal as Python compares them
// (1 == 1.0, but here a boolean never equals a number, as in JSON Schema).
func (v *Value) Equal(w *Value) bool {
	if v.IsNull() || w.IsNull() {
		return v.IsNull() && w.IsNull()
	}
	if v.IsNumber() && w.IsNumber() {
		if v.Kind == KindInt && w.Kind == KindInt {
			if v.Big != nil || w.Big != nil {
				return v.bigInt().Cmp(w.bigInt()) == 0
			}
			return v.Int == w.Int
		}
		return v.Number() == w.Number()
	}
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case KindBool:
		return v.Bool == w.Bool
	case KindString:
		return v.Str == w.Str
	case KindTimestamp:
		return v.Time.Equal(w.Time) && v.Date == w.Date
	case KindList:
		if len(v.Items) != len(w.Items) {
			return false
		}
		for i := range v.Items {
			if !v.Items[i].Equal(w.Items[i]) {
				return false
			}
		}
		return true
	case KindMap:
		if len(v.Pairs) != len(w.Pairs) {
			return false
		}
		for _, p := range v.Pairs {
			found := false
			for _, q := range w.Pairs {
				if p.Key.Equal(q.Key) {
					found = p.Value.Equal(q.Value)
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return false
}

func (v *Value) bigInt() *big.Int {
	if v.Big != nil {
		return v.Big
	}
	return big.NewInt(v.Int)
}

// Interface converts the value to plain Go values for JSON output: nil, bool, int64,
// float64, string, []any, map[string]any.
func (v *Value) Interface() any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case KindNull:
		return nil
	case KindBool:
		return v.Bool
	case KindInt:
		if v.Big != nil {
			return v.Big.String()
		}
		return v.Int
	case KindFloat:
		if math.IsInf(v.Float, 0) || math.IsNaN(v.Float) {
			return PyFloat(v.Float)
		}
		return v.Float
	case KindString:
		return v.Str
	case KindTimestamp:
		return pyTimestamp(v)
	case KindList:
		out := make([]any, len(v.Items))
		for i, it := range v.Items {
			out[i] = it.Interface()
		}
		return out
	case KindMap:
		out := make(map[string]any, len(v.Pairs))
		for _, p := range v.Pairs {
			out[p.Key.String()] = p.Value.Interface()
		}
		return out
	}
	return nil
}

// SortedKeys returns a map's keys as strings, sorted.
func (v *Value) SortedKeys() []string {
	keys := make([]string, 0, len(v.Pairs))
	for _, p := range v.Pairs {
		keys = append(keys, p.Key.String())
	}
	sort.Strings(keys)
	return keys
}

// PyFloat formats a float as Python's repr() does: the shortest digits that
// read back to the same number, "1000.0", "1e-05", "inf".
func PyFloat(f float64) string { return expr.FloatRepr(f) }

// pyStrRepr quotes a string as Python's repr() does.
func pyStrRepr(s string) string { return expr.StrRepr(s) }

// pyTimestamp prints a timestamp as Python's str() prints a date or datetime.
func pyTimestamp(v *Value) string {
	t := v.Time
	if v.Date {
		return t.Format("2006-01-02")
	}
	s := t.Format("2006-01-02 15:04:05")
	if ns := t.Nanosecond(); ns != 0 {
		s += "." + strconv.Itoa(ns/1000 + 1000000)[1:]
	}
	if t.Location() != naiveLoc {
		_, off := t.Zone()
		sign := "+"
		if off < 0 {
			sign = "-"
			off = -off
		}
		s += sign + twoDigits(off/3600) + ":" + twoDigits(off%3600/60)
	}
	return s
}

// naiveLoc marks timestamps written without a time zone (Python's naive datetimes).
var naiveLoc = time.FixedZone("", 0)

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// ParseScalar reads a value given on the command line (`-p lr=0.01`) the way
// YAML reads an unquoted scalar, so that 0.01 is a float and true a boolean.
// A value that YAML would refuse is kept as a string.
func ParseScalar(s string) *Value {
	v, err := resolveYAML11(s)
	if err != nil {
		return NewString(s)
	}
	v.Text, v.Plain = s, true
	return v
}
