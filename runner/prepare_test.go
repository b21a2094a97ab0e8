package runner

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// preparingExec is a fakeExec that is a Preparer: it records what it
// prepared, how many preparations were live at once, and how each ended.
type preparingExec struct {
	fakeExec
	pmu      sync.Mutex
	prepared []string
	ranIn    []string // nodes run in their prepared container
	dropped  []string // prepared containers discarded
	live     int
	maxLive  int
}

type fakePrepared struct {
	f    *preparingExec
	node string
	once sync.Once
}

func (f *preparingExec) Prepare(ctx context.Context, job Job) (Prepared, error) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	if job.Inputs != nil || job.OutputDir != "" || job.Stdout != nil {
		panic("Prepare was given a job's inputs, output directory or sinks")
	}
	f.prepared = append(f.prepared, job.Node)
	f.live++
	f.maxLive = max(f.maxLive, f.live)
	return &fakePrepared{f: f, node: job.Node}, nil
}

func (p *fakePrepared) end(list *[]string) bool {
	used := false
	p.once.Do(func() {
		used = true
		p.f.pmu.Lock()
		*list = append(*list, p.node)
		p.f.live--
		p.f.pmu.Unlock()
	})
	return used
}

func (p *fakePrepared) Run(ctx context.Context, job Job) (Result, error) {
	p.end(&p.f.ranIn)
	return p.f.fakeExec.Run(ctx, job)
}

func (p *fakePrepared) Discard() { p.end(&p.f.dropped) }

// While a runs, the nodes that wait only for it are prepared, at most
// maxPrepared at once, and run in what was prepared; a node whose command
// takes a parameter from a's metadata is not prepared; every preparation
// is used or discarded by the time Run returns.
//
//	a ──> b1, b2, b3 (input edges)
//	a ──> m (metadata → parameter edge)
func TestPrepareAhead(t *testing.T) {
	f := &preparingExec{}
	f.behave = func(ctx context.Context, job Job) (Result, error) {
		d := 10 * time.Millisecond
		if job.Node == "a" {
			d = 300 * time.Millisecond
		}
		return succeed(ctx, job, d, `{"n": 3}`+"\n", map[string]string{"x": job.Node})
	}
	yaml := `
- step: {name: s, image: x, command: run, inputs: [{name: in, optional: true}]}
- step: {name: p, image: x, command: "run {parameters}", parameters: [{name: n, type: integer, default: 1}]}
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: s}
      - {name: b1, type: execution, step: s}
      - {name: b2, type: execution, step: s}
      - {name: b3, type: execution, step: s}
      - {name: m, type: execution, step: p}
    edges:
      - [a.output.x, b1.input.in]
      - [a.output.x, b2.input.in]
      - [a.output.x, b3.input.in]
      - [a.metadata.n, m.parameter.n]
`
	rec, err := runPipeline(t, yaml, f, nil, 1)
	if err != nil || rec.Status != store.StatusSucceeded {
		t.Fatalf("run: %v, %v", err, rec.Status)
	}
	if slices.Contains(f.prepared, "m") || slices.Contains(f.prepared, "a") {
		t.Errorf("prepared %q: not m (a parameter edge) nor a (nothing ran before it)", f.prepared)
	}
	// The bound is on the nodes not yet started; a node that started (one
	// here, the concurrency) holds its own until it runs in it.
	if f.maxLive > maxPrepared+1 {
		t.Errorf("%d preparations live at once, want at most %d", f.maxLive, maxPrepared+1)
	}
	if !slices.Contains(f.ranIn, "b1") || !slices.Contains(f.ranIn, "b2") {
		t.Errorf("ran in prepared containers: %q; want b1 and b2 at least", f.ranIn)
	}
	if f.live != 0 || len(f.ranIn)+len(f.dropped) != len(f.prepared) {
		t.Errorf("prepared %q, ran in %q, discarded %q: %d left", f.prepared, f.ranIn, f.dropped, f.live)
	}
	if n := rec.Node("m"); n.Command != "run --n=3" {
		t.Errorf("m ran %q, want the parameter from a's metadata", n.Command)
	}
}

// A prepared node that its upstream's failure skips is discarded.
func TestPrepareAheadUpstreamFails(t *testing.T) {
	f := &preparingExec{}
	f.behave = func(ctx context.Context, job Job) (Result, error) {
		time.Sleep(100 * time.Millisecond)
		return Result{ExitCode: 1, Reason: ReasonFailed, Started: time.Now(), Finished: time.Now()}, nil
	}
	rec, _ := runPipeline(t, nodes("a", "b")+"    edges:\n      - [a.output.x, b.input.in]\n", f, nil, 2)
	if rec.Node("b").Status != store.StatusSkipped {
		t.Fatalf("b: %s", rec.Node("b").Status)
	}
	if !slices.Equal(f.prepared, []string{"b"}) || !slices.Equal(f.dropped, []string{"b"}) || len(f.ranIn) != 0 {
		t.Errorf("prepared %q, discarded %q, ran in %q; want b prepared and discarded", f.prepared, f.dropped, f.ranIn)
	}
}

// A prepared node that fails before it runs (its node-starting action
// stops it) has its container discarded (at once, so that it does not hold
// a place among those made ahead until the run ends).
func TestPrepareAheadNodeFailsBeforeRunning(t *testing.T) {
	f := &preparingExec{}
	f.behave = func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 100*time.Millisecond, "", map[string]string{"x": job.Node})
	}
	yaml := `
- step: {name: s, image: x, command: run, inputs: [{name: in, optional: true}]}
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: s}
      - {name: b, type: execution, step: s, on-error: continue, actions: [{when: node-starting, then: error-pipeline}]}
    edges:
      - [a.output.x, b.input.in]
`
	rec, _ := runPipeline(t, yaml, f, nil, 1)
	if rec.Node("b").Status != store.StatusFailed {
		t.Fatalf("b: %s %s", rec.Node("b").Status, rec.Node("b").Reason)
	}
	if !slices.Equal(f.prepared, []string{"b"}) || !slices.Equal(f.dropped, []string{"b"}) {
		t.Errorf("prepared %q, discarded %q; want b prepared and discarded", f.prepared, f.dropped)
	}
}
