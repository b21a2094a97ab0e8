package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sluice-ci/sluice/internal/bigyaml"
)

// quickAgainstYAML reads each chunk of data with the quick reader and, where
// it accepts the chunk, with the YAML reader and the converter: both must
// give the same values (positions, texts, styles) and findings. It returns
// how many chunks the quick reader accepted.
func quickAgainstYAML(t *testing.T, name string, data []byte) int {
	t.Helper()
	chunks := splitItems(data, 1)
	accepted := 0
	for _, ch := range chunks {
		part := data[ch.start:ch.end]
		qr := &reporter{file: "f.yaml"}
		qc := newConverter(qr, 0)
		items, pos, ok := quickItems(qc, part, ch.line)
		if !ok {
			if len(qr.diags) > 0 || qc.total != 0 {
				t.Fatalf("%s: a chunk the quick reader gave up on left findings %v or a count %d", name, qr.diags, qc.total)
			}
			continue
		}
		accepted++
		seq := decodeChunk(part)
		if seq == nil {
			t.Fatalf("%s: the quick reader read a chunk that YAML does not:\n%s", name, part)
		}
		yr := &reporter{file: "f.yaml"}
		yc := newConverter(yr, ch.line-1)
		var want []*Value
		for _, n := range seq.Content {
			want = append(want, yc.convert(n, 1))
		}
		if yc.failed {
			t.Fatalf("%s: the quick reader read a chunk the converter refuses (%v):\n%s", name, yr.diags, part)
		}
		if wantPos := yc.pos(seq); pos != wantPos {
			t.Errorf("%s: list at %v, YAML says %v", name, pos, wantPos)
		}
		if !reflect.DeepEqual(items, want) {
			for i := range items {
				if i < len(want) && !reflect.DeepEqual(items[i], want[i]) {
					t.Fatalf("%s: item %d differs:\nquick: %s\nyaml:  %s\n%s", name, i, dumpValue(items[i]), dumpValue(want[i]), part)
				}
			}
			t.Fatalf("%s: %d items, YAML reads %d:\n%s", name, len(items), len(want), part)
		}
		if !reflect.DeepEqual(qr.diags, yr.diags) {
			t.Fatalf("%s: findings differ:\nquick: %v\nyaml:  %v", name, qr.diags, yr.diags)
		}
		if qc.total != yc.total {
			t.Fatalf("%s: counted %d values, the converter %d", name, qc.total, yc.total)
		}
	}
	return accepted
}

func dumpValue(v *Value) string {
	if v == nil {
		return "nil"
	}
	s := fmt.Sprintf("{%v %v %q text %q plain %v", v.Kind, v.Pos, v.Str, v.Text, v.Plain)
	for _, it := range v.Items {
		s += " " + dumpValue(it)
	}
	for _, p := range v.Pairs {
		s += " " + dumpValue(p.Key) + ":" + dumpValue(p.Value)
	}
	return s + "}"
}

func TestQuickReaderMatches(t *testing.T) {
	inputs := map[string][]byte{
		"steps":      bigyaml.Steps(50),
		"pipeline":   bigyaml.Pipeline(20),
		"devices":    bigyaml.Devices(40),
		"parameters": bigyaml.Parameters(20),
		"missing":    bigyaml.MissingSteps(10),
		"kinds": []byte("- step:\n    name: s\n    image: 'python:3.12'\n    command:\n    - python x.py {parameter:lr}  # comment\n    - \"echo hi\"\n" +
			"    parameters:\n      - name: lr\n        type: float\n        default: -0.5\n        min: .1\n        max: 1e3\n      - name: on\n        default: yes\n" +
			"    resources: {cpu: 1}\n- task:\n    name: t\n    step: s\n    execution-count: 010\n    stop-condition: a:b\n    description: a - b, [c] d#e\n" +
			"- step:\n    name: s\n    name: dup\n    null: ~\n    2020-01-01: date\n    1: one\n"),
	}
	for _, pattern := range []string{"testdata/conformance/valohai-yaml/*/*.yaml", "testdata/lint/*.yaml", "testdata/environments/*/*.yaml", "../testdata/*/valohai.yaml", "../examples/*/valohai.yaml", "../cmd/sluice/testdata/run/*/valohai.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			inputs[f] = data
		}
	}
	accepted := 0
	for name, data := range inputs {
		accepted += quickAgainstYAML(t, name, data)
	}
	if accepted < 300 {
		t.Errorf("the quick reader read only %d chunks", accepted)
	}
	t.Logf("the quick reader read %d chunks", accepted)
}

// FuzzQuickReader: whatever chunk the quick reader accepts, it reads as the
// YAML reader and the converter do.
func FuzzQuickReader(f *testing.F) {
	for _, pattern := range []string{"testdata/conformance/valohai-yaml/*/*.yaml", "testdata/lint/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add(bigyaml.Pipeline(3))
	f.Fuzz(func(t *testing.T, data []byte) {
		quickAgainstYAML(t, "fuzz", data)
	})
}
