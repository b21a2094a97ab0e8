package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// report compares a run with the baseline a branch ref names, applies the
// gates of sluice.yaml, and exits 2 when a gate fails.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	yaml := `
- step: {name: evaluate, image: busybox, command: "true"}
- pipeline:
    name: p
    nodes: [{name: evaluate, type: execution, step: evaluate}]
    edges: []
`
	gates := "gates:\n  - metric: evaluate.accuracy\n    direction: higher\n    max-regression: 0.02\n"
	os.WriteFile(filepath.Join(dir, "valohai.yaml"), []byte(yaml), 0o644)
	os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(gates), 0o644)
	st, err := file.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	mk := func(id, branch string, acc float64, at time.Time) *store.Run {
		r := &store.Run{ID: id, Pipeline: "p", File: filepath.Join(dir, "valohai.yaml"), Branch: branch, Commit: id + "-sha",
			Status: store.StatusSucceeded, Started: at, Finished: at.Add(time.Minute),
			Nodes: []*store.NodeRun{{Name: "evaluate", Step: "evaluate", Status: store.StatusSucceeded,
				Started: at, Finished: at.Add(time.Minute), Metadata: map[string]any{"accuracy": acc}}}}
		if err := store.PutRun(context.Background(), st, r); err != nil {
			t.Fatal(err)
		}
		if err := store.RecordRun(context.Background(), st, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	mk("20261101T100000Z-main", "main", 0.95, t0)
	mk("20261101T110000Z-pr", "feature", 0.90, t0.Add(time.Hour))
	t.Chdir(dir)

	code, out, errOut := runCLI(t, "report", "--store", "store", "--baseline", "main")
	if code != 2 {
		t.Fatalf("exit %d, want 2 (a gate failed)\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"<!-- sluice:report pipeline=p -->", "`evaluate.accuracy`", "0.95", "0.9", "the latest successful run on main"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Without a baseline the absolute gates alone decide: none here, so it passes.
	if code, out, errOut := runCLI(t, "report", "--store", "store"); code != 0 || !strings.Contains(out, "no baseline") {
		t.Errorf("no baseline: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "report", "--store", "store", "--run", "nope"); code != 3 || !strings.Contains(errOut, "nope") {
		t.Errorf("unknown run: exit %d %s", code, errOut)
	}
}
