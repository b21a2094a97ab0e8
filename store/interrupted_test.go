package store

import (
	"testing"
	"time"
)

func TestMarkInterrupted(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r := &Run{Status: StatusRunning, Started: t0, Heartbeat: t0.Add(time.Minute), Nodes: []*NodeRun{
		{Name: "done", Status: StatusSucceeded, Started: t0, Finished: t0.Add(time.Second)},
		{Name: "going", Status: StatusRunning, Started: t0.Add(time.Second)},
		{Name: "waiting", Status: StatusPending},
	}}
	if r.Stale(t0.Add(time.Minute+HeartbeatTimeout)) || !r.Stale(t0.Add(time.Minute+HeartbeatTimeout+time.Second)) {
		t.Error("stale at the wrong time")
	}
	r.MarkInterrupted("why")
	if r.Status != StatusInterrupted || r.Reason != "why" || !r.Finished.Equal(t0.Add(time.Minute)) || r.Stale(t0.Add(time.Hour)) {
		t.Errorf("run: %s %q finished %v", r.Status, r.Reason, r.Finished)
	}
	if r.Node("done").Status != StatusSucceeded || r.Node("going").Status != StatusInterrupted || !r.Node("going").Finished.Equal(t0.Add(time.Minute)) || r.Node("waiting").Status != StatusSkipped {
		t.Errorf("nodes: %s %s %s", r.Node("done").Status, r.Node("going").Status, r.Node("waiting").Status)
	}
}
