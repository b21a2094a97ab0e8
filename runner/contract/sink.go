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

	"github.com/sluice-ci/sluice/runner"
)

// DirSink is a Sink that writes the outputs below a host directory: each
// regular file mode 0755 when any execute bit was set, else 0644; each link
// as a copy of its target, checked against the target's digest; and every
// directory, empty ones too. An existing file is replaced, never written
// through. The directory holds only regular files and directories.
type DirSink struct {
	root *os.Root
}

var _ Sink = (*DirSink)(nil)

// NewDirSink returns a DirSink writing below dir, which it creates if it
// is missing.
func NewDirSink(dir string) (*DirSink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &DirSink{root: root}, nil
}

// Close releases the directory.
func (s *DirSink) Close() error { return s.root.Close() }

// File writes the regular file rel, hashing it on the way.
func (s *DirSink) File(rel string, perm fs.FileMode, r io.Reader) (runner.OutputFile, error) {
	if dir := path.Dir(rel); dir != "." {
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			return runner.OutputFile{}, err
		}
	}
	mode := fs.FileMode(0o644)
	if perm&0o111 != 0 {
		mode = 0o755
	}
	// Remove first: an existing file (or link left by anything) is replaced, not written through.
	if err := s.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return runner.OutputFile{}, err
	}
	f, err := s.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return runner.OutputFile{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return runner.OutputFile{}, fmt.Errorf("write output %s: %w", rel, err)
	}
	return runner.OutputFile{Path: rel, Size: n, Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

// Link writes rel as a copy of the file target, which File wrote; the copy
// must have target's digest.
func (s *DirSink) Link(rel string, target runner.OutputFile) (runner.OutputFile, error) {
	in, err := s.root.Open(target.Path)
	if err != nil {
		return runner.OutputFile{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return runner.OutputFile{}, err
	}
	f, err := s.File(rel, st.Mode().Perm(), in)
	if err != nil {
		return runner.OutputFile{}, err
	}
	if f.Digest != target.Digest {
		return runner.OutputFile{}, fmt.Errorf("output %s: copy of %s changed while copying", rel, target.Path)
	}
	return f, nil
}

// mkdir makes the directory rel and its parents.
func (s *DirSink) mkdir(rel string) error { return s.root.MkdirAll(rel, 0o755) }
