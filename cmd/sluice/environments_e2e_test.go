package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// A pipeline whose train node runs in the environment gpu-box, mapped in
// sluice.yaml to Docker with transfer store: the node's files go through the
// bucket (fake-gcs-server, the stand-in for Cloud Storage, on 127.0.0.1) and
// `sluice agent` in its containers, while prepare and evaluate run on the
// local Docker host as usual. Results are reused across the two transfers.
func TestEnvironmentsStoreTransfer(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	t.Setenv("SLUICE_IMAGE", dockertest.SluiceImage(t))
	gcstest.Start(t, "env-runs")

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "environments"))); err != nil {
		t.Fatal(err)
	}
	sluiceYAML, err := os.ReadFile(filepath.Join(dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sluice := func(args ...string) (string, int) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	url := "gs://env-runs/sluice"

	// Without sluice.yaml, gpu-box is unmapped: everything runs locally.
	if err := os.Remove(filepath.Join(dir, "sluice.yaml")); err != nil {
		t.Fatal(err)
	}
	out, code := sluice("run", "--pull", "never", "--store", url)
	if code != 0 || !strings.Contains(out, `environment "gpu-box" has no mapping in sluice.yaml`) {
		t.Fatalf("local run: exit %d\n%s", code, out)
	}

	// With it, train goes through the store transfer, and nothing changed
	// that decides a result: all three are reused.
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), sluiceYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := sluice("run", "--pull", "never", "--store", url); code != 0 || strings.Count(out, "reused the result") != 3 {
		t.Fatalf("rerun with the environment: exit %d, want 3 nodes reused\n%s", code, out)
	}

	// Run train (and what depends on it) again, through the agent.
	out, code = sluice("run", "--pull", "never", "--store", url, "--no-cache=train")
	if code != 0 {
		t.Fatalf("store-transfer run: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, `train | {"accuracy": 0.93}`) {
		t.Errorf("train's log did not come back through the store:\n%s", out)
	}
	ctx := context.Background()
	st, err := gcs.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.ListRuns(ctx, st)
	if err != nil || len(ids) != 3 {
		t.Fatalf("runs: %v %v", ids, err)
	}
	rec, err := store.GetRun(ctx, st, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	train, eval := rec.Node("train"), rec.Node("evaluate")
	if train.ReusedFrom != "" || train.Status != store.StatusSucceeded {
		t.Fatalf("train: %s, reused from %q", train.Status, train.ReusedFrom)
	}
	model := train.Output("model.txt")
	if model == nil || model.Properties["kind"] != "model" || train.Output("model.txt.metadata.json") != nil {
		t.Errorf("train outputs = %+v; want model.txt with its sidecar's properties", train.Outputs)
	}
	if train.Metadata["accuracy"] != 0.93 {
		t.Errorf("train metadata = %v", train.Metadata)
	}
	if eval.Metadata["sum"] != 6.0 {
		t.Errorf("evaluate read %v from train's model through the store, want sum 6", eval.Metadata)
	}
	// The run's own job files sit beside its record in the bucket.
	var keys []string
	for info, err := range st.List(ctx, "runs/"+rec.ID+"/jobs/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, "/exit.json") }) {
		t.Errorf("the agent's files of run %s: %v, want an exit record among them", rec.ID, keys)
	}
}

// transfer store with a directory store fails before any container starts.
func TestEnvironmentsStoreTransferNeedsBucket(t *testing.T) {
	dockertest.Client(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "environments"))); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"run", "--pull", "never", "--store", filepath.Join(dir, "store"), filepath.Join(dir, "valohai.yaml")}, nil, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `sluice.yaml:2:3: environment "gpu-box": transfer store needs a store every container can reach, a gs:// bucket`) {
		t.Errorf("exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "runs")); err == nil {
		t.Error("a run was recorded")
	}
}
