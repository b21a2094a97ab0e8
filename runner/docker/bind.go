package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/mount"

	"github.com/sluice-ci/sluice/runner"
)

// The bind transfer: the executor builds the /valohai tree of a job in a
// private host directory (the job directory, mode 0700) and bind-mounts its
// parts into the container; the outputs are read back from it on the host.
//
//	<job dir>/valohai/repository  -> /valohai/repository  read-write, a copy
//	<job dir>/valohai/inputs      -> /valohai/inputs      read-only, hard links where possible
//	<job dir>/valohai/config      -> /valohai/config      read-only
//	<job dir>/valohai/outputs     -> /valohai/outputs     read-write, mode 0777
//
// The repository stays writable, as with the copy transfer: it is the
// working directory, and steps write there. Its files are therefore copies
// (with copy_file_range, so reflinks where the file system has them), never
// hard links: the run's snapshot is hard-linked to the user's work tree, and
// a step writing through a link would change the user's files. Inputs are
// mounted read-only, so they can be hard links to the files they come from.

// bindMounts are the mounts of the job directory dir.
func bindMounts(dir string) []mount.Mount {
	v := filepath.Join(dir, "valohai")
	return []mount.Mount{
		{Type: mount.TypeBind, Source: filepath.Join(v, "repository"), Target: repositoryDir},
		{Type: mount.TypeBind, Source: filepath.Join(v, "inputs"), Target: inputsDir, ReadOnly: true},
		{Type: mount.TypeBind, Source: filepath.Join(v, "config"), Target: configDir, ReadOnly: true},
		{Type: mount.TypeBind, Source: filepath.Join(v, "outputs"), Target: outputsDir},
	}
}

// prepareJobDir makes a job directory below base (os.TempDir() when empty)
// holding job's /valohai tree, and returns its path. openAccess makes the
// repository writable by every user, for an image whose user is not root
// (the copy transfer gives the files to that user instead).
func prepareJobDir(base string, job runner.Job, openAccess bool, now time.Time) (string, error) {
	dir, err := os.MkdirTemp(base, "sluice-job-")
	if err != nil {
		return "", fmt.Errorf("make the job directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		_ = removeJobDir(dir)
		return "", fmt.Errorf("make the job directory: %w", err)
	}
	defer root.Close()
	w := &dirWriter{root: root, path: dir, openAccess: openAccess}
	if err := buildContract(w, job, now); err != nil {
		_ = removeJobDir(dir)
		return "", fmt.Errorf("prepare %s: %w", dir, err)
	}
	return dir, nil
}

// dirWriter writes the /valohai tree into a host directory (a contractWriter).
type dirWriter struct {
	root       *os.Root
	path       string // the root's path, for hard links
	openAccess bool
	err        error
}

var _ contractWriter = (*dirWriter)(nil)

func inRepository(name string) bool {
	return name == "valohai/repository" || strings.HasPrefix(name, "valohai/repository/")
}

func (w *dirWriter) dir(name string, mode fs.FileMode) {
	if w.err != nil {
		return
	}
	if w.openAccess && inRepository(name) {
		mode = 0o777
	}
	w.err = w.mkdir(name, mode)
}

// mkdir makes the directory name with exactly mode (whatever the umask); an
// existing directory gets the mode too.
func (w *dirWriter) mkdir(name string, mode fs.FileMode) error {
	if err := w.root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return w.root.Chmod(name, mode)
}

// parents makes the missing directories above name, mode 0755.
func (w *dirWriter) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if st, err := w.root.Lstat(dir); err == nil && st.IsDir() {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	return w.mkdir(dir, 0o755)
}

// create makes the new file name with exactly mode.
func (w *dirWriter) create(name string, mode fs.FileMode) (*os.File, error) {
	f, err := w.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (w *dirWriter) json(name string, v any) error {
	if w.err != nil {
		return w.err
	}
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	f, err := w.create(name, 0o644)
	if err != nil {
		w.err = err
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	w.err = err
	return err
}

func (w *dirWriter) input(name string, f runner.InputFile) (int64, string, error) {
	if w.err != nil {
		return 0, "", w.err
	}
	if w.err = w.parents(name); w.err != nil {
		return 0, "", w.err
	}
	if f.Path != "" && w.link(name, f.Path) {
		size, digest, err := w.hash(name)
		if err == nil {
			err = checkDigest(f, digest)
		}
		w.err = err
		return size, digest, err
	}
	rc, size, err := openInput(f)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	out, err := w.create(name, 0o444)
	if err != nil {
		w.err = err
		return 0, "", err
	}
	h := sha256.New()
	err = copyExactly(io.MultiWriter(out, h), rc, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.err = err
		return 0, "", err
	}
	got := hex.EncodeToString(h.Sum(nil))
	w.err = checkDigest(f, got)
	return size, got, w.err
}

// link hard-links the input file src as name, and reports whether it did:
// only a regular file (not a symlink, which would be linked as a link)
// that every user may read (the image's user may not be root), on the same
// file system. The mount is read-only, so the step cannot write through
// the link; the file keeps its own mode and owner, which sluice may not
// change.
func (w *dirWriter) link(name, src string) bool {
	st, err := os.Lstat(src)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o004 == 0 {
		return false
	}
	return os.Link(src, filepath.Join(w.path, filepath.FromSlash(name))) == nil
}

// hash returns the size and sha256 of the regular file name.
func (w *dirWriter) hash(name string) (int64, string, error) {
	f, err := w.root.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (w *dirWriter) tree(prefix, src string) error {
	return walkTree(src, func() error { return w.err }, func(p, rel string, info fs.FileInfo) error {
		name := prefix + "/" + filepath.ToSlash(rel)
		mode := info.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			w.err = w.root.Symlink(target, name)
		case mode.IsDir():
			w.dir(name, mode.Perm())
		case mode.IsRegular():
			perm := mode.Perm()
			if w.openAccess {
				perm |= 0o666
			}
			w.err = w.copyFile(name, p, perm, info.Size())
			if w.err != nil {
				return fmt.Errorf("%s: %w", rel, w.err)
			}
		}
		// Sockets, pipes and devices are skipped.
		return w.err
	})
}

// copyFile copies the regular file src to name, which gets mode perm.
func (w *dirWriter) copyFile(name, src string, perm fs.FileMode, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := w.create(name, perm)
	if err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range, in the kernel.
	err = copyExactly(out, in, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *dirWriter) close() error { return w.err }

// readOutputs copies the outputs a step left in the host directory src into
// dst, with the rules of extractOutputs: regular files and directories are
// copied; a symlink (relative, staying inside src) to a regular file is
// written as a copy of that file; other symlinks are refused with a
// warning, and other kinds of files are skipped with one. Nothing outside
// src is read, whatever links the step made: the tree is walked without
// following links (a symlinked directory is a symlink, never entered), and
// every file is opened through an os.Root and checked to be the regular
// file the walk saw.
func readOutputs(src, dst string) ([]runner.OutputFile, []string, error) {
	in, err := os.OpenRoot(src)
	if err != nil {
		return nil, nil, err
	}
	defer in.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, nil, err
	}
	out, err := os.OpenRoot(dst)
	if err != nil {
		return nil, nil, err
	}
	defer out.Close()

	var (
		warnings []string
		files    = map[string]runner.OutputFile{}
		links    = map[string]string{}
	)
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	err = fs.WalkDir(in.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		switch typ := d.Type(); {
		case typ.IsDir():
			return out.MkdirAll(rel, 0o755)
		case typ.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			f, err := copyHostOutput(in, out, rel, info)
			if err != nil {
				return err
			}
			files[rel] = f
		case typ&fs.ModeSymlink != 0:
			target, err := in.Readlink(rel)
			if err != nil {
				return err
			}
			joined, ok := symlinkTarget(rel, target)
			if !ok {
				warn("output %q refused: symlink to %s, outside /valohai/outputs", rel, target)
				return nil
			}
			links[rel] = joined
		default:
			warn("output %q skipped: not a regular file, directory or link (%s)", rel, fileKind(typ))
		}
		return nil
	})
	if err == nil {
		err = copyLinks(out, files, links, warn)
	}
	return sortedOutputs(files), warnings, err
}

// copyHostOutput copies the regular file rel of in, which the walk saw as
// info, to out. Opening does not block (on a pipe swapped in) and what it
// opened must be that same regular file.
func copyHostOutput(in, out *os.Root, rel string, info fs.FileInfo) (runner.OutputFile, error) {
	f, err := in.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return runner.OutputFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return runner.OutputFile{}, err
	}
	if !st.Mode().IsRegular() || !os.SameFile(st, info) {
		return runner.OutputFile{}, fmt.Errorf("output %s changed while it was read", rel)
	}
	return writeOutput(out, rel, int64(st.Mode().Perm()), f)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// removeJobDir removes a job directory and everything in it. A directory
// the step made read-only is opened up first (that matters when sluice does
// not run as root).
func removeJobDir(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	if root, rerr := os.OpenRoot(dir); rerr == nil {
		_ = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = root.Chmod(p, 0o700)
			}
			return nil
		})
		root.Close()
	}
	return os.RemoveAll(dir)
}
