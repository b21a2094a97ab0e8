package runner

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// Two steps in two environments: cheap on the default executor, train on
// "gpu-box", mapped with max-parallel 1.
const twoEnvironments = `
- step: {name: cheap, image: x, command: run}
- step: {name: train, image: x, command: run, environment: gpu-box}
- pipeline:
    name: p
    nodes:
      - {name: c1, type: execution, step: cheap}
      - {name: c2, type: execution, step: cheap}
      - {name: c3, type: execution, step: cheap}
      - {name: t1, type: execution, step: train}
      - {name: t2, type: execution, step: train}
      - {name: t3, type: execution, step: train}
    edges: []
`

func runEnvironments(t *testing.T, yaml string, sc *spec.SluiceConfig, local Executor, envs map[string]Environment) (*store.Run, error) {
	t.Helper()
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: local, Store: st,
		Environments: envs, Sluice: sc, Concurrency: 8, TempDir: t.TempDir()})
}

func TestEnvironmentMaxParallel(t *testing.T) {
	sc := &spec.SluiceConfig{Environments: map[string]*spec.Environment{
		"gpu-box": {Name: "gpu-box", Backend: spec.BackendDocker, MaxParallel: 1},
	}}
	// The local jobs wait until two of them run at once (or a second
	// passes), so the run shows that the default environment is not held
	// to the other's limit.
	var mu sync.Mutex
	localRunning := 0
	local := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		mu.Lock()
		localRunning++
		deadline := time.Now().Add(time.Second)
		for localRunning < 2 && time.Now().Before(deadline) {
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
		}
		mu.Unlock()
		return succeed(ctx, job, 0, "", nil)
	}}
	var envSeen sync.Map
	gpu := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		envSeen.Store(job.Node, job.Environment)
		return succeed(ctx, job, 40*time.Millisecond, "", nil)
	}}
	rec, err := runEnvironments(t, twoEnvironments, sc, local, map[string]Environment{"gpu-box": {Executor: gpu, MaxParallel: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.StatusSucceeded {
		t.Fatalf("status %s: %s", rec.Status, rec.Reason)
	}
	if got := strings.Join(sortedCopy(gpu.order), ","); got != "t1,t2,t3" {
		t.Errorf("the gpu-box executor ran %s, want t1,t2,t3", got)
	}
	if got := strings.Join(sortedCopy(local.order), ","); got != "c1,c2,c3" {
		t.Errorf("the default executor ran %s, want c1,c2,c3", got)
	}
	if gpu.maxRunning != 1 {
		t.Errorf("%d gpu-box nodes ran at once, want 1 (its max-parallel)", gpu.maxRunning)
	}
	if local.maxRunning < 2 {
		t.Errorf("at most %d default nodes ran at once: the gpu-box limit held them back", local.maxRunning)
	}
	for _, n := range []string{"t1", "t2", "t3"} {
		if v, _ := envSeen.Load(n); v != "gpu-box" {
			t.Errorf("node %s ran with Job.Environment %q, want gpu-box", n, v)
		}
	}
}

func TestEnvironmentWithoutExecutor(t *testing.T) {
	sc := &spec.SluiceConfig{Environments: map[string]*spec.Environment{
		"gpu-box": {Name: "gpu-box", Backend: spec.BackendDocker},
	}}
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) { return succeed(ctx, job, 0, "", nil) }}
	_, err := runEnvironments(t, twoEnvironments, sc, f, nil)
	if err == nil || !strings.Contains(err.Error(), `environment "gpu-box"`) {
		t.Fatalf("err = %v, want one naming the environment without an executor", err)
	}
	if len(f.order) != 0 {
		t.Errorf("%d nodes ran before the error", len(f.order))
	}
}

// A step naming an environment sluice.yaml does not map runs on the default
// executor, and its log says so.
func TestEnvironmentUnmapped(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) { return succeed(ctx, job, 0, "", nil) }}
	cfg, diags := spec.Parse("valohai.yaml", []byte(twoEnvironments))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var mu sync.Mutex
	rec, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: st,
		Concurrency: 2, TempDir: t.TempDir(), Log: lockedWriter{&mu, &log}})
	if err != nil || rec.Status != store.StatusSucceeded {
		t.Fatalf("run: %v", err)
	}
	if len(f.order) != 6 {
		t.Errorf("the default executor ran %d nodes, want 6", len(f.order))
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), `t1 | sluice: environment "gpu-box" has no mapping in sluice.yaml: the node runs on the local Docker host`) {
		t.Errorf("log lacks the unmapped-environment line:\n%s", log.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// An executor's reported spend crossing MaxCost stops the run, which fails
// saying so.
func TestMaxCostStopsTheRun(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		for range 100 {
			job.Spend(0.5)
			select {
			case <-ctx.Done():
				return Result{ExitCode: -1, Reason: ReasonCancelled}, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		return succeed(ctx, job, 0, "", nil)
	}}
	cfg, diags := spec.Parse("valohai.yaml", []byte(nodes("a", "b")+"    edges: []\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: st,
		Concurrency: 2, TempDir: t.TempDir(), MaxCost: 3})
	if err == nil || rec.Status != store.StatusFailed || !strings.Contains(rec.Reason, "crossed max-cost $3.00") {
		t.Fatalf("status %s, reason %q, err %v; want failed for max-cost", rec.Status, rec.Reason, err)
	}
	for _, n := range rec.Nodes {
		if n.Status == store.StatusSucceeded {
			t.Errorf("node %s succeeded: the run was not stopped", n.Name)
		}
	}
}
