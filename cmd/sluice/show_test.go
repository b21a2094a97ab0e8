package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// show RUN NODE lists a remote node's tries: how each ended, on what, and
// why, so a preempted or moved node can be followed.
func TestWriteTries(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	writeTries(&b, &store.Placement{Backend: "batch", Environment: "gpu-l4", Location: "us-central1", CostKnown: true, Cost: 0.3,
		Tries: []store.Try{
			{Job: "projects/p/locations/us-central1/jobs/sluice-a-train-1-abc", Machine: "g2-standard-8 with 1 x nvidia-l4", Provisioning: "spot",
				Outcome: "preempted", Why: "Task state is updated from RUNNING to FAILED\n on zones/us-central1-a/instances/x with exit code 50001.", Started: t0, Finished: t0.Add(2 * time.Minute), Cost: 0.1},
			{Job: "projects/p/locations/us-central1/jobs/sluice-a-train-2-def", Machine: "g2-standard-8 with 1 x nvidia-l4", Provisioning: "standard",
				Outcome: "completed", Started: t0.Add(2 * time.Minute), Finished: t0.Add(9 * time.Minute), Cost: 0.2},
		}})
	want := `ran on: environment gpu-l4 (batch, us-central1), est. $0.3000
try 1: preempted on g2-standard-8 with 1 x nvidia-l4 (spot), 2m0s, est. $0.1000  projects/p/locations/us-central1/jobs/sluice-a-train-1-abc
  Task state is updated from RUNNING to FAILED on zones/us-central1-a/instances/x with exit code 50001.
try 2: completed on g2-standard-8 with 1 x nvidia-l4 (standard), 7m0s, est. $0.2000  projects/p/locations/us-central1/jobs/sluice-a-train-2-def
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeTries(&b, nil)
	if b.Len() != 0 {
		t.Errorf("a local node: %q", b.String())
	}
}
