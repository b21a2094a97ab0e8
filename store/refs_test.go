package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// Runs finishing together: the branch ref names the one that started last,
// and the commit lists every one of them.
func TestRecordRunRace(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &store.Run{ID: fmt.Sprintf("run-%02d", i), Pipeline: "train", Branch: "main", Commit: "abc123",
				Status: store.StatusSucceeded, Started: t0.Add(time.Duration(i) * time.Second)}
			if i%4 == 3 {
				r.Status = store.StatusFailed
			}
			if err := store.RecordRun(context.Background(), st, r); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ref, err := store.BranchRef(context.Background(), st, "main", "train")
	if err != nil || ref.Run != "run-14" {
		t.Errorf("branch ref %+v (%v), want run-14, the latest successful", ref, err)
	}
	runs, err := store.CommitRuns(context.Background(), st, "abc123")
	if err != nil || len(runs) != 16 || runs[0].Run != "run-00" || runs[15].Run != "run-15" {
		t.Errorf("commit runs: %d (%v)", len(runs), err)
	}
	if _, err := store.BranchRef(context.Background(), st, "feature/x y", "train"); err == nil {
		t.Error("a branch without runs has a ref")
	}
	if k := store.BranchRefKey("feature/login", "my pipeline"); store.ValidateKey(k) != nil {
		t.Errorf("ref key %q is not a valid key", k)
	}
}
