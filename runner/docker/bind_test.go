//go:build unix

package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
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

func TestPrepareJobDir(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "pkg", "train.py"), []byte("print(1)\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "README"), []byte("read me\n"), 0o644))
	must(t, os.Symlink("pkg/train.py", filepath.Join(repo, "link.py")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(repo, "passwd")))
	data := t.TempDir()
	shared := filepath.Join(data, "shared.csv") // readable by all: hard-linked
	must(t, os.WriteFile(shared, []byte("a,b\n"), 0o644))
	private := filepath.Join(data, "private.csv") // 0600: copied, so a non-root user can read it
	must(t, os.WriteFile(private, []byte("secret\n"), 0o600))
	linked := filepath.Join(data, "link.csv") // a symlink: its content, copied
	must(t, os.Symlink("shared.csv", linked))

	job := runner.Job{
		RunID: "r", Node: "n", Image: "img", Command: "true", RepositoryDir: repo,
		Parameters: map[string]any{"lr": 0.1},
		Inputs: []runner.Input{
			{Name: "in", Files: []runner.InputFile{
				{Name: "shared.csv", Path: shared, URI: "file://shared.csv"},
				{Name: "sub/private.csv", Path: private},
				{Name: "link.csv", Path: linked},
				{Name: "a/b/c.txt", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }},
			}},
			{Name: "empty"},
		},
	}
	now := time.Unix(1700000000, 0)
	base := t.TempDir()
	dir, err := prepareJobDir(base, job, false, now)
	must(t, err)
	defer func() {
		must(t, removeJobDir(dir))
		assertEmpty(t, base)
	}()
	if perm(t, dir) != 0o700 {
		t.Errorf("job directory mode %v, want 0700", perm(t, dir))
	}
	v := filepath.Join(dir, "valohai")

	for p, want := range map[string]fs.FileMode{
		"repository": 0o755, "repository/pkg": 0o755, "repository/pkg/train.py": 0o755, "repository/README": 0o644,
		"inputs": 0o755, "inputs/in": 0o755, "inputs/in/sub": 0o755, "inputs/in/a/b": 0o755, "inputs/empty": 0o755,
		"inputs/in/a/b/c.txt": 0o444, "inputs/in/sub/private.csv": 0o444, "inputs/in/link.csv": 0o444,
		"inputs/in/shared.csv": 0o644, // the hard link keeps its file's mode
		"outputs":              0o777, "config": 0o755, "config/parameters.json": 0o644,
	} {
		if got := perm(t, filepath.Join(v, p)); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	sameFile := func(a, b string) bool {
		sa, err := os.Stat(a)
		must(t, err)
		sb, err := os.Stat(b)
		must(t, err)
		return os.SameFile(sa, sb)
	}
	if !sameFile(shared, filepath.Join(v, "inputs/in/shared.csv")) {
		t.Error("inputs/in/shared.csv is not a hard link to its file")
	}
	for in, p := range map[string]string{private: "inputs/in/sub/private.csv", linked: "inputs/in/link.csv"} {
		st, err := os.Lstat(filepath.Join(v, p))
		must(t, err)
		if !st.Mode().IsRegular() || sameFile(in, filepath.Join(v, p)) {
			t.Errorf("%s: %v, want a copy", p, st.Mode())
		}
	}
	// The repository is writable in the container: copies, never links to
	// the snapshot's files (hard links to the user's work tree).
	if sameFile(filepath.Join(repo, "README"), filepath.Join(v, "repository/README")) {
		t.Error("repository/README is a hard link, want a copy")
	}
	for p, want := range map[string]string{"repository/link.py": "pkg/train.py", "repository/passwd": "/etc/passwd"} {
		if got, err := os.Readlink(filepath.Join(v, p)); err != nil || got != want {
			t.Errorf("%s: link to %q (%v), want %q", p, got, err, want)
		}
	}
	if got := readFile(t, filepath.Join(v, "repository/pkg/train.py")); got != "print(1)\n" {
		t.Errorf("train.py = %q", got)
	}

	// The config files are those the tar carries, byte for byte.
	var buf bytes.Buffer
	must(t, writeContract(&buf, job, now))
	tr := tar.NewReader(&buf)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if !strings.HasPrefix(h.Name, "valohai/config/") || h.Typeflag != tar.TypeReg {
			continue
		}
		want, _ := io.ReadAll(tr)
		if got := readFile(t, filepath.Join(dir, h.Name)); got != string(want) {
			t.Errorf("%s:\n%s\nwant (tar)\n%s", h.Name, got, want)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d config files compared, want 3", n)
	}
}

// For an image whose user is not root, the repository is writable by all.
func TestPrepareJobDirOpenAccess(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "pkg", "run.sh"), []byte("true\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "README"), []byte("x\n"), 0o644))
	base := t.TempDir()
	dir, err := prepareJobDir(base, runner.Job{RunID: "r", Node: "n", Image: "i", Command: "true", RepositoryDir: repo}, true, time.Now())
	must(t, err)
	defer removeJobDir(dir)
	for p, want := range map[string]fs.FileMode{
		"repository": 0o777, "repository/pkg": 0o777, "repository/pkg/run.sh": 0o777, "repository/README": 0o666,
		"inputs": 0o755, "outputs": 0o777, "config": 0o755,
	} {
		if got := perm(t, filepath.Join(dir, "valohai", p)); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
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
		"digest":        {Name: "x", Size: 3, Open: open, Digest: sha("xyz")},
		"linked digest": {Name: "x", Path: file, Digest: sha("xyz")},
		"missing":       {Name: "x", Path: file + ".missing"},
	} {
		job := runner.Job{RunID: "r", Node: "n", Image: "i", Command: "true",
			Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{f}}}}
		_, err := prepareJobDir(base, job, false, time.Now())
		if err == nil || !strings.Contains(err.Error(), "input in file x") {
			t.Errorf("%s: %v", name, err)
		}
	}
	assertEmpty(t, base)
}

// readOutputs on the same tree as TestExtractOutputs's archive, made on
// disk as a step would make it: the same outputs and refusals.
func TestReadOutputs(t *testing.T) {
	parent := t.TempDir()
	src := filepath.Join(parent, "outputs")
	dst := filepath.Join(t.TempDir(), "out")
	must(t, os.WriteFile(filepath.Join(parent, "victim"), []byte("untouched"), 0o644))
	must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o777))
	must(t, os.MkdirAll(filepath.Join(src, "empty"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("bb"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("true"), 0o700))
	for name, target := range map[string]string{
		"abs":      "/etc/passwd",
		"up":       "../victim",
		"sub/up2":  "../../victim",
		"sub/in":   "../a.txt",
		"chain":    "sub/in",
		"loop1":    "loop2",
		"loop2":    "loop1",
		"dirlink":  "sub",
		"dangling": "nope",
		"etc":      "/etc",            // a directory outside
		"parent":   "..",              // the directory above
		"via":      "dirlink/b.txt",   // through a symlinked directory
		"viaout":   "parent/victim",   // out through a symlinked directory
		"sub/self": "../sub/../a.txt", // inside, the long way
	} {
		must(t, os.Symlink(target, filepath.Join(src, name)))
	}
	must(t, os.Link(filepath.Join(src, "sub", "b.txt"), filepath.Join(src, "hard")))
	must(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))

	outs, warnings, err := readOutputs(src, dst)
	if err != nil {
		t.Fatalf("readOutputs: %v", err)
	}
	want := []runner.OutputFile{
		{Path: "a.txt", Size: 1, Digest: sha("a")},
		{Path: "chain", Size: 1, Digest: sha("a")},
		{Path: "hard", Size: 2, Digest: sha("bb")},
		{Path: "run.sh", Size: 4, Digest: sha("true")},
		{Path: "sub/b.txt", Size: 2, Digest: sha("bb")},
		{Path: "sub/in", Size: 1, Digest: sha("a")},
		{Path: "sub/self", Size: 1, Digest: sha("a")},
	}
	if !slices.Equal(outs, want) {
		t.Errorf("outputs\n got %+v\nwant %+v", outs, want)
	}
	if got := readFile(t, filepath.Join(parent, "victim")); got != "untouched" {
		t.Errorf("victim = %q", got)
	}
	var files []string
	must(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, _ := filepath.Rel(dst, p)
		if !d.IsDir() {
			files = append(files, filepath.ToSlash(rel))
			if !d.Type().IsRegular() {
				t.Errorf("%s is not a regular file: %v", rel, d.Type())
			}
		}
		return nil
	}))
	if wantFiles := []string{"a.txt", "chain", "hard", "run.sh", "sub/b.txt", "sub/in", "sub/self"}; !slices.Equal(files, wantFiles) {
		t.Errorf("on disk %q, want %q", files, wantFiles)
	}
	if st, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !st.IsDir() {
		t.Errorf("empty directory: %v", err)
	}
	if p := perm(t, filepath.Join(dst, "run.sh")); p != 0o755 {
		t.Errorf("run.sh mode %v, want 0755", p)
	}
	wantWarnings := []string{
		`output "abs" refused: symlink to /etc/passwd, outside /valohai/outputs`,
		`output "etc" refused: symlink to /etc, outside /valohai/outputs`,
		`output "fifo" skipped: not a regular file, directory or link (a named pipe)`,
		`output "parent" refused: symlink to .., outside /valohai/outputs`,
		`output "sub/up2" refused: symlink to ../../victim, outside /valohai/outputs`,
		`output "up" refused: symlink to ../victim, outside /valohai/outputs`,
		`output "dangling" refused: link target nope is not a regular file in /valohai/outputs`,
		`output "dirlink" refused: link target sub is not a regular file in /valohai/outputs`,
		`output "loop1" refused: symlink loop or chain longer than 40`,
		`output "loop2" refused: symlink loop or chain longer than 40`,
		`output "via" refused: link target dirlink/b.txt is not a regular file in /valohai/outputs`,
		`output "viaout" refused: link target parent/victim is not a regular file in /valohai/outputs`,
	}
	if !slices.Equal(warnings, wantWarnings) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
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

// A file swapped after the walk saw it (nothing runs in the container by
// then, but still) is not read: not a pipe (which would block), not a link
// out of the directory, not another file.
func TestCopyHostOutputSwapped(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "other"), []byte("other"), 0o644))
	in, err := os.OpenRoot(src)
	must(t, err)
	defer in.Close()
	out, err := os.OpenRoot(dst)
	must(t, err)
	defer out.Close()
	for name, swap := range map[string]func(p string) error{
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"abs":     func(p string) error { return os.Symlink("/etc/passwd", p) },
		"up":      func(p string) error { return os.Symlink("../../../../../../../etc/passwd", p) },
		"another": func(p string) error { return os.Link(filepath.Join(src, "other"), p) },
	} {
		p := filepath.Join(src, name)
		must(t, os.WriteFile(p, []byte("seen"), 0o644))
		info, err := os.Lstat(p)
		must(t, err)
		must(t, os.Remove(p))
		must(t, swap(p))
		done := make(chan error, 1)
		go func() { _, err := copyHostOutput(in, out, name, info); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: copied", name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: copyHostOutput blocked", name)
		}
	}
}
