package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Without git, the snapshot honours .gitignore files as git would, and
// never takes google-github-actions/auth's credentials file.
func TestWalkFilesHonoursGitignore(t *testing.T) {
	dir := writeTree(t, map[string]string{
		".gitignore":              "# build output\n*.log\n!keep.log\n/build/\ndata/**/*.csv\n\\#hash\ncache/\n",
		"train.py":                "",
		"run.log":                 "",
		"keep.log":                "",
		"build/out.bin":           "",
		"src/build/ok.txt":        "",
		"data/a/b/c.csv":          "",
		"data/a/b/c.txt":          "",
		"data/top.csv":            "", // ** also matches no directory at all
		"#hash":                   "",
		"src/cache/x":             "",
		"src/.gitignore":          "secret.txt\n",
		"src/secret.txt":          "",
		"secret.txt":              "",
		"gha-creds-8f1c2d.json":   "{}",
		"sub/gha-creds-abc.json":  "{}",
		".sluice/runs/x/run.json": "",
	})
	got, err := walkFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] = filepath.ToSlash(got[i])
	}
	slices.Sort(got)
	want := []string{".gitignore", "data/a/b/c.txt", "keep.log", "secret.txt", "src/.gitignore", "src/build/ok.txt", "train.py"}
	if !slices.Equal(got, want) {
		t.Errorf("files\n got %q\nwant %q", got, want)
	}
}

// With git, untracked files are taken (the step sees the work tree), but
// never the credentials file.
func TestGitFilesSkipCredentials(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed: the snapshot lists a work tree with it")
	}
	dir := writeTree(t, map[string]string{"train.py": "", "gha-creds-1234.json": "{}", "notes.md": ""})
	if out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	got, err := gitFiles(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(got, " "), "gha-creds") || len(got) != 2 {
		t.Errorf("files %q", got)
	}
}
