package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/retry"
)

func TestAsReachesTheStoreUnderTheDecorators(t *testing.T) {
	dir := t.TempDir()
	fs, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := retry.New(retry.New(fs)) // two decorators

	// A capability of the file store only (Dir) passes through both.
	d, ok := store.As[interface{ Dir() string }](s)
	if !ok || d.Dir() != fs.Dir() {
		t.Fatalf("As[Dir] = %v, %v; want the file store's", d, ok)
	}
	// One the outer decorator implements itself is its own: Stage and Touch
	// are retried there.
	st, ok := store.As[store.Stager](s)
	if !ok || st == store.Stager(fs) {
		t.Errorf("As[Stager] = %T, %v; want the outer decorator", st, ok)
	}
	if _, ok := store.As[store.Toucher](s); !ok {
		t.Error("As[Toucher] found none")
	}
	// One that no store of the chain has.
	if sg, ok := store.As[interface {
		SignedURL(string, string, time.Duration) (string, error)
	}](s); ok {
		t.Errorf("As[SignedURL] = %T on a file store", sg)
	}
	// The decorators still reach the store: what the outer one writes, the
	// file store has.
	if _, err := s.Put(context.Background(), "k", strings.NewReader("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(context.Background(), "k"); err != nil {
		t.Error(err)
	}
	if _, ok := store.As[interface{ Dir() string }](nil); ok {
		t.Error("As on a nil store found something")
	}
}
