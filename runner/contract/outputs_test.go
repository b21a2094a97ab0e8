package contract

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/runner"
)

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarOf(t *testing.T, entries ...entry) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	return &buf
}

// memSink keeps the outputs in memory and records the links it is asked
// to store, the way a sink that uploads to the store would: a link is the
// target's record under another path, nothing read again.
type memSink struct {
	files map[string]string
	links [][2]string // path, target's path
}

func newMemSink() *memSink { return &memSink{files: map[string]string{}} }

func (s *memSink) File(rel string, _ fs.FileMode, r io.Reader) (runner.OutputFile, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return runner.OutputFile{}, err
	}
	s.files[rel] = string(b)
	return runner.OutputFile{Path: rel, Size: int64(len(b)), Digest: sha(string(b))}, nil
}

func (s *memSink) Link(rel string, target runner.OutputFile) (runner.OutputFile, error) {
	s.links = append(s.links, [2]string{rel, target.Path})
	return runner.OutputFile{Path: rel, Size: target.Size, Digest: target.Digest}, nil
}

// filesOnDisk lists the files below dir, failing on anything that is not
// a regular file or a directory.
func filesOnDisk(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, _ := filepath.Rel(dir, p)
		if !d.IsDir() {
			files = append(files, filepath.ToSlash(rel))
			if !d.Type().IsRegular() {
				t.Errorf("%s is not a regular file: %v", rel, d.Type())
			}
		}
		return nil
	}))
	return files
}

// readInto reads outputs with read into a DirSink on dst.
func readInto(t *testing.T, dst string, read func(Sink) ([]runner.OutputFile, []string, error)) ([]runner.OutputFile, []string) {
	t.Helper()
	sink, err := NewDirSink(dst)
	must(t, err)
	outs, warnings, err := read(sink)
	must(t, sink.Close())
	if err != nil {
		t.Fatalf("read the outputs: %v", err)
	}
	return outs, warnings
}

// checkStored fails unless outs is want, the file victim beside the
// outputs directory (in parent) is untouched, and dst holds want's files,
// as regular files, and nothing else but directories.
func checkStored(t *testing.T, outs, want []runner.OutputFile, parent, dst string) {
	t.Helper()
	if !reflect.DeepEqual(outs, want) {
		t.Errorf("outputs\n got %+v\nwant %+v", outs, want)
	}
	if got := readFile(t, filepath.Join(parent, "victim")); got != "untouched" {
		t.Errorf("victim = %q: an entry escaped", got)
	}
	var wantFiles []string
	for _, f := range want {
		wantFiles = append(wantFiles, f.Path)
	}
	if got := filesOnDisk(t, dst); !slices.Equal(got, wantFiles) {
		t.Errorf("on disk %q, want %q", got, wantFiles)
	}
}

func TestFromTar(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	// A file already in the output directory's parent, where an escape would land.
	must(t, os.WriteFile(filepath.Join(parent, "victim"), []byte("untouched"), 0o644))
	entries := []entry{
		{name: "outputs/", typ: tar.TypeDir},
		{name: "outputs/a.txt", typ: tar.TypeReg, body: "a"},
		{name: "outputs/sub/", typ: tar.TypeDir},
		{name: "outputs/sub/b.txt", typ: tar.TypeReg, body: "bb"},
		{name: "outputs/../victim", typ: tar.TypeReg, body: "pwned"},
		{name: "outputs/sub/../../victim", typ: tar.TypeReg, body: "pwned"},
		{name: "/etc/cron.d/x", typ: tar.TypeReg, body: "pwned"},
		{name: "elsewhere/x", typ: tar.TypeReg, body: "pwned"},
		{name: "outputs/abs", typ: tar.TypeSymlink, link: "/etc/passwd"},
		{name: "outputs/up", typ: tar.TypeSymlink, link: "../victim"},
		{name: "outputs/sub/up2", typ: tar.TypeSymlink, link: "../../victim"},
		{name: "outputs/sub/in", typ: tar.TypeSymlink, link: "../a.txt"},
		{name: "outputs/chain", typ: tar.TypeSymlink, link: "sub/in"},
		{name: "outputs/loop1", typ: tar.TypeSymlink, link: "loop2"},
		{name: "outputs/loop2", typ: tar.TypeSymlink, link: "loop1"},
		{name: "outputs/dirlink", typ: tar.TypeSymlink, link: "sub"},
		{name: "outputs/dangling", typ: tar.TypeSymlink, link: "nope"},
		{name: "outputs/hard", typ: tar.TypeLink, link: "outputs/sub/b.txt"},
		{name: "outputs/hardout", typ: tar.TypeLink, link: "etc/passwd"},
		{name: "outputs/fifo", typ: tar.TypeFifo},
	}
	outs, warnings := readInto(t, dir, func(sink Sink) ([]runner.OutputFile, []string, error) {
		return FromTar(tarOf(t, entries...), sink)
	})
	want := []runner.OutputFile{
		{Path: "a.txt", Size: 1, Digest: sha("a")},
		{Path: "chain", Size: 1, Digest: sha("a")},
		{Path: "hard", Size: 2, Digest: sha("bb")},
		{Path: "sub/b.txt", Size: 2, Digest: sha("bb")},
		{Path: "sub/in", Size: 1, Digest: sha("a")},
	}
	checkStored(t, outs, want, parent, dir)
	for _, name := range []string{"abs", "up", "sub/up2", "loop1", "loop2", "dirlink", "dangling", "hardout", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v), want not written", name, err)
		}
	}
	wantWarnings := []string{
		`output "../victim" refused: path leaves /valohai/outputs`,
		`output "sub/../../victim" refused: path leaves /valohai/outputs`,
		`output "/etc/cron.d/x" refused: outside the outputs directory`,
		`output "elsewhere/x" refused: outside the outputs directory`,
		`output "abs" refused: symlink to /etc/passwd, outside /valohai/outputs`,
		`output "up" refused: symlink to ../victim, outside /valohai/outputs`,
		`output "sub/up2" refused: symlink to ../../victim, outside /valohai/outputs`,
		`output "hardout" refused: hard link to etc/passwd, outside /valohai/outputs`,
		`output "fifo" skipped: not a regular file, directory or link (a named pipe)`,
		`output "dangling" refused: link target nope is not a regular file in /valohai/outputs`,
		`output "dirlink" refused: link target sub is not a regular file in /valohai/outputs`,
		`output "loop1" refused: symlink loop or chain longer than 40`,
		`output "loop2" refused: symlink loop or chain longer than 40`,
	}
	if !slices.Equal(warnings, wantWarnings) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}

	// A sink that stores links itself gets the target's record, and is
	// never asked to read a link's content.
	mem := newMemSink()
	outs, _, err := FromTar(tarOf(t, entries...), mem)
	must(t, err)
	if !reflect.DeepEqual(outs, want) {
		t.Errorf("outputs into memory\n got %+v\nwant %+v", outs, want)
	}
	wantLinks := [][2]string{{"chain", "a.txt"}, {"hard", "sub/b.txt"}, {"sub/in", "a.txt"}}
	if !slices.Equal(mem.links, wantLinks) {
		t.Errorf("links %q, want %q", mem.links, wantLinks)
	}
	if len(mem.files) != 2 || mem.files["a.txt"] != "a" || mem.files["sub/b.txt"] != "bb" {
		t.Errorf("files stored %q, want a.txt and sub/b.txt", mem.files)
	}
}

// An entry of a path seen before replaces it: a link replaces a file, a
// file a link; a link refused at the end leaves neither.
func TestFromTarReplaced(t *testing.T) {
	mem := newMemSink()
	outs, warnings, err := FromTar(tarOf(t,
		entry{name: "o/", typ: tar.TypeDir},
		entry{name: "o/a", typ: tar.TypeReg, body: "a"},
		entry{name: "o/b", typ: tar.TypeReg, body: "b"},
		entry{name: "o/b", typ: tar.TypeSymlink, link: "a"},
		entry{name: "o/c", typ: tar.TypeSymlink, link: "a"},
		entry{name: "o/c", typ: tar.TypeReg, body: "c"},
		entry{name: "o/d", typ: tar.TypeReg, body: "d"},
		entry{name: "o/d", typ: tar.TypeSymlink, link: "nope"},
	), mem)
	must(t, err)
	want := []runner.OutputFile{
		{Path: "a", Size: 1, Digest: sha("a")},
		{Path: "b", Size: 1, Digest: sha("a")},
		{Path: "c", Size: 1, Digest: sha("c")},
	}
	wantWarnings := []string{`output "d" refused: link target nope is not a regular file in /valohai/outputs`}
	if !reflect.DeepEqual(outs, want) || !slices.Equal(warnings, wantWarnings) {
		t.Errorf("outputs %+v, warnings %q; want %+v, %q", outs, warnings, want, wantWarnings)
	}
	if wantLinks := [][2]string{{"b", "a"}}; !slices.Equal(mem.links, wantLinks) {
		t.Errorf("links %q, want %q", mem.links, wantLinks)
	}
}

// A broken stream is an error, with what was read before it.
func TestFromTarBroken(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "o/a", Typeflag: tar.TypeReg, Size: 1}))
	_, err := tw.Write([]byte("a"))
	must(t, err)
	must(t, tw.Flush())
	buf.WriteString("not a tar header")
	outs, _, err := FromTar(&buf, newMemSink())
	if err == nil || !strings.Contains(err.Error(), "read tar") {
		t.Errorf("error %v, want one reading the tar", err)
	}
	if len(outs) != 1 || outs[0].Path != "a" {
		t.Errorf("outputs %+v, want a", outs)
	}
}
