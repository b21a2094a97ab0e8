package ci

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSetOutputsGitHub(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output")
	if err := os.WriteFile(path, []byte("earlier=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The random source yields the same 16 bytes twice, then others: the
	// second output's value holds the first delimiter, so its delimiter is
	// drawn again.
	first := bytes.Repeat([]byte{0xab}, 16)
	second := bytes.Repeat([]byte{0xcd}, 16)
	random := io.MultiReader(bytes.NewReader(first), bytes.NewReader(first), bytes.NewReader(second))
	d1 := "ghadelimiter_" + hex.EncodeToString(first)
	d2 := "ghadelimiter_" + hex.EncodeToString(second)

	ctx := &Context{Platform: GitHub, Token: "ghs_secret"}
	e := env{"GITHUB_OUTPUT": path}
	outputs := map[string]string{
		"verdict": "passed",
		// Sorted after "verdict"; the would-be delimiter as a line.
		"zreport": "line 1\n" + d1 + "\nline 3",
	}
	if err := SetOutputs(ctx, e.get, random, outputs); err != nil {
		t.Fatal(err)
	}
	want := "earlier=1\n" +
		"verdict<<" + d1 + "\npassed\n" + d1 + "\n" +
		"zreport<<" + d2 + "\nline 1\n" + d1 + "\nline 3\n" + d2 + "\n"
	if got := readFile(t, path); got != want {
		t.Errorf("GITHUB_OUTPUT:\n%s\nwant\n%s", got, want)
	}
}

func TestSetOutputsGitHubErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output")
	ctx := &Context{Platform: GitHub, Token: "ghs_secret"}
	for _, tt := range []struct {
		name    string
		env     env
		outputs map[string]string
		want    string
	}{
		{"no GITHUB_OUTPUT", env{}, map[string]string{"a": "b"}, "GITHUB_OUTPUT"},
		{"bad name", env{"GITHUB_OUTPUT": path}, map[string]string{"a<<b": "c"}, `"a<<b"`},
		{"token in a value", env{"GITHUB_OUTPUT": path}, map[string]string{"url": "https://x:ghs_secret@github.com"}, "url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := SetOutputs(ctx, tt.env.get, &seq{}, tt.outputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one naming %s", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("a refused output was written")
	}
}

func TestDotenvKey(t *testing.T) {
	for in, want := range map[string]string{
		"run-id":      "SLUICE_RUN_ID",
		"verdict":     "SLUICE_VERDICT",
		"report.path": "SLUICE_REPORT_PATH",
		"exit_code":   "SLUICE_EXIT_CODE",
		"Gate 2":      "SLUICE_GATE_2",
		"ä":           "SLUICE__",
	} {
		if got := DotenvKey(in); got != want {
			t.Errorf("DotenvKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSetOutputsGitLab(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.env")
	if err := os.WriteFile(path, []byte("OTHER=kept\nSLUICE_VERDICT=pending\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := &Context{Platform: GitLab, Token: "glpat-secret"}
	e := env{"SLUICE_DOTENV": path}
	err := SetOutputs(ctx, e.get, nil, map[string]string{"verdict": "failed", "run-id": "r1", "summary": "a=b \"quoted\""})
	if err != nil {
		t.Fatal(err)
	}
	want := "OTHER=kept\nSLUICE_VERDICT=failed\nSLUICE_RUN_ID=r1\nSLUICE_SUMMARY=a=b \"quoted\"\n"
	if got := readFile(t, path); got != want {
		t.Errorf("dotenv:\n%s\nwant\n%s", got, want)
	}
	// Without SLUICE_DOTENV nothing is written, and it is no error.
	if err := SetOutputs(ctx, env{}.get, nil, map[string]string{"verdict": "x"}); err != nil {
		t.Error(err)
	}
}

func TestSetOutputsGitLabErrors(t *testing.T) {
	ctx := &Context{Platform: GitLab, Token: "glpat-secret"}
	many := map[string]string{}
	for i := range DotenvMaxVars + 1 {
		many[fmt.Sprintf("v%d", i)] = "x"
	}
	for _, tt := range []struct {
		name    string
		outputs map[string]string
		want    string
	}{
		{"newline", map[string]string{"summary": "a\nb"}, "summary"},
		{"carriage return", map[string]string{"summary": "a\rb"}, "line break"},
		{"collision", map[string]string{"run-id": "1", "run_id": "2"}, "SLUICE_RUN_ID"},
		{"too large", map[string]string{"big": strings.Repeat("x", DotenvMaxBytes)}, "5120 bytes"},
		{"too many", many, "limit of 20"},
		{"secret", map[string]string{"token": "glpat-secret"}, "token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sluice.env")
			err := SetOutputs(ctx, env{"SLUICE_DOTENV": path}.get, nil, tt.outputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one with %q", err, tt.want)
			}
			if _, err := os.Stat(path); err == nil {
				t.Errorf("the dotenv file was written")
			}
		})
	}
}

func TestSetOutputsGitLabLimitCountsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.env")
	old := "OLD=" + strings.Repeat("x", DotenvMaxBytes-10) + "\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	err := SetOutputs(&Context{Platform: GitLab}, env{"SLUICE_DOTENV": path}.get, nil, map[string]string{"verdict": "passed"})
	if err == nil {
		t.Fatal("no error for a file over the limit")
	}
	if readFile(t, path) != old {
		t.Errorf("the file changed after an error")
	}
}

func TestSetOutputsLocal(t *testing.T) {
	dir := t.TempDir()
	e := env{"GITHUB_OUTPUT": filepath.Join(dir, "o"), "SLUICE_DOTENV": filepath.Join(dir, "d")}
	if err := SetOutputs(&Context{Platform: Local}, e.get, nil, map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("local run wrote %v", entries)
	}
}

func TestWriteSummary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary.md")
	e := env{"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": path}
	if err := WriteSummary(e.get, "# sluice\n\npassed"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(e.get, "second\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "# sluice\n\npassed\nsecond\n"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	// Elsewhere nothing is written.
	other := filepath.Join(t.TempDir(), "other.md")
	if err := WriteSummary(env{"GITLAB_CI": "true", "GITHUB_STEP_SUMMARY": other}.get, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("a summary was written outside GitHub")
	}
}

func TestWriteSummaryCut(t *testing.T) {
	// Lines of multi-byte runes, inside a code fence, well over 1 MiB.
	line := strings.Repeat("é", 50) + "\n" // 101 bytes
	var b strings.Builder
	b.WriteString("# report\n\n```text\n")
	for b.Len() < 2*SummaryMaxBytes {
		b.WriteString(line)
	}
	b.WriteString("```\n\nTHE END\n")
	markdown := b.String()

	path := filepath.Join(t.TempDir(), "summary.md")
	if err := os.WriteFile(path, []byte("earlier step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := env{"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": path}
	if err := WriteSummary(e.get, markdown); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if len(got) > SummaryMaxBytes {
		t.Fatalf("summary is %d bytes, over %d", len(got), SummaryMaxBytes)
	}
	if len(got) < SummaryMaxBytes-1024 {
		t.Errorf("summary is %d bytes: cut far below the limit", len(got))
	}
	if !utf8.ValidString(got) {
		t.Errorf("summary cut inside a rune")
	}
	if strings.Contains(got, "THE END") {
		t.Errorf("the end of the markdown is there")
	}
	body, note, ok := strings.Cut(strings.TrimPrefix(got, "earlier step\n"), "\n> **Note:** this summary is cut")
	if !ok || !strings.Contains(note, "1 MiB") {
		t.Fatalf("no note about the cut at the end: %q", got[len(got)-200:])
	}
	// Cut at a line boundary, then the fence closed.
	if !strings.HasSuffix(body, line+"```\n") {
		t.Errorf("not cut at a line boundary with the fence closed: %q", body[len(body)-120:])
	}

	// A file already at the limit: an error naming the file.
	if err := WriteSummary(e.get, strings.Repeat("more\n", 100)); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err %v, want one naming %s", err, path)
	}
}

func TestWriteSummaryCutLongLine(t *testing.T) {
	// One line longer than the limit is cut on a rune boundary.
	path := filepath.Join(t.TempDir(), "summary.md")
	e := env{"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": path}
	if err := WriteSummary(e.get, strings.Repeat("日", SummaryMaxBytes)); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if len(got) > SummaryMaxBytes || !utf8.ValidString(got) || !strings.Contains(got, "cut here") {
		t.Errorf("summary of %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}
