package file_test

import (
	"testing"

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
