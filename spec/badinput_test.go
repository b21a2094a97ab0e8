package spec

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input of every kind gets one clear error with a position where there is
// one, and never a panic, a hang or unbounded memory.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rng := rand.New(rand.NewSource(1))
	binary := make([]byte, 4096)
	rng.Read(binary)
	binary[10] = 0

	var bomb strings.Builder
	bomb.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 'b'; i <= 'z'; i++ {
		bomb.WriteString(string(i) + ": &" + string(i) + " [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				bomb.WriteString(",")
			}
			bomb.WriteString("*" + string(i-1))
		}
		bomb.WriteString("]\n")
	}

	var nestedBlock strings.Builder
	for i := 0; i < 300; i++ {
		nestedBlock.WriteString(strings.Repeat("  ", i) + "k:\n")
	}

	huge := bytes.Repeat([]byte("- step: {name: s, image: busybox, command: 'true'}\n"), 50<<20/52+1)

	cases := []struct {
		name, file string
		want       string
	}{
		{"empty", write("empty.yaml", nil), "the file is empty"},
		{"only comments", write("comments.yaml", []byte("# nothing here\n")), "no YAML document"},
		{"binary", write("binary.yaml", binary), "binary file"},
		{"not utf8", write("latin1.yaml", []byte("- step: {name: caf\xe9}\n")), "not UTF-8"},
		{"alias bomb", write("bomb.yaml", []byte(bomb.String())), "refusing to expand"},
		{"deep flow nesting", write("deep-flow.yaml", []byte(strings.Repeat("[", 100000))), "invalid YAML"},
		{"deep block nesting", write("deep-block.yaml", []byte(nestedBlock.String())), "nested more than"},
		{"huge file", write("huge.yaml", huge), "at most 16 MiB"},
		{"missing", filepath.Join(dir, "nope.yaml"), "no such file"},
		{"directory", dir, "is a directory"},
		{"two documents", write("two.yaml", []byte("- step: {name: a}\n---\n- step: {name: b}\n")), "single YAML document"},
		{"not a list", write("map.yaml", []byte("step:\n  name: a\n")), "expected a list of steps"},
		{"scalar", write("scalar.yaml", []byte("hello\n")), "expected a list of steps"},
		{"unknown tag", write("tag.yaml", []byte("- step: !python/object {name: a}\n")), "unsupported YAML tag"},
		{"invalid date", write("date.yaml", []byte("- step:\n    name: 2020-13-45\n")), "no such date"},
		{"tab indentation", write("tabs.yaml", []byte("- step:\n\tname: a\n")), "invalid YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, diags := ParseFile(c.file)
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("accepted; diagnostics: %v", diags)
			}
			if !strings.Contains(diags.Error(), c.want) {
				t.Errorf("error %q does not say %q", diags.Error(), c.want)
			}
			if strings.Contains(diags.Error(), "panic") || strings.Contains(diags.Error(), "goroutine") {
				t.Errorf("error looks like a crash: %s", diags.Error())
			}
		})
	}
}

// Names with control characters print quoted in findings: a step cannot
// forge lines of lint's output or send terminal escapes.
func TestFindingsQuoteControlCharacters(t *testing.T) {
	for _, c := range []struct {
		name, data string
		want       []string
	}{
		{"schema", "- step:\n    name: \"a\\nb.go: error: forged\"\n    image: x\n    command: x\n    \"bogus\\r\\u001b[2Jkey\": 1\n",
			[]string{`"bogus\r\x1b[2Jkey"`}},
		{"lint", "- step:\n    name: \"a\\nb.go: error: forged\"\n    image: \"\"\n    command: x\n" +
			"- pipeline:\n    name: p\n    nodes:\n      - {name: n, type: execution, step: \"evil\\nstep\"}\n    edges:\n      - [\"n.output.\\u001b]0;x\\u0007\", \"m.input.y\"]\n",
			[]string{`step "a\nb.go: error: forged"`, `"evil\nstep"`, `"n.output.\x1b]0;x\a -> m.input.y"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, diags := Parse("f.yaml", []byte(c.data))
			if len(diags) == 0 {
				t.Fatal("no findings")
			}
			var all []string
			for _, d := range diags {
				s := d.String()
				if strings.ContainsAny(s, "\n\r\x1b\x07") {
					t.Errorf("finding holds a control character: %q", s)
				}
				all = append(all, s)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.Join(all, "\n"), w) {
					t.Errorf("findings do not show %s:\n%s", w, strings.Join(all, "\n"))
				}
			}
		})
	}
}

// A NUL byte is reported where it is, line and column; an alias bomb gives
// its one error, with no findings about what it left half-read.
func TestBadInputPositions(t *testing.T) {
	_, diags := Parse("f.yaml", []byte("- step:\n    name: ab\x00c\n"))
	if len(diags) != 1 || diags[0].Line != 2 || diags[0].Col != 13 || !strings.Contains(diags[0].Message, "NUL") {
		t.Errorf("NUL: %v, want one error at 2:13", diags)
	}
	_, diags = Parse("f.yaml", []byte("- step: {name: caf\xe9}\n"))
	if len(diags) != 1 || diags[0].Line != 1 || diags[0].Col != 19 {
		t.Errorf("invalid UTF-8: %v, want one error at 1:19", diags)
	}
	_, diags = Parse("bomb.yaml", aliasBomb())
	if len(diags) != 1 || !strings.Contains(diags[0].Message, "refusing to expand") {
		var all []string
		for _, d := range diags {
			all = append(all, d.String())
		}
		t.Errorf("alias bomb: %s; want its one error", strings.Join(all, "; "))
	}
}

// aliasBomb is a "billion laughs" document: 9^25 strings once expanded.
func aliasBomb() []byte {
	var bomb strings.Builder
	bomb.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 'b'; i <= 'z'; i++ {
		bomb.WriteString(string(i) + ": &" + string(i) + " [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				bomb.WriteString(",")
			}
			bomb.WriteString("*" + string(i-1))
		}
		bomb.WriteString("]\n")
	}
	return []byte(bomb.String())
}
