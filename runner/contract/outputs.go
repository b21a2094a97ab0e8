package contract

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/sluice-ci/sluice/runner"
)

// Sink receives the outputs that pass the rules of FromTar and FromDir.
type Sink interface {
	// File stores the regular file rel (slash-separated, relative to
	// /valohai/outputs), read from r, with permission perm; it returns the
	// file's record (Path, Size, Digest: hex sha256 computed while reading).
	File(rel string, perm fs.FileMode, r io.Reader) (runner.OutputFile, error)
	// Link records rel as a copy of target, a regular file File already
	// stored (a link inside the outputs to it), and returns rel's record.
	Link(rel string, target runner.OutputFile) (runner.OutputFile, error)
}

// dirMaker is a Sink that keeps directories too, empty ones included.
type dirMaker interface {
	mkdir(rel string) error
}

// maxLinkHops bounds the chain of symlinks followed inside the outputs.
const maxLinkHops = 40

// FromTar reads the tar stream of the outputs directory (the first path
// element of every entry is the directory itself, as the Docker API's
// CopyFromContainer returns it) into sink, and returns the files stored,
// sorted by path, and the warnings for what was refused or skipped.
//
// The rules, the same as FromDir's: nothing outside the outputs directory
// is read or written. An entry whose path is absolute or has a ".."
// element, and a symlink or hard link whose target leaves the directory,
// is refused with a warning. A link (or chain of links, up to 40) to a
// regular file inside it is stored as a copy of that file (Sink.Link); one
// that ends anywhere else (a directory, nothing, a loop) is refused with a
// warning. Other kinds of files (devices, pipes, sockets) are skipped with
// a warning. Links are resolved last, in path order, so the result does
// not depend on the order entries come in.
func FromTar(r io.Reader, sink Sink) ([]runner.OutputFile, []string, error) {
	c := newCollector(sink)
	return c.finish(readTar(r, c))
}

// readTar feeds the entries of the tar stream r to c.
func readTar(r io.Reader, c *collector) error {
	var prefix string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if prefix == "" {
			prefix, _, _ = strings.Cut(name, "/")
		}
		rel, ok := strings.CutPrefix(name, prefix+"/")
		if !ok && strings.TrimSuffix(name, "/") != prefix {
			c.warn("output %q refused: outside the outputs directory", hdr.Name)
			continue
		}
		rel = strings.TrimSuffix(rel, "/")
		if rel == "" {
			continue // the outputs directory itself
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = c.dir(rel)
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archivers write TypeRegA
			err = c.file(rel, fs.FileMode(hdr.Mode).Perm(), tr)
		case tar.TypeSymlink:
			c.symlink(rel, hdr.Linkname)
		case tar.TypeLink:
			// A hard link names another entry of the archive.
			target, ok := strings.CutPrefix(strings.TrimPrefix(hdr.Linkname, "./"), prefix+"/")
			if !ok {
				target = ""
			}
			c.hardlink(rel, target, hdr.Linkname)
		default:
			c.other(rel, tarKind(hdr.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

// FromDir reads the outputs directory src in place into sink, under the
// rules of FromTar, and returns the files stored, sorted by path, and the
// warnings. Nothing outside src is read, whatever links the step made: the
// tree is walked without following links (a symlinked directory is a
// symlink, never entered), and every file is opened through an os.Root,
// without blocking (on a pipe swapped in), and checked to be the regular
// file the walk saw. A hard link is a regular file here, stored again.
func FromDir(src string, sink Sink) ([]runner.OutputFile, []string, error) {
	in, err := os.OpenRoot(src)
	if err != nil {
		return nil, nil, err
	}
	defer in.Close()
	c := newCollector(sink)
	err = fs.WalkDir(in.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		switch typ := d.Type(); {
		case typ.IsDir():
			return c.dir(rel)
		case typ.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return feedFile(in, rel, info, c)
		case typ&fs.ModeSymlink != 0:
			target, err := in.Readlink(rel)
			if err != nil {
				return err
			}
			c.symlink(rel, target)
		default:
			c.other(rel, fileKind(typ))
		}
		return nil
	})
	return c.finish(err)
}

// feedFile feeds the regular file rel of in, which the walk saw as info, to c.
func feedFile(in *os.Root, rel string, info fs.FileInfo, c *collector) error {
	f, err := openOutput(in, rel, info)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return c.file(rel, st.Mode().Perm(), f)
}

// openOutput opens the regular file rel of in, which the walk saw as info.
// Opening does not block (on a pipe swapped in) and what it opened must be
// that same regular file.
func openOutput(in *os.Root, rel string, info fs.FileInfo) (*os.File, error) {
	f, err := in.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() || !os.SameFile(st, info) {
		f.Close()
		return nil, fmt.Errorf("output %s changed while it was read", rel)
	}
	return f, nil
}

// collector applies the output rules to the entries FromTar and FromDir
// find: it checks their paths, stores regular files in the sink as they
// come, records links, and resolves the links at the end.
type collector struct {
	sink     Sink
	files    map[string]runner.OutputFile // regular files stored, by path
	links    map[string]string            // link path -> target path, both relative to the outputs
	warnings []string
}

func newCollector(sink Sink) *collector {
	return &collector{sink: sink, files: map[string]runner.OutputFile{}, links: map[string]string{}}
}

func (c *collector) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// path is rel cleaned, and false (with a warning) when it leaves the
// outputs directory.
func (c *collector) path(rel string) (string, bool) {
	if !runner.LocalPath(rel) {
		c.warn("output %q refused: path leaves /valohai/outputs", rel)
		return "", false
	}
	return path.Clean(rel), true
}

// dir is the directory rel.
func (c *collector) dir(rel string) error {
	rel, ok := c.path(rel)
	if !ok {
		return nil
	}
	if m, ok := c.sink.(dirMaker); ok {
		return m.mkdir(rel)
	}
	return nil
}

// file is the regular file rel, read from r; it replaces an earlier entry
// of the same path.
func (c *collector) file(rel string, perm fs.FileMode, r io.Reader) error {
	rel, ok := c.path(rel)
	if !ok {
		return nil
	}
	f, err := c.sink.File(rel, perm, r)
	if err != nil {
		return err
	}
	c.files[rel] = f
	delete(c.links, rel)
	return nil
}

// symlink is the symlink rel to target (as the link holds it).
func (c *collector) symlink(rel, target string) {
	rel, ok := c.path(rel)
	if !ok {
		return
	}
	joined, ok := symlinkTarget(rel, target)
	if !ok {
		c.warn("output %q refused: symlink to %s, outside /valohai/outputs", rel, target)
		return
	}
	c.links[rel] = joined
	delete(c.files, rel)
}

// hardlink is the hard link rel to target, relative to the outputs
// directory ("" when it is not in it); shown is the target as the entry
// names it.
func (c *collector) hardlink(rel, target, shown string) {
	rel, ok := c.path(rel)
	if !ok {
		return
	}
	if !runner.LocalPath(target) {
		c.warn("output %q refused: hard link to %s, outside /valohai/outputs", rel, shown)
		return
	}
	c.links[rel] = path.Clean(target)
	delete(c.files, rel)
}

// other is rel, of another kind than a directory, regular file or link.
func (c *collector) other(rel, kind string) {
	if rel, ok := c.path(rel); ok {
		c.warn("output %q skipped: not a regular file, directory or link (%s)", rel, kind)
	}
}

// finish resolves the links, unless the reading ended with err, and
// returns the files stored, sorted by path, and the warnings.
func (c *collector) finish(err error) ([]runner.OutputFile, []string, error) {
	if err == nil {
		err = c.resolveLinks()
	}
	return sortedOutputs(c.files), c.warnings, err
}

// resolveLinks stores each link, in path order, as a copy of the regular
// file its chain of links ends at; a link that ends anywhere else (a
// directory, nothing, a loop) is refused with a warning.
func (c *collector) resolveLinks() error {
	names := make([]string, 0, len(c.links))
	for name := range c.links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		target, ok := resolveLink(name, c.links)
		if !ok {
			c.warn("output %q refused: symlink loop or chain longer than %d", name, maxLinkHops)
			continue
		}
		src, ok := c.files[target]
		if !ok {
			c.warn("output %q refused: link target %s is not a regular file in /valohai/outputs", name, target)
			continue
		}
		f, err := c.sink.Link(name, src)
		if err != nil {
			return err
		}
		c.files[name] = f
	}
	return nil
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

// fileKind names the kind of a file on disk of mode m.
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

func sortedOutputs(files map[string]runner.OutputFile) []runner.OutputFile {
	out := make([]runner.OutputFile, 0, len(files))
	for _, f := range files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
