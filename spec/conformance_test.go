package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// The conformance corpus: files from Valohai's reference parser (valohai-yaml)
// with the reference's verdict on each and its built command for every step.
// The copy in testdata keeps `go test` self-contained; the team's shared copy,
// when present beside the checkout, is checked too so the two cannot drift.
var corpusDirs = []string{
	"testdata/conformance/valohai-yaml",
	"../../shared/conformance/valohai-yaml",
}

type expectedFile struct {
	Accepted bool           `json:"accepted"`
	Errors   int            `json:"errors"`
	Warnings int            `json:"warnings"`
	Counts   map[string]int `json:"counts"`
	Steps    map[string]struct {
		BuildCommandDefaults []string `json:"build_command_defaults"`
		JoinedDefaults       string   `json:"joined_defaults"`
	} `json:"steps"`
}

func TestConformance(t *testing.T) {
	for i, dir := range corpusDirs {
		data, err := os.ReadFile(filepath.Join(dir, "EXPECTED.json"))
		if err != nil {
			if i == 0 {
				t.Fatalf("read corpus: %v", err)
			}
			continue // the shared copy is optional
		}
		var expected map[string]expectedFile
		if err := json.Unmarshal(data, &expected); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if len(expected) != 62 {
			t.Errorf("%s: %d files in EXPECTED.json, want 62", dir, len(expected))
		}
		names := make([]string, 0, len(expected))
		for name := range expected {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			want := expected[name]
			t.Run(filepath.Base(dir)+"/"+name, func(t *testing.T) {
				cfg, diags := ParseFile(filepath.Join(dir, name))
				accepted := !diags.HasErrors()
				if accepted != want.Accepted {
					t.Fatalf("accepted = %v, reference says %v; diagnostics:\n%v", accepted, want.Accepted, diagsText(diags))
				}
				if !accepted {
					return
				}
				if want.Warnings > 0 && diags.Count(SeverityWarning) == 0 {
					t.Errorf("reference warns %d times, sluice not at all", want.Warnings)
				}
				got := map[string]int{
					"steps": len(cfg.Steps), "pipelines": len(cfg.Pipelines), "endpoints": len(cfg.Endpoints),
					"tasks": len(cfg.Tasks), "deployments": len(cfg.Deployments),
				}
				if !reflect.DeepEqual(got, want.Counts) {
					t.Errorf("counts = %v, reference %v", got, want.Counts)
				}
				for stepName, ws := range want.Steps {
					s := cfg.Step(stepName)
					if s == nil {
						t.Errorf("step %q missing", stepName)
						continue
					}
					cmd, err := s.BuildCommand(nil)
					if err != nil {
						t.Errorf("step %q: build command: %v", stepName, err)
						continue
					}
					if !reflect.DeepEqual(cmd, ws.BuildCommandDefaults) {
						t.Errorf("step %q command:\n got %q\nwant %q", stepName, cmd, ws.BuildCommandDefaults)
					}
					if j := JoinCommand(cmd); j != ws.JoinedDefaults {
						t.Errorf("step %q joined:\n got %q\nwant %q", stepName, j, ws.JoinedDefaults)
					}
				}
			})
		}
	}
}

func diagsText(ds Diagnostics) string {
	s := ""
	for _, d := range ds {
		s += d.String() + "\n"
	}
	return s
}
