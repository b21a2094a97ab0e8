package contract

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
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// WriteDir writes job's /valohai tree, the same as WriteTar's, into the
// existing directory dir, which stands for /valohai: dir/repository,
// dir/inputs, dir/config and dir/outputs. Every directory and file gets
// exactly its mode, whatever the umask; dir itself is left as it is.
//
// The repository's files are copies (with copy_file_range, so reflinks
// where the file system has them), never hard links: the repository is the
// step's working directory and writable, and a step writing through a link
// would change the files it came from. openAccess makes the repository
// writable by every user (directories 0777, files 0666 or 0777), for an
// image whose user is not the owner of the files. An input file is a hard
// link to the file it comes from where it can be (a regular file that
// every user may read, on the same file system: the inputs are meant to be
// mounted read-only), else a copy, mode 0444.
func WriteDir(dir string, job runner.Job, openAccess bool, now time.Time) error {
	return WriteDirPart(dir, job, openAccess, now, PartAll)
}

// WriteDirPart is WriteDir of the given part of the tree only.
func WriteDirPart(dir string, job runner.Job, openAccess bool, now time.Time, part Part) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return build(&dirWriter{root: root, path: dir, openAccess: openAccess}, job, now, part)
}

// dirWriter writes the /valohai tree into a directory (a treeWriter).
type dirWriter struct {
	root       *os.Root
	path       string // the root's path, for hard links
	openAccess bool
	err        error
}

var _ treeWriter = (*dirWriter)(nil)

func inRepository(name string) bool {
	return name == "repository" || strings.HasPrefix(name, "repository/")
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
// file system. The inputs are mounted read-only, so the step cannot write
// through the link; the file keeps its own mode and owner, which sluice
// may not change.
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
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = w.err
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
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
