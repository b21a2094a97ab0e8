package expr

import "fmt"

// SyntaxError is an expression that does not parse. Its text mirrors what
// Python's own parser (CPython 3.11) says for the same input, because that is
// the text Valohai's linter shows, e.g. "invalid syntax (<expression>, line 1)".
type SyntaxError struct {
	// Msg is Python's message without the location suffix, e.g.
	// "invalid syntax" or "'(' was never closed".
	Msg string
	// Line is the 1-based line Python reports. It is 0 for an empty
	// expression, as Python reports it.
	Line int
	// Offset is the 0-based byte offset into the expression where the error
	// was found, for pointing at it. It is our own measure, not Python's
	// column.
	Offset int

	// file is the file name Python puts in the suffix: "<expression>" for
	// the parser, "<tokenize>" for errors of Python's tokenize module. bare
	// errors (not SyntaxErrors in Python) carry no suffix.
	file string
	bare bool
}

// Error returns Python's rendering of the exception,
// "MSG (<expression>, line N)".
func (e *SyntaxError) Error() string {
	if e.bare {
		return e.Msg
	}
	file := e.file
	if file == "" {
		file = "<expression>"
	}
	return fmt.Sprintf("%s (%s, line %d)", e.Msg, file, e.Line)
}

// CheckError is an expression that parses but is refused by the verification
// Valohai applies to `stop-condition` and similar fields (leval's
// VerifierUniverse with a depth limit of 8). Msg mirrors leval's text, e.g.
// "Operation List is not allowed"; where leval prints a Python object
// representation with a memory address, the address is left out.
type CheckError struct {
	// Msg is the message, as leval words it.
	Msg string
	// Offset is the 0-based byte offset of the offending construct.
	Offset int
}

// Error returns Msg.
func (e *CheckError) Error() string { return e.Msg }

// EvalError is a failure to evaluate an expression: an unknown name, or an
// operation Python would raise on (TypeError, ZeroDivisionError, ...). Msg
// follows Python's wording.
type EvalError struct {
	// Msg is the message, e.g. "name 'metadata.acc' is not defined".
	Msg string
	// Offset is the 0-based byte offset of the sub-expression that failed.
	Offset int
}

// Error returns Msg.
func (e *EvalError) Error() string { return e.Msg }

// maxDepth bounds the nesting of a parsed expression. CPython 3.11 gives up
// near the same depth ("maximum recursion depth exceeded during ast
// construction"); the bound also keeps every recursive walk in this package
// shallow, whatever the input.
const maxDepth = 2990

const msgTooDeep = "maximum recursion depth exceeded during ast construction"
