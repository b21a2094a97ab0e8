//go:build unix

package contract

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// stepTree makes, in a new directory, an outputs directory as a step
// could leave it, and a file victim beside it where an escape would land;
// it returns both directories.
func stepTree(t *testing.T) (parent, src string) {
	t.Helper()
	parent = t.TempDir()
	src = filepath.Join(parent, "outputs")
	must(t, os.WriteFile(filepath.Join(parent, "victim"), []byte("untouched"), 0o644))
	must(t, os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o777))
	must(t, os.MkdirAll(filepath.Join(src, "empty"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("bb"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "sub", "deeper", "c.txt"), []byte("ccc"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("true"), 0o700))
	for name, target := range map[string]string{
		"abs":      "/etc/passwd",
		"up":       "../victim",
		"sub/up2":  "../../victim",
		"sub/in":   "../a.txt",
		"chain":    "sub/in",
		"deep":     "sub/deeper/c.txt",
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
	return parent, src
}

// stepTreeOutputs and stepTreeWarnings are what stepTree's outputs give.
var (
	stepTreeOutputs = []runner.OutputFile{
		{Path: "a.txt", Size: 1, Digest: sha("a")},
		{Path: "chain", Size: 1, Digest: sha("a")},
		{Path: "deep", Size: 3, Digest: sha("ccc")},
		{Path: "hard", Size: 2, Digest: sha("bb")},
		{Path: "run.sh", Size: 4, Digest: sha("true")},
		{Path: "sub/b.txt", Size: 2, Digest: sha("bb")},
		{Path: "sub/deeper/c.txt", Size: 3, Digest: sha("ccc")},
		{Path: "sub/in", Size: 1, Digest: sha("a")},
		{Path: "sub/self", Size: 1, Digest: sha("a")},
	}
	stepTreeWarnings = []string{
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
)

// TestFromDir reads, made on disk as a step would make it, a tree like
// TestFromTar's archive: the same outputs and refusals.
func TestFromDir(t *testing.T) {
	parent, src := stepTree(t)
	dst := filepath.Join(t.TempDir(), "out")
	outs, warnings := readInto(t, dst, func(sink Sink) ([]runner.OutputFile, []string, error) {
		return FromDir(src, sink)
	})
	checkStored(t, outs, stepTreeOutputs, parent, dst)
	if st, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !st.IsDir() {
		t.Errorf("empty directory: %v", err)
	}
	if p := perm(t, filepath.Join(dst, "run.sh")); p != 0o755 {
		t.Errorf("run.sh mode %v, want 0755", p)
	}
	if p := perm(t, filepath.Join(dst, "sub/b.txt")); p != 0o644 {
		t.Errorf("sub/b.txt mode %v, want 0644", p)
	}
	if !slices.Equal(warnings, stepTreeWarnings) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(stepTreeWarnings, "\n"))
	}
}

// tarDir is the tar stream of the directory src as the Docker API returns
// it: every path below the directory's own name, links as links, a file
// seen again through a hard link as a hard link to its first path.
func tarDir(t *testing.T, src string) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	base := filepath.Base(src)
	seen := map[uint64]string{}
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, _ := filepath.Rel(src, p)
		name := base + "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = base
		}
		info, err := d.Info()
		must(t, err)
		var link string
		if d.Type()&fs.ModeSymlink != 0 {
			link, err = os.Readlink(p)
			must(t, err)
		}
		hdr, err := tar.FileInfoHeader(info, link)
		must(t, err)
		hdr.Name = name
		if d.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && d.Type().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[st.Ino] = name
			}
		}
		must(t, tw.WriteHeader(hdr))
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			must(t, err)
			defer f.Close()
			_, err = io.Copy(tw, f)
			must(t, err)
		}
		return nil
	}))
	must(t, tw.Close())
	return &buf
}

// FromTar and FromDir apply the same rules: one tree, read in place and
// as the archive the Docker API makes of it, gives the same outputs and
// warnings.
func TestFromTarAndFromDirAgree(t *testing.T) {
	_, src := stepTree(t)
	fromDir := newMemSink()
	dirOuts, dirWarnings, err := FromDir(src, fromDir)
	must(t, err)
	fromTar := newMemSink()
	tarOuts, tarWarnings, err := FromTar(tarDir(t, src), fromTar)
	must(t, err)

	if !reflect.DeepEqual(dirOuts, stepTreeOutputs) || !reflect.DeepEqual(tarOuts, stepTreeOutputs) {
		t.Errorf("outputs\nFromDir %+v\nFromTar %+v\n   want %+v", dirOuts, tarOuts, stepTreeOutputs)
	}
	if !slices.Equal(dirWarnings, stepTreeWarnings) || !slices.Equal(tarWarnings, stepTreeWarnings) {
		t.Errorf("warnings\nFromDir\n%s\nFromTar\n%s\nwant\n%s", strings.Join(dirWarnings, "\n"),
			strings.Join(tarWarnings, "\n"), strings.Join(stepTreeWarnings, "\n"))
	}
	// Symlinks are links either way; the archive also names the second
	// path of the hard-linked file as a link, the directory a second file.
	wantDirLinks := [][2]string{{"chain", "a.txt"}, {"deep", "sub/deeper/c.txt"}, {"sub/in", "a.txt"}, {"sub/self", "a.txt"}}
	if !slices.Equal(fromDir.links, wantDirLinks) {
		t.Errorf("FromDir links %q, want %q", fromDir.links, wantDirLinks)
	}
	wantTarLinks := slices.Insert(slices.Clone(wantDirLinks), 2, [2]string{"sub/b.txt", "hard"})
	if !slices.Equal(fromTar.links, wantTarLinks) {
		t.Errorf("FromTar links %q, want %q", fromTar.links, wantTarLinks)
	}
	for name, content := range fromTar.files {
		if fromDir.files[name] != content {
			t.Errorf("%s: FromDir stored %q, FromTar %q", name, fromDir.files[name], content)
		}
	}
}

// A file swapped after the walk saw it (nothing runs in the container by
// then, but still) is not read: not a pipe (which would block), not a link
// out of the directory, not another file.
func TestOpenOutputSwapped(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "other"), []byte("other"), 0o644))
	in, err := os.OpenRoot(src)
	must(t, err)
	defer in.Close()
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
		go func() {
			f, err := openOutput(in, name, info)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: opened", name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: openOutput blocked", name)
		}
	}
}
