package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

func TestWriteSummaryPlacements(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rec := &store.Run{ID: "r1", Status: store.StatusSucceeded, Nodes: []*store.NodeRun{
		{Name: "prep", Status: store.StatusSucceeded, Started: t0, Finished: t0.Add(time.Second)},
		{Name: "train", Status: store.StatusSucceeded, Started: t0, Finished: t0.Add(time.Minute),
			Placement: &store.Placement{Backend: "batch", Environment: "gpu", Location: "us-central1", Machine: "g2-standard-8",
				Accelerator: "nvidia-l4", AcceleratorCount: 1, Provisioning: "spot", Cost: 0.25, CostKnown: true,
				Tries: []store.Try{{Outcome: "preempted"}, {Outcome: "completed"}}}},
	}}
	var b strings.Builder
	if err := WriteSummary(&b, rec); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"train ran on gpu (batch, us-central1): g2-standard-8, 1 x nvidia-l4, spot; 2 tries (preempted, completed); est. $0.2500\n",
		"estimated cost of the run: $0.2500\n",
		"run r1 succeeded\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "prep ran on") {
		t.Errorf("a local node is said to run elsewhere:\n%s", b.String())
	}
}
