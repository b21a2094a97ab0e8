// Package executortest is the conformance suite for runner.Executor: every
// executor (Docker with each transfer, Cloud Batch, Kubernetes) passes the
// same tests of the runtime contract. Each executor's test hands Run a
// harness:
//
//	func TestExecutor(t *testing.T) {
//		st, err := file.New(t.TempDir())
//		if err != nil {
//			t.Fatal(err)
//		}
//		executortest.Run(t, executortest.Harness{
//			New:       func(t *testing.T) runner.Executor { return newExecutor(t) },
//			Store:     st,
//			Image:     "sluice-test/busybox:latest",
//			Leftovers: countContainers,
//		})
//	}
//
// The commands the tests run are POSIX sh with busybox tools. The suite
// skips nothing: what it cannot set up is a failure. Its subtests run in
// parallel; the only timings it asserts are generous bounds that prove a
// limit fired (a 30-second sleep that ended within 20 seconds).
package executortest

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
)

// Harness is what the suite needs of an executor under test.
type Harness struct {
	// New returns a fresh executor for the test (called once per subtest,
	// or once for the concurrency test). It registers its own cleanup with
	// t.Cleanup.
	New func(t *testing.T) runner.Executor
	// Store is the run's store: inputs given by blob are put there, and
	// outputs an executor reports Stored are read back from it. Required.
	Store store.Store
	// Image is an image with busybox sh (the tests' commands are POSIX sh +
	// busybox tools).
	Image string
	// Leftovers counts what the executor left behind for a run id
	// (containers, volumes, jobs); every test requires 0 once Run returned
	// (and, for a runner.Waiter, once Wait returned).
	Leftovers func(ctx context.Context, runID string) (int, error)
	// StoreNative says inputs must be given by blob only (no host paths),
	// e.g. executors whose containers cannot see this host: every input
	// then has a Blob (and an Open that reads the store, which the executor
	// must not call), the repository comes as Job.RepositoryBlob only.
	StoreNative bool
}

// Run runs the conformance suite against the executors h makes.
func Run(t *testing.T, h Harness) {
	switch {
	case h.New == nil:
		t.Fatal("executortest: Harness.New is nil")
	case h.Store == nil:
		t.Fatal("executortest: Harness.Store is nil")
	case h.Image == "":
		t.Fatal("executortest: Harness.Image is empty")
	case h.Leftovers == nil:
		t.Fatal("executortest: Harness.Leftovers is nil")
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"Files", testFiles},
		{"Contract", testContract},
		{"Outputs", testOutputs},
		{"OutputLinks", testOutputLinks},
		{"OutputProperties", testOutputProperties},
		{"ExitCodes", testExitCodes},
		{"TimeLimit", testTimeLimit},
		{"NoOutputTimeout", testNoOutputTimeout},
		{"Cancel", testCancel},
		{"LogOrder", testLogOrder},
		{"Concurrent", testConcurrent},
		{"BadJob", testBadJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, s)
		})
	}
}

type suite struct {
	h Harness

	mu    sync.Mutex
	execs []runner.Executor // every executor the tests made
}

// newExecutor makes a fresh executor for the test and remembers it, so that
// noLeftovers can wait for its background work (runner.Waiter).
func (s *suite) newExecutor(t *testing.T) runner.Executor {
	e := s.h.New(t)
	s.mu.Lock()
	s.execs = append(s.execs, e)
	s.mu.Unlock()
	return e
}

// newRunID returns a run id of its own for a test.
func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

var nodeUnsafe = regexp.MustCompile(`[^a-z0-9]+`)

// nodeName is the test's name as a node name every backend takes.
func nodeName(t *testing.T) string {
	n := strings.Trim(nodeUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(n) > 50 {
		n = strings.TrimRight(n[len(n)-50:], "-")
	}
	return n
}

// job returns a job with a run id of its own, whose outputs go to a
// temporary directory, and checks when the test ends that the executor left
// nothing of that run behind.
func (s *suite) job(t *testing.T, command string) runner.Job {
	t.Helper()
	j := runner.Job{
		RunID:     newRunID(),
		Node:      nodeName(t),
		Attempt:   1,
		Image:     s.h.Image,
		Command:   command,
		OutputDir: filepath.Join(t.TempDir(), "outputs"),
	}
	t.Cleanup(func() { s.noLeftovers(t, j.RunID) })
	return j
}

// noLeftovers fails the test if the executor left anything of runID.
func (s *suite) noLeftovers(t *testing.T, runID string) {
	t.Helper()
	// A Waiter may still be removing what finished: that is not left
	// behind until its Wait returned. Waiting for other tests' work too
	// costs only time.
	s.mu.Lock()
	execs := slices.Clone(s.execs)
	s.mu.Unlock()
	for _, e := range execs {
		if w, ok := e.(runner.Waiter); ok {
			if err := w.Wait(context.Background()); err != nil {
				t.Errorf("wait for the executor's background work: %v", err)
			}
		}
	}
	n, err := s.h.Leftovers(context.Background(), runID)
	if err != nil {
		t.Errorf("count what run %s left behind: %v", runID, err)
	} else if n != 0 {
		t.Errorf("%d things of run %s left behind", n, runID)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Inputs, the three ways the runner gives them.

// pathInput is a file on this host.
func pathInput(t *testing.T, name, content string) runner.InputFile {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return runner.InputFile{Name: name, Path: p}
}

// openInput is content the executor opens, without a digest (the executor
// computes it).
func openInput(name, content string) runner.InputFile {
	return runner.InputFile{
		Name: name, Size: int64(len(content)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil },
	}
}

// blobInput is a blob of the store, as outputs of earlier nodes come; Open
// reads it from the store, as the runner sets it, so that local executors
// can copy it.
func (s *suite) blobInput(t *testing.T, name, content string) runner.InputFile {
	t.Helper()
	d, size, err := store.PutBlob(t.Context(), s.h.Store, strings.NewReader(content))
	if err != nil {
		t.Fatalf("put input %s into the store: %v", name, err)
	}
	return runner.InputFile{Name: name, Size: size, Digest: d.Hex(), Blob: d, Open: s.opener(d, nil)}
}

// opener reads the blob d from the store, counting the calls in n if it is
// not nil.
func (s *suite) opener(d store.Digest, n *atomic.Int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		if n != nil {
			n.Add(1)
		}
		rc, _, err := store.OpenBlob(context.Background(), s.h.Store, d)
		return rc, err
	}
}

// storeNative turns job's inputs into what a store-native executor gets:
// each file a blob of the store, no host path, and an Open (which the
// job must have to be valid) that counts its calls in opens.
func (s *suite) storeNative(ctx context.Context, job *runner.Job, opens *atomic.Int64) error {
	if err := runner.Stage(ctx, s.h.Store, job); err != nil {
		return fmt.Errorf("stage the inputs: %w", err)
	}
	for i := range job.Inputs {
		for j := range job.Inputs[i].Files {
			f := &job.Inputs[i].Files[j]
			f.Path, f.Open = "", s.opener(f.Blob, opens)
		}
	}
	return nil
}

// repositoryBlob returns a Job.RepositoryBlob for dir that builds the
// snapshot's blob on its first call (runner.TarTree into store.PutBlob) and
// returns the same one afterwards, and a count of its calls.
func (s *suite) repositoryBlob(dir string) (func(context.Context) (store.File, error), *atomic.Int64) {
	var (
		mu    sync.Mutex
		done  bool
		file  store.File
		err   error
		calls atomic.Int64
	)
	return func(ctx context.Context) (store.File, error) {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if done {
			return file, err
		}
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := runner.TarTree(tw, "", dir)
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		d, size, perr := store.PutBlob(ctx, s.h.Store, pr)
		pr.CloseWithError(errors.New("the snapshot's upload ended"))
		if perr != nil {
			return store.File{}, fmt.Errorf("put the repository snapshot into the store: %w", perr)
		}
		done, file = true, store.File{Path: "repository.tar", Digest: d, Size: size}
		return file, nil
	}, &calls
}

// sink is a job's stdout or stderr: it collects lines, and records what an
// executor must not do (write after Run returned, write from two goroutines
// at once) and how often it was flushed.
type sink struct {
	mu      sync.Mutex
	lw      *runner.LineWriter
	lines   []string
	onLine  func(string)
	flushes int
	done    bool
	late    int
	writing atomic.Int32
	overlap atomic.Bool
}

var _ runner.Flusher = (*sink)(nil)

// newSink returns a sink that also calls onLine, if not nil, with each line.
func newSink(onLine func(string)) *sink {
	s := &sink{onLine: onLine}
	s.lw = runner.NewLineWriter(func(l string) {
		s.lines = append(s.lines, l)
		if s.onLine != nil {
			s.onLine(l)
		}
	})
	return s
}

func (s *sink) Write(p []byte) (int, error) {
	if s.writing.Add(1) > 1 {
		s.overlap.Store(true)
	}
	defer s.writing.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		s.late++
		return len(p), nil
	}
	return s.lw.Write(p)
}

func (s *sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		s.late++
		return nil
	}
	s.flushes++
	return s.lw.Flush()
}

func (s *sink) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// finish marks the end of Run and checks how the executor used the sink.
func (s *sink) finish(t *testing.T, name string, started bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.overlap.Load() {
		t.Errorf("%s written from two goroutines at once", name)
	}
	switch {
	case started && s.flushes != 1:
		t.Errorf("%s flushed %d times, want once after the last write", name, s.flushes)
	case !started && s.flushes > 1:
		t.Errorf("%s flushed %d times, want at most once", name, s.flushes)
	}
}

// ran is one Run: its result and what its sinks received.
type ran struct {
	res            runner.Result
	err            error
	stdout, stderr *sink
}

// run runs job through e. A job's Stdout and Stderr that are not sinks of
// the test get fresh ones. With a store-native harness, the inputs are
// staged first, and Run must not open any of them. It may be called from
// any goroutine.
func (s *suite) run(t *testing.T, ctx context.Context, e runner.Executor, job runner.Job) ran {
	t.Helper()
	r := ran{}
	var ok bool
	if r.stdout, ok = job.Stdout.(*sink); !ok {
		r.stdout = newSink(nil)
	}
	if r.stderr, ok = job.Stderr.(*sink); !ok {
		r.stderr = newSink(nil)
	}
	var opens atomic.Int64
	if s.h.StoreNative {
		if err := s.storeNative(ctx, &job, &opens); err != nil {
			t.Error(err)
			r.res, r.err = runner.Result{ExitCode: -1, Reason: runner.ReasonError}, err
			return r
		}
	}
	job.Stdout, job.Stderr = r.stdout, r.stderr
	r.res, r.err = e.Run(ctx, job)
	started := !r.res.Started.IsZero()
	r.stdout.finish(t, "stdout", started)
	r.stderr.finish(t, "stderr", started)
	if n := opens.Load(); n != 0 {
		t.Errorf("a store-native executor opened inputs %d times through InputFile.Open; it must fetch their Blob", n)
	}
	return r
}

// late checks, at the end of the test, that nothing wrote to the sinks
// after Run returned.
func (r ran) checkLate(t *testing.T) {
	t.Helper()
	for name, s := range map[string]*sink{"stdout": r.stdout, "stderr": r.stderr} {
		s.mu.Lock()
		if s.late != 0 {
			t.Errorf("%s: %d writes or flushes after Run returned", name, s.late)
		}
		s.mu.Unlock()
	}
}

// mustRun runs job and requires that it completed.
func (s *suite) mustRun(t *testing.T, e runner.Executor, job runner.Job) ran {
	t.Helper()
	r := s.run(t, context.Background(), e, job)
	if r.err != nil {
		t.Fatalf("Run: %v (result %+v)", r.err, r.res)
	}
	if r.res.Reason != runner.ReasonCompleted || r.res.ExitCode != 0 {
		t.Fatalf("Reason %s, ExitCode %d, want completed, 0; stderr %q, warnings %q",
			r.res.Reason, r.res.ExitCode, r.stderr.get(), r.res.Warnings)
	}
	checkRan(t, r.res)
	t.Cleanup(func() { r.checkLate(t) })
	return r
}

// checkRan checks the parts of a result that every run that started has.
func checkRan(t *testing.T, res runner.Result) {
	t.Helper()
	if res.Started.IsZero() || res.Finished.Before(res.Started) {
		t.Errorf("Started %v, Finished %v; want a start, and a finish not before it", res.Started, res.Finished)
	}
	if !strings.Contains(res.ImageDigest, "sha256:") {
		t.Errorf("ImageDigest %q, want sha256:... or name@sha256:...", res.ImageDigest)
	}
}

// output is an output as the run record ends up with it, wherever the
// executor put it: its content and its properties.
type output struct {
	content string
	props   map[string]any
}

// outputs normalizes res.Outputs into path -> output, as the runner records
// them: a Stored output's content is read from the store and its properties
// are the executor's; an output in job.OutputDir is read there, and its
// properties are what runner.OutputProperties finds in the sidecars among
// those outputs (which are then not outputs). Every digest and size is
// checked against the content.
func (s *suite) outputs(t *testing.T, job runner.Job, res runner.Result) map[string]output {
	t.Helper()
	if !slices.IsSortedFunc(res.Outputs, func(a, b runner.OutputFile) int { return strings.Compare(a.Path, b.Path) }) {
		t.Errorf("Outputs not sorted by path: %v", paths(res.Outputs))
	}
	got := map[string]output{}
	var local []runner.OutputFile
	for _, f := range res.Outputs {
		if !runner.LocalPath(f.Path) {
			t.Errorf("output path %q is not a relative path below /valohai/outputs", f.Path)
			continue
		}
		if _, dup := got[f.Path]; dup {
			t.Errorf("output %s listed twice", f.Path)
		}
		var content []byte
		var err error
		if f.Stored {
			content, err = s.readBlob(t, f.Digest)
		} else {
			content, err = readRegular(filepath.Join(job.OutputDir, filepath.FromSlash(f.Path)))
			local = append(local, f)
		}
		if err != nil {
			t.Errorf("output %s (stored %v): %v", f.Path, f.Stored, err)
			continue
		}
		if sha(string(content)) != f.Digest || int64(len(content)) != f.Size {
			t.Errorf("output %s (stored %v) has digest %s size %d, content has %s size %d",
				f.Path, f.Stored, f.Digest, f.Size, sha(string(content)), len(content))
		}
		got[f.Path] = output{content: string(content), props: normalize(t, f.Properties)}
	}
	props, sidecars, errs := runner.OutputProperties(local, func(rel string) ([]byte, error) {
		return os.ReadFile(filepath.Join(job.OutputDir, filepath.FromSlash(rel)))
	})
	for _, err := range errs {
		t.Errorf("output properties: %v", err)
	}
	for p := range sidecars {
		delete(got, p)
	}
	for p, m := range props {
		o := got[p]
		o.props = normalize(t, m)
		got[p] = o
	}
	return got
}

// readBlob reads the blob with hex digest h from the store.
func (s *suite) readBlob(t *testing.T, h string) ([]byte, error) {
	d, err := store.ParseDigest(store.DigestPrefix + h)
	if err != nil {
		return nil, err
	}
	rc, _, err := store.OpenBlob(t.Context(), s.h.Store, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readRegular reads p, which must be a regular file (not a link).
func readRegular(p string) ([]byte, error) {
	info, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, want a regular file", p, info.Mode().Type())
	}
	return os.ReadFile(p)
}

// normalize gives properties the form JSON decoding gives them, and nil
// for none.
func normalize(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	if len(m) == 0 {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("properties %v: %v", m, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func paths(files []runner.OutputFile) []string {
	var p []string
	for _, f := range files {
		p = append(p, f.Path)
	}
	return p
}

// wantOutputs compares normalized outputs with what a test expects.
func wantOutputs(t *testing.T, got, want map[string]output) {
	t.Helper()
	keys := func(m map[string]output) []string {
		var k []string
		for p := range m {
			k = append(k, p)
		}
		sort.Strings(k)
		return k
	}
	if g, w := keys(got), keys(want); !slices.Equal(g, w) {
		t.Errorf("outputs %q, want %q", g, w)
	}
	for _, p := range keys(want) {
		g, ok := got[p]
		if !ok {
			continue
		}
		w := want[p]
		if g.content != w.content {
			t.Errorf("output %s = %q, want %q", p, clip(g.content), clip(w.content))
		}
		if !reflect.DeepEqual(g.props, normalize(t, w.props)) {
			t.Errorf("output %s properties %v, want %v", p, g.props, w.props)
		}
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s... (%d bytes)", s[:80], len(s))
	}
	return s
}

// readOutput returns the content of the output at rel.
func readOutput(t *testing.T, outs map[string]output, rel string) string {
	t.Helper()
	o, ok := outs[rel]
	if !ok {
		t.Fatalf("no output %s", rel)
	}
	return o.content
}

// lstatAbsent checks that nothing is at rel below dir.
func lstatAbsent(t *testing.T, dir, rel string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s written in the output directory (%v), want refused", rel, err)
	}
}
