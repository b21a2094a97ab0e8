package spec

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bytes (seeded with the conformance corpus and the
// golden inputs) through parse, validation, lint, command building and
// planning. Nothing may panic; a file without errors must give a config whose
// every step builds and every pipeline plans.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/conformance/valohai-yaml/*/*.yaml", "testdata/lint/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, diags := Parse("fuzz.yaml", data)
		for _, d := range diags {
			if d.Message == "" || d.Line < 0 || d.Col < 0 {
				t.Fatalf("malformed diagnostic %#v", d)
			}
		}
		if diags.HasErrors() {
			if cfg != nil {
				t.Fatal("config returned with errors")
			}
			return
		}
		if cfg == nil {
			t.Fatal("no config and no errors")
		}
		for _, s := range cfg.Steps {
			if cmd, err := s.BuildCommand(nil); err == nil {
				_ = JoinCommand(cmd)
			}
		}
		for _, p := range cfg.Pipelines {
			pp, err := cfg.NewPipelinePlan(p, nil)
			if err != nil {
				continue
			}
			_ = pp.WriteText(io.Discard)
			_ = pp.JSON()
			_ = p.Mermaid(nil)
		}
	})
}

// FuzzStreamed: a file read a piece at a time gives the findings (and the
// config, or none) of reading it as one document.
func FuzzStreamed(f *testing.F) {
	for _, pattern := range []string{"testdata/conformance/valohai-yaml/*/*.yaml", "testdata/lint/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !precheck(&reporter{}, data) {
			return
		}
		r := &reporter{file: "f.yaml"}
		cfg, ok := parseStreamed(r, data, 1)
		if !ok {
			return
		}
		whole := &reporter{file: "f.yaml"}
		want := parseDoc(whole, data)
		r.diags.Sort()
		whole.diags.Sort()
		if !reflect.DeepEqual(r.diags, whole.diags) {
			t.Fatalf("findings differ:\nstreamed: %v\nwhole:    %v", r.diags, whole.diags)
		}
		if (cfg == nil) != (want == nil) {
			t.Fatalf("config %v, one document gives %v", cfg != nil, want != nil)
		}
	})
}
