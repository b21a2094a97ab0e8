package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// fakeExec stands in for Docker in scheduler tests: behave decides what each
// job does. It records how many jobs ran at once.
type fakeExec struct {
	mu         sync.Mutex
	running    int
	maxRunning int
	order      []string
	behave     func(ctx context.Context, job Job) (Result, error)
}

func (f *fakeExec) Run(ctx context.Context, job Job) (Result, error) {
	f.mu.Lock()
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.order = append(f.order, job.Node)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	return f.behave(ctx, job)
}

// succeed writes the given outputs and stdout lines, waits d, and exits 0.
func succeed(ctx context.Context, job Job, d time.Duration, stdout string, outputs map[string]string) (Result, error) {
	res := Result{ExitCode: -1, Started: time.Now()}
	io.WriteString(job.Stdout, stdout)
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return Result{ExitCode: -1, Reason: ReasonCancelled}, ctx.Err()
	}
	if err := os.MkdirAll(job.OutputDir, 0o755); err != nil {
		return res, err
	}
	for name, content := range outputs {
		p := filepath.Join(job.OutputDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return res, err
		}
		res.Outputs = append(res.Outputs, OutputFile{Path: name, Size: int64(len(content))})
	}
	res.ExitCode, res.Reason, res.Finished = 0, ReasonCompleted, time.Now()
	return res, nil
}

func runPipeline(t *testing.T, yaml string, exec Executor, st store.Store, concurrency int) (*store.Run, error) {
	t.Helper()
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	if st == nil {
		var err error
		if st, err = file.New(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	return Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: exec, Store: st,
		Concurrency: concurrency, TempDir: t.TempDir()})
}

func nodes(names ...string) string {
	var b strings.Builder
	b.WriteString("- step: {name: s, image: x, command: run, inputs: [{name: in, optional: true}]}\n- pipeline:\n    name: p\n    nodes:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "      - {name: %s, type: execution, step: s}\n", n)
	}
	return b.String()
}

func TestConcurrencyLimit(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 30*time.Millisecond, "", nil)
	}}
	rec, err := runPipeline(t, nodes("a", "b", "c", "d", "e", "f")+"    edges: []\n", f, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if f.maxRunning != 2 {
		t.Errorf("%d jobs ran at once, want 2 (the concurrency)", f.maxRunning)
	}
	if rec.Status != store.StatusSucceeded || len(f.order) != 6 {
		t.Errorf("status %s, %d jobs", rec.Status, len(f.order))
	}
}

// A node starts as soon as what it waits for is done, not when a whole
// "stage" is done:
//
//	a (slow) ──> c
//	b (fast) ──> d
//
// d must start before a finishes.
func TestNoStageBarrier(t *testing.T) {
	var mu sync.Mutex
	finished := map[string]time.Time{}
	started := map[string]time.Time{}
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		mu.Lock()
		started[job.Node] = time.Now()
		mu.Unlock()
		d := 10 * time.Millisecond
		if job.Node == "a" {
			d = 300 * time.Millisecond
		}
		res, err := succeed(ctx, job, d, "", map[string]string{"x": job.Node})
		mu.Lock()
		finished[job.Node] = time.Now()
		mu.Unlock()
		return res, err
	}}
	yaml := nodes("a", "b", "c", "d") + "    edges:\n      - [a.output.x, c.input.in]\n      - [b.output.x, d.input.in]\n"
	if _, err := runPipeline(t, yaml, f, nil, 4); err != nil {
		t.Fatal(err)
	}
	if !started["d"].Before(finished["a"]) {
		t.Errorf("d started after a finished: nodes waited for a stage")
	}
	if started["c"].Before(finished["a"]) {
		t.Errorf("c started before a finished")
	}
}

// fullStore fails every blob write as a full disk would.
type fullStore struct{ store.Store }

func (s fullStore) Put(ctx context.Context, key string, r io.Reader) (store.Info, error) {
	if strings.HasPrefix(key, "blobs/") {
		return store.Info{}, &os.PathError{Op: "write", Path: key, Err: syscall.ENOSPC}
	}
	return s.Store.Put(ctx, key, r)
}

func (s fullStore) PutIf(ctx context.Context, key string, r io.Reader, gen int64) (store.Info, error) {
	if strings.HasPrefix(key, "blobs/") {
		return store.Info{}, &os.PathError{Op: "write", Path: key, Err: syscall.ENOSPC}
	}
	return s.Store.PutIf(ctx, key, r, gen)
}

// A full disk fails the node that could not keep its outputs, with the reason,
// and the run record still says what happened.
func TestDiskFullStore(t *testing.T) {
	dir := t.TempDir()
	base, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, "hello\n", map[string]string{"model.pkl": "weights"})
	}}
	rec, err := runPipeline(t, nodes("a")+"    edges: []\n", f, fullStore{base}, 1)
	if !errors.Is(err, ErrPipelineFailed) {
		t.Fatalf("err = %v, want a failed pipeline", err)
	}
	a := rec.Node("a")
	if a.Status != store.StatusFailed || !strings.Contains(a.Reason, "no space left on device") || !strings.Contains(a.Reason, "model.pkl") {
		t.Errorf("node a: %s: %q", a.Status, a.Reason)
	}
	stored, err := store.GetRun(context.Background(), base, rec.ID)
	if err != nil || stored.Node("a").Status != store.StatusFailed {
		t.Errorf("the run record was not kept: %v", err)
	}
}

// The Docker daemon going away mid-run fails the nodes that needed it, with
// the daemon's error, and keeps what finished before.
func TestExecutorErrorKeepsFinishedWork(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		if job.Node == "b" {
			return Result{ExitCode: -1, Reason: ReasonError}, errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
		}
		return succeed(ctx, job, 0, `{"loss": 0.5}`+"\n", map[string]string{"out.txt": "a"})
	}}
	rec, err := runPipeline(t, nodes("a", "b")+"    edges:\n      - [a.output.out.txt, b.input.in]\n", f, nil, 2)
	if !errors.Is(err, ErrPipelineFailed) {
		t.Fatalf("err = %v", err)
	}
	a, b := rec.Node("a"), rec.Node("b")
	if a.Status != store.StatusSucceeded || a.Output("out.txt") == nil || a.Metadata["loss"] != 0.5 || a.Log.IsZero() {
		t.Errorf("node a lost its work: %+v", a)
	}
	if b.Status != store.StatusFailed || !strings.Contains(b.Reason, "Cannot connect to the Docker daemon") {
		t.Errorf("node b: %s %q", b.Status, b.Reason)
	}
}

// A metadata edge whose key was never printed fails the node that needs it, saying so.
func TestMissingMetadataForEdge(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, `{"other": 1}`+"\n", nil)
	}}
	yaml := `
- step: {name: s, image: x, command: "run {parameters}", parameters: [{name: lr, type: float, optional: true}]}
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: s}
      - {name: b, type: execution, step: s}
    edges:
      - [a.metadata.lr, b.parameter.lr]
`
	rec, _ := runPipeline(t, yaml, f, nil, 1)
	if r := rec.Node("b").Reason; !strings.Contains(r, `node "a" printed no metadata "lr"`) {
		t.Errorf("reason %q", r)
	}
}

func TestSafeInputName(t *testing.T) {
	for name, ok := range map[string]bool{"a.csv": true, "dir/a.csv": true, "../a": false, "a/../../b": false, "/etc/passwd": false, "": false, `a\b`: false} {
		if err := safeInputName(name); (err == nil) != ok {
			t.Errorf("safeInputName(%q) = %v", name, err)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*.csv", "a.csv", true}, {"*.csv", "dir/a.csv", false}, {"results/*.pkl", "results/m.pkl", true},
		{"**/*.pkl", "a/b/m.pkl", true}, {"**", "a/b", true}, {"model*", "model.pkl", true}, {"model*", "x/model.pkl", false},
	}
	for _, c := range cases {
		if got := matchGlob(c.pattern, c.name); got != c.want {
			t.Errorf("matchGlob(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}

// Deployment nodes are skipped with the reason, and what depends on them too;
// the rest of the pipeline runs.
func TestDeploymentNodesAreSkipped(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, "", map[string]string{"model.pkl": "w"})
	}}
	yaml := `
- step: {name: s, image: x, command: run, parameters: [{name: v, type: string, optional: true}]}
- endpoint: {name: predict, image: x, wsgi: "app:app"}
- pipeline:
    name: p
    nodes:
      - {name: train, type: execution, step: s}
      - {name: deploy, type: deployment, deployment: prod, endpoints: [predict]}
      - {name: smoke, type: execution, step: s}
    edges:
      - [train.output.model*, deploy.file.predict.model]
      - [deploy.deployment.version_id, smoke.parameter.v]
`
	rec, err := runPipeline(t, yaml, f, nil, 2)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if rec.Node("train").Status != store.StatusSucceeded || rec.Node("deploy").Status != store.StatusSkipped ||
		rec.Node("smoke").Status != store.StatusSkipped || !strings.Contains(rec.Node("deploy").Reason, "does not deploy") {
		t.Errorf("statuses: train %s, deploy %s (%s), smoke %s", rec.Node("train").Status, rec.Node("deploy").Status, rec.Node("deploy").Reason, rec.Node("smoke").Status)
	}
}

// require-approval stops the pipeline (a gate, not a failure) unless the run
// was approved, and then the node records by what.
func TestRequireApproval(t *testing.T) {
	yaml := `
- step: {name: s, image: x, command: run}
- pipeline:
    name: p
    nodes:
      - name: a
        type: execution
        step: s
        actions:
          - {when: node-complete, if: metadata.drift > 0.1, then: require-approval}
      - {name: b, type: execution, step: s}
    edges:
      - [a.output.*, b.input.in]
`
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, `{"drift": 0.3}`+"\n", map[string]string{"x": "1"})
	}}
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	run := func(approved string) *store.Run {
		st, err := file.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: st,
			TempDir: t.TempDir(), PR: 12, Approved: approved, ApprovalHint: `add the label "sluice/approved" to the pull request`,
			ImageResolver: &digestResolver{}}) // digests, so that the approval is a's only warning
		return rec
	}
	rec := run("")
	if rec.Status != store.StatusStopped || rec.Node("b").Status != store.StatusSkipped || rec.PR != 12 ||
		!strings.Contains(rec.Reason, `metadata.drift > 0.1 held on node-complete, so require-approval: the pipeline waits for an approval (add the label "sluice/approved"`) {
		t.Errorf("unapproved: %s %q, b %s", rec.Status, rec.Reason, rec.Node("b").Status)
	}
	rec = run(`label "sluice/approved" on pull request #12`)
	if rec.Status != store.StatusSucceeded || rec.Node("b").Status != store.StatusSucceeded ||
		len(rec.Node("a").Warnings) != 1 || !strings.HasSuffix(rec.Node("a").Warnings[0], `approved by label "sluice/approved" on pull request #12`) {
		t.Errorf("approved: %s %q, b %s, warnings %q", rec.Status, rec.Reason, rec.Node("b").Status, rec.Node("a").Warnings)
	}
}

// OnNodeDone gets each node's final record, its log already stored.
func TestOnNodeDone(t *testing.T) {
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		return succeed(ctx, job, 0, "hello from "+job.Node+"\n", nil)
	}}
	cfg, diags := spec.Parse("valohai.yaml", []byte(nodes("a", "b")+"    edges: []\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]*store.NodeRun{}
	_, err = Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: st, TempDir: t.TempDir(),
		OnNodeDone: func(nr *store.NodeRun) { mu.Lock(); got[nr.Name] = nr; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		nr := got[name]
		if nr == nil || nr.Status != store.StatusSucceeded || nr.Log.IsZero() {
			t.Fatalf("node %s: %+v", name, nr)
		}
		rc, _, err := store.OpenBlob(context.Background(), st, nr.Log)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if string(data) != "hello from "+name+"\n" {
			t.Errorf("node %s log %q", name, data)
		}
	}
}

// waitingExec is a fakeExec that is a Waiter, as runner/docker is: it
// records when Wait was called, and fails it once.
type waitingExec struct {
	fakeExec
	mu      sync.Mutex
	waits   int
	ranLast int // jobs run when Wait was last called
	err     error
}

func (w *waitingExec) Wait(ctx context.Context) error {
	w.fakeExec.mu.Lock()
	ran := len(w.fakeExec.order)
	w.fakeExec.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits++
	w.ranLast = ran
	return w.err
}

// Run waits for its executor's background work once every node ended, and
// a Waiter's error is logged, not a failed run; also when the run is
// cancelled.
func TestRunWaitsForExecutor(t *testing.T) {
	w := &waitingExec{err: errors.New("container abc of node b not removed")}
	w.behave = func(ctx context.Context, job Job) (Result, error) { return succeed(ctx, job, 0, "", nil) }
	rec, err := runPipeline(t, nodes("a", "b")+"    edges: []\n", w, nil, 2)
	if err != nil || rec.Status != store.StatusSucceeded {
		t.Fatalf("run: %v, %s", err, rec.Status)
	}
	if w.waits != 1 || w.ranLast != 2 {
		t.Errorf("Wait called %d times, after %d jobs; want once, after both", w.waits, w.ranLast)
	}

	cancelled := &waitingExec{}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled.behave = func(c context.Context, job Job) (Result, error) {
		cancel()
		<-c.Done()
		return Result{ExitCode: -1, Reason: ReasonCancelled}, c.Err()
	}
	cfg, diags := spec.Parse("valohai.yaml", []byte(nodes("a")+"    edges: []\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	st, _ := file.New(t.TempDir())
	Run(ctx, Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: cancelled, Store: st, TempDir: t.TempDir()})
	if cancelled.waits != 1 {
		t.Errorf("cancelled run: Wait called %d times, want once", cancelled.waits)
	}
}
