package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/fakegithub"
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

	// --post outside CI says there is nothing to post on; --from needs --post.
	noEnv := func(string) string { return "" }
	if code, _, errOut := runCLIEnv(t, noEnv, "report", "--store", "store", "--post"); code != 3 || !strings.Contains(errOut, "GitHub Actions or GitLab CI") {
		t.Errorf("--post locally: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLIEnv(t, noEnv, "report", "--store", "store", "--from", "x.json"); code != 3 || !strings.Contains(errOut, "give --post too") {
		t.Errorf("--from without --post: exit %d %s", code, errOut)
	}

	// In GitHub Actions, a pull request that does not exist: a clear error,
	// and the exit code says the report was not posted.
	fake := fakegithub.New(demoRepo)
	fake.Pulls[7] = strings.Repeat("e", 40)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	event := filepath.Join(dir, "event.json")
	os.WriteFile(event, []byte(pushEvent(strings.Repeat("e", 40))), 0o644)
	env := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": demoRepo, "GITHUB_API_URL": srv.URL,
		"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": event, "GITHUB_SHA": strings.Repeat("e", 40), "GITHUB_REF": "refs/heads/main",
		"GITHUB_TOKEN": "ghs_fake0123456789"}
	getenv := func(k string) string { return env[k] }
	code, _, errOut = runCLIEnv(t, getenv, "report", "--store", "store", "--post", "--pr", "999")
	if code != 1 || !strings.Contains(errOut, "999") || !strings.Contains(strings.ToLower(errOut), "not found") || len(fake.Comments()) != 0 {
		t.Errorf("--pr 999: exit %d, %d comments\n%s", code, len(fake.Comments()), errOut)
	}
	code, _, errOut = runCLIEnv(t, getenv, "report", "--store", "store", "--post", "--pr", "7")
	if code != 0 || len(fake.Comments()) != 1 || fake.Comments()[0].Number != 7 {
		t.Errorf("--pr 7: exit %d, comments %+v\n%s", code, fake.Comments(), errOut)
	}
}
