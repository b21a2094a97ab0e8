//go:build unix

package contract

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

func perm(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(p)
	must(t, err)
	return st.Mode().Perm()
}

func TestWriteDir(t *testing.T) {
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
	v := filepath.Join(t.TempDir(), "valohai")
	must(t, os.Mkdir(v, 0o711))
	must(t, WriteDir(v, job, false, now))
	if p := perm(t, v); p != 0o711 {
		t.Errorf("the directory's mode changed to %v", p)
	}

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
	must(t, WriteTar(&buf, job, now))
	_, content := tarEntries(t, &buf)
	n := 0
	for name, want := range content {
		rel, ok := strings.CutPrefix(name, "valohai/config/")
		if !ok {
			continue
		}
		if got := readFile(t, filepath.Join(v, "config", rel)); got != want {
			t.Errorf("%s:\n%s\nwant (tar)\n%s", name, got, want)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d config files compared, want 3", n)
	}
}

// For an image whose user is not root, the repository is writable by all.
func TestWriteDirOpenAccess(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "pkg", "run.sh"), []byte("true\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "README"), []byte("x\n"), 0o644))
	v := t.TempDir()
	must(t, WriteDir(v, runner.Job{RunID: "r", Node: "n", Image: "i", Command: "true", RepositoryDir: repo}, true, time.Now()))
	for p, want := range map[string]fs.FileMode{
		"repository": 0o777, "repository/pkg": 0o777, "repository/pkg/run.sh": 0o777, "repository/README": 0o666,
		"inputs": 0o755, "outputs": 0o777, "config": 0o755,
	} {
		if got := perm(t, filepath.Join(v, p)); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}

// A bad input fails the writing, naming the input.
func TestWriteDirBadInput(t *testing.T) {
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
		err := WriteDir(t.TempDir(), job, false, time.Now())
		if err == nil || !strings.Contains(err.Error(), "input in file x") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
