package printable

import (
	"fmt"
	"testing"
)

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"train":            "train",
		"model v2.pkl":     "model v2.pkl",
		"résumé-Ω":         "résumé-Ω",
		"a\nb":             `"a\nb"`,
		"a\rb":             `"a\rb"`,
		"\x1b[2Jgone":      `"\x1b[2Jgone"`,
		"tab\there":        `"tab\there"`,
		"bidi\u202eevil":   `"bidi\u202eevil"`,
		"line\u2028sep":    `"line\u2028sep"`,
		"bad\xffutf8":      `"bad\xffutf8"`,
		"c1\u009bcsi":      `"c1\u009bcsi"`,
		"del\x7f":          `"del\x7f"`,
		`quote"backslash\`: `quote"backslash\`,
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestArg(t *testing.T) {
	if got := fmt.Sprintf("output %s, %q, %v", Arg("a\nb"), Arg("a\nb"), Arg("plain")); got != `output "a\nb", "a\nb", plain` {
		t.Errorf("got %s", got)
	}
	if got := fmt.Sprintf("%q", Arg("plain")); got != `"plain"` {
		t.Errorf("got %s", got)
	}
}

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain log line":         "plain log line",
		"with\ttab":              "with\ttab",
		"\x1b[31mred\x1b[0m":     "␛[31mred␛[0m",
		"progress 10%\rprogress": "progress 10%␍progress",
		"crlf\r":                 "crlf",
		"bell\a nul\x00 del\x7f": "bell␇ nul␀ del␡",
		"c1 \u009b2J":            `c1 \u009b2J`,
		"ünïcode and \xff bytes": "ünïcode and \xff bytes",
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	if got := Escape(`step "a".x` + "\n\x1b\xff" + `"y`); got != `step "a".x\n\x1b\xff"y` {
		t.Errorf("got %s", got)
	}
}
