//go:build unix

package contract

import (
	"bytes"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// dirTree describes every entry below dir: its kind, mode and content.
func dirTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		}
		got[rel] = desc
		return nil
	}))
	return got
}

// The repository part, then the job part, make the same tree as the whole
// (a container prepared ahead gets what Run would give it), in a directory
// and as tar streams; the repository part alone has no input or config
// file, only their directories.
func TestWriteParts(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "pkg", "train.py"), []byte("print(1)\n"), 0o755))
	job := runner.Job{
		RunID: "r", Node: "n", Image: "img", Command: "true", RepositoryDir: repo,
		Parameters: map[string]any{"lr": 0.1},
		Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{{
			Name: "a/b.txt", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil },
		}}}},
	}
	now := time.Unix(1700000000, 0)
	whole, parts := t.TempDir(), t.TempDir()
	must(t, WriteDir(whole, job, false, now))
	must(t, WriteDirPart(parts, job, false, now, PartRepository))
	first := dirTree(t, parts)
	for _, name := range []string{"repository/pkg/train.py", "outputs", "inputs", "config"} {
		if _, ok := first[name]; !ok {
			t.Errorf("the repository part has no %s", name)
		}
	}
	for name := range first {
		if strings.HasPrefix(name, "inputs/") || strings.HasPrefix(name, "config/") {
			t.Errorf("the repository part has %s", name)
		}
	}
	must(t, WriteDirPart(parts, job, false, now, PartJob))
	if w, p := dirTree(t, whole), dirTree(t, parts); !maps.Equal(w, p) {
		t.Errorf("parts made\n%v\nthe whole tree is\n%v", p, w)
	}

	var all, repoPart, jobPart bytes.Buffer
	must(t, WriteTar(&all, job, now))
	must(t, WriteTarPart(&repoPart, job, now, PartRepository))
	must(t, WriteTarPart(&jobPart, job, now, PartJob))
	want, wantContent := tarEntries(t, &all)
	got, content := tarEntries(t, &repoPart)
	got2, content2 := tarEntries(t, &jobPart)
	maps.Copy(got, got2)
	maps.Copy(content, content2)
	if !maps.Equal(got, want) || !maps.Equal(content, wantContent) {
		t.Errorf("tar parts have\n%v\n%v\nthe whole tar has\n%v\n%v", got, content, want, wantContent)
	}
	for name := range got2 {
		if strings.HasPrefix(name, "valohai/repository") || strings.HasPrefix(name, "valohai/outputs") {
			t.Errorf("the job part has %s", name)
		}
	}
}
