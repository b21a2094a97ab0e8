package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/bigyaml"
)

// Reading a file a few items at a time gives the config and the findings of
// reading it as one document, for every file the tests know and for pieces
// of every size down to one item each.
func TestStreamedReadsAsWholeDocument(t *testing.T) {
	var files []string
	for _, pattern := range []string{"testdata/conformance/valohai-yaml/*/*.yaml", "testdata/lint/*.yaml", "testdata/environments/*/*.yaml", "../testdata/*/valohai.yaml", "../examples/*/valohai.yaml"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	inputs := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	if len(inputs) < 50 {
		t.Fatalf("found only %d files to compare", len(inputs))
	}
	inputs["generated pipeline"] = bigyaml.Pipeline(30)
	inputs["crlf"] = []byte("# c\r\n- step:\r\n    name: a\r\n    image: x\r\n    command: y\r\n- step:\r\n    name: b\r\n    image: x\r\n    command: |\r\n      two\r\n      lines\r\n")
	inputs["anchor across items"] = []byte("- step: &base\n    name: a\n    image: x\n    command: y\n- step:\n    <<: *base\n    name: b\n")
	inputs["quoted across items"] = []byte("- step:\n    name: \"a\n- b\"\n    image: x\n    command: y\n")
	inputs["duplicate names"] = []byte("- step: {name: a, image: x, command: y}\n- step: {name: a, image: z, command: y, image: w}\n")
	inputs["error late"] = []byte("- step: {name: a, image: x, command: y}\n- step: {name: b, image: x, command: y, bogus: 1}\n- step: !!python/object {}\n")
	inputs["short form error"] = []byte("- step: {name: a, image: x, command: y, bad: 1}\n- pipeline: {name: p, connections: 3}\n")
	inputs["keep chomping"] = []byte("- step:\n    name: a\n    image: x\n    command: |+\n      y\n\n\n# c\n- step: {name: b, image: x, command: z}\n")
	inputs["comment first"] = []byte("# valohai\n\n  # indented comment\n- step: {name: a, image: x, command: y}\n")
	inputs["null item"] = []byte("-\n- step: {name: a, image: x, command: y}\n")
	streamed := 0
	for name, data := range inputs {
		if splitItems(data, 1) != nil {
			streamed++
		}
		whole := &reporter{file: "f.yaml"}
		wantCfg := parseDoc(whole, data)
		whole.diags.Sort()
		for _, size := range []int{1, 100, chunkSize} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				r := &reporter{file: "f.yaml"}
				cfg, ok := parseStreamed(r, data, size)
				if !ok {
					return // read as one document: nothing to compare
				}
				r.diags.Sort()
				if got, want := r.diags.Error()+fmt.Sprint(r.diags.Count(SeverityWarning)), whole.diags.Error()+fmt.Sprint(whole.diags.Count(SeverityWarning)); got != want {
					t.Fatalf("findings differ:\nstreamed: %s\nwhole:    %s", got, want)
				}
				if !reflect.DeepEqual(r.diags, whole.diags) {
					t.Fatalf("findings differ:\nstreamed: %v\nwhole:    %v", r.diags, whole.diags)
				}
				if (cfg == nil) != (wantCfg == nil) || cfg != nil && !reflect.DeepEqual(cfg, wantCfg) {
					t.Fatalf("configs differ")
				}
			})
		}
	}
	if streamed < len(inputs)*3/4 {
		t.Errorf("only %d of %d files have the shape that is read in pieces", streamed, len(inputs))
	}
}

// The cut between pieces falls only on `- ` at column 0, and a file of any
// other shape is not cut.
func TestSplitItems(t *testing.T) {
	for _, c := range []struct {
		data string
		want int // chunks with size 1; 0: not cut
	}{
		{"- a\n- b\n- c\n", 3},
		{"# head\n- a\n  - x\n-\tb\n", 2},
		{"---\n- a\n", 0},
		{"- a\n...\n", 0},
		{"key: v\n", 0},
		{"[a, b]\n", 0},
		{"  - a\n", 0},
		{"- \"a\nb\"\n", 0},
		{"\xef\xbb\xbf- a\n", 0},
		{"- a\r- b\r", 0},
		{"- a\r\n- b\r\n", 2},
		{"-a\n", 0},
	} {
		if got := len(splitItems([]byte(c.data), 1)); got != c.want {
			t.Errorf("%q: %d chunks, want %d", c.data, got, c.want)
		}
	}
	data := bytes.Repeat([]byte("- step: {name: a, image: x, command: y}\n"), 1000)
	chunks := splitItems(data, 4096)
	if len(chunks) < 9 || len(chunks) > 11 || chunks[0].start != 0 || chunks[len(chunks)-1].end != len(data) {
		t.Fatalf("chunks %v", chunks)
	}
	for i, ch := range chunks {
		if i > 0 && ch.start != chunks[i-1].end || !strings.HasPrefix(string(data[ch.start:]), "- step") || ch.line != 1+bytes.Count(data[:ch.start], []byte("\n")) {
			t.Fatalf("chunk %d: %+v", i, ch)
		}
	}
}
