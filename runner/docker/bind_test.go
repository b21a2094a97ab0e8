//go:build unix

package docker

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// Tests of the bind transfer's host side; no Docker needed.

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func perm(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(p)
	must(t, err)
	return st.Mode().Perm()
}

// The job directory is private and holds the contract's tree in valohai/
// (its content is tested in runner/contract); removing it leaves nothing.
func TestPrepareJobDir(t *testing.T) {
	repo := t.TempDir()
	must(t, os.WriteFile(filepath.Join(repo, "README"), []byte("read me\n"), 0o644))
	job := runner.Job{
		RunID: "r", Node: "n", Image: "img", Command: "true", RepositoryDir: repo,
		Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{
			{Name: "a/b/c.txt", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }},
		}}},
	}
	for _, openAccess := range []bool{false, true} {
		base := t.TempDir()
		dir, err := prepareJobDir(base, job, openAccess, time.Unix(1700000000, 0), contract.PartAll)
		must(t, err)
		if perm(t, dir) != 0o700 {
			t.Errorf("job directory mode %v, want 0700", perm(t, dir))
		}
		v := filepath.Join(dir, "valohai")
		wantRepo := fs.FileMode(0o755)
		if openAccess {
			wantRepo = 0o777
		}
		for p, want := range map[string]fs.FileMode{
			"": 0o755, "repository": wantRepo, "inputs": 0o755, "inputs/in/a/b/c.txt": 0o444,
			"outputs": 0o777, "config": 0o755, "config/execution.json": 0o644,
		} {
			if got := perm(t, filepath.Join(v, p)); got != want {
				t.Errorf("open access %v: %s: mode %v, want %v", openAccess, p, got, want)
			}
		}
		if got := readFile(t, filepath.Join(v, "repository", "README")); got != "read me\n" {
			t.Errorf("repository/README = %q", got)
		}
		for i, m := range bindMounts(dir) {
			if want := filepath.Join(v, filepath.Base(m.Target)); m.Source != want {
				t.Errorf("mount %d: source %s, want %s", i, m.Source, want)
			}
		}
		must(t, removeJobDir(dir))
		assertEmpty(t, base)
	}
}

// A bad input fails the preparation, naming the input, and leaves nothing.
func TestPrepareJobDirBadInput(t *testing.T) {
	base := t.TempDir()
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, []byte("abc"), 0o644))
	for name, f := range map[string]runner.InputFile{
		"short":         {Name: "x", Size: 4, Open: open},
		"linked digest": {Name: "x", Path: file, Digest: sha("xyz")},
		"missing":       {Name: "x", Path: file + ".missing"},
	} {
		job := runner.Job{RunID: "r", Node: "n", Image: "i", Command: "true",
			Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{f}}}}
		_, err := prepareJobDir(base, job, false, time.Now(), contract.PartAll)
		if err == nil || !strings.Contains(err.Error(), "input in file x") {
			t.Errorf("%s: %v", name, err)
		}
	}
	assertEmpty(t, base)
}

// readOutputs copies the outputs into a directory it makes, links as
// copies, under the contract's rules (tested in runner/contract).
func TestReadOutputs(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "out", "deeper")
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644))
	must(t, os.Symlink("a.txt", filepath.Join(src, "in")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "out")))
	outs, warnings, err := readOutputs(src, dst)
	must(t, err)
	if len(outs) != 2 || outs[0].Path != "a.txt" || outs[1].Path != "in" || outs[1].Digest != sha("a") {
		t.Errorf("outputs %+v, want a.txt and its copy in", outs)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"out" refused`) {
		t.Errorf("warnings %q, want out refused", warnings)
	}
	for _, name := range []string{"a.txt", "in"} {
		if st, err := os.Lstat(filepath.Join(dst, name)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v, want a regular file", name, err)
		}
	}
	if _, _, err := readOutputs(filepath.Join(src, "missing"), dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing outputs directory: %v", err)
	}
}

func TestRemoveJobDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "job")
	must(t, os.MkdirAll(filepath.Join(dir, "valohai", "outputs", "locked", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "valohai", "outputs", "locked", "deep", "f"), []byte("x"), 0o400))
	must(t, os.Chmod(filepath.Join(dir, "valohai", "outputs", "locked", "deep"), 0o500))
	must(t, os.Chmod(filepath.Join(dir, "valohai", "outputs", "locked"), 0o000))
	must(t, removeJobDir(dir))
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("job directory still there: %v", err)
	}
}
