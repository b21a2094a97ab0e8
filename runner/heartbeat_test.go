package runner

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/liveness"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// While a node runs, the record names the process and its heartbeat moves
// on; a record left by a process that stopped writing goes stale after
// store.HeartbeatTimeout.
func TestHeartbeat(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan string, 1)
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		started <- job.RunID
		<-release
		return succeed(ctx, job, 0, "", nil)
	}}
	cfg, diags := spec.Parse("valohai.yaml", []byte(nodes("a")+"    edges: []\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: st,
			TempDir: t.TempDir(), HeartbeatEvery: 30 * time.Millisecond})
		done <- err
	}()
	id := <-started
	first, err := store.GetRun(context.Background(), st, id)
	if err != nil {
		t.Fatal(err)
	}
	self := liveness.Self()
	if first.Host != self.Host || first.PID != self.PID || first.Process != self.Token || first.Heartbeat.IsZero() {
		t.Fatalf("record names host %q pid %d process %q heartbeat %v; this is %+v", first.Host, first.PID, first.Process, first.Heartbeat, self)
	}
	deadline := time.Now().Add(30 * time.Second) // a guard, not a measure
	for {
		rec, err := store.GetRun(context.Background(), st, id)
		if err == nil && rec.Heartbeat.After(first.Heartbeat) && rec.Status == store.StatusRunning {
			if rec.Stale(rec.Heartbeat.Add(store.HeartbeatTimeout / 2)) {
				t.Error("stale half a timeout after its heartbeat")
			}
			if !rec.Stale(rec.Heartbeat.Add(store.HeartbeatTimeout + time.Second)) {
				t.Error("not stale a timeout after its heartbeat")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat never moved while the node ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec, _ := store.GetRun(context.Background(), st, id)
	if rec.Status != store.StatusSucceeded || rec.Stale(time.Now().Add(time.Hour)) {
		t.Errorf("finished run: %s, stale %v", rec.Status, rec.Stale(time.Now().Add(time.Hour)))
	}
}
