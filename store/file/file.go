// Package file is the default sluice store backend: objects are plain files
// in a directory (.sluice/ in a repository), so a person can find a run's
// outputs with ls and copy them with cp.
//
// # Layout
//
// The object under key "runs/r1/train/model.pkl" is the regular file
// <root>/runs/r1/train/model.pkl. Beside it, the hidden file
// <root>/runs/r1/train/.sluice-gen.model.pkl records its generation. Other
// bookkeeping uses names that begin with store.ReservedPrefix (".sluice-"),
// which no key segment may use:
//
//	<root>/<key>                         object content
//	<dir of key>/.sluice-gen.<base>      "<generation> <inode>\n" of the object
//	<dir>/.sluice-tmp-<random>           a write in progress (or left by a crash)
//	<root>/.sluice-locks/<00..3f>        lock files, one per stripe of keys
//
// Blobs (store.PutBlob) are ordinary objects under blobs/sha256/ab/abcdef...
//
// # Writes
//
// Every write goes to a temporary file in the object's own directory (or,
// for Stage, in the root), which is written, fsynced and closed, then renamed
// over the object's name; the directory is then fsynced. A reader sees the
// old file or the whole new one; a crash leaves at worst a .sluice-tmp- file.
// Empty directories are removed when their last object is deleted.
//
// An object's ModTime is its file's modification time. Touch
// (store.Toucher) sets it to now, holding the key's lock; DeleteIfOlder
// checks it and removes the file holding the same lock, so a Touch is
// either before the delete (which then does not happen) or after it (and
// reports that the object does not exist).
//
// # Generations and conditional writes
//
// A generation is max(previous generation + 1, current time in ns), so it
// increases with every write of a key, also across a delete (which removes
// the generation file) as long as the clock does not go back.
//
// Writers serialise on a lock file, chosen by a hash of the key from 64
// stripes, locked with flock(2): the kernel releases it when the process
// dies, so a crashed writer never leaves a stale lock behind, and it works
// between processes and, since each lock opens its own file description,
// between goroutines. (The alternative, create-exclusive lock files made with
// link(2) or O_EXCL, leaves stale locks after a crash and needs polling.)
// Holding the lock, a writer reads the current generation, checks the
// condition, writes the new generation file with the inode of its temporary
// file, and renames both into place. Only this commit step holds the lock,
// not the write of the content.
//
// Readers take no lock. The generation file records the inode of the object
// file it describes; a reader opens the object, then reads the generation
// file, and accepts the generation only if the inodes match. While the reader
// holds the file open its inode cannot be reused, so a match proves that the
// generation belongs to the content being read. On a mismatch (a commit in
// progress, or a crash between the two renames) the reader takes the lock
// and reads again; if the mismatch persists under the lock, it was left by a
// crash, and the reader repairs it by assigning a new generation.
//
// The lock is flock(2), which on Linux also works over NFS (emulated with
// POSIX locks), so a store may be on a shared volume; New fails on platforms
// without flock.
package file

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-ci/sluice/store"
)

const (
	tmpPrefix  = store.ReservedPrefix + "tmp-"
	genPrefix  = store.ReservedPrefix + "gen."
	locksDir   = store.ReservedPrefix + "locks"
	numStripes = 64
)

// errNotRegular is the error for a key whose path is a directory (because
// other keys continue it) or anything else but a regular file.
var errNotRegular = errors.New("exists and is not a regular file")

// Store is a store.Store in a directory. It is safe for concurrent use by
// multiple goroutines and processes.
type Store struct {
	root string
	// mu serialises, per stripe, this process's holders of the stripe's
	// flock, so that waiting goroutines do not each block a thread in flock.
	mu  [numStripes]sync.Mutex
	now func() time.Time
	// readOnly: see ReadOnly.
	readOnly bool
}

// ErrReadOnly is the error of every write to a store opened with ReadOnly.
var ErrReadOnly = errors.New("the store is open read-only")

// Option changes how New opens a store.
type Option func(*Store)

// ReadOnly opens an existing store to read it and nothing else (as `sluice
// plan` does): New creates nothing and fails with an error wrapping
// fs.ErrNotExist when the directory does not exist; every write (Put,
// PutIf, Stage, Delete, DeleteIfOlder, Touch) fails with ErrReadOnly; and
// reads take no lock and repair nothing, so an object read while another
// process commits it reports generation -1 (which matches no condition)
// instead of waiting for the commit.
func ReadOnly() Option { return func(s *Store) { s.readOnly = true } }

var (
	_ store.Store   = (*Store)(nil)
	_ store.Stager  = (*Store)(nil)
	_ store.Toucher = (*Store)(nil)
)

// New returns the store in directory dir, creating dir if needed (unless
// opened ReadOnly).
func New(dir string, opts ...Option) (*Store, error) {
	if !lockSupported {
		return nil, fmt.Errorf("file store %s: not supported on this platform (needs flock)", dir)
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file store %s: %w", dir, err)
	}
	s := &Store{root: root, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.readOnly {
		fi, err := os.Stat(root)
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a directory", root)
		}
		if err != nil {
			return nil, fmt.Errorf("file store %s: %w", dir, err)
		}
		return s, nil
	}
	if err := os.MkdirAll(filepath.Join(root, locksDir), 0o777); err != nil {
		return nil, fmt.Errorf("file store %s: %w", dir, err)
	}
	return s, nil
}

// Dir returns the absolute path of the store's directory.
func (s *Store) Dir() string { return s.root }

func (s *Store) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

func genPath(path string) string {
	return filepath.Join(filepath.Dir(path), genPrefix+filepath.Base(path))
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (store.Info, error) {
	return s.put(ctx, key, r, false, 0)
}

// PutIf implements store.Store.
func (s *Store) PutIf(ctx context.Context, key string, r io.Reader, generation int64) (store.Info, error) {
	return s.put(ctx, key, r, true, generation)
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, cond bool, gen int64) (store.Info, error) {
	if err := check(ctx, key); err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	t, err := s.writeTemp(ctx, filepath.Dir(s.path(key)), r)
	if err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	info, err := s.commit(ctx, key, t, cond, gen)
	if err != nil {
		_ = os.Remove(t.path) // best effort; the error that matters is err.
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	return info, nil
}

// temp is a written, synced and closed temporary file.
type temp struct {
	path    string
	size    int64
	modTime time.Time
	ino     uint64
}

// writeTemp writes r to a new temporary file in dir, creating dir if needed.
// On error it removes the file.
func (s *Store) writeTemp(ctx context.Context, dir string, r io.Reader) (t temp, err error) {
	if s.readOnly {
		return temp{}, ErrReadOnly
	}
	f, err := s.createTemp(dir)
	if err != nil {
		return temp{}, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return temp{}, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return temp{}, err // *fs.PathError, names the file
	}
	fi, err := f.Stat()
	if err != nil {
		return temp{}, err
	}
	ino, ok := inode(fi)
	if !ok {
		return temp{}, fmt.Errorf("stat %s: no inode number", f.Name())
	}
	if err := f.Close(); err != nil {
		return temp{}, err
	}
	return temp{path: f.Name(), size: fi.Size(), modTime: fi.ModTime(), ino: ino}, nil
}

// createTemp creates a new temporary file in dir, creating dir if needed. A
// concurrent Delete may remove an empty dir at any time, so it retries.
func (s *Store) createTemp(dir string) (*os.File, error) {
	var err error
	for range 100 {
		name := filepath.Join(dir, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		var f *os.File
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, fs.ErrExist):
			continue // name taken; draw another
		case errors.Is(err, fs.ErrNotExist):
			if err := s.mkdirAll(dir); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	return nil, err
}

// mkdirAll creates dir and its missing parents below the root, fsyncing the
// parent of each directory it creates so that the new entry survives a crash.
func (s *Store) mkdirAll(dir string) error {
	rel, err := filepath.Rel(s.root, dir)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil // the root itself, which New created (keys cannot leave it)
	}
	cur := s.root
	for seg := range strings.SplitSeq(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, seg)
		err := os.Mkdir(cur, 0o777)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			// Exists (or is a file, which the next step reports).
		default:
			return err
		}
	}
	return nil
}

// state is what the store knows about a key, read from the object file and
// its generation file.
type state struct {
	exists bool   // the object file exists
	ino    uint64 // its inode
	gen    int64  // generation in the generation file, 0 if none
	genIno uint64 // inode in the generation file
	hasGen bool   // the generation file exists and is well-formed
}

// consistent reports whether the generation file describes the object file.
func (st state) consistent() bool { return st.exists && st.hasGen && st.genIno == st.ino }

// current returns the generation of the object as readers see it: Absent if
// it does not exist, -1 (matching no condition) if it exists without a valid
// generation (only after a crash; nobody can hold its generation).
func (st state) current() int64 {
	switch {
	case !st.exists:
		return store.Absent
	case st.consistent():
		return st.gen
	default:
		return -1
	}
}

func (s *Store) nextGen(st state) int64 {
	return max(st.gen+1, s.now().UnixNano())
}

// readGen reads the generation file of the object at path.
func readGen(path string, st *state) error {
	b, err := os.ReadFile(genPath(path))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil // torn or foreign: treated as missing, repaired on use
	}
	gen, err1 := strconv.ParseInt(f[0], 10, 64)
	ino, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || gen <= 0 {
		return nil
	}
	st.gen, st.genIno, st.hasGen = gen, ino, true
	return nil
}

// openFile opens the object at path with its state. It returns an error
// wrapping fs.ErrNotExist if there is no object (also if path is a directory
// or a parent is a file).
func openFile(path string) (*os.File, fs.FileInfo, state, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			err = &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		}
		return nil, nil, state{}, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, state{}, err
	}
	st := state{exists: true}
	st.ino, _ = inode(fi)
	if err := readGen(path, &st); err != nil {
		_ = f.Close()
		return nil, nil, state{}, err
	}
	return f, fi, st, nil
}

// open opens the object under key and returns it with an Info whose
// generation describes the open file (see the package documentation).
func (s *Store) open(ctx context.Context, key string) (*os.File, store.Info, error) {
	path := s.path(key)
	f, fi, st, err := openFile(path)
	if err != nil {
		return nil, store.Info{}, err
	}
	if !st.consistent() && s.readOnly {
		st.gen = -1 // the generation file describes other content: none is known
	} else if !st.consistent() {
		// A commit is in progress, or one crashed: read again under the lock.
		_ = f.Close()
		unlock, err := s.lock(ctx, key)
		if err != nil {
			return nil, store.Info{}, err
		}
		defer unlock()
		f, fi, st, err = openFile(path)
		if err != nil {
			return nil, store.Info{}, err
		}
		if !st.consistent() {
			st.gen, st.genIno, st.hasGen = s.nextGen(st), st.ino, true
			if err := s.writeGen(path, st); err == nil {
				err = syncDir(filepath.Dir(path))
			}
			if err != nil {
				_ = f.Close()
				return nil, store.Info{}, fmt.Errorf("repair generation: %w", err)
			}
		}
	}
	return f, store.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), Generation: st.gen}, nil
}

// writeGen atomically replaces the generation file of the object at path
// with st.gen and st.genIno. The caller holds the key's lock and fsyncs the
// directory.
func (s *Store) writeGen(path string, st state) (err error) {
	f, err := s.createTemp(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := fmt.Fprintf(f, "%d %d\n", st.gen, st.genIno); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), genPath(path))
}

// commit makes temporary file t the object under key, if the condition (cond,
// gen) holds. On error t is left in place for the caller to remove.
func (s *Store) commit(ctx context.Context, key string, t temp, cond bool, gen int64) (store.Info, error) {
	path := s.path(key)
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return store.Info{}, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return store.Info{}, err
	}

	st := state{}
	if fi, err := os.Lstat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return store.Info{}, &fs.PathError{Op: "replace", Path: path, Err: errNotRegular}
		}
		st.exists = true
		st.ino, _ = inode(fi)
	}
	if err := readGen(path, &st); err != nil {
		return store.Info{}, err
	}
	if cur := st.current(); cond && (gen < 0 || cur != gen) {
		return store.Info{}, preconditionError(gen, cur)
	}

	next := state{exists: true, ino: t.ino, gen: s.nextGen(st), genIno: t.ino, hasGen: true}
	// The generation file first, then the object: whichever order the two
	// renames reach the disk in, a crash leaves either the old pair, the new
	// pair, or a mismatch that readers detect and repair.
	if err := s.writeGen(path, next); err != nil {
		return store.Info{}, err
	}
	if err := os.Rename(t.path, path); err != nil {
		return store.Info{}, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return store.Info{}, err
	}
	return store.Info{Key: key, Size: t.size, ModTime: t.modTime, Generation: next.gen}, nil
}

func preconditionError(want, have int64) error {
	w, h := "no object", "none"
	if want != store.Absent {
		w = "generation " + strconv.FormatInt(want, 10)
	}
	switch {
	case have > 0:
		h = "generation " + strconv.FormatInt(have, 10)
	case have < 0:
		h = "an object with no valid generation"
	}
	return fmt.Errorf("%w: want %s, have %s", store.ErrPrecondition, w, h)
}

// Open implements store.Store.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	if err := check(ctx, key); err != nil {
		return nil, store.Info{}, fmt.Errorf("open %q: %w", key, err)
	}
	f, info, err := s.open(ctx, key)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("open %q: %w", key, err)
	}
	return &reader{ctx: ctx, key: key, f: f}, info, nil
}

// reader is an open object bound to a context.
type reader struct {
	ctx context.Context
	key string
	f   *os.File
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %q: %w", r.key, err)
	}
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read %q: %w", r.key, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.f.Close() }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := check(ctx, key); err != nil {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	// Open rather than stat, so that the inode cannot be reused between
	// reading it and reading the generation file.
	f, info, err := s.open(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	return info, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if err := s.delete(ctx, key, nil); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	s.prune(filepath.Dir(s.path(key)))
	return nil
}

// DeleteIfOlder implements store.Toucher. Holding the key's lock, which
// Touch and every write also take, it checks the file's modification time
// and removes it.
func (s *Store) DeleteIfOlder(ctx context.Context, key string, t time.Time) error {
	if err := check(ctx, key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	err := s.delete(ctx, key, func(fi fs.FileInfo) error {
		if mt := fi.ModTime(); !mt.Before(t) {
			return fmt.Errorf("%w: modified at %s, not before %s", store.ErrPrecondition,
				mt.UTC().Format(time.RFC3339Nano), t.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	s.prune(filepath.Dir(s.path(key)))
	return nil
}

// Touch implements store.Toucher: holding the key's lock, it sets the
// file's modification time to now. The generation file is unchanged.
func (s *Store) Touch(ctx context.Context, key string) (store.Info, error) {
	if err := check(ctx, key); err != nil {
		return store.Info{}, fmt.Errorf("touch %q: %w", key, err)
	}
	if err := s.touch(ctx, key); err != nil {
		return store.Info{}, fmt.Errorf("touch %q: %w", key, err)
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("touch %q: %w", key, err)
	}
	return info, nil
}

func (s *Store) touch(ctx context.Context, key string) error {
	path := s.path(key)
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := regular(path, "touch"); err != nil {
		return err
	}
	now := s.now()
	return os.Chtimes(path, now, now)
}

// regular returns the FileInfo of the regular file at path, or an error
// wrapping fs.ErrNotExist if there is none (also if path is a directory or
// a parent is a file).
func regular(path, op string) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err == nil && !fi.Mode().IsRegular() {
		err = &fs.PathError{Op: op, Path: path, Err: fs.ErrNotExist}
	} else if errors.Is(err, syscall.ENOTDIR) {
		err = &fs.PathError{Op: op, Path: path, Err: fs.ErrNotExist}
	}
	return fi, err
}

// delete removes the object under key, holding its lock, if cond (when
// not nil) returns nil for its file.
func (s *Store) delete(ctx context.Context, key string, cond func(fs.FileInfo) error) error {
	path := s.path(key)
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := regular(path, "delete")
	if err != nil {
		return err
	}
	if cond != nil {
		if err := cond(fi); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if err := os.Remove(genPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// prune removes dir and its parents below the root while they are empty.
// It is best effort: a directory that is not empty, or that a concurrent
// write is using, stays (createTemp recreates one removed under it).
func (s *Store) prune(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// List implements store.Store. It walks the directory tree, sorting each
// directory's entries with subdirectory names followed by "/", which yields
// keys in byte order.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		if err := store.ValidatePrefix(prefix); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		dirKey, namePrefix := "", prefix
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dirKey, namePrefix = prefix[:i], prefix[i+1:]
		}
		s.walk(ctx, prefix, dirKey, namePrefix, yield)
	}
}

// walk yields the objects in directory dirKey whose names begin with
// namePrefix, and everything below such subdirectories. It returns false if
// the iteration stopped.
func (s *Store) walk(ctx context.Context, prefix, dirKey, namePrefix string, yield func(store.Info, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
		return false
	}
	entries, err := os.ReadDir(s.path(dirKey))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return true
	}
	if err != nil {
		yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
		return false
	}
	type entry struct {
		name, order string
		dir         bool
	}
	var es []entry
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) || strings.HasPrefix(name, store.ReservedPrefix) {
			continue
		}
		switch {
		case e.IsDir():
			es = append(es, entry{name, name + "/", true})
		case e.Type().IsRegular():
			es = append(es, entry{name, name, false})
		}
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.order, b.order) })
	for _, e := range es {
		key := e.name
		if dirKey != "" {
			key = dirKey + "/" + e.name
		}
		if store.ValidateKey(key) != nil {
			continue // not something this store wrote
		}
		if e.dir {
			if !s.walk(ctx, prefix, key, "", yield) {
				return false
			}
			continue
		}
		info, err := s.Stat(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return false
		}
		if !yield(info, nil) {
			return false
		}
	}
	return true
}

// Stage implements store.Stager: it writes r to a temporary file in the
// root, which Publish renames into place.
func (s *Store) Stage(ctx context.Context, r io.Reader) (store.Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	t, err := s.writeTemp(ctx, s.root, r)
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	return &staged{s: s, t: t}, nil
}

type staged struct {
	s    *Store
	t    temp
	done bool // published or discarded
}

func (st *staged) Size() int64 { return st.t.size }

func (st *staged) Publish(ctx context.Context, key string, generation int64) (store.Info, error) {
	if st.done {
		return store.Info{}, fmt.Errorf("publish %q: staged content already published or discarded", key)
	}
	if err := check(ctx, key); err != nil {
		return store.Info{}, fmt.Errorf("publish %q: %w", key, err)
	}
	if err := st.s.mkdirAll(filepath.Dir(st.s.path(key))); err != nil {
		return store.Info{}, fmt.Errorf("publish %q: %w", key, err)
	}
	info, err := st.s.commit(ctx, key, st.t, true, generation)
	if err != nil {
		return store.Info{}, fmt.Errorf("publish %q: %w", key, err)
	}
	st.done = true
	return info, nil
}

func (st *staged) Discard() error {
	if st.done {
		return nil
	}
	st.done = true
	if err := os.Remove(st.t.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// lock takes the lock of key's stripe, across goroutines and processes, and
// returns the function that releases it. flock cannot be interrupted, so ctx
// is only checked before waiting; locks are held for the few file system
// calls of a commit.
func (s *Store) lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.readOnly {
		return nil, ErrReadOnly // every holder of a lock writes
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	i := h.Sum32() % numStripes
	s.mu[i].Lock()
	path := filepath.Join(s.root, locksDir, fmt.Sprintf("%02x", i))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, fs.ErrNotExist) { // someone removed the locks directory
		if err = os.MkdirAll(filepath.Dir(path), 0o777); err == nil {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		}
	}
	if err == nil {
		if err = flock(f); err != nil {
			_ = f.Close()
			err = &fs.PathError{Op: "flock", Path: path, Err: err}
		}
	}
	if err != nil {
		s.mu[i].Unlock()
		return nil, err
	}
	return func() {
		_ = f.Close() // releases the flock
		s.mu[i].Unlock()
	}, nil
}

// syncDir fsyncs directory dir, making renames and removals in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: errors.Unwrap(err)}
	}
	return nil
}

func check(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// ctxReader makes reads fail once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
