package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/sluice-ci/sluice/runner"
)

// copyIn puts /valohai (repository, inputs, config and an empty outputs
// directory) into the created container, as one tar stream built while it
// is sent.
func (e *Executor) copyIn(ctx context.Context, id string, job runner.Job) error {
	pr, pw := io.Pipe()
	built := make(chan error, 1)
	go func() {
		err := writeContract(pw, job, e.opts.Now())
		pw.CloseWithError(err)
		built <- err
	}()
	// CopyUIDGID gives the files to the image's user, so a step that runs as
	// a non-root USER can write where root could.
	err := e.cli.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{CopyUIDGID: true})
	pr.CloseWithError(errors.New("copy into container ended"))
	if berr := <-built; berr != nil {
		return berr
	}
	if err != nil {
		return fmt.Errorf("copy files into container: %w", err)
	}
	return nil
}

// inputsJSON is /valohai/config/inputs.json.
type inputsJSON map[string]struct {
	Files []inputFileJSON `json:"files"`
}

type inputFileJSON struct {
	Name      string            `json:"name"`
	Path      string            `json:"path"`
	URI       *string           `json:"uri"`
	Size      int64             `json:"size"`
	Checksums map[string]string `json:"checksums"`
}

// contractWriter is where writeContract puts the /valohai tree: a tar
// stream for CopyToContainer (tarWriter) or a host directory to bind-mount
// (dirWriter). Names are slash-separated and relative to /. A writer keeps
// its first error; the calls after it are no-ops that return it.
type contractWriter interface {
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

// writeContract writes the /valohai tree of job as a tar stream whose paths
// are relative to /.
func writeContract(w io.Writer, job runner.Job, now time.Time) error {
	return buildContract(&tarWriter{tw: tar.NewWriter(w), now: now, dirs: map[string]bool{}}, job, now)
}

// buildContract writes the /valohai tree of job (repository, inputs, config
// and an empty outputs directory) to t.
func buildContract(t contractWriter, job runner.Job, now time.Time) error {
	t.dir("valohai", 0o755)
	t.dir("valohai/repository", 0o755)
	if job.RepositoryDir != "" {
		if err := t.tree("valohai/repository", job.RepositoryDir); err != nil {
			return fmt.Errorf("repository %s: %w", job.RepositoryDir, err)
		}
	}

	t.dir("valohai/inputs", 0o755)
	inputs := inputsJSON{}
	for _, in := range job.Inputs {
		base := "valohai/inputs/" + in.Name
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
				Path:      "/" + base + "/" + name,
				Size:      size,
				Checksums: map[string]string{"sha256": digest},
			}
			if f.URI != "" {
				jf.URI = &f.URI
			}
			files = append(files, jf)
		}
		inputs[in.Name] = struct {
			Files []inputFileJSON `json:"files"`
		}{files}
	}

	t.dir("valohai/outputs", 0o777)
	t.dir("valohai/config", 0o755)
	params := job.Parameters
	if params == nil {
		params = map[string]any{}
	}
	if err := t.json("valohai/config/parameters.json", params); err != nil {
		return fmt.Errorf("parameters.json: %w", err)
	}
	if err := t.json("valohai/config/inputs.json", inputs); err != nil {
		return fmt.Errorf("inputs.json: %w", err)
	}
	if err := t.json("valohai/config/execution.json", executionJSON(job, now)); err != nil {
		return fmt.Errorf("execution.json: %w", err)
	}
	return t.close()
}

// marshalJSON is the content of a config file.
func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// checkDigest compares the sha256 h computed with the one f announces, if any.
func checkDigest(f runner.InputFile, got string) error {
	if want := strings.TrimPrefix(strings.ToLower(f.Digest), "sha256:"); want != "" && want != got {
		return fmt.Errorf("sha256 is %s, want %s", got, want)
	}
	return nil
}

// executionJSON is /valohai/config/execution.json, with the keys Valohai
// writes that have a meaning here; the others are left out.
func executionJSON(job runner.Job, now time.Time) map[string]any {
	orNil := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	return map[string]any{
		"valohai.execution-id":      job.ExecutionIDOrDefault(),
		"valohai.execution-step":    orNil(job.Step),
		"valohai.execution-image":   job.Image,
		"valohai.execution-ctime":   now.UTC().Format(time.RFC3339Nano),
		"valohai.execution-status":  "started",
		"valohai.pipeline-id":       job.RunID,
		"valohai.pipeline-node-id":  job.Node,
		"valohai.project-id":        orNil(job.ProjectID),
		"valohai.commit-identifier": orNil(job.Commit),
	}
}

// tarWriter writes entries, remembering the first error (later calls are
// no-ops) and the directories it wrote, so parents are written once.
type tarWriter struct {
	tw   *tar.Writer
	now  time.Time
	dirs map[string]bool
	err  error
}

var _ contractWriter = (*tarWriter)(nil)

func (t *tarWriter) dir(name string, mode fs.FileMode) {
	if t.err != nil || t.dirs[name] {
		return
	}
	t.dirs[name] = true
	t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(mode.Perm()), ModTime: t.now})
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
	if t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: t.now}); t.err != nil {
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
	if t.err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: size, ModTime: t.now}); t.err != nil {
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

// walkTree calls fn for everything below src (not src itself), in lexical
// order, with its path, its path relative to src and its Lstat info. It stops
// at the first error, from the walk, from fn, or from failed() (a writer's
// sticky error).
func walkTree(src string, failed func() error, fn func(p, rel string, info fs.FileInfo) error) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := failed(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return fn(p, rel, info)
	})
}

func (t *tarWriter) tree(prefix, src string) error {
	return walkTree(src, func() error { return t.err }, func(p, rel string, info fs.FileInfo) error {
		var err error
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return nil // sockets, pipes, devices
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = prefix + "/" + filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
			t.dirs[prefix+"/"+filepath.ToSlash(rel)] = true
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if t.err = t.tw.WriteHeader(hdr); t.err != nil {
			return t.err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if t.err = copyExactly(t.tw, f, hdr.Size); t.err != nil {
			return fmt.Errorf("%s: %w", rel, t.err)
		}
		return nil
	})
}
