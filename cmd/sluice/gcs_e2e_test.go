package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// startFakeGCS starts fake-gcs-server on 127.0.0.1 with one bucket and points
// STORAGE_EMULATOR_HOST (for this test and the sluice processes it starts) at it.
func startFakeGCS(t *testing.T, bucket string) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	return srv
}

// A run keeps everything in a gs:// store. The stand-in for Google Cloud
// Storage is fake-gcs-server (a real HTTP server speaking the JSON API) on
// 127.0.0.1, reached by the real client through STORAGE_EMULATOR_HOST.
func TestRunWithGCSStore(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	srv := startFakeGCS(t, "team-runs")

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "fan-out-fan-in"))); err != nil {
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
	url := "gs://team-runs/ci/sluice"
	if out, code := sluice("run", "--pull", "never", "--store", url); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.ListRuns(context.Background(), st)
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs in the bucket: %v %v", ids, err)
	}
	rec, err := store.GetRun(context.Background(), st, ids[0])
	if err != nil || rec.Status != store.StatusSucceeded {
		t.Fatalf("run record: %v %v", rec, err)
	}
	joined := rec.Node("join").Output("joined.txt")
	if joined == nil {
		t.Fatal("joined.txt not recorded")
	}
	// The objects sit under the prefix, findable with plain gsutil.
	if _, err := srv.GetObject("team-runs", "ci/sluice/"+store.RunKey(rec.ID)); err != nil {
		t.Errorf("run record object: %v", err)
	}
	if _, err := srv.GetObject("team-runs", "ci/sluice/"+store.BlobKey(joined.Digest)); err != nil {
		t.Errorf("output blob object: %v", err)
	}
	out, code := sluice("artifacts", "get", "--store", url, rec.ID, "join", "joined.txt", "-")
	if code != 0 || out != "LEFT\nRIGHT\n" {
		t.Errorf("artifacts get: exit %d, %q", code, out)
	}
	// A second run reuses everything from the bucket.
	if out, code := sluice("run", "--pull", "never", "--store", url); code != 0 || strings.Count(out, "reused the result") != 4 {
		t.Errorf("rerun: exit %d\n%s", code, out)
	}
	if out, code := sluice("runs", "--store", "gs://no-such-bucket"); code != 3 || !strings.Contains(out, "no-such-bucket") {
		t.Errorf("missing bucket: exit %d\n%s", code, out)
	}
}

// Two sluice runs of one pipeline on one gs:// store at once: both records
// complete, the branch ref names one of them, and every blob verifies.
func TestConcurrentRunsOnGCSStore(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	startFakeGCS(t, "shared")

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "fan-out-fan-in"))); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pipeline"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	url := "gs://shared/sluice"
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "run", "--pull", "never", "--no-cache", "--store", url)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("run %d: %v\n%s", i, err, out)
			}
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	ctx := context.Background()
	st, err := gcs.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.ListRuns(ctx, st)
	if err != nil || len(ids) != 2 {
		t.Fatalf("runs: %v %v", ids, err)
	}
	for _, id := range ids {
		rec, err := store.GetRun(ctx, st, id)
		if err != nil || rec.Status != store.StatusSucceeded || rec.Finished.IsZero() || rec.Branch != "main" {
			t.Fatalf("run %s: %+v %v", id, rec, err)
		}
		for _, n := range rec.Nodes {
			for _, f := range n.Outputs {
				rc, _, err := store.OpenBlob(ctx, st, f.Digest)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if err != nil {
					t.Errorf("run %s, %s/%s: %v", id, n.Name, f.Path, err)
				}
			}
		}
	}
	ref, err := store.BranchRef(ctx, st, "main", "fan")
	if err != nil || (ref.Run != ids[0] && ref.Run != ids[1]) {
		t.Errorf("branch ref %+v (%v) names neither run %v", ref, err, ids)
	}
	if runs, err := store.CommitRuns(ctx, st, ref.Commit); err != nil || len(runs) != 2 {
		t.Errorf("commit %s lists %d runs (%v), want 2", ref.Commit, len(runs), err)
	}
}

// gs:// input defaults through the binary: with the store in Cloud Storage
// (the store's client reads them) and with a local store (a client of the
// run's own), against fake-gcs-server. Each object arrives in the step.
func TestRunGSInputDefaults(t *testing.T) {
	image := dockertest.Image(t)
	srv := startFakeGCS(t, "team-runs")
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "team-runs", Name: "data/a.csv"}, Content: []byte("1,2\n")})
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "team-runs", Name: "data/b.csv"}, Content: []byte("3,4\n")})
	dir := t.TempDir()
	yaml := `- step:
    name: read
    image: ` + image + `
    command: cat /valohai/inputs/data/a.csv /valohai/inputs/data/b.csv
    inputs:
      - {name: data, default: "gs://team-runs/data/*.csv"}
`
	if err := os.WriteFile(filepath.Join(dir, "valohai.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, storeURL := range []string{"gs://team-runs/ci", filepath.Join(t.TempDir(), "store")} {
		cmd := exec.Command(os.Args[0], "run", "--pull", "never", "--step", "read", "--store", storeURL)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "1,2") || !strings.Contains(string(out), "3,4") {
			t.Errorf("store %s: %v\n%s", storeURL, err, out)
		}
	}
}
