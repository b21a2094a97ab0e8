package expr

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkCases are what Valohai's linter says about an expression (the text
// after "`stop-condition` is not a valid expression: "); "" is valid. The
// texts were taken from CPython 3.11 running leval's lint path.
var checkCases = []struct {
	src, want string
}{
	// the reference corpus
	{"stop > 1", ""},
	{"stop me if you can", "invalid syntax (<expression>, line 1)"},
	{"can't stop me now", "unterminated string literal (detected at line 1) (<expression>, line 1)"},
	// node-action conditions
	{"metadata.accuracy < .8", ""},
	{"metadata.accuracy <= .8", ""},
	{`parameter.x == "a"`, ""},
	{"metadata.loss >= 1e-3 and metadata.acc > 0.9", ""},
	{"metadata.accuracy > 0.9 or not metadata.done", ""},
	{"abs(metadata.delta) < 0.01", ""},
	{"metadata.a.b.c.d.e.f.g.h.i > 1", ""},
	{"metadata.accuracy in (0.1, 0.2)", ""},
	{"metadata.accuracy in {0.1, 0.2}", ""},
	{"metadata.x is None", ""},
	{"metadata.x is not None", ""},
	{"metadata.loss != 0 and metadata.loss < 1_000", ""},
	{"metadata.accuracy < .8\n", ""},
	{"(((((metadata.accuracy)))))", ""},
	{"-1", ""},
	{"not not metadata.flag", ""},
	{"1 +\\\n 2", ""},
	{"0x1f == 31", ""},
	{"'a' 'b' == 'ab'", ""},
	{"u'x' == 'x'", ""},
	// keywords other than False None True and for in is not or become
	// names (_kw): these parse
	{"if(1)", ""},
	{"metadata.class > 1", ""},
	{"lambda", ""},
	{"(yield)", ""},
	// ...and these no longer do
	{"x if c else y", "invalid syntax (<expression>, line 1)"},
	{"lambda x: x", "invalid syntax (<expression>, line 1)"},
	{"await x", "invalid syntax (<expression>, line 1)"},
	{"1if 1else 2", "invalid decimal literal (<expression>, line 1)"},
	// leval's verifier
	{"a % b", "Binary operator <ast.Mod object> is not allowed"},
	{"5 ** 2", "Binary operator <ast.Pow object> is not allowed"},
	{"5 << 2", "Binary operator <ast.LShift object> is not allowed"},
	{"5 | 2", "Binary operator <ast.BitOr object> is not allowed"},
	{"5 @ 2", "Binary operator <ast.MatMult object> is not allowed"},
	{"~a", "invalid unary op: <ast.Invert object>"},
	{"a < b < c", "Only simple comparisons are supported"},
	{"[1]", "Operation List is not allowed"},
	{"{'d': 8}", "Operation Dict is not allowed"},
	{"x[5::3]", "Operation Subscript is not allowed"},
	{"(a := 1)", "Operation NamedExpr is not allowed"},
	{"[x for x in y]", "Operation ListComp is not allowed"},
	{"{a for b in c}", "Operation SetComp is not allowed"},
	{"{a: a for b in c}", "Operation DictComp is not allowed"},
	{"(x for x in y)", "Operation GeneratorExp is not allowed"},
	{"f'foo'", "Operation JoinedStr is not allowed"},
	{"f(*a)", "Operation Starred is not allowed"},
	{"f(x=1)", "Kwarg calls are not allowed"},
	{"f(**a)", "Kwarg calls are not allowed"},
	{"a.b(1)", "Invalid call to func <ast.Attribute object>"},
	{"8(num=7)", "Invalid call to func <ast.Constant object>"},
	{"(3).__class__", "Accessing attributes of constants (<ast.Constant object>) is not allowed"},
	{"None.a", "Accessing attributes of constants (<ast.Constant object>) is not allowed"},
	{"f(1).a", "Unsupported attribute structure in <ast.Attribute object>"},
	{`b"x"`, "Invalid constant <ast.Constant object> (<class 'bytes'>)"},
	{"1j", "Invalid constant <ast.Constant object> (<class 'complex'>)"},
	{"...", "Invalid constant <ast.Constant object> (<class 'ellipsis'>)"},
	{`-"a"`, "bad operand type for unary -: 'str'"},
	{"-None", "bad operand type for unary -: 'NoneType'"},
	{"-(1,)", "bad operand type for unary -: 'tuple'"},
	{"{ {1} }", "unhashable type: 'set'"},
	{"{(1, {2})}", "unhashable type: 'set'"},
	{"(5+(5+(5+(5+(5*3)))))", ""},
	{"1+(1+(1+(1+(1+(1+(1+1))))))", "Expression is too complex (8 > 8)"},
	{"- - - - - - - - 1", "Expression is too complex (8 > 8)"},
	{"not not not not not not not 1", "Expression is too complex (8 > 8)"},
	{"- - - - - - 1", ""},
	// syntax errors, as CPython words them
	{"", "invalid syntax (<expression>, line 0)"},
	{"   ", "invalid syntax (<expression>, line 0)"},
	{"\n", "invalid syntax (<expression>, line 1)"},
	{"# c", "invalid syntax (<expression>, line 1)"},
	{" 1", "unexpected indent (<expression>, line 1)"},
	{"1\n 2", "unexpected indent (<expression>, line 2)"},
	{"  1\n 2", "unindent does not match any outer indentation level (<tokenize>, line 2)"},
	{"1\n2", "invalid syntax (<expression>, line 2)"},
	{"1 +", "invalid syntax (<expression>, line 1)"},
	{"a b", "invalid syntax (<expression>, line 1)"},
	{"(a b)", "invalid syntax. Perhaps you forgot a comma? (<expression>, line 1)"},
	{"f(a b)", "invalid syntax. Perhaps you forgot a comma? (<expression>, line 1)"},
	{"(c d)", "invalid syntax (<expression>, line 1)"}, // "c" counts as a soft keyword in 3.11
	{"(", "'(' was never closed (<expression>, line 1)"},
	{"(x if y", "'(' was never closed (<expression>, line 1)"},
	{")", "unmatched ')' (<expression>, line 1)"},
	{"(]", "closing parenthesis ']' does not match opening parenthesis '(' (<expression>, line 1)"},
	{"(\n]", "closing parenthesis ']' does not match opening parenthesis '(' on line 1 (<expression>, line 2)"},
	{"'''a\nb", "unterminated triple-quoted string literal (detected at line 2) (<expression>, line 1)"},
	{"a + 'x", "unterminated string literal (detected at line 1) (<expression>, line 1)"},
	{"01", "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers (<expression>, line 1)"},
	{"1_", "invalid decimal literal (<expression>, line 1)"},
	{"1a", "invalid decimal literal (<expression>, line 1)"},
	{"0x", "invalid hexadecimal literal (<expression>, line 1)"},
	{"0b2", "invalid digit '2' in binary literal (<expression>, line 1)"},
	{"0o8", "invalid digit '8' in octal literal (<expression>, line 1)"},
	{"€", "invalid character '€' (U+20AC) (<expression>, line 1)"},
	{"\u00a0", "invalid non-printable character U+00A0 (<expression>, line 1)"},
	{"a\x01", "invalid non-printable character U+0001 (<expression>, line 1)"},
	{"a \\ b", "unexpected character after line continuation character (<expression>, line 1)"},
	{"1 +\\\n", "unexpected EOF while parsing (<expression>, line 1)"},
	{"a = 1", "invalid syntax (<expression>, line 1)"},
	{"(a = 1)", "invalid syntax. Maybe you meant '==' or ':=' instead of '='? (<expression>, line 1)"},
	{"(1 = 2)", "cannot assign to literal here. Maybe you meant '==' instead of '='? (<expression>, line 1)"},
	{"(1 := 2)", "cannot use assignment expressions with literal (<expression>, line 1)"},
	{"f(1 = 2)", "expression cannot contain assignment, perhaps you meant \"==\"? (<expression>, line 1)"},
	{"f(a=1, b)", "positional argument follows keyword argument (<expression>, line 1)"},
	{"f(**a, b)", "positional argument follows keyword argument unpacking (<expression>, line 1)"},
	{"f(**a, *b)", "iterable argument unpacking follows keyword argument unpacking (<expression>, line 1)"},
	{"f(a for a in b, c)", "Generator expression must be parenthesized (<expression>, line 1)"},
	{"print x", "Missing parentheses in call to 'print'. Did you mean print(...)? (<expression>, line 1)"},
	{"a print b", "Missing parentheses in call to 'print'. Did you mean print(...)? (<expression>, line 1)"},
	{"[x for 1 in y]", "cannot assign to literal (<expression>, line 1)"},
	{"[a, b for b in c]", "did you forget parentheses around the comprehension target? (<expression>, line 1)"},
	{"[*a for a in b]", "iterable unpacking cannot be used in comprehension (<expression>, line 1)"},
	{"{**a for a in b}", "dict unpacking cannot be used in dict comprehension (<expression>, line 1)"},
	{"{a: *b}", "cannot use a starred expression in a dictionary value (<expression>, line 1)"},
	{"{a:}", "expression expected after dictionary key and ':' (<expression>, line 1)"},
	{"{a: 1, b}", "':' expected after dictionary key (<expression>, line 1)"},
	{"(*a)", "cannot use starred expression here (<expression>, line 1)"},
	{"(**a)", "cannot use double starred expression here (<expression>, line 1)"},
	{`"\x4"`, `(unicode error) 'unicodeescape' codec can't decode bytes in position 0-2: truncated \xXX escape (<expression>, line 1)`},
	{`"é\x"`, `(unicode error) 'unicodeescape' codec can't decode bytes in position 10-11: truncated \xXX escape (<expression>, line 1)`},
	{`b"\x4"`, `(value error) invalid \x escape at position 0 (<expression>, line 1)`},
	{`b"é"`, "bytes can only contain ASCII literal characters (<expression>, line 1)"},
	{`"a" b"b"`, "cannot mix bytes and nonbytes literals (<expression>, line 1)"},
	{"f'{'", "f-string: expecting '}' (<expression>, line 1)"},
	{"f'}'", "f-string: single '}' is not allowed (<expression>, line 1)"},
	{"f'{}'", "f-string: empty expression not allowed (<expression>, line 1)"},
	{"f'{a b}'", "f-string: invalid syntax. Perhaps you forgot a comma? (<expression>, line 1)"},
	{"f'{x!z}'", "f-string: invalid conversion character: expected 's', 'r', or 'a' (<expression>, line 1)"},
	{`f'{\n}'`, "f-string expression part cannot include a backslash (<expression>, line 1)"},
	{"a\x00", "source code string cannot contain null bytes"},
	{strings.Repeat("(", 201) + strings.Repeat(")", 201), "too many nested parentheses (<expression>, line 1)"},
	{strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200), ""},
}

func TestCheck(t *testing.T) {
	for _, c := range checkCases {
		err := Check(c.src)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Check(%q)\n got: %q\nwant: %q", c.src, got, c.want)
		}
	}
}

// TestCPythonCorpus compares with testdata/cpython311.jsonl: expressions
// (hand-picked, and random mutations of valid ones) with what CPython 3.11
// and Valohai's lint path say about them.
func TestCPythonCorpus(t *testing.T) {
	f, err := os.Open("testdata/cpython311.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n, gaps := 0, 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		var c struct {
			Src   string
			Parse *string
			Check *string
			Gap   bool // a known difference of wording: compare the verdict only
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		n++
		if c.Gap {
			gaps++
		}
		for _, m := range []struct {
			name string
			want *string
			run  func(string) error
		}{
			{"Parse", c.Parse, func(s string) error { _, err := Parse(s); return err }},
			{"Check", c.Check, Check},
		} {
			got := m.run(c.Src)
			switch {
			case got == nil && m.want != nil:
				t.Errorf("%s(%q) accepted, CPython: %q", m.name, c.Src, *m.want)
			case got != nil && m.want == nil:
				t.Errorf("%s(%q) = %q, CPython accepts", m.name, c.Src, got)
			case got != nil && got.Error() != *m.want && !c.Gap:
				t.Errorf("%s(%q)\n got: %q\nwant: %q", m.name, c.Src, got, *m.want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 500 {
		t.Fatalf("corpus has %d cases", n)
	}
	t.Logf("%d expressions, %d with a known difference of wording", n, gaps)
}

func TestErrorTypes(t *testing.T) {
	var se *SyntaxError
	if err := Check("stop me if you can"); !errors.As(err, &se) || se.Line != 1 {
		t.Fatalf("Check: %#v", err)
	}
	var ce *CheckError
	if err := Check("metadata.accuracy % 2"); !errors.As(err, &ce) {
		t.Fatalf("Check: %#v", err)
	}
	if _, err := Parse("x if c else y"); err != nil {
		t.Fatalf("Parse accepts Python syntax: %v", err)
	}
	if _, err := Parse("lambda x: [y for y in x]"); err != nil {
		t.Fatalf("Parse accepts Python syntax: %v", err)
	}
}

func TestErrorOffset(t *testing.T) {
	for _, c := range []struct {
		src    string
		offset int
	}{
		{"metadata.accuracy < 'x", 20},
		{"metadata.accuracy < (1", 20},
		{"a +\n)", 4},
		{"x if c else (y", 12}, // offsets are into the original text, before renaming
		{"if if €", 6},
		{"metadata.accuracy % 2", 0},
		{"1 + [2]", 4},
		{"a\r\nb €", 5},
	} {
		err := Check(c.src)
		var off int
		switch e := err.(type) {
		case *SyntaxError:
			off = e.Offset
		case *CheckError:
			off = e.Offset
		default:
			t.Errorf("Check(%q) = %v", c.src, err)
			continue
		}
		if off != c.offset {
			t.Errorf("Check(%q): offset %d, want %d (%v)", c.src, off, c.offset, err)
		}
	}
}

func TestString(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"metadata.accuracy<.8", "metadata.accuracy < 0.8"},
		{"a  and b or not c", "a and b or not c"},
		{"(a and b) and c", "(a and b) and c"},
		{"a and (b and c)", "a and (b and c)"},
		{"(a < b) < c", "(a < b) < c"},
		{"a < b < c", "a < b < c"},
		{"(-1) ** 2", "(-1) ** 2"},
		{"-1 ** 2", "-1 ** 2"},
		{"2 ** -1", "2 ** -1"},
		{"(a ** b) ** c", "(a ** b) ** c"},
		{"a ** b ** c", "a ** b ** c"},
		{"a - (b - c)", "a - (b - c)"},
		{"(a - b) - c", "a - b - c"},
		{"not (a == b)", "not a == b"},
		{"(not a) == b", "(not a) == b"},
		{"1, 2", "(1, 2)"},
		{"(1,)", "(1,)"},
		{"()", "()"},
		{"'it''s'", "'its'"},
		{`"it's"`, `"it's"`},
		{`'a\nb'`, `'a\nb'`},
		{"0x1F", "31"},
		{"1_000", "1000"},
		{"1e16", "1e+16"},
		{"1e-5", "1e-05"},
		{".5", "0.5"},
		{"1e999", "1e309"},
		{"100000000000000000000", "100000000000000000000"},
		{"2j", "2j"},
		{"(1).real", "(1).real"},
		{"x if c else y", "x if c else y"},
		{"(x if c else y) if d else z", "(x if c else y) if d else z"},
		{"lambda: 1", "lambda: 1"},
		{"lambda a, b=1, *c, d, **e: a", "lambda a, b=1, *c, d, **e: a"},
		{"lambda a, /, b, *, c: a", "lambda a, /, b, *, c: a"},
		{"f(x for x in y)", "f(x for x in y)"},
		{"f(a, *b, c=1, **d)", "f(a, *b, c=1, **d)"},
		{"a[1:2, ::3]", "a[1:2, ::3]"},
		{"a[1,]", "a[1,]"},
		{"a[()]", "a[()]"},
		{"{1: 2, **d}", "{1: 2, **d}"},
		{"[x for x, y in z if x if y]", "[x for (x, y) in z if x if y]"},
		{"(y := 1)", "(y := 1)"},
		{"b'\\x00a'", `b'\x00a'`},
		{"None", "None"},
		{"...", "..."},
		{"f'{a}' 'b'", "f'{a}' 'b'"},
	} {
		e, err := Parse(c.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.src, err)
			continue
		}
		if got := e.String(); got != c.want {
			t.Errorf("Parse(%q).String() = %q, want %q", c.src, got, c.want)
		}
		e2, err := Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Errorf("String of %q does not read back: %q, %v", c.src, e.String(), err)
		}
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string
	}{
		{"metadata.accuracy < .8", []string{"metadata.accuracy"}},
		{"metadata.loss >= 1e-3 and metadata.acc > 0.9 and metadata.loss > 0", []string{"metadata.loss", "metadata.acc"}},
		{`parameter.x == "a" or abs(metadata.d) > parameter.tol`, []string{"parameter.x", "metadata.d", "parameter.tol"}},
		{"stop > 1", []string{"stop"}},
		{"f(1).a + x[2].b", []string{"x"}},
		{"[y for y in metadata.list if y > t]", []string{"metadata.list", "t"}},
		{"lambda a: a + b", []string{"b"}},
		{"1 + 2", nil},
	} {
		e, err := Parse(c.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.src, err)
		}
		if got := e.Names(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Names(%q) = %q, want %q", c.src, got, c.want)
		}
	}
	e, err := Compile("metadata.class > 1")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Names(); !reflect.DeepEqual(got, []string{"metadata._class"}) {
		t.Errorf("Compile renames keywords as leval does: %q", got)
	}
}

var testEnv = MapEnv{
	"metadata.accuracy": Float(0.85),
	"metadata.loss":     Float(0.0005),
	"metadata.acc":      Float(0.95),
	"metadata.epochs":   Int(10),
	"metadata.name":     String("resnet"),
	"metadata.flag":     Bool(true),
	"metadata.nothing":  None(),
	"parameter.x":       String("a"),
	"parameter.lr":      Float(0.001),
}

// evalCases: results as CPython 3.11 computes them (the repr of the value,
// or the error text).
var evalCases = []struct{ src, want string }{
	{"metadata.accuracy < .8", "False"},
	{"metadata.accuracy <= .8", "False"},
	{"metadata.accuracy > .8", "True"},
	{`parameter.x == "a"`, "True"},
	{`parameter.x != "a"`, "False"},
	{"metadata.loss >= 1e-3 and metadata.acc > 0.9", "False"},
	{"metadata.loss < 1e-3 and metadata.acc > 0.9", "True"},
	{"metadata.epochs == 10.0", "True"},
	{"metadata.flag == 1", "True"},
	{"metadata.flag + 1", "2"},
	{"True + True", "2"},
	{"metadata.nothing is None", "True"},
	{"metadata.nothing == 0", "False"},
	{`metadata.nothing or "default"`, "'default'"},
	{`0 or ""`, "''"},
	{`1 and "x"`, "'x'"},
	{`"" and 1`, "''"},
	{"not metadata.epochs", "False"},
	{"-metadata.epochs", "-10"},
	{"-True", "-1"},
	{"~5", "-6"},
	{"~True", "-2"},
	{"7 // 2", "3"},
	{"-7 // 2", "-4"},
	{"7 % -3", "-2"},
	{"-7 % 3", "2"},
	{"7.5 // 2", "3.0"},
	{"-7.5 // 2", "-4.0"},
	{"7.5 % -2", "-0.5"},
	{"7 / 2", "3.5"},
	{"1 / 3", "0.3333333333333333"},
	{"2 ** 10", "1024"},
	{"2 ** -1", "0.5"},
	{"(-2) ** 3", "-8"},
	{"2.0 ** 0.5", "1.4142135623730951"},
	{"1 << 4", "16"},
	{"-16 >> 2", "-4"},
	{"6 & 3", "2"},
	{"6 | 3", "7"},
	{"6 ^ 3", "5"},
	{"True & False", "False"},
	{"True | 2", "3"},
	{`"a" + "b"`, "'ab'"},
	{`"ab" * 3`, "'ababab'"},
	{`3 * "ab"`, "'ababab'"},
	{"(1, 2) + (3,)", "(1, 2, 3)"},
	{"[1] * 2", "[1, 1]"},
	{`"a" < "b"`, "True"},
	{`"B" < "a"`, "True"},
	{"(1, 2) < (1, 3)", "True"},
	{"(1, 2) == (1, 2.0)", "True"},
	{"[1, 2] == (1, 2)", "False"},
	{"1 == 1.0", "True"},
	{`1 == "1"`, "False"},
	{"None == None", "True"},
	{"1 < 2 < 3", "True"},
	{"1 < 3 < 2", "False"},
	{"3 > 2 == 2", "True"},
	{`"a" in "cat"`, "True"},
	{`"x" not in "cat"`, "True"},
	{"2 in (1, 2, 3)", "True"},
	{"2 in [1, 2.0]", "True"},
	{"4 in {1, 2}", "False"},
	{"metadata.name[0]", "'r'"},
	{"metadata.name[-1]", "'t'"},
	{"(10, 20)[1]", "20"},
	{"abs(-3)", "3"},
	{"abs(-2.5)", "2.5"},
	{"max(1, 5, 3)", "5"},
	{"min(1.5, 0.5)", "0.5"},
	{"max((4, 9, 2))", "9"},
	{`min("hello")`, "'e'"},
	{"1 if metadata.flag else 2", "1"},
	{`"yes" if metadata.accuracy > 0.9 else "no"`, "'no'"},
	{"0.1 + 0.2", "0.30000000000000004"},
	{"1e300 * 1e10", "inf"},
	{"1e16", "1e+16"},
	{"1e-5", "1e-05"},
	{"123456789.0", "123456789.0"},
	{"2 ** 62", "4611686018427387904"},
	{"9007199254740993 == 9007199254740992.0", "False"},
	{"9007199254740993 > 9007199254740992.0", "True"},
	{"'a' < 1", "'<' not supported between instances of 'str' and 'int'"},
	{"None < 1", "'<' not supported between instances of 'NoneType' and 'int'"},
	{"'a' + 1", `can only concatenate str (not "int") to str`},
	{"1 + 'a'", "unsupported operand type(s) for +: 'int' and 'str'"},
	{"(1,) + 1", `can only concatenate tuple (not "int") to tuple`},
	{"'a' * 1.5", "can't multiply sequence by non-int of type 'float'"},
	{"-'a'", "bad operand type for unary -: 'str'"},
	{"~1.5", "bad operand type for unary ~: 'float'"},
	{"1 in 1", "argument of type 'int' is not iterable"},
	{"1 in 'a'", "'in <string>' requires string as left operand, not int"},
	{"'abc'[5]", "string index out of range"},
	{"1 / 0", "division by zero"},
	{"1.0 / 0", "float division by zero"},
	{"1 // 0", "integer division or modulo by zero"},
	{"1 % 0", "integer modulo by zero"},
	{"1.0 // 0", "float floor division by zero"},
	{"1.0 % 0", "float modulo"},
	{"0 ** -1", "0.0 cannot be raised to a negative power"},
	{"1 @ 2", "unsupported operand type(s) for @: 'int' and 'int'"},
	{"{[1]}", "unhashable type: 'list'"},
	{"(1, 2) < (1, 'a')", "'<' not supported between instances of 'int' and 'str'"},
	{"max()", "max expected at least 1 argument, got 0"},
	{"max(())", "max() arg is an empty sequence"},
	{"abs('a')", "bad operand type for abs(): 'str'"},
	{"min(1, 'a')", "'<' not supported between instances of 'str' and 'int'"},
	{"[1] < (1,)", "'<' not supported between instances of 'list' and 'tuple'"},
	// our own rules
	{"metadata.missing > 1", "name 'metadata.missing' is not defined"},
	{"unknown", "name 'unknown' is not defined"},
	{"metadata.missing is None", "True"}, // as leval's loose `is`
	{"metadata.missing is not None", "False"},
	{"nope(1)", "name 'nope' is not defined"},
	{"9223372036854775807 + 1", "integer overflow"},
	{"2 ** 64", "integer overflow"},
	{"1 << 64", "integer overflow"},
	{"'ab' * 10000000", "result is too large"},
	{"100000000000000000000", "integer literal too large: 100000000000000000000"},
	{"lambda: 1", "Lambda is not supported in evaluation"},
	{"False or metadata.missing", "name 'metadata.missing' is not defined"},
	{"True or metadata.missing", "True"}, // short-circuit
	{"1 > 2 > metadata.missing", "False"},
}

func TestEval(t *testing.T) {
	for _, c := range evalCases {
		e, err := Parse(c.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.src, err)
			continue
		}
		v, err := e.Eval(testEnv)
		got := v.String()
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Eval(%q) = %s, want %s", c.src, got, c.want)
		}
	}
}

func TestEvalCompiled(t *testing.T) {
	e, err := Compile("metadata.accuracy < .8")
	if err != nil {
		t.Fatal(err)
	}
	for acc, want := range map[float64]bool{0.5: true, 0.8: false, 0.95: false} {
		v, err := e.Eval(MapEnv{"metadata.accuracy": Float(acc)})
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := v.AsBool(); !ok || b != want {
			t.Errorf("accuracy %v: got %v", acc, v)
		}
	}
	var ee *EvalError
	if _, err := e.Eval(MapEnv{}); !errors.As(err, &ee) || ee.Offset != 0 {
		t.Errorf("unknown name: %#v", err)
	}
}

func TestValueOf(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{nil, "None"}, {true, "True"}, {3, "3"}, {uint8(7), "7"}, {2.5, "2.5"}, {"s", "'s'"},
		{json.Number("12"), "12"}, {json.Number("1.5"), "1.5"}, {[]any{1, "a"}, "[1, 'a']"},
	} {
		v, err := ValueOf(c.in)
		if err != nil || v.String() != c.want {
			t.Errorf("ValueOf(%#v) = %v, %v; want %s", c.in, v, err, c.want)
		}
	}
	if _, err := ValueOf(struct{}{}); err == nil {
		t.Error("ValueOf(struct{}{}) should fail")
	}
	if _, err := ValueOf(uint64(1 << 63)); err == nil {
		t.Error("ValueOf(1<<63) should fail")
	}
}

// TestPathological: deep nesting and huge input end quickly, with an error
// where CPython gives one, and never overflow the stack.
func TestPathological(t *testing.T) {
	big := strings.Repeat("a+", 500000) + "a"
	for _, c := range []struct {
		name, src string
		ok        bool
	}{
		{"100000 (", strings.Repeat("(", 100000), false},
		{"100000 [", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), false},
		{"100000 -", strings.Repeat("-", 100000) + "1", false},
		{"100000 not", strings.Repeat("not ", 100000) + "1", false},
		{"100000 **", strings.Repeat("a**", 100000) + "1", false},
		{"100000 lambda", strings.Repeat("lambda: ", 100000) + "1", false},
		{"100000 if-else", strings.Repeat("a if b else ", 100000) + "1", false},
		{"100000 calls", "f" + strings.Repeat("()", 100000), false},
		{"100000 attributes", strings.Repeat("a.", 100000) + "a", false},
		{"100000 names", strings.Repeat("a ", 100000), false},
		{"100000 commas", strings.Repeat("a, ", 100000), true},
		{"100000 strings", strings.Repeat("'a' ", 100000), true},
		{"long chain", big, false},
		{"long comparison", strings.Repeat("a < ", 100000) + "a", true},
		{"long and", strings.Repeat("a and ", 100000) + "a", true},
		{"1e6 digits", strings.Repeat("7", 1000000), false},
		{"1e6 hex digits", "0x" + strings.Repeat("f", 1000000), true},
		{"unterminated", "'" + strings.Repeat("a", 1000000), false},
		{"f-string nesting", "f'{" + strings.Repeat("(", 199) + "1" + strings.Repeat(")", 199) + "}'", true},
		{"deep subscripts", strings.Repeat("a[", 199) + "1" + strings.Repeat("]", 199), true},
	} {
		start := time.Now()
		e, err := Parse(c.src)
		if (err == nil) != c.ok {
			t.Errorf("%s: Parse error %v", c.name, err)
		}
		if e != nil {
			_ = e.String()
			_ = e.Names()
			_, _ = e.Eval(MapEnv{})
		}
		_ = Check(c.src)
		d := time.Since(start)
		t.Logf("%s: %v", c.name, d)
		if d > 30*time.Second { // generous: the point is to catch superlinear time
			t.Errorf("%s: took %v", c.name, d)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range checkCases {
		f.Add(c.src)
	}
	for _, c := range evalCases {
		f.Add(c.src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		_ = Check(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q): error of type %T", src, err)
			}
			if se.Offset < 0 || se.Offset > len(src) {
				t.Fatalf("Parse(%q): offset %d out of range", src, se.Offset)
			}
			return
		}
		s := e.String()
		e2, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", src, s, err)
		}
		if s2 := e2.String(); s2 != s {
			t.Fatalf("Parse(%q): String %q reads back as %q", src, s, s2)
		}
		_ = e.Names()
		_, _ = e.Eval(testEnv)
	})
}
