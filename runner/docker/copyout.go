package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/sluice-ci/sluice/runner"
)

// copyOut copies /valohai/outputs of the stopped container into dir.
func (e *Executor) copyOut(ctx context.Context, id, dir string) ([]runner.OutputFile, []string, error) {
	rc, _, err := e.cli.CopyFromContainer(ctx, id, outputsDir)
	if cerrdefs.IsNotFound(err) {
		return nil, []string{outputsDir + " was removed by the step; no outputs"}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("copy outputs out of container: %w", err)
	}
	defer rc.Close()
	outs, warnings, err := extractOutputs(rc, dir)
	if err != nil {
		return outs, warnings, fmt.Errorf("copy outputs to %s: %w", dir, err)
	}
	return outs, warnings, nil
}

// maxLinkHops bounds the chain of symlinks followed inside the outputs.
const maxLinkHops = 40

// extractOutputs reads the tar stream of a directory (the first path
// element of every entry is the directory itself, as CopyFromContainer
// returns it) into dir, and returns the regular files it wrote with their
// sha256, computed while writing.
//
// Nothing is written outside dir: entries whose path is absolute or has a
// ".." element, and symlinks or hard links whose target leaves the
// directory, are refused with a warning. A link to a regular file inside it
// is written as a copy of that file, so dir holds only regular files and
// directories. Other kinds of entries (devices, pipes) are skipped with a
// warning.
func extractOutputs(r io.Reader, dir string) ([]runner.OutputFile, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()

	var (
		warnings []string
		prefix   string
		files    = map[string]runner.OutputFile{}
		links    = map[string]string{} // path -> target path, both relative to dir
	)
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sortedOutputs(files), warnings, fmt.Errorf("read tar: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if prefix == "" {
			prefix, _, _ = strings.Cut(name, "/")
		}
		rel, ok := strings.CutPrefix(name, prefix+"/")
		if !ok && strings.TrimSuffix(name, "/") != prefix {
			warn("output %q refused: outside the outputs directory", hdr.Name)
			continue
		}
		rel = strings.TrimSuffix(rel, "/")
		if rel == "" {
			continue // the outputs directory itself
		}
		if !runner.LocalPath(rel) {
			warn("output %q refused: path leaves /valohai/outputs", rel)
			continue
		}
		rel = path.Clean(rel)

		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(rel, 0o755); err != nil {
				return sortedOutputs(files), warnings, err
			}
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archivers write TypeRegA
			f, err := writeOutput(root, rel, hdr.Mode, tr)
			if err != nil {
				return sortedOutputs(files), warnings, err
			}
			files[rel] = f
			delete(links, rel)
		case tar.TypeSymlink:
			joined, ok := symlinkTarget(rel, hdr.Linkname)
			if !ok {
				warn("output %q refused: symlink to %s, outside /valohai/outputs", rel, hdr.Linkname)
				continue
			}
			links[rel] = joined
			delete(files, rel)
		case tar.TypeLink:
			// A hard link names another entry of the archive.
			target, ok := strings.CutPrefix(strings.TrimPrefix(hdr.Linkname, "./"), prefix+"/")
			if !ok || !runner.LocalPath(target) {
				warn("output %q refused: hard link to %s, outside /valohai/outputs", rel, hdr.Linkname)
				continue
			}
			links[rel] = path.Clean(target)
			delete(files, rel)
		default:
			warn("output %q skipped: not a regular file, directory or link (%s)", rel, tarKind(hdr.Typeflag))
		}
	}

	err = copyLinks(root, files, links, warn)
	return sortedOutputs(files), warnings, err
}

// symlinkTarget is the path, relative to the outputs directory, that the
// symlink rel with the given target names, and false when that path is
// absolute or leaves the directory.
func symlinkTarget(rel, target string) (string, bool) {
	if path.IsAbs(target) {
		return "", false
	}
	joined := path.Join(path.Dir(rel), target)
	if !runner.LocalPath(joined) {
		return "", false
	}
	return joined, true
}

// copyLinks writes, below root, each link of links (path -> target, both
// relative to root) as a copy of the regular file its chain of links ends
// at, and adds it to files, the regular files already written. A link that
// ends anywhere else (a directory, nothing, a loop) is refused with a
// warning. Links go last, when every target is on disk, in path order, so
// the result does not depend on the order they were found in.
func copyLinks(root *os.Root, files map[string]runner.OutputFile, links map[string]string, warn func(string, ...any)) error {
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		target, ok := resolveLink(name, links)
		if !ok {
			warn("output %q refused: symlink loop or chain longer than %d", name, maxLinkHops)
			continue
		}
		src, ok := files[target]
		if !ok {
			warn("output %q refused: link target %s is not a regular file in /valohai/outputs", name, target)
			continue
		}
		f, err := copyOutput(root, target, name)
		if err != nil {
			return err
		}
		if f.Digest != src.Digest {
			return fmt.Errorf("output %s: copy of %s changed while copying", name, target)
		}
		files[name] = f
	}
	return nil
}

// tarKind names the kind of file a tar entry of type typ is, as fileKind
// does for a file on disk.
func tarKind(typ byte) string {
	switch typ {
	case tar.TypeFifo:
		return "a named pipe"
	case tar.TypeChar, tar.TypeBlock:
		return "a device"
	}
	return fmt.Sprintf("tar type %q", typ)
}

// resolveLink follows links from name until a path that is not a link.
func resolveLink(name string, links map[string]string) (string, bool) {
	p := links[name]
	for range maxLinkHops {
		next, ok := links[p]
		if !ok {
			return p, true
		}
		p = next
	}
	return "", false
}

// writeOutput writes one regular file below root and hashes it on the way.
func writeOutput(root *os.Root, rel string, mode int64, r io.Reader) (runner.OutputFile, error) {
	if dir := path.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return runner.OutputFile{}, err
		}
	}
	perm := fs.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	// Remove first: an existing file (or link left by anything) is replaced, not written through.
	if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return runner.OutputFile{}, err
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
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

// copyOutput copies the regular file src below root to dst.
func copyOutput(root *os.Root, src, dst string) (runner.OutputFile, error) {
	in, err := root.Open(src)
	if err != nil {
		return runner.OutputFile{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return runner.OutputFile{}, err
	}
	return writeOutput(root, dst, int64(st.Mode().Perm()), in)
}

func sortedOutputs(files map[string]runner.OutputFile) []runner.OutputFile {
	out := make([]runner.OutputFile, 0, len(files))
	for _, f := range files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
