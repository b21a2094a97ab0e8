package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ci/sluice/internal/liveness"
	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/spec/expr"
	"github.com/sluice-ci/sluice/store"
)

// Options configures one pipeline run.
type Options struct {
	Config   *spec.Config
	Pipeline *spec.Pipeline
	// Params holds pipeline parameter values given for the run (-p).
	Params map[string]*spec.Value
	// Executor runs the nodes whose environment sluice.yaml does not map
	// (the local Docker host).
	Executor Executor
	// Environments holds, by Valohai environment slug, the executor of each
	// environment sluice.yaml maps (Sluice.Environments) and its limit. A
	// node whose environment is mapped but missing here fails before the
	// run starts.
	Environments map[string]Environment
	Store        store.Store
	// GS reads the objects that gs:// input defaults name (store/gcs's
	// Objects, sharing the store's client when the store is in Cloud
	// Storage); nil makes such an input fail, saying so. HTTP downloads
	// https:// input defaults; nil means http.DefaultClient.
	GS   GSObjects
	HTTP *http.Client
	// RepoDir is the repository: local input defaults are relative to it, and
	// its files (the git tree when it is a git work tree) are /valohai/repository.
	RepoDir string
	// Concurrency is how many nodes may run at once; 0 means 1.
	Concurrency int
	RunID       string
	Commit      string
	Branch      string
	// PR is the pull or merge request the run is for, 0 when none.
	PR int
	// Approved, when set, approves every require-approval node action and
	// says by what (`label "sluice/approved" on pull request #12`): the
	// pipeline goes on, and the node records the approval. Unset, such an
	// action stops the pipeline, and ApprovalHint (how to approve) ends the
	// reason.
	Approved     string
	ApprovalHint string
	// Log receives every node's output live, each line prefixed by the node name.
	Log io.Writer
	// Logger receives sluice's own progress messages.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxRetries bounds the retries of a node with on-error: retry (default 2).
	MaxRetries int
	// TempDir holds the run's working files; empty means the system's.
	TempDir string
	// Sluice is the pipeline's sluice.yaml, or nil.
	Sluice *spec.SluiceConfig
	// DryRun decides, for every node, whether it would reuse an earlier
	// result or run (and why), without running anything or writing to the
	// store. Nodes that would run get StatusWouldRun.
	DryRun bool
	// NoCache runs every node, reusing no earlier result; NoCacheNodes runs
	// these nodes and everything that depends on them.
	NoCache      bool
	NoCacheNodes []string
	// OnNodeStatus, when set, is told each time a node changes status (for a
	// live status display). It is called from the node's goroutine, never
	// with a lock held.
	OnNodeStatus func(node string, status store.Status)
	// OnNodeActivity, when set, is told what a running node (or task
	// execution: NODE[VARIANT]) is doing now, in a few words: "resolving
	// inputs", "waiting for a slot", the executor's (Job.Activity: "pulling
	// image", "copying in", "running", ...), "storing outputs". It is called
	// from any goroutine, never with a lock held; it must return quickly.
	OnNodeActivity func(node, activity string)
	// MaxCost caps the run's estimated cloud cost in USD, as executors report
	// it (Job.Spend): once crossed, the run is stopped and fails, saying so.
	// Zero means no cap.
	MaxCost float64
	// OnNodeDone, when set, is handed the final record of each node that ran
	// (or was reused), its log in the store, as soon as it ends. It is
	// called from the scheduler: it must return quickly.
	OnNodeDone func(nr *store.NodeRun)

	// Process names the sluice process that runs the pipeline, for the run
	// record; the zero value is this process (liveness.Self).
	Process liveness.Proc
	// HeartbeatEvery is how often the record's heartbeat is written while
	// the run goes; 0 means store.HeartbeatEvery.
	HeartbeatEvery time.Duration

	// ImageResolver names image digests for reuse when the Executor does not
	// implement ImageResolver itself (an executor with no Docker daemon on
	// this host); imageref.Resolver asks the images' registries. With
	// neither, every node runs without reuse, and says so.
	ImageResolver ImageResolver
}

// Environment is where some of a run's nodes run: an executor, and how many
// of its nodes may run at once.
type Environment struct {
	Executor Executor
	// MaxParallel bounds the nodes of the environment running at once,
	// under the run's Concurrency; 0 means only Concurrency does.
	MaxParallel int
}

// ErrPipelineFailed is wrapped by the error Run returns when the pipeline ran
// but did not succeed (a node failed, or an action errored or stopped it).
var ErrPipelineFailed = errors.New("pipeline failed")

// Run runs a pipeline: each node once everything it waits for has finished,
// up to Concurrency at once, files and values passed along the edges, every
// output, log and metadata point kept in the store. It returns the run's
// record (also stored) and an error wrapping ErrPipelineFailed when the run
// did not succeed; other errors mean the run could not be carried out.
func Run(ctx context.Context, opts Options) (*store.Run, error) {
	r, err := newPipelineRun(opts)
	if err != nil {
		return nil, err
	}
	defer r.cleanup()
	return r.run(ctx)
}

type pipelineRun struct {
	opts  Options
	graph *spec.Graph
	plans map[string]*spec.NodePlan
	rec   *store.Run
	repo  string // snapshot of the repository
	tmp   string
	now   func() time.Time
	log   *slog.Logger

	mu    sync.Mutex // guards rec and the nodes' results, and writes to opts.Log
	saved time.Time  // when rec was last written
	// writeMu orders the record's writes (save); saveReq asks the
	// background saver for one (saveSoon).
	writeMu sync.Mutex
	saveReq chan struct{}
	values  map[string]*nodeValues
	// slots holds a token for each running container: at most Concurrency,
	// task executions included.
	slots chan struct{}
	// envSlots holds, for each environment with a max-parallel, a token for
	// each of its running containers. It is taken before slots, so a node
	// waiting for its environment holds no slot another environment needs.
	envSlots map[string]chan struct{}
	// noReuse holds the nodes that must run whatever the cache holds.
	noReuse map[string]bool
	// codeHashes memoizes the hash of the code each source-path sees.
	codeMu     sync.Mutex
	codeHashes map[string]string
	// snapshot is the repository snapshot as a blob, for store-native executors.
	snapshot snapshotBlob
	// spent is the run's estimated cloud cost so far; costReason says why
	// the run was stopped for it, and stopForCost stops it.
	costMu      sync.Mutex
	spent       float64
	costReason  string
	stopForCost func()

	// preps are the containers made ahead (prepareAhead); executing counts
	// the nodes running a container, and wake (poke) tells the scheduler
	// when that changed.
	preps     preparations
	executing atomic.Int32
	wake      chan struct{}
}

// spend adds to the run's estimated cost and stops the run once it crosses
// Options.MaxCost.
func (r *pipelineRun) spend(node string, usd float64) {
	if usd <= 0 {
		return
	}
	r.costMu.Lock()
	r.spent += usd
	crossed := r.opts.MaxCost > 0 && r.spent > r.opts.MaxCost && r.costReason == ""
	if crossed {
		r.costReason = fmt.Sprintf("the estimated cost of the run, $%.2f, crossed max-cost $%.2f (while node %q ran): the run was stopped", r.spent, r.opts.MaxCost, node)
	}
	stop := r.stopForCost
	r.costMu.Unlock()
	if crossed {
		r.printf(node, "%s", r.costReason)
		if stop != nil {
			stop()
		}
	}
}

// nodeValues is what a finished node passes along edges.
type nodeValues struct {
	params   map[string]*spec.Value
	metadata map[string]any
	env      map[string]string
	outputs  []store.File
	inputs   []store.File
}

func newPipelineRun(opts Options) (*pipelineRun, error) {
	if opts.Config == nil || opts.Pipeline == nil || opts.Executor == nil || opts.Store == nil {
		return nil, errors.New("runner: config, pipeline, executor and store are required")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 2
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.RunID == "" {
		opts.RunID = NewRunID(now())
	}
	g, err := opts.Pipeline.Graph()
	if err != nil {
		return nil, err
	}
	plans, err := opts.Config.Plan(opts.Pipeline, opts.Params)
	if err != nil {
		return nil, err
	}
	r := &pipelineRun{opts: opts, graph: g, plans: map[string]*spec.NodePlan{}, now: now, log: logger,
		values: map[string]*nodeValues{}, slots: make(chan struct{}, opts.Concurrency), wake: make(chan struct{}, 1), saveReq: make(chan struct{}, 1),
		preps: preparations{live: map[string]*preparation{}, tried: map[string]bool{}}}
	for _, np := range plans {
		r.plans[np.Node.Name] = np
	}
	r.codeHashes = map[string]string{}
	r.noReuse = map[string]bool{}
	r.envSlots = map[string]chan struct{}{}
	for slug, env := range opts.Environments {
		if env.Executor == nil {
			return nil, fmt.Errorf("runner: environment %q has no executor", slug)
		}
		if env.MaxParallel > 0 {
			r.envSlots[slug] = make(chan struct{}, env.MaxParallel)
		}
	}
	for _, np := range plans {
		if np.Step == nil {
			continue
		}
		if slug, env := opts.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment); env != nil {
			if _, ok := opts.Environments[slug]; !ok {
				return nil, fmt.Errorf("node %q runs in environment %q (%s backend), which has no executor", np.Node.Name, slug, env.Backend)
			}
		}
	}
	reuse := opts.Pipeline.ReuseExecutions == nil || *opts.Pipeline.ReuseExecutions
	for _, n := range opts.Pipeline.Nodes {
		if s := opts.Config.NodeStep(n); !reuse || opts.NoCache || s != nil && !opts.Sluice.Reuses(s.Name) {
			r.noReuse[n.Name] = true
		}
	}
	for _, name := range opts.NoCacheNodes {
		if opts.Pipeline.Node(name) == nil {
			return nil, fmt.Errorf("--no-cache %s: the pipeline has no node %q", name, name)
		}
		// The node and everything downstream of it.
		queue := []string{name}
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			if r.noReuse[n] && n != name {
				continue
			}
			r.noReuse[n] = true
			for _, d := range g.Dependents(n) {
				queue = append(queue, d.Name)
			}
		}
	}
	proc := opts.Process
	if proc.PID == 0 {
		proc = liveness.Self()
	}
	r.rec = &store.Run{ID: opts.RunID, Pipeline: opts.Pipeline.Name, File: opts.Config.File, Commit: opts.Commit,
		Branch: opts.Branch, PR: opts.PR, Status: store.StatusRunning, Started: now().UTC(),
		Host: proc.Host, PID: proc.PID, Process: proc.Token}
	if len(opts.Params) > 0 {
		r.rec.Parameters = map[string]any{}
		for k, v := range opts.Params {
			r.rec.Parameters[k] = v.Interface()
		}
	}
	for _, n := range opts.Pipeline.Nodes {
		nr := &store.NodeRun{Name: n.Name, Status: store.StatusPending}
		if np := r.plans[n.Name]; np.Step != nil {
			nr.Step, nr.Image = np.Step.Name, np.Image
		}
		r.rec.Nodes = append(r.rec.Nodes, nr)
	}
	return r, nil
}

func (r *pipelineRun) cleanup() {
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// wouldRunPrefix marks a skip reason that means "would run" in a dry run.
const wouldRunPrefix = "\x00would-run:"

// NewRunID returns a run id that sorts by start time, to the microsecond:
// 20060102T150405.000000Z-xxxxxx.
func NewRunID(t time.Time) string {
	return t.UTC().Format("20060102T150405.000000Z") + "-" + randomHex(3)
}

// save writes the record, with a new heartbeat. The record is encoded
// under r.mu and written without it, so that the nodes' log lines and
// status changes do not wait for the store; saves are written in the order
// they were encoded (writeMu), so a later state is never overwritten by an
// earlier one.
func (r *pipelineRun) save(ctx context.Context) error {
	if r.opts.DryRun {
		return nil
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	r.rec.Heartbeat = r.now().UTC()
	r.saved = r.rec.Heartbeat
	id := r.rec.ID
	data, err := json.MarshalIndent(r.rec, "", "  ") // as store.PutRun encodes it
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode run %s: %w", id, err)
	}
	if _, err := r.opts.Store.Put(context.WithoutCancel(ctx), store.RunKey(id), bytes.NewReader(append(data, '\n'))); err != nil {
		return fmt.Errorf("write run %s: %w", id, err)
	}
	return nil
}

// saveSoon asks the background saver (saver) to write the record: the
// writes a node's start and end call for are off the critical path of the
// nodes that follow. Requests made while a write is going are folded into
// one more write, of the state at that time.
func (r *pipelineRun) saveSoon() {
	select {
	case r.saveReq <- struct{}{}:
	default:
	}
}

// saver writes the record each time saveSoon asks, until stop is closed;
// it writes once more then if a request is pending.
func (r *pipelineRun) saver(ctx context.Context, stop <-chan struct{}) {
	write := func() {
		if err := r.save(ctx); err != nil {
			r.log.Warn("cannot write the run record", "run", r.rec.ID, "err", err)
		}
	}
	for {
		select {
		case <-r.saveReq:
			write()
		case <-stop:
			select {
			case <-r.saveReq:
				write()
			default:
			}
			return
		}
	}
}

// heartbeat writes the record whenever HeartbeatEvery has passed since it
// was last written, until stop is closed, so that a run whose sluice went
// away shows as interrupted (store.Run.Stale).
func (r *pipelineRun) heartbeat(ctx context.Context, stop <-chan struct{}) {
	every := r.opts.HeartbeatEvery
	if every <= 0 {
		every = store.HeartbeatEvery
	}
	t := time.NewTicker(every / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.mu.Lock()
			due := r.now().Sub(r.saved) >= every
			r.mu.Unlock()
			if due {
				if err := r.save(ctx); err != nil {
					r.log.Warn("heartbeat: cannot write the run record", "run", r.rec.ID, "err", err)
				}
			}
		}
	}
}

func (r *pipelineRun) run(ctx context.Context) (*store.Run, error) {
	var err error
	if r.tmp, err = os.MkdirTemp(r.opts.TempDir, "sluice-run-"); err != nil {
		return nil, fmt.Errorf("make a working directory: %w", err)
	}
	// Last of all, the executors' background work (deferred first).
	defer r.waitExecutors(ctx)
	if r.repo, err = snapshotRepository(ctx, r.opts.RepoDir, filepath.Join(r.tmp, "repository")); err != nil {
		return nil, err
	}
	if err := r.save(ctx); err != nil {
		return nil, err
	}
	r.log.Info("run started", "run", r.rec.ID, "pipeline", r.rec.Pipeline, "nodes", len(r.rec.Nodes))
	if !r.opts.DryRun {
		stopBeat, beating := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(beating)
			r.heartbeat(ctx, stopBeat)
		}()
		defer func() { close(stopBeat); <-beating }()
	}
	// The background saver stops before the record's last write below.
	stopSaver, saverDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(saverDone)
		r.saver(ctx, stopSaver)
	}()
	stopSaving := sync.OnceFunc(func() { close(stopSaver); <-saverDone })
	defer stopSaving()

	runCtx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	r.costMu.Lock()
	r.stopForCost = cancelAll
	r.costMu.Unlock()
	type result struct {
		node string
		nr   *store.NodeRun
	}
	results := make(chan result)
	done := map[string]bool{}    // finished in any way
	started := map[string]bool{} // started or skipped
	running := 0
	var stopReason, failReason string
	stopping := false

	for {
		if !stopping {
			ready, err := r.graph.Ready(done, started)
			if err != nil {
				// The scheduler's own bookkeeping is wrong: stop, and say so.
				failReason, stopping = "sluice: "+err.Error(), true
				cancelAll()
			}
			for _, n := range ready {
				if running >= r.opts.Concurrency {
					break
				}
				started[n.Name] = true
				if why := r.skipReason(n); why != "" {
					if rest, ok := strings.CutPrefix(why, wouldRunPrefix); ok {
						r.setNode(n.Name, func(nr *store.NodeRun) { nr.Status, nr.Reason = store.StatusWouldRun, rest })
					} else {
						r.finishSkipped(n.Name, why)
						r.preps.drop(n.Name)
					}
					done[n.Name] = true
					continue
				}
				running++
				go func(n *spec.Node) {
					results <- result{n.Name, r.runNode(runCtx, n)}
				}(n)
			}
		}
		if running == 0 {
			// Nothing runs: either everything finished, or what is left can
			// never start (a ready node was just skipped: look again).
			if ready, _ := r.graph.Ready(done, started); len(ready) > 0 && !stopping {
				continue
			}
			break
		}
		if !stopping {
			r.prepareAhead(runCtx, done, started)
		}
		var res result
	waitResult:
		for {
			select {
			case res = <-results:
				break waitResult
			case <-r.wake:
				if !stopping {
					r.prepareAhead(runCtx, done, started)
				}
			}
		}
		running--
		done[res.node] = true
		if r.opts.OnNodeDone != nil {
			r.opts.OnNodeDone(res.nr)
		}
		n := r.opts.Pipeline.Node(res.node)
		switch res.nr.Status {
		case store.StatusFailed:
			if failReason == "" {
				failReason = fmt.Sprintf("node %q failed: %s", n.Name, res.nr.Reason)
			}
			if n.OnError == spec.OnErrorStopAll || n.OnError == spec.OnErrorRetry || n.OnError == "" {
				if !stopping {
					r.log.Info("stopping the pipeline", "node", n.Name, "on-error", n.OnError)
				}
				stopping = true
				cancelAll()
			}
		case store.StatusCancelled:
			stopping = true
		}
		if r.opts.DryRun {
			continue
		}
		if act := r.actions(n, res.nr); act.then != "" && !stopping {
			switch act.then {
			case "stop-pipeline":
				stopReason = act.why
			case "error-pipeline":
				failReason = act.why
			case "require-approval":
				if r.opts.Approved != "" {
					note := act.why + "; approved by " + r.opts.Approved
					r.printf(n.Name, "%s", note)
					r.setNode(n.Name, func(nr *store.NodeRun) { nr.Warnings = append(nr.Warnings, note) })
					continue
				}
				stopReason = act.why + ": the pipeline waits for an approval"
				if r.opts.ApprovalHint != "" {
					stopReason += " (" + r.opts.ApprovalHint + ")"
				}
			}
			stopping = true
			cancelAll()
		}
	}

	// The containers made ahead for nodes that did not run are removed.
	r.preps.dropAll()
	stopSaving()
	// Whatever never started is skipped.
	for _, nr := range r.rec.Nodes {
		if nr.Status == store.StatusPending {
			r.setNode(nr.Name, func(nr *store.NodeRun) {
				nr.Status, nr.Reason = store.StatusSkipped, "the pipeline stopped before this node could start"
			})
		}
	}
	r.costMu.Lock()
	if r.costReason != "" {
		failReason = r.costReason
	}
	r.costMu.Unlock()
	r.mu.Lock()
	r.rec.Finished = r.now().UTC()
	switch {
	case ctx.Err() != nil:
		r.rec.Status, r.rec.Reason = store.StatusCancelled, "the run was cancelled"
	case failReason != "":
		r.rec.Status, r.rec.Reason = store.StatusFailed, failReason
	case stopReason != "":
		r.rec.Status, r.rec.Reason = store.StatusStopped, stopReason
	default:
		r.rec.Status = store.StatusSucceeded
		for _, nr := range r.rec.Nodes {
			if nr.Status == store.StatusFailed {
				r.rec.Status, r.rec.Reason = store.StatusFailed, fmt.Sprintf("node %q failed: %s", nr.Name, nr.Reason)
				break
			}
		}
	}
	r.mu.Unlock()
	if err := r.save(ctx); err != nil {
		return r.rec, err
	}
	if !r.opts.DryRun {
		if err := store.RecordRun(context.WithoutCancel(ctx), r.opts.Store, r.rec); err != nil {
			return r.rec, err
		}
	}
	r.log.Info("run finished", "run", r.rec.ID, "status", r.rec.Status)
	if r.opts.DryRun {
		return r.rec, nil
	}
	switch r.rec.Status {
	case store.StatusSucceeded:
		return r.rec, nil
	case store.StatusCancelled:
		return r.rec, fmt.Errorf("run %s: %w: %w", r.rec.ID, ErrPipelineFailed, ctx.Err())
	}
	return r.rec, fmt.Errorf("run %s %s: %s: %w", r.rec.ID, r.rec.Status, r.rec.Reason, ErrPipelineFailed)
}

// waitExecutors waits for what the run's executors still do in the
// background (Waiter: the removal of finished containers), also when the
// run was cancelled; what they could not finish is logged.
func (r *pipelineRun) waitExecutors(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), waitExecutorsTimeout)
	defer cancel()
	execs := []Executor{r.opts.Executor}
	for _, env := range r.opts.Environments {
		execs = append(execs, env.Executor)
	}
	for _, e := range execs {
		w, ok := e.(Waiter)
		if !ok {
			continue
		}
		if err := w.Wait(ctx); err != nil {
			r.log.Warn("the run left something behind", "run", r.rec.ID, "err", err)
		}
	}
}

// waitExecutorsTimeout bounds how long a run waits for its executors'
// background work once its nodes ended; each removal has its own, shorter
// bound (runner/docker's CleanupTimeout), so this is only a guard.
const waitExecutorsTimeout = 2 * time.Minute

// skipReason says why a ready node must not run: a node it waits for failed
// or was skipped, and that node's on-error does not let the pipeline continue.
func (r *pipelineRun) skipReason(n *spec.Node) string {
	if n.Type == spec.NodeDeployment {
		return "deployment nodes need Valohai's deployment service; sluice does not deploy"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, dep := range r.graph.Deps(n.Name) {
		dr := r.rec.Node(dep.Name)
		switch dr.Status {
		case store.StatusWouldRun:
			return fmt.Sprintf("%swaits for node %q, which would run", wouldRunPrefix, dep.Name)
		case store.StatusSkipped:
			return fmt.Sprintf("node %q, which it waits for, was skipped", dep.Name)
		case store.StatusFailed, store.StatusCancelled:
			if dep.OnError != spec.OnErrorContinue {
				return fmt.Sprintf("node %q, which it waits for, failed", dep.Name)
			}
		}
	}
	return ""
}

func (r *pipelineRun) setNode(name string, fn func(*store.NodeRun)) {
	r.mu.Lock()
	nr := r.rec.Node(name)
	fn(nr)
	status := nr.Status
	r.mu.Unlock()
	r.notify(name, status)
}

// activity tells OnNodeActivity what the node (or execution label) does.
func (r *pipelineRun) activity(label, what string) {
	if r.opts.OnNodeActivity != nil {
		r.opts.OnNodeActivity(label, what)
	}
}

func (r *pipelineRun) notify(name string, status store.Status) {
	if r.opts.OnNodeStatus != nil {
		r.opts.OnNodeStatus(name, status)
	}
}

func (r *pipelineRun) finishSkipped(name, why string) {
	r.setNode(name, func(nr *store.NodeRun) { nr.Status, nr.Reason = store.StatusSkipped, why })
	r.printf(name, "skipped: %s", why)
}

// printf writes one line of sluice's own to the live log, prefixed by the node.
func (r *pipelineRun) printf(node, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.opts.Log, "%s | sluice: %s\n", printable.Name(node), printable.Escape(fmt.Sprintf(format, args...)))
}

// action is the outcome of a node's actions: what to do and why.
type action struct{ then, why string }

// actions evaluates the node-complete / node-error actions of a finished node.
func (r *pipelineRun) actions(n *spec.Node, nr *store.NodeRun) action {
	event := "node-complete"
	if nr.Status != store.StatusSucceeded {
		event = "node-error"
	}
	r.mu.Lock()
	vals := r.values[n.Name]
	r.mu.Unlock()
	return evalActions(n, event, vals, func(msg string) { r.printf(n.Name, "%s", msg) })
}

func evalActions(n *spec.Node, event string, vals *nodeValues, warn func(string)) action {
	for _, a := range n.Actions {
		if !contains(a.When, event) {
			continue
		}
		holds := true
		var conds []string
		for _, cond := range a.If {
			ok, err := evalCondition(cond, vals)
			if err != nil {
				warn(fmt.Sprintf("action condition %q cannot be evaluated: %v; the action does not apply", cond, err))
				holds = false
				break
			}
			holds = holds && ok
			conds = append(conds, cond)
		}
		if !holds {
			continue
		}
		for _, then := range a.Then {
			if then == "noop" {
				continue
			}
			why := fmt.Sprintf("node %q: on %s, %s", n.Name, event, then)
			if len(conds) > 0 {
				why = fmt.Sprintf("node %q: %s held on %s, so %s", n.Name, strings.Join(conds, " and "), event, then)
			}
			return action{then: then, why: why}
		}
	}
	return action{}
}

// condEnv resolves names in action conditions: metadata.KEY and parameter.NAME.
type condEnv struct{ vals *nodeValues }

func (e condEnv) Lookup(path []string) (expr.Value, bool) {
	if e.vals == nil || len(path) < 2 {
		return expr.Value{}, false
	}
	key := strings.Join(path[1:], ".")
	var raw any
	switch path[0] {
	case "metadata":
		v, ok := e.vals.metadata[key]
		if !ok {
			return expr.Value{}, false
		}
		raw = v
	case "parameter", "parameters":
		v, ok := e.vals.params[key]
		if !ok {
			return expr.Value{}, false
		}
		raw = v.Interface()
	default:
		return expr.Value{}, false
	}
	v, err := expr.ValueOf(raw)
	if err != nil {
		return expr.Value{}, false
	}
	return v, true
}

func evalCondition(cond string, vals *nodeValues) (bool, error) {
	x, err := expr.Parse(cond)
	if err != nil {
		return false, err
	}
	v, err := x.Eval(condEnv{vals})
	if err != nil {
		return false, err
	}
	return v.Truth(), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// matchGlob matches a slash-separated path against a Valohai output glob:
// * matches within one path segment, ** across segments; a pattern without a
// slash also matches by base name ("model*" matches "model.pkl").
func matchGlob(pattern, name string) bool {
	if pattern == "" {
		return false
	}
	if strings.Contains(pattern, "**") {
		return matchDoubleStar(strings.Split(pattern, "/"), strings.Split(name, "/"))
	}
	if ok, _ := path.Match(pattern, name); ok {
		return true
	}
	return false
}

func matchDoubleStar(pat, parts []string) bool {
	if len(pat) == 0 {
		return len(parts) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchDoubleStar(pat[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	if ok, _ := path.Match(pat[0], parts[0]); !ok {
		return false
	}
	return matchDoubleStar(pat[1:], parts[1:])
}

func sortedFiles(files []store.File) []store.File {
	sort.Slice(files, func(i, j int) bool {
		if files[i].Input != files[j].Input {
			return files[i].Input < files[j].Input
		}
		return files[i].Path < files[j].Path
	})
	return files
}
