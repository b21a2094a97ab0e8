package spec

import (
	"math"
	"testing"
)

// Plain scalars are typed by YAML 1.1's rules, as Valohai's parser types them.
func TestYAML11Scalars(t *testing.T) {
	cases := []struct {
		in   string
		kind Kind
		str  string // Python's str() of the value
	}{
		{"yes", KindBool, "True"}, {"No", KindBool, "False"}, {"ON", KindBool, "True"}, {"off", KindBool, "False"},
		{"y", KindString, "y"}, {"true", KindBool, "True"}, {"~", KindNull, "None"}, {"null", KindNull, "None"},
		{"010", KindInt, "8"}, {"0x1F", KindInt, "31"}, {"0b101", KindInt, "5"}, {"1:30", KindInt, "90"},
		{"1_000", KindInt, "1000"}, {"+12", KindInt, "12"}, {"-0", KindInt, "0"}, {"08", KindString, "08"},
		{"123456789012345678901234567890", KindInt, "123456789012345678901234567890"},
		{"1e3", KindString, "1e3"}, {"1.0e+3", KindFloat, "1000.0"}, {"1.5", KindFloat, "1.5"}, {".5", KindFloat, "0.5"},
		{"1.", KindFloat, "1.0"}, {"-.inf", KindFloat, "-inf"}, {".NaN", KindFloat, "nan"}, {"1:30.5", KindFloat, "90.5"},
		{"0.00001", KindFloat, "1e-05"}, {"2020-09-02", KindTimestamp, "2020-09-02"},
		{"2020-09-02T10:20:30Z", KindTimestamp, "2020-09-02 10:20:30+00:00"},
		{"2020-09-02 10:20:30.5", KindTimestamp, "2020-09-02 10:20:30.500000"},
		{"2020-9-2", KindString, "2020-9-2"}, {"python:3.12", KindString, "python:3.12"}, {"=x", KindString, "=x"},
	}
	for _, c := range cases {
		v := ParseScalar(c.in)
		if v.Kind != c.kind || v.String() != c.str {
			t.Errorf("%q: kind %v %q, want %v %q", c.in, v.Kind, v.String(), c.kind, c.str)
		}
	}
}

func TestPyFloat(t *testing.T) {
	cases := map[float64]string{
		1e-05: "1e-05", 1000: "1000.0", 0.001: "0.001", 1e16: "1e+16", 123456789012345: "123456789012345.0",
		math.Inf(1): "inf", -2.5e-7: "-2.5e-07", 0: "0.0",
	}
	a, b := 0.1, 0.2 // added at run time, not folded exactly by the compiler
	cases[a+b] = "0.30000000000000004"
	for f, want := range cases {
		if got := PyFloat(f); got != want {
			t.Errorf("PyFloat(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	cases := map[string]string{
		"": "''", "abc": "abc", "--x=1,2": "--x=1,2", "a b": "'a b'", "it's": `'it'"'"'s'`,
		"$(rm -rf /)": "'$(rm -rf /)'", "ümlaut": "'ümlaut'",
	}
	for in, want := range cases {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
