package spec

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluice-ci/sluice/internal/printable"
)

// Severity says whether a diagnostic makes the file unusable.
type Severity string

// Severities: an error rejects the file (Valohai would too); a warning does not.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one finding about a pipeline file: where it is, how bad it is,
// the path to the field at fault and what would be valid.
type Diagnostic struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Col      int      `json:"col"`
	Severity Severity `json:"severity"`
	// Path names the field, as in `pipeline "train".nodes[1].step`.
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// String formats the diagnostic as file:line:col: severity: path: message.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Col)
	}
	fmt.Fprintf(&b, ": %s: ", d.Severity)
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of findings.
type Diagnostics []Diagnostic

// HasErrors reports whether any finding is an error.
func (ds Diagnostics) HasErrors() bool { return ds.Count(SeverityError) > 0 }

// Count returns how many findings have the given severity.
func (ds Diagnostics) Count(s Severity) int {
	n := 0
	for _, d := range ds {
		if d.Severity == s {
			n++
		}
	}
	return n
}

// Sort orders findings by position, errors before warnings at the same place.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Severity == SeverityError && b.Severity != SeverityError
	})
}

// Error makes Diagnostics usable as an error: the errors among them, one per line.
func (ds Diagnostics) Error() string {
	var lines []string
	for _, d := range ds {
		if d.Severity == SeverityError {
			lines = append(lines, d.String())
		}
	}
	return strings.Join(lines, "\n")
}

// Err returns the diagnostics as an error when any of them is an error, else nil.
func (ds Diagnostics) Err() error {
	if ds.HasErrors() {
		return ds
	}
	return nil
}

// reporter collects diagnostics for one file. It also carries the caller's
// context, which the long loops of loading, validating and linting look at so
// that a signal or a timeout stops them.
type reporter struct {
	file   string
	diags  Diagnostics
	errors int             // how many of diags are errors
	ctx    context.Context // nil: never stopped
}

// stopped reports whether the caller gave up on this file (its context is
// done). Loops over the items of a file call it once per item.
func (r *reporter) stopped() bool {
	return r.ctx != nil && r.ctx.Err() != nil
}

func (r *reporter) add(sev Severity, pos Pos, path, format string, args ...any) {
	if sev == SeverityError {
		r.errors++
	}
	r.diags = append(r.diags, Diagnostic{
		File: r.file, Line: pos.Line, Col: pos.Col, Severity: sev, Path: printable.Escape(path),
		Message: fmt.Sprintf(format, safeArgs(args)...),
	})
}

// safeArgs makes every string, error and Stringer argument that holds a
// control character print quoted (see printable.Arg): names come from the
// file, and a name with a newline in it must not print a line of its own.
func safeArgs(args []any) []any {
	for i, a := range args {
		var s string
		switch x := a.(type) {
		case string:
			s = x
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			continue
		}
		if !printable.Plain(s) {
			args[i] = printable.Arg(s)
		}
	}
	return args
}

// merge appends another reporter's findings.
func (r *reporter) merge(o *reporter) {
	r.diags = append(r.diags, o.diags...)
	r.errors += o.errors
}

func (r *reporter) errorf(pos Pos, path, format string, args ...any) {
	r.add(SeverityError, pos, path, format, args...)
}

func (r *reporter) warnf(pos Pos, path, format string, args ...any) {
	r.add(SeverityWarning, pos, path, format, args...)
}

// pos returns the position of a value, or of a fallback when the value is absent.
func posOf(v, fallback *Value) Pos {
	if v != nil && v.Pos.Line > 0 {
		return v.Pos
	}
	if fallback != nil {
		return fallback.Pos
	}
	return Pos{}
}
