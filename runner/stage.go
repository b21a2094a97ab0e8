package runner

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// Stage makes every input file of job a blob of st, for an executor whose
// containers read their inputs from the store: a file that is only on this
// host (a path in the repository) is put into the store, content addressed,
// so a file already there is not sent twice. Files that have a Blob are left
// as they are.
func Stage(ctx context.Context, st store.Store, job *Job) error {
	for i := range job.Inputs {
		in := &job.Inputs[i]
		for j := range in.Files {
			f := &in.Files[j]
			if !f.Blob.IsZero() {
				continue
			}
			var rc io.ReadCloser
			var err error
			if f.Path != "" {
				rc, err = os.Open(f.Path)
			} else if f.Open != nil {
				rc, err = f.Open()
			} else {
				err = errors.New("no content")
			}
			if err != nil {
				return fmt.Errorf("input %s file %s: %w", in.Name, f.Name, err)
			}
			d, size, err := store.PutBlob(ctx, st, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("input %s file %s: put it into the store: %w", in.Name, f.Name, err)
			}
			if f.Digest != "" && !strings.EqualFold(strings.TrimPrefix(f.Digest, "sha256:"), d.Hex()) {
				return fmt.Errorf("input %s file %s: sha256 is %s, want %s (it changed during the run)", in.Name, f.Name, d.Hex(), f.Digest)
			}
			f.Blob, f.Digest, f.Size = d, d.Hex(), size
		}
	}
	return nil
}

// snapshotBlob builds the repository snapshot's tar blob once per run.
type snapshotBlob struct {
	once sync.Once
	file store.File
	err  error
}

func (s *snapshotBlob) get(ctx context.Context, st store.Store, dir string) (store.File, error) {
	s.once.Do(func() {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := TarTree(tw, "", dir)
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		d, size, err := store.PutBlob(context.WithoutCancel(ctx), st, pr)
		pr.CloseWithError(errors.New("the snapshot's upload ended"))
		if err != nil {
			s.err = fmt.Errorf("put the repository snapshot into the store: %w", err)
			return
		}
		s.file = store.File{Path: "repository.tar", Digest: d, Size: size}
	})
	return s.file, s.err
}

// TarTree writes the directory src into tw below prefix ("" for the top):
// directories, regular files and symlinks (as links), in lexical order,
// with their modes and modification times and without owners; other kinds
// of files (sockets, pipes, devices) are left out.
func TarTree(tw *tar.Writer, prefix, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
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
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(prefix, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w (copied %d of %d bytes)", rel, err, n, hdr.Size)
		}
		return nil
	})
}

// ExtractTree writes a tar stream made by TarTree into the directory dst
// (which must exist): directories, regular files and symlinks. Nothing is
// written outside dst: an entry whose path is absolute or climbs out, or
// that would be written through a symlink, fails the extraction.
func ExtractTree(r io.Reader, dst string) error {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	// Directories get their modes at the end, so that a read-only one can
	// still be filled.
	dirModes := map[string]fs.FileMode{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			for name, mode := range dirModes {
				if err := root.Chmod(name, mode); err != nil {
					return err
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the tar stream: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !LocalPath(name) {
			return fmt.Errorf("tar entry %q leaves the directory", hdr.Name)
		}
		name = path.Clean(name)
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, mode|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			dirModes[name] = mode
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = root.Chmod(name, mode)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		}
	}
}

// CheckRemoteStore says why a store cannot serve a remote backend whose
// machines (VMs, pods) read their inputs from the store and write their
// outputs there themselves: it must be one they reach, a gs:// bucket.
// backend names the environment's backend, machines what runs there.
func CheckRemoteStore(storeURL, backend, machines string) error {
	if strings.HasPrefix(storeURL, "gs://") {
		return nil
	}
	where := storeURL
	if where == "" {
		where = "the default .sluice directory"
	}
	return fmt.Errorf("a %s environment needs a store its %s can reach, a gs:// bucket; %s is on this host (give --store gs://BUCKET/PREFIX)",
		backend, machines, where)
}
