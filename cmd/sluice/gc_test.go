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

// gcStore makes a store with an old run, a new run that shares a blob with
// it, and an unreferenced blob, all aged with os.Chtimes; it returns the
// store's directory and the digests.
func gcStore(t *testing.T) (dir string, s *file.Store, shared, oldOnly, garbage store.Digest) {
	t.Helper()
	dir = t.TempDir()
	s, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	blob := func(content string) store.Digest {
		d, _, err := store.PutBlob(ctx, s, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		old := now.Add(-40 * 24 * time.Hour)
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(store.BlobKey(d))), old, old); err != nil {
			t.Fatal(err)
		}
		return d
	}
	shared, oldOnly, garbage = blob("shared model"), blob("old log"), blob("nobody's")
	runs := []*store.Run{
		{ID: "20240101T000000.000000Z-000001", Status: store.StatusSucceeded, Started: now.Add(-30 * 24 * time.Hour),
			Nodes: []*store.NodeRun{{Name: "train", Status: store.StatusSucceeded, Log: oldOnly,
				Outputs: []store.File{{Path: "model.pkl", Digest: shared, Size: 12}}}}},
		{ID: "20240201T000000.000000Z-000002", Status: store.StatusSucceeded, Started: now.Add(-2 * 24 * time.Hour),
			Nodes: []*store.NodeRun{{Name: "train", Status: store.StatusSucceeded,
				Outputs: []store.File{{Path: "model.pkl", Digest: shared, Size: 12}}}}},
	}
	for _, r := range runs {
		if err := store.PutRun(ctx, s, r); err != nil {
			t.Fatal(err)
		}
	}
	return dir, s, shared, oldOnly, garbage
}

func TestGCCommandFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no keep-days", []string{"gc", "--store", dir}, "--keep-days is required"},
		{"negative", []string{"gc", "--keep-days", "-3", "--store", dir}, "--keep-days -3: want 0 or more"},
		{"not a number", []string{"gc", "--keep-days", "ten", "--store", dir}, `invalid argument "ten"`},
		{"argument", []string{"gc", "--keep-days", "1", "--store", dir, "extra"}, "unknown command"},
		{"unknown store", []string{"gc", "--keep-days", "1", "--store", "s3://bucket"}, "unknown store"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errOut)
			}
			if !strings.Contains(errOut, c.msg) {
				t.Errorf("stderr %q does not contain %q", errOut, c.msg)
			}
		})
	}
}

func TestGCCommand(t *testing.T) {
	dir, s, shared, oldOnly, garbage := gcStore(t)
	ctx := context.Background()
	exists := func(d store.Digest) bool {
		_, err := s.Stat(ctx, store.BlobKey(d))
		return err == nil
	}

	code, out, errOut := runCLI(t, "gc", "--keep-days", "7", "--dry-run", "--store", dir)
	if code != exitOK {
		t.Fatalf("dry run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{
		"would remove run 20240101T000000.000000Z-000001\n",
		"would remove 1 run, 0 cache entries, 2 blobs (",
		"dry run: nothing was deleted\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run: stdout does not contain %q:\n%s", want, out)
		}
	}
	if !exists(shared) || !exists(oldOnly) || !exists(garbage) {
		t.Fatal("the dry run deleted a blob")
	}
	if _, err := store.GetRun(ctx, s, "20240101T000000.000000Z-000001"); err != nil {
		t.Fatalf("the dry run deleted the old run: %v", err)
	}

	code, out, errOut = runCLI(t, "gc", "--keep-days", "7", "--store", "file://"+dir)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{"removed run 20240101T000000.000000Z-000001\n", "removed 1 run, 0 cache entries, 2 blobs ("} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout does not contain %q:\n%s", want, out)
		}
	}
	t.Logf("sluice gc:\n%s", out)
	if strings.Contains(out, "dry run") {
		t.Errorf("stdout mentions a dry run:\n%s", out)
	}
	if !exists(shared) {
		t.Error("the blob the new run shares with the old one was removed")
	}
	if exists(oldOnly) || exists(garbage) {
		t.Error("an unreferenced blob is still there")
	}
	if _, err := store.GetRun(ctx, s, "20240201T000000.000000Z-000002"); err != nil {
		t.Errorf("the new run: %v", err)
	}
	if ids, _ := store.ListRuns(ctx, s); len(ids) != 1 {
		t.Errorf("runs left: %q", ids)
	}
}

func TestGCByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
