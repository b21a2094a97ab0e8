package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/gcstest"
)

// copyBatchPipeline copies testdata/run/batch (prepare and evaluate on the
// local Docker, train on the batch environment gpu-l4) into a new directory.
func copyBatchPipeline(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "batch"))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A batch node with a directory store fails before any container or job
// starts, saying what to give instead.
func TestBatchNeedsBucket(t *testing.T) {
	dockertest.Client(t)
	dir := copyBatchPipeline(t)
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"run", "--pull", "never", "--store", filepath.Join(dir, "store"), filepath.Join(dir, "valohai.yaml")}, nil, &stdout, &stderr)
	want := `sluice.yaml:2:3: environment "gpu-l4": a batch environment needs a store its VMs can reach, a gs:// bucket; ` + filepath.Join(dir, "store") + ` is on this host (give --store gs://BUCKET/PREFIX)`
	if code != exitUsage || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, want %d and %q in\n%s", code, exitUsage, want, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "runs")); err == nil {
		t.Error("a run was recorded")
	}
}

// Without Google Cloud credentials (no GOOGLE_APPLICATION_CREDENTIALS, no
// gcloud login, no metadata server) a batch node fails before any job is
// created, naming the ways to give them.
func TestBatchNeedsCredentials(t *testing.T) {
	dockertest.Client(t)
	gcstest.Start(t, "batch-creds")
	dir := copyBatchPipeline(t)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv(BatchEmulatorEnv, "")
	var stdout, stderr strings.Builder
	start := time.Now()
	code := Main(context.Background(), []string{"run", "--pull", "never", "--store", "gs://batch-creds/ci", filepath.Join(dir, "valohai.yaml")}, nil, &stdout, &stderr)
	t.Logf("took %s", time.Since(start))
	for _, want := range []string{`sluice.yaml:2:3: environment "gpu-l4": cloud batch: no Google Cloud credentials`, "GOOGLE_APPLICATION_CREDENTIALS", "google-github-actions/auth"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, want %q in\n%s", code, want, stderr.String())
		}
	}
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
}
