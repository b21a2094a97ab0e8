package expr

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is the Python type of a Value.
type Kind uint8

// The kinds of values an expression computes with.
const (
	NoneKind   Kind = iota // Python's None
	BoolKind               // bool
	IntKind                // int (64 bits here; overflow is an error)
	FloatKind              // float
	StringKind             // str
	TupleKind              // tuple (from a tuple display)
	ListKind               // list (from a list display)
	SetKind                // set (from a set display)
)

// String returns the Python name of the type ("NoneType", "int", ...).
func (k Kind) String() string {
	switch k {
	case NoneKind:
		return "NoneType"
	case BoolKind:
		return "bool"
	case IntKind:
		return "int"
	case FloatKind:
		return "float"
	case StringKind:
		return "str"
	case TupleKind:
		return "tuple"
	case ListKind:
		return "list"
	case SetKind:
		return "set"
	}
	return "unknown"
}

// Value is a Python-like value: None, bool, int, float, str, or a tuple,
// list or set of values. The zero Value is None.
type Value struct {
	kind  Kind
	b     bool
	i     int64
	f     float64
	s     string
	items []Value
}

// None returns Python's None.
func None() Value { return Value{} }

// Bool returns a bool value.
func Bool(b bool) Value { return Value{kind: BoolKind, b: b} }

// Int returns an int value.
func Int(i int64) Value { return Value{kind: IntKind, i: i} }

// Float returns a float value.
func Float(f float64) Value { return Value{kind: FloatKind, f: f} }

// String returns a str value.
func String(s string) Value { return Value{kind: StringKind, s: s} }

// Tuple returns a tuple of the given values.
func Tuple(items ...Value) Value { return Value{kind: TupleKind, items: items} }

// Kind reports the type of v.
func (v Value) Kind() Kind { return v.kind }

// AsBool returns the bool held by v, and whether v is a bool.
func (v Value) AsBool() (bool, bool) { return v.b, v.kind == BoolKind }

// AsInt returns the int held by v, and whether v is an int.
func (v Value) AsInt() (int64, bool) { return v.i, v.kind == IntKind }

// AsFloat returns the float held by v, and whether v is a float.
func (v Value) AsFloat() (float64, bool) { return v.f, v.kind == FloatKind }

// AsString returns the str held by v, and whether v is a str.
func (v Value) AsString() (string, bool) { return v.s, v.kind == StringKind }

// Items returns the elements of a tuple, list or set, or nil.
func (v Value) Items() []Value { return v.items }

// Truth is Python's truth value of v (bool(v)).
func (v Value) Truth() bool {
	switch v.kind {
	case NoneKind:
		return false
	case BoolKind:
		return v.b
	case IntKind:
		return v.i != 0
	case FloatKind:
		return v.f != 0
	case StringKind:
		return v.s != ""
	}
	return len(v.items) > 0
}

// String returns Python's repr of v, e.g. None, True, 0.8, 'a'.
func (v Value) String() string {
	switch v.kind {
	case NoneKind:
		return "None"
	case BoolKind:
		if v.b {
			return "True"
		}
		return "False"
	case IntKind:
		return strconv.FormatInt(v.i, 10)
	case FloatKind:
		return floatRepr(v.f)
	case StringKind:
		return strRepr(v.s)
	}
	parts := make([]string, len(v.items))
	for i, it := range v.items {
		parts[i] = it.String()
	}
	inner := strings.Join(parts, ", ")
	switch v.kind {
	case TupleKind:
		if len(v.items) == 1 {
			inner += ","
		}
		return "(" + inner + ")"
	case ListKind:
		return "[" + inner + "]"
	}
	if len(v.items) == 0 {
		return "set()"
	}
	return "{" + inner + "}"
}

// ValueOf converts a Go value to a Value: nil, bool, signed and unsigned
// integers, floats, string, json.Number, and slices of those ([]any becomes
// a list). Integers outside int64 and other types are an error.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return None(), nil
	case Value:
		return x, nil
	case bool:
		return Bool(x), nil
	case int:
		return Int(int64(x)), nil
	case int8:
		return Int(int64(x)), nil
	case int16:
		return Int(int64(x)), nil
	case int32:
		return Int(int64(x)), nil
	case int64:
		return Int(x), nil
	case uint:
		return uintValue(uint64(x))
	case uint8:
		return Int(int64(x)), nil
	case uint16:
		return Int(int64(x)), nil
	case uint32:
		return Int(int64(x)), nil
	case uint64:
		return uintValue(x)
	case float32:
		return Float(float64(x)), nil
	case float64:
		return Float(x), nil
	case string:
		return String(x), nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return Int(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return Value{}, fmt.Errorf("convert json number %q: %w", x.String(), err)
		}
		return Float(f), nil
	case []any:
		items := make([]Value, len(x))
		for i, e := range x {
			v, err := ValueOf(e)
			if err != nil {
				return Value{}, err
			}
			items[i] = v
		}
		return Value{kind: ListKind, items: items}, nil
	}
	return Value{}, fmt.Errorf("cannot convert %T to an expression value", x)
}

func uintValue(u uint64) (Value, error) {
	if u > math.MaxInt64 {
		return Value{}, fmt.Errorf("integer %d is out of range", u)
	}
	return Int(int64(u)), nil
}

// Env resolves the names an expression refers to. The path of `metadata.
// accuracy` is ["metadata", "accuracy"]; a plain name has a path of one.
// Lookup reports false for a name it does not know.
type Env interface {
	Lookup(path []string) (Value, bool)
}

// MapEnv is an Env backed by a map from dotted names ("metadata.accuracy")
// to values.
type MapEnv map[string]Value

// Lookup implements Env.
func (m MapEnv) Lookup(path []string) (Value, bool) {
	v, ok := m[strings.Join(path, ".")]
	return v, ok
}
