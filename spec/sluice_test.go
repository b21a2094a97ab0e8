package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSluiceConfig(t *testing.T) {
	cfg := parseOK(t, taskStep)
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "sluice.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sc, diags := LoadSluiceConfig(write("steps:\n  train:\n    reuse: false\n"), cfg)
	if diags.HasErrors() || sc.Reuses("train") || !sc.Reuses("other") {
		t.Fatalf("config %+v, %v", sc, diags)
	}
	if sc.Report.ApprovalLabel != DefaultApprovalLabel || sc.Report.Links != LinksConsole || sc.Report.SignedURLHours != DefaultSignedURLHours {
		t.Errorf("report defaults: %+v", sc.Report)
	}
	sc, diags = LoadSluiceConfig(write("report:\n  series: [train.loss]\n  approval-label: ok-to-merge\n  links: signed\n  signed-url-hours: 2\ngates:\n  - metric: train.loss\n"), cfg)
	if diags.HasErrors() || len(sc.Report.Series) != 1 || sc.Report.Series[0] != "train.loss" || sc.Report.ApprovalLabel != "ok-to-merge" ||
		sc.Report.Links != LinksSigned || sc.Report.SignedURLHours != 2 || len(sc.Gates) != 1 {
		t.Fatalf("report section: %+v, %v", sc, diags)
	}
	if sc, diags := LoadSluiceConfig(filepath.Join(dir, "none.yaml"), cfg); sc != nil || diags != nil {
		t.Errorf("a missing sluice.yaml: %v %v", sc, diags)
	}
	for text, want := range map[string]string{
		"steps:\n  trian:\n    reuse: false\n":            `sluice.yaml:2:3: error: steps.trian: valohai.yaml has no step "trian" (did you mean "train"?)`,
		"steps:\n  train:\n    reuse: nope\n":             `sluice.yaml:3:12: error: steps.train.reuse: expected true or false, got a string ("nope")`,
		"stepz: {}\n":                                     `sluice.yaml:1:1: error: stepz: unknown key "stepz" in a sluice.yaml (did you mean "steps"?)`,
		"gates:\n  - metric: trian.loss\n":                `sluice.yaml:2:13: error: gates[0].metric: no pipeline of valohai.yaml has a node "trian", and no step is named so: no run can print this metric (did you mean "train"?)`,
		"report:\n  series: [train.loss, evaluate.acc]\n": `sluice.yaml:2:24: error: report.series[1]: no pipeline of valohai.yaml has a node "evaluate"`,
		"report:\n  links: s3\n":                          `sluice.yaml:2:10: error: report.links: "s3" is not valid here; use one of: console, signed, none`,
		"report:\n  signed-url-hours: 200\n":              `sluice.yaml:2:21: error: report.signed-url-hours: 200 is greater than the maximum 168`,
		"report:\n  approval-label: ''\n":                 `sluice.yaml:2:19: error: report.approval-label: "" is not valid: expected a label name`,
	} {
		_, diags := LoadSluiceConfig(write(text), cfg)
		got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
		if !strings.HasPrefix(got, want) {
			t.Errorf("%q:\n got %s\nwant %s", text, got, want)
		}
	}
}

func TestLoadSluiceGates(t *testing.T) {
	dir := t.TempDir()
	load := func(text string) (*SluiceConfig, Diagnostics) {
		p := filepath.Join(dir, "sluice.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return LoadSluiceConfig(p, nil)
	}
	sc, diags := load(`gates:
  - metric: evaluate.accuracy
    direction: higher
    min: 0.9
    max: 1
    max-regression: 0.02
    max-regression-percent: 5
    noise: 0.001
  - metric: train.val.loss
    direction: lower
  - metric: validate.rows
    min: 1000
`)
	if diags.HasErrors() || len(sc.Gates) != 3 {
		t.Fatalf("config %+v, %v", sc, diags)
	}
	g := sc.Gates[0]
	if g.Metric != "evaluate.accuracy" || g.Node != "evaluate" || g.Key != "accuracy" || g.Direction != DirectionHigher ||
		*g.Min != 0.9 || *g.Max != 1 || *g.MaxRegression != 0.02 || *g.MaxRegressionPercent != 5 || g.Noise != 0.001 ||
		g.Pos != (Pos{Line: 2, Col: 13}) || !strings.HasSuffix(g.File, "sluice.yaml") {
		t.Errorf("gate 0: %+v", g)
	}
	if g := sc.Gates[1]; g.Node != "train" || g.Key != "val.loss" || g.Direction != DirectionLower || g.Min != nil || g.MaxRegression != nil {
		t.Errorf("gate 1: %+v", g)
	}
	if g := sc.Gates[2]; g.Direction != DirectionNone || *g.Min != 1000 {
		t.Errorf("gate 2: %+v", g)
	}
	if !sc.Reuses("anything") {
		t.Error("gates changed reuse")
	}

	for _, c := range []struct{ text, want string }{
		{"gates:\n  - metric: evaluate.accuracy\n    min: high\n",
			`sluice.yaml:3:10: error: gates[0].min: expected a number, got a string ("high")`},
		{"gates:\n  - metric: evaluate.accuracy\n    direction: up\n",
			`sluice.yaml:3:16: error: gates[0].direction: "up" is not valid here; use one of: higher, lower`},
		{"gates:\n  - metric: evaluate.accuracy\n    treshold: 0.9\n",
			`sluice.yaml:3:5: error: gates[0].treshold: unknown key "treshold" in a gate`},
		{"gates:\n  - metric: accuracy\n",
			`sluice.yaml:2:13: error: gates[0].metric: "accuracy" is not valid: expected node.key, such as evaluate.accuracy`},
		{"gates:\n  - direction: higher\n",
			`sluice.yaml:2:5: error: gates[0]: missing required key "metric"`},
		{"gates:\n  - metric: evaluate.accuracy\n    max-regression: 0.1\n",
			"sluice.yaml:3:21: error: gates[0].max-regression: max-regression needs `direction: higher` or `direction: lower`"},
		{"gates:\n  - metric: evaluate.accuracy\n    direction: higher\n    noise: -1\n",
			`sluice.yaml:4:12: error: gates[0].noise: -1 is less than the minimum 0`},
		{"gates:\n  - metric: evaluate.accuracy\n    min: .nan\n",
			`sluice.yaml:3:10: error: gates[0].min: expected a finite number, got nan`},
		{"gates:\n  - metric: evaluate.accuracy\n    min: 2\n    max: 1\n",
			`sluice.yaml:3:10: error: gates[0].min: min 2 is greater than max 1`},
		{"gates:\n  - metric: evaluate.accuracy\n  - metric: evaluate.accuracy\n    min: 1\n",
			`sluice.yaml:3:13: error: gates[1].metric: metric "evaluate.accuracy" already has a gate (line 2)`},
		{"gates:\n  evaluate.accuracy: {min: 1}\n",
			`sluice.yaml:2:3: error: gates: expected a list of gates, got a mapping`},
	} {
		_, diags := load(c.text)
		got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%q:\n got %s\nwant %s", c.text, got, c.want)
		}
	}
}
