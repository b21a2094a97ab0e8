package runner

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// digestResolver stands in for an image resolver: it names every image
// image@sha256:1..., or fails with err. It counts the lookups.
type digestResolver struct {
	err error

	mu    sync.Mutex
	asked int
}

func (d *digestResolver) ImageDigest(_ context.Context, ref string) (string, error) {
	d.mu.Lock()
	d.asked++
	d.mu.Unlock()
	if d.err != nil {
		return "", d.err
	}
	return ref + "@sha256:1111111111111111111111111111111111111111111111111111111111111111", nil
}

// resolvingExec is an executor that names image digests itself.
type resolvingExec struct {
	*fakeExec
	*digestResolver
}

// runLogged runs the pipeline of yaml and returns its record and everything
// it printed.
func runLogged(t *testing.T, yaml string, exec Executor, resolver ImageResolver, st store.Store) (*store.Run, string) {
	t.Helper()
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	var log bytes.Buffer
	rec, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: exec,
		ImageResolver: resolver, Store: st, RepoDir: t.TempDir(), TempDir: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	return rec, log.String()
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func succeedAtOnce() *fakeExec {
	return &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, "", nil)
	}}
}

func TestReuseOffWithoutImageDigest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resolver ImageResolver
		want     string
	}{
		{"nothing names digests", nil,
			"a | sluice: warning: reuse is off for this node: no digest for image x: the executor cannot name image digests and no image resolver is set\n"},
		{"the registry cannot say", &digestResolver{err: errors.New("image x: registry index.docker.io: unreachable")},
			"a | sluice: warning: reuse is off for this node: no image digest: image x: registry index.docker.io: unreachable\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := succeedAtOnce()
			rec, log := runLogged(t, nodes("a")+"    edges: []\n", f, tc.resolver, newStore(t))
			if !strings.Contains(log, tc.want) {
				t.Errorf("the log does not say %q:\n%s", tc.want, log)
			}
			if len(f.order) != 1 || rec.Status != store.StatusSucceeded {
				t.Fatalf("%d jobs ran, status %s; want the node to run and succeed", len(f.order), rec.Status)
			}
			nr := rec.Node("a")
			warned := false
			for _, w := range nr.Warnings {
				warned = warned || strings.HasPrefix(w, "reuse is off for this node: ")
			}
			if !warned {
				t.Errorf("the node's record has no reuse-off warning: %q", nr.Warnings)
			}
			if nr.CacheKey != "" {
				t.Errorf("the node has a cache key %s without an image digest", nr.CacheKey)
			}
		})
	}
}

func TestReuseOffInTaskExecutions(t *testing.T) {
	yaml := `- step:
    name: s
    image: x
    command: run {parameters}
    parameters: [{name: n, type: integer}]
- task:
    name: sweep
    step: s
    type: grid_search
    parameters:
      - {name: n, style: multiple, rules: {items: [1, 2]}}
- pipeline:
    name: p
    nodes:
      - {name: t, type: task, task: sweep}
    edges: []
`
	f := succeedAtOnce()
	rec, log := runLogged(t, yaml, f, nil, newStore(t))
	if len(f.order) != 2 || rec.Status != store.StatusSucceeded {
		t.Fatalf("%d jobs ran, status %s; want both executions to run and succeed\n%s", len(f.order), rec.Status, log)
	}
	if n := len(rec.Node("t").Executions); n != 2 {
		t.Fatalf("%d executions recorded, want 2", n)
	}
	for _, e := range rec.Node("t").Executions {
		want := "t[" + e.Variant + "] | sluice: reuse is off for this node: no digest for image x"
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

func TestImageResolverForExecutorsWithout(t *testing.T) {
	st := newStore(t)
	resolver := &digestResolver{}
	f := succeedAtOnce()
	rec, log := runLogged(t, nodes("a")+"    edges: []\n", f, resolver, st)
	if strings.Contains(log, "reuse is off") || rec.Node("a").CacheKey == "" {
		t.Fatalf("Options.ImageResolver was not used: cache key %q\n%s", rec.Node("a").CacheKey, log)
	}
	rec, log = runLogged(t, nodes("a")+"    edges: []\n", f, resolver, st)
	if len(f.order) != 1 || rec.Node("a").ReusedFrom == "" {
		t.Errorf("the second run ran %d jobs in all, reused from %q; want the first run's result reused\n%s",
			len(f.order), rec.Node("a").ReusedFrom, log)
	}
}

func TestExecutorResolverComesFirst(t *testing.T) {
	own, fallback := &digestResolver{}, &digestResolver{err: errors.New("not this one")}
	rec, log := runLogged(t, nodes("a")+"    edges: []\n", resolvingExec{succeedAtOnce(), own}, fallback, newStore(t))
	if own.asked != 1 || fallback.asked != 0 {
		t.Errorf("the executor's resolver was asked %d times, Options.ImageResolver %d; want 1, 0", own.asked, fallback.asked)
	}
	if rec.Node("a").CacheKey == "" || strings.Contains(log, "reuse is off") {
		t.Errorf("no cache key from the executor's resolver\n%s", log)
	}
}
