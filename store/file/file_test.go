package file_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/storetest"
)

func newStore(t *testing.T) *file.Store {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the store conformance suite against the file backend.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// tree lists every path under dir with its mode and content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), ".sluice")
	if _, err := file.New(missing, file.ReadOnly()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open of a missing store: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read-only open created %s", missing)
	}

	dir := t.TempDir()
	rw, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rw.Put(ctx, "runs/r1/record.json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	// A lock directory removed by hand is not recreated by reading.
	if err := os.RemoveAll(filepath.Join(dir, store.ReservedPrefix+"locks")); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	ro, err := file.New(dir, file.ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	rc, info, err := ro.Open(ctx, "runs/r1/record.json")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "{}" || info.Generation != want.Generation {
		t.Errorf("read %q generation %d, want {} generation %d", data, info.Generation, want.Generation)
	}
	if _, err := ro.Stat(ctx, "runs/r1/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing key: %v", err)
	}
	n := 0
	for _, err := range ro.List(ctx, "runs/") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("listed %d objects, want 1", n)
	}
	if after := tree(t, dir); !reflect.DeepEqual(before, after) {
		t.Errorf("reading a read-only store changed its directory:\nbefore %v\nafter  %v", before, after)
	}
	// A generation file that describes other content (a commit under way)
	// is not repaired.
	gen := filepath.Join(dir, "runs", "r1", store.ReservedPrefix+"gen.record.json")
	if err := os.WriteFile(gen, []byte("5 1\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	before = tree(t, dir)
	if info, err := ro.Stat(ctx, "runs/r1/record.json"); err != nil || info.Generation != -1 {
		t.Errorf("stat while the generation is inconsistent: %+v %v, want generation -1", info, err)
	}
	writes := map[string]func() error{
		"put":    func() error { _, err := ro.Put(ctx, "runs/r2/record.json", strings.NewReader("{}")); return err },
		"putif":  func() error { _, err := ro.PutIf(ctx, "refs/main", strings.NewReader("r1"), store.Absent); return err },
		"stage":  func() error { _, err := ro.Stage(ctx, strings.NewReader("blob")); return err },
		"delete": func() error { return ro.Delete(ctx, "runs/r1/record.json") },
		"delete-if-older": func() error {
			return ro.DeleteIfOlder(ctx, "runs/r1/record.json", time.Now().Add(time.Hour))
		},
		"touch": func() error { _, err := ro.Touch(ctx, "runs/r1/record.json"); return err },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, file.ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", name, err)
		}
	}
	after := tree(t, dir)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the read-only store changed its directory:\nbefore %v\nafter  %v", before, after)
	}
}
