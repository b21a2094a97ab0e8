package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluice-ci/sluice/internal/liveness"
	"github.com/sluice-ci/sluice/store"
)

// goneReason says why a run recorded as running has lost its sluice, or ""
// when it may still be going: on this machine, its process has ended (or a
// later process has its pid); anywhere, its heartbeat is older than
// store.HeartbeatTimeout. A process this machine sees alive keeps its run
// running, however late its heartbeat (its store may be failing it).
func goneReason(rec *store.Run, now time.Time) string {
	if rec.Status != store.StatusRunning && rec.Status != store.StatusPending {
		return ""
	}
	gone, known := liveness.Gone(rec.Process)
	switch {
	case known && gone:
		return fmt.Sprintf("its sluice (pid %d on %s) ended without finishing the record", rec.PID, orUnknownHost(rec.Host))
	case known:
		return ""
	case rec.Stale(now):
		last := rec.Heartbeat
		what := "heartbeat"
		if last.IsZero() {
			last, what = rec.Started, "start, and no heartbeat since"
		}
		return fmt.Sprintf("no word from its sluice (pid %d on %s) since its %s at %s", rec.PID, orUnknownHost(rec.Host), what, last.UTC().Format(time.RFC3339))
	}
	return ""
}

func orUnknownHost(h string) string {
	if h == "" {
		return "an unknown host"
	}
	return h
}

// showLive marks, in memory, a run whose sluice is gone as interrupted, for
// the commands that print runs (runs, show, report); `sluice clean` records
// it in the store.
func showLive(rec *store.Run) *store.Run {
	if why := goneReason(rec, timeNow()); why != "" {
		rec.MarkInterrupted("interrupted: " + why)
	}
	return rec
}

// markInterrupted records as interrupted, in the store, each run (all, or
// the one named) whose sluice is gone, and says so on w. It returns how many
// it marked.
func markInterrupted(ctx context.Context, st store.Store, runID string, w io.Writer) (int, error) {
	ids := []string{runID}
	if runID == "" {
		var err error
		if ids, err = store.ListRuns(ctx, st); err != nil {
			return 0, err
		}
	}
	marked := 0
	for _, id := range ids {
		rec, err := store.GetRun(ctx, st, id)
		if err != nil {
			if runID != "" {
				return marked, err
			}
			continue // an unreadable record is gc's business
		}
		why := goneReason(rec, timeNow())
		if why == "" {
			continue
		}
		rec.MarkInterrupted("interrupted: " + why)
		if err := store.PutRun(ctx, st, rec); err != nil {
			return marked, err
		}
		fmt.Fprintf(w, "marked run %s interrupted: %s\n", rec.ID, why)
		marked++
	}
	return marked, nil
}
