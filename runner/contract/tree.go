package contract

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// treeWriter is where build puts the /valohai tree: a tar stream
// (tarWriter) or a directory (dirWriter). Names are slash-separated and
// relative to /valohai. A writer keeps its first error; the calls after it
// are no-ops that return it.
type treeWriter interface {
	// dir makes the directory name (its parent exists) with mode.
	dir(name string, mode fs.FileMode)
	// json writes v as the file name, indented, mode 0644.
	json(name string, v any) error
	// input writes one input file, read-only, making its missing parent
	// directories, and returns its size and sha256, checked against f.Digest.
	input(name string, f runner.InputFile) (int64, string, error)
	// tree copies the directory src below prefix: directories, regular files
	// and symlinks (as links); other kinds of files are skipped.
	tree(prefix, src string) error
	// close ends the tree and returns the first error.
	close() error
}

// Part selects what of a job's /valohai tree WriteTarPart and WriteDirPart
// write, so that an executor can make a container before the job's inputs
// exist (runner.Preparer) and complete it when they do.
type Part uint8

const (
	// PartRepository is what is known before the job's inputs exist: the
	// repository, the empty outputs directory (mode 0777), and the inputs
	// and config directories, empty.
	PartRepository Part = 1 << iota
	// PartJob is the rest: the input files and the config files. It goes
	// into a tree that has PartRepository already.
	PartJob
	// PartAll is the whole tree.
	PartAll = PartRepository | PartJob
)

// build writes the parts of the /valohai tree of job (repository, inputs,
// config and an empty outputs directory, mode 0777 so any user of the image
// may write there) to t.
func build(t treeWriter, job runner.Job, now time.Time, part Part) error {
	if part&PartRepository != 0 {
		t.dir("repository", 0o755)
		if job.RepositoryDir != "" {
			if err := t.tree("repository", job.RepositoryDir); err != nil {
				return fmt.Errorf("repository %s: %w", job.RepositoryDir, err)
			}
		}
		t.dir("outputs", 0o777)
	}
	t.dir("inputs", 0o755)
	t.dir("config", 0o755)
	if part&PartJob == 0 {
		return t.close()
	}
	inputs := inputsJSON{}
	for _, in := range job.Inputs {
		base := "inputs/" + in.Name
		t.dir(base, 0o755)
		files := []inputFileJSON{}
		for _, f := range in.Files {
			name := path.Clean(f.Name)
			size, digest, err := t.input(base+"/"+name, f)
			if err != nil {
				return fmt.Errorf("input %s file %s: %w", in.Name, f.Name, err)
			}
			jf := inputFileJSON{
				Name:      path.Base(name),
				Path:      InputsDir + "/" + in.Name + "/" + name,
				Size:      size,
				Checksums: map[string]string{"sha256": digest},
			}
			if f.URI != "" {
				jf.URI = &f.URI
			}
			files = append(files, jf)
		}
		inputs[in.Name] = inputJSON{files}
	}

	params := job.Parameters
	if params == nil {
		params = map[string]any{}
	}
	if err := t.json("config/parameters.json", params); err != nil {
		return fmt.Errorf("parameters.json: %w", err)
	}
	if err := t.json("config/inputs.json", inputs); err != nil {
		return fmt.Errorf("inputs.json: %w", err)
	}
	if err := t.json("config/execution.json", ExecutionJSON(job, now)); err != nil {
		return fmt.Errorf("execution.json: %w", err)
	}
	return t.close()
}

// checkDigest compares the sha256 got with the one f announces, if any.
func checkDigest(f runner.InputFile, got string) error {
	if want := strings.TrimPrefix(strings.ToLower(f.Digest), "sha256:"); want != "" && want != got {
		return fmt.Errorf("sha256 is %s, want %s", got, want)
	}
	return nil
}

// openInput opens an input file's content and returns its size: the size
// of the regular file at f.Path, or f.Size with f.Open.
func openInput(f runner.InputFile) (io.ReadCloser, int64, error) {
	if f.Path == "" {
		rc, err := f.Open()
		return rc, f.Size, err
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, 0, err
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		file.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file", f.Path)
	}
	return file, st.Size(), nil
}

// copyExactly copies size bytes and fails if r has fewer or more.
func copyExactly(w io.Writer, r io.Reader, size int64) error {
	n, err := io.CopyN(w, r, size)
	if err == io.EOF {
		return fmt.Errorf("content is %d bytes, shorter than its size %d", n, size)
	}
	if err != nil {
		return err
	}
	var one [1]byte
	if m, _ := io.ReadFull(r, one[:]); m > 0 {
		return fmt.Errorf("content is longer than its size %d", size)
	}
	return nil
}

// tarRoot is the first element of every path WriteTar writes.
var tarRoot = strings.TrimPrefix(Root, "/")

// WriteTar writes job's /valohai tree as a tar stream whose paths are
// relative to / ("valohai/...", as the Docker API's CopyToContainer at "/"
// wants them): the repository copied from job.RepositoryDir (directories,
// regular files and symlinks as links; other kinds of files are skipped),
// each input's files (mode 0444, checked against their size and sha256),
// the config files (mode 0644) and an empty outputs directory (mode 0777).
// Entries are owned by root; the repository's keep their modification
// times, the others are stamped now. It fails on the first input that is
// missing or does not match its size or sha256, naming it.
func WriteTar(w io.Writer, job runner.Job, now time.Time) error {
	return WriteTarPart(w, job, now, PartAll)
}

// WriteTarPart is WriteTar of the given part of the tree only.
func WriteTarPart(w io.Writer, job runner.Job, now time.Time, part Part) error {
	t := &tarWriter{tw: tar.NewWriter(w), now: now, dirs: map[string]bool{}}
	t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: tarRoot + "/", Mode: 0o755, ModTime: now})
	return build(t, job, now, part)
}

// tarWriter writes entries, remembering the first error (later calls are
// no-ops) and the directories it wrote, so parents are written once.
type tarWriter struct {
	tw   *tar.Writer
	now  time.Time
	dirs map[string]bool // by name relative to /valohai
	err  error
}

var _ treeWriter = (*tarWriter)(nil)

func (t *tarWriter) dir(name string, mode fs.FileMode) {
	if t.err != nil || t.dirs[name] {
		return
	}
	t.dirs[name] = true
	t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: tarRoot + "/" + name + "/", Mode: int64(mode.Perm()), ModTime: t.now})
}

func (t *tarWriter) close() error {
	if t.err != nil {
		return t.err
	}
	return t.tw.Close()
}

// parents writes the missing directories above name.
func (t *tarWriter) parents(name string) {
	dir := path.Dir(name)
	if dir == "." || t.dirs[dir] {
		return
	}
	t.parents(dir)
	t.dir(dir, 0o755)
}

func (t *tarWriter) json(name string, v any) error {
	if t.err != nil {
		return t.err
	}
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	if t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: tarRoot + "/" + name, Mode: 0o644, Size: int64(len(b)), ModTime: t.now}); t.err != nil {
		return t.err
	}
	_, t.err = t.tw.Write(b)
	return t.err
}

func (t *tarWriter) input(name string, f runner.InputFile) (int64, string, error) {
	if t.err != nil {
		return 0, "", t.err
	}
	rc, size, err := openInput(f)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()

	t.parents(name)
	if t.err != nil {
		return 0, "", t.err
	}
	if t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: tarRoot + "/" + name, Mode: 0o444, Size: size, ModTime: t.now}); t.err != nil {
		return 0, "", t.err
	}
	h := sha256.New()
	if err := copyExactly(io.MultiWriter(t.tw, h), rc, size); err != nil {
		t.err = err
		return 0, "", err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if t.err = checkDigest(f, got); t.err != nil {
		return 0, "", t.err
	}
	return size, got, nil
}

// tree writes the directory src below prefix as runner.TarTree does for
// the repository snapshot.
func (t *tarWriter) tree(prefix, src string) error {
	if t.err != nil {
		return t.err
	}
	t.err = runner.TarTree(t.tw, tarRoot+"/"+prefix, src)
	return t.err
}
