package file_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// leftovers returns the temporary files anywhere in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".sluice-tmp-") {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestLayout(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "runs/r1/train/model.pkl", strings.NewReader("weights")); err != nil {
		t.Fatal(err)
	}
	d, _, err := store.PutBlob(ctx, s, strings.NewReader("blob"))
	if err != nil {
		t.Fatal(err)
	}
	// A person finds objects with plain file tools.
	for path, want := range map[string]string{
		"runs/r1/train/model.pkl":                     "weights",
		"blobs/sha256/" + d.Hex()[:2] + "/" + d.Hex(): "blob",
	} {
		b, err := os.ReadFile(filepath.Join(s.Dir(), filepath.FromSlash(path)))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v, want %q", path, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "runs/r1/train/.sluice-gen.model.pkl")); err != nil {
		t.Errorf("generation file: %v", err)
	}
	if got := leftovers(t, s.Dir()); len(got) != 0 {
		t.Errorf("temporary files left: %q", got)
	}

	// Deleting the last object of a directory removes the empty directories.
	if err := s.Delete(ctx, "runs/r1/train/model.pkl"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "runs")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runs/ after deleting its only object: %v, want it removed", err)
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Errorf("store directory: %v", err)
	}
}

// TestBlobCorruptOnDisk flips a byte of a blob file in place, as a failing
// disk would, leaving the generation file valid.
func TestBlobCorruptOnDisk(t *testing.T) {
	s := newStore(t)
	d, _, err := store.PutBlob(t.Context(), s, strings.NewReader("precious"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir(), filepath.FromSlash(store.BlobKey(d))), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("P"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rc, _, err := store.OpenBlob(t.Context(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); !errors.Is(err, store.ErrDigestMismatch) {
		t.Errorf("read %q, %v, want store.ErrDigestMismatch", b, err)
	}
}

// TestTornCommit simulates crashes between the two renames of a commit: the
// object file replaced without its generation file, or the generation file
// lost. A generation that was handed out must not match the new content.
func TestTornCommit(t *testing.T) {
	ctx := t.Context()
	for name, tear := range map[string]func(t *testing.T, path string){
		"object replaced": func(t *testing.T, path string) {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte("torn"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		},
		"generation lost": func(t *testing.T, path string) {
			if err := os.Remove(filepath.Join(filepath.Dir(path), ".sluice-gen."+filepath.Base(path))); err != nil {
				t.Fatal(err)
			}
		},
		"generation garbled": func(t *testing.T, path string) {
			gen := filepath.Join(filepath.Dir(path), ".sluice-gen."+filepath.Base(path))
			if err := os.WriteFile(gen, []byte("12"), 0o666); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			const key = "refs/main"
			before, err := s.Put(ctx, key, strings.NewReader("v1"))
			if err != nil {
				t.Fatal(err)
			}
			tear(t, filepath.Join(s.Dir(), "refs", "main"))
			_, err = s.PutIf(ctx, key, strings.NewReader("lost update"), before.Generation)
			if !errors.Is(err, store.ErrPrecondition) {
				t.Fatalf("PutIf with the generation from before the tear: %v, want store.ErrPrecondition", err)
			}
			after, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if after.Generation <= before.Generation {
				t.Errorf("generation after repair %d, want > %d", after.Generation, before.Generation)
			}
			if again, err := s.Stat(ctx, key); err != nil || again.Generation != after.Generation {
				t.Errorf("Stat again = %+v, %v, want the repaired generation %d", again, err, after.Generation)
			}
			if _, err := s.PutIf(ctx, key, strings.NewReader("v2"), after.Generation); err != nil {
				t.Errorf("PutIf with the repaired generation: %v", err)
			}
		})
	}
}

// TestErrorsNamePath checks that file system errors carry the path and the
// key: here a key below an object, which a directory tree cannot hold.
func TestErrorsNamePath(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "a", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(ctx, "a/b", strings.NewReader("y"))
	if err == nil || !strings.Contains(err.Error(), `"a/b"`) || !strings.Contains(err.Error(), filepath.Join(s.Dir(), "a")) {
		t.Errorf("Put below an object: %v, want an error naming the key and the path", err)
	}
	if _, err := s.Put(ctx, "d/e", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, "d", strings.NewReader("z"))
	if err == nil || !strings.Contains(err.Error(), `"d"`) {
		t.Errorf("Put over a directory: %v, want an error naming the key", err)
	}
	if got := leftovers(t, s.Dir()); len(got) != 0 {
		t.Errorf("temporary files left: %q", got)
	}
}

func TestPermissionError(t *testing.T) {
	if os.Geteuid() == 0 {
		// File permissions do not restrict root (CI runs as root): run this
		// test again in a copy of the test binary as nobody.
		runAsNobody(t, "TestPermissionError")
		return
	}
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "ro/x", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), "ro")
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	_, err := s.Put(ctx, "ro/y", strings.NewReader("y"))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Put into a read-only directory: %v, want fs.ErrPermission naming %s", err, dir)
	}
}

// runAsNobody runs one test of this package in a copy of the test binary
// (its own directory may be closed to other users) as uid and gid 65534,
// and fails unless it passes.
func runAsNobody(t *testing.T, test string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sluice-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "file.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s as nobody: %v\n%s", test, err, out)
	}
}

func TestNewOnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("New on a file: %v, want an error naming it", err)
	}
}

// TestNoLeftovers checks that failed and cancelled writes remove their
// temporary files.
func TestNoLeftovers(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	info, err := s.Put(ctx, "k", strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	errRead := errors.New("read failed")
	failing := func() io.Reader { return io.MultiReader(strings.NewReader("partial"), iotestErrReader{errRead}) }
	if _, err := s.Put(ctx, "dir/k", failing()); !errors.Is(err, errRead) {
		t.Errorf("Put: %v", err)
	}
	if _, err := s.PutIf(ctx, "k", strings.NewReader("w"), info.Generation+1); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("PutIf: %v", err)
	}
	if _, _, err := store.PutBlob(ctx, s, failing()); !errors.Is(err, errRead) {
		t.Errorf("PutBlob: %v", err)
	}
	if _, _, err := store.PutBlob(ctx, s, strings.NewReader("v")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.PutBlob(ctx, s, strings.NewReader("v")); err != nil { // already stored
		t.Fatal(err)
	}
	if got := leftovers(t, s.Dir()); len(got) != 0 {
		t.Errorf("temporary files left: %q", got)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
