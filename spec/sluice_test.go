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
	if sc, diags := LoadSluiceConfig(filepath.Join(dir, "none.yaml"), cfg); sc != nil || diags != nil {
		t.Errorf("a missing sluice.yaml: %v %v", sc, diags)
	}
	for text, want := range map[string]string{
		"steps:\n  trian:\n    reuse: false\n": `sluice.yaml:2:3: error: steps.trian: valohai.yaml has no step "trian" (did you mean "train"?)`,
		"steps:\n  train:\n    reuse: nope\n":  `sluice.yaml:3:12: error: steps.train.reuse: expected true or false, got a string ("nope")`,
		"stepz: {}\n":                          `sluice.yaml:1:1: error: stepz: unknown key "stepz" in a sluice.yaml (did you mean "steps"?)`,
	} {
		_, diags := LoadSluiceConfig(write(text), cfg)
		got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
		if !strings.HasPrefix(got, want) {
			t.Errorf("%q:\n got %s\nwant %s", text, got, want)
		}
	}
}
