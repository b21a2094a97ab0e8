package runner

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var got []string
	w := NewLineWriter(func(l string) { got = append(got, l) })
	for _, chunk := range []string{"a", "b\nc\r\n", "", "\n\nd", "e"} {
		if n, err := io.WriteString(w, chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if want := []string{"ab", "c", "", ""}; !slices.Equal(got, want) {
		t.Errorf("before Flush %q, want %q", got, want)
	}
	_ = w.Flush()
	_ = w.Flush()
	if want := []string{"ab", "c", "", "", "de"}; !slices.Equal(got, want) {
		t.Errorf("after Flush %q, want %q", got, want)
	}

	got = nil
	_, _ = io.WriteString(w, strings.Repeat("x", MaxLineBytes+10)+"\n")
	if len(got) != 2 || len(got[0]) != MaxLineBytes || len(got[1]) != 10 {
		t.Errorf("long line split into %d pieces", len(got))
	}
}

func TestLocalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"a": true, "a/b.txt": true, "a/./b": true, "a//b": true, "a/": true,
		"": false, ".": false, "./": false, "/a": false, "..": false, "../a": false,
		"a/../b": false, "a/..": false, `a\b`: false, "a\x00": false,
	} {
		if got := LocalPath(p); got != want {
			t.Errorf("LocalPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestJobValidate(t *testing.T) {
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }
	ok := Job{RunID: "r", Node: "n", Image: "i", Command: "true",
		Inputs: []Input{{Name: "data", Files: []InputFile{{Name: "a/b.csv", Path: "/tmp/b.csv"}, {Name: "c", Open: open}}}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid job: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Job)
		want string
	}{
		"no image":     {func(j *Job) { j.Image = "" }, "node n: no image"},
		"no command":   {func(j *Job) { j.Command = "  " }, "node n: no command"},
		"gpus":         {func(j *Job) { j.Resources.GPUs = -2 }, "bad resources"},
		"input name":   {func(j *Job) { j.Inputs[0].Name = "../x" }, `bad input name "../x"`},
		"twice":        {func(j *Job) { j.Inputs = append(j.Inputs, j.Inputs[0]) }, "input data given twice"},
		"file escapes": {func(j *Job) { j.Inputs[0].Files[0].Name = "../../etc/passwd" }, `input data: bad file name "../../etc/passwd"`},
		"both sources": {func(j *Job) { j.Inputs[0].Files[0].Open = open }, "exactly one of Path and Open"},
		"env name":     {func(j *Job) { j.Env = map[string]string{"A=B": "x"} }, `bad environment variable name "A=B"`},
	} {
		j := ok
		j.Inputs = []Input{{Name: "data", Files: slices.Clone(ok.Inputs[0].Files)}}
		tc.edit(&j)
		err := j.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	if got := (Job{RunID: "r", Node: "n"}).ExecutionIDOrDefault(); got != "r-n" {
		t.Errorf("ExecutionIDOrDefault = %q", got)
	}
}
