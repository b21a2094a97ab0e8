package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runNode runs one node to its end and returns its record. An execution
// node runs its step once; a task node runs it once per variant.
func (r *pipelineRun) runNode(ctx context.Context, n *spec.Node) *store.NodeRun {
	np := r.plans[n.Name]
	fail := func(format string, args ...any) *store.NodeRun {
		// A container made ahead for the node is not needed now, nor is
		// its place among those made ahead.
		r.preps.drop(n.Name)
		reason := fmt.Sprintf(format, args...)
		r.printf(n.Name, "failed: %s", reason)
		status := store.StatusFailed
		if r.opts.DryRun {
			status, reason = store.StatusWouldRun, "cannot tell: "+reason
		}
		var out *store.NodeRun
		r.setNode(n.Name, func(nr *store.NodeRun) {
			nr.Status, nr.Reason = status, reason
			if nr.Finished.IsZero() {
				nr.Finished = r.now().UTC()
			}
			out = cloneNode(nr)
		})
		return out
	}
	if np.Step == nil {
		if n.Commit != "" {
			return fail("the node runs step %q of commit %q; sluice runs the steps of the checked-out files only", n.Step, n.Commit)
		}
		return fail("no step to run")
	}
	vals := baseValues(np)
	if err := r.edgeValues(n, np, vals); err != nil {
		return fail("%v", err)
	}
	stepEnvDefaults(np, vals)
	variants := []spec.Variant{nil}
	if n.Type == spec.NodeTask {
		var err error
		if variants, err = r.taskVariants(n, np, vals); err != nil {
			return fail("%v", err)
		}
	}
	for _, v := range variants {
		if err := checkParams(np.Step, withVariant(vals.params, v)); err != nil {
			if len(variants) > 1 {
				return fail("variant %s: %v", v.Label(), err)
			}
			return fail("%v", err)
		}
	}
	r.activity(n.Name, "resolving inputs")
	inputs, inputFiles, err := r.resolveInputs(ctx, n, np)
	if err != nil {
		return fail("%v", err)
	}
	vals.inputs = inputFiles
	if slug, env := r.opts.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment); slug != "" && env == nil {
		r.printf(n.Name, "environment %q has no mapping in sluice.yaml: the node runs on the local Docker host", slug)
	}
	r.setNode(n.Name, func(nr *store.NodeRun) { nr.Status, nr.Inputs = store.StatusRunning, inputFiles })
	// The record says which nodes run, for a sluice that would find it
	// left behind; a failed write is the heartbeat's to retry.
	r.saveSoon()
	if act := evalActions(n, "node-starting", vals, func(msg string) { r.printf(n.Name, "%s", msg) }); act.then != "" {
		return fail("%s", act.why)
	}

	var nr *store.NodeRun
	if n.Type == spec.NodeTask {
		nr = r.runVariants(ctx, n, np, vals, inputs, variants)
	} else {
		var raw map[string]any
		nr, raw = r.execute(ctx, newExecution(n, np, vals.params, vals, inputs, ""))
		vals.metadata, vals.outputs = raw, nr.Outputs
	}
	r.mu.Lock()
	r.values[n.Name] = vals
	rec := r.rec.Node(n.Name)
	nr.Name, nr.Step, nr.Image, nr.Inputs = rec.Name, rec.Step, rec.Image, inputFiles
	*rec = *nr
	out := cloneNode(rec)
	r.mu.Unlock()
	r.notify(n.Name, out.Status)
	for _, w := range out.Warnings {
		r.printf(n.Name, "warning: %s", w)
	}
	switch {
	case out.ReusedFrom != "":
	case out.Status == store.StatusSucceeded:
		r.printf(n.Name, "succeeded in %s", out.Duration().Round(1e6))
	default:
		r.printf(n.Name, "%s: %s", out.Status, out.Reason)
	}
	r.saveSoon()
	return out
}

// checkParams validates parameter values against the step's declarations.
func checkParams(step *spec.Step, params map[string]*spec.Value) error {
	for _, p := range step.Parameters {
		v, ok := params[p.Name]
		if !ok {
			if !p.Optional {
				return fmt.Errorf("parameter %s has no value: give it a default, a pipeline parameter or an edge", p.Name)
			}
			continue
		}
		for _, atom := range atomsOf(v) {
			if msgs := spec.ValidateValue(p, atom, false); len(msgs) > 0 {
				return fmt.Errorf("parameter %s: %s", p.Name, strings.Join(msgs, "; "))
			}
		}
	}
	return nil
}

func withVariant(params map[string]*spec.Value, v spec.Variant) map[string]*spec.Value {
	if len(v) == 0 {
		return params
	}
	out := make(map[string]*spec.Value, len(params)+len(v))
	for k, x := range params {
		out[k] = x
	}
	for k, x := range v {
		out[k] = x
	}
	return out
}

// execution is one run of a node's step: an execution node's only one, or
// one variant of a task node.
type execution struct {
	node   *spec.Node
	plan   *spec.NodePlan
	params map[string]*spec.Value
	vals   *nodeValues
	inputs []Input
	// variant labels a task's execution; "" for an execution node.
	variant string
	// label names it in the log: NODE, or NODE[VARIANT].
	label string
}

func newExecution(n *spec.Node, np *spec.NodePlan, params map[string]*spec.Value, vals *nodeValues, inputs []Input, variant string) execution {
	x := execution{node: n, plan: np, params: params, vals: vals, inputs: inputs, variant: variant, label: n.Name}
	if variant != "" {
		x.label = n.Name + "[" + variant + "]"
	}
	return x
}

// execute runs the node's step once with the execution's parameter values
// (with retries when the node's on-error is retry), or reuses an earlier
// result, keeps its log and outputs in the store, and returns the
// execution's record. It also returns the metadata as the step printed it
// (1.0 stays a float), which is what edges pass on; the record holds plain
// JSON numbers, as it reads back from the store.
func (r *pipelineRun) execute(ctx context.Context, x execution) (*store.NodeRun, map[string]any) {
	nr := &store.NodeRun{Status: store.StatusFailed, Variant: x.variant}
	// The container made ahead for the node, if any (prepareAhead); it is
	// removed unless the first attempt runs in it.
	var prep *preparation
	if x.variant == "" {
		prep = r.preps.take(x.node.Name)
		defer prep.discard()
	}
	job, slug, exec, err := r.jobOf(x, nr)
	if err != nil {
		nr.Reason = err.Error()
		return nr, nil
	}
	if out, meta, done := r.reuseOrPlan(ctx, x, exec, job, nr); done {
		return out, meta
	}
	// It runs a container: the scheduler may prepare the next nodes'.
	r.executing.Add(1)
	defer r.executing.Add(-1)
	r.poke()
	r.activity(x.label, "waiting for a slot")
	release, ok := r.acquire(ctx, slug)
	if !ok {
		nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
		return nr, nil
	}
	defer release()
	res, log, err := r.attempts(ctx, x, exec, prep.prepared(), &job, nr)
	if log == nil {
		nr.Reason = err.Error()
		return nr, nil
	}
	defer log.close()
	r.activity(x.label, "storing outputs")
	r.finish(ctx, x, job, res, err, log, nr)
	return nr, log.metadata
}

// jobOf renders the execution's command and makes its Job; it also says
// which environment (slug) and executor run it.
func (r *pipelineRun) jobOf(x execution, nr *store.NodeRun) (Job, string, Executor, error) {
	np := x.plan
	cmd, err := np.Step.BuildCommand(x.params)
	if err != nil {
		return Job{}, "", nil, err
	}
	nr.Command = spec.JoinCommand(cmd)
	nr.Parameters = map[string]any{}
	for k, v := range x.params {
		nr.Parameters[k] = v.Interface()
	}
	slug, exec := r.executorOf(np)
	label := x.label
	job := Job{
		RunID: r.rec.ID, Node: x.node.Name, Step: np.Step.Name, Commit: r.opts.Commit, Environment: slug,
		Image: np.Image, Command: nr.Command, Env: x.vals.env, Inputs: x.inputs, Parameters: nr.Parameters,
		TimeLimit: np.Step.TimeLimit, NoOutputTimeout: np.Step.NoOutputTimeout,
		RepositoryDir: r.repo,
		RepositoryBlob: func(ctx context.Context) (store.File, error) {
			return r.snapshot.get(ctx, r.opts.Store, r.repo)
		},
		Progress: func(line string) { r.printf(label, "%s", line) },
		Activity: func(what string) { r.activity(label, what) },
		Spend:    func(usd float64) { r.spend(label, usd) },
	}
	if x.variant != "" {
		job.ExecutionID = fmt.Sprintf("%s-%s-%s", r.rec.ID, x.node.Name, randomHex(3))
	}
	if res := np.Step.Resources; res != nil {
		if res.CPU != nil && res.CPU.Max != nil {
			job.Resources.CPU = *res.CPU.Max
		}
		if res.Memory != nil && res.Memory.Max != nil {
			job.Resources.MemoryMB = int64(*res.Memory.Max)
		}
		if res.CPU != nil && res.CPU.Min != nil {
			job.Resources.CPURequest = *res.CPU.Min
		}
		if res.Memory != nil && res.Memory.Min != nil {
			job.Resources.MemoryRequestMB = int64(*res.Memory.Min)
		}
		job.Resources.GPUs = res.GPUs()
	}
	return job, slug, exec, nil
}

// reuseOrPlan computes the execution's cache key and, when an earlier run
// has a result for it, returns that result (done). A dry run stops here
// too, saying whether the node would run and why.
func (r *pipelineRun) reuseOrPlan(ctx context.Context, x execution, exec Executor, job Job, nr *store.NodeRun) (*store.NodeRun, map[string]any, bool) {
	n, label := x.node, x.label
	key, keyErr := r.cacheKey(ctx, exec, x.plan, nr.Command, nr.Parameters, x.vals, job.Resources.GPUs)
	switch {
	case keyErr != nil:
		// Without a key the node runs without reuse. Its record says why, and
		// a node's warnings are printed when it ends; nothing prints those of
		// a task's executions, so they say it here.
		msg := fmt.Sprintf("reuse is off for this node: %v", keyErr)
		nr.Warnings = append(nr.Warnings, msg)
		if x.variant != "" && !r.noReuse[n.Name] && !r.opts.DryRun {
			r.printf(label, "%s", msg)
		}
	default:
		nr.CacheKey, nr.CacheParts = key.key, key.parts
		if !r.noReuse[n.Name] {
			if hit, why := lookupCache(ctx, r.opts.Store, key.key); hit != nil {
				out := cloneNode(hit.Result)
				out.Variant, out.ReusedFrom, out.Attempts, out.Warnings = x.variant, hit.Run, 0, nil
				out.Metadata = plainNumbers(out.Metadata).(map[string]any)
				out.Series, _ = plainNumbers(out.Series).(map[string][]any)
				r.printf(label, "reused the result of run %s: image, command, parameters, inputs and code are unchanged", hit.Run)
				return out, hit.Metadata, true
			} else {
				if why == "" {
					why = r.whyRun(ctx, n.Name, x.variant, key)
				}
				if r.opts.DryRun {
					nr.Status, nr.Reason = store.StatusWouldRun, why
					return nr, nil, true
				}
				r.printf(label, "runs: %s", why)
			}
		}
	}
	if r.opts.DryRun {
		nr.Status, nr.Reason = store.StatusWouldRun, "reuse is off for this node"
		if keyErr != nil {
			nr.Reason = fmt.Sprintf("cannot tell: %v", keyErr)
		}
		return nr, nil, true
	}
	return nil, nil, false
}

// acquire waits for a slot of the execution's environment (its
// max-parallel) and then of the run (--concurrency); ok is false when the
// run was cancelled first. release gives both back.
func (r *pipelineRun) acquire(ctx context.Context, slug string) (release func(), ok bool) {
	var held []chan struct{}
	release = func() {
		for _, c := range held {
			<-c
		}
	}
	for _, slots := range []chan struct{}{r.envSlots[slug], r.slots} {
		if slots == nil {
			continue
		}
		select {
		case slots <- struct{}{}:
			held = append(held, slots)
		case <-ctx.Done():
			release()
			return nil, false
		}
	}
	return release, true
}

// attempts runs the job through its executor, again while it fails and the
// node's on-error is retry; the first attempt runs in prep, the container
// made ahead, when there is one. The returned log is the last attempt's; it is
// nil (and err says why) when no log could be made.
func (r *pipelineRun) attempts(ctx context.Context, x execution, exec Executor, prep Prepared, job *Job, nr *store.NodeRun) (Result, *nodeLog, error) {
	attempts := 1
	if x.node.OnError == spec.OnErrorRetry {
		attempts += r.opts.MaxRetries
	}
	var res Result
	var log *nodeLog
	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			r.printf(x.label, "retrying (attempt %d of %d)", attempt, attempts)
		}
		if log, err = newNodeLog(r.tmp, x.label, r.opts.Log, &r.mu); err != nil {
			return res, nil, err
		}
		job.OutputDir = filepath.Join(r.tmp, "outputs", x.node.Name, randomHex(4))
		job.Stdout, job.Stderr = log.writer(false), log.writer(true)
		nr.Attempts, nr.Started = attempt, r.now().UTC()
		job.Attempt = attempt
		r.activity(x.label, "starting")
		if attempt == 1 && prep != nil {
			res, err = prep.Run(ctx, *job)
		} else {
			res, err = exec.Run(ctx, *job)
		}
		log.flush()
		if err == nil && res.Reason == ReasonCompleted || ctx.Err() != nil || attempt == attempts {
			break
		}
		log.close()
	}
	return res, log, err
}

// finish records how the execution ended: its log and outputs into the
// store, its metadata, times and status, and its result for reuse when it
// succeeded. runErr is the executor's error, if any.
func (r *pipelineRun) finish(ctx context.Context, x execution, job Job, res Result, runErr error, log *nodeLog, nr *store.NodeRun) {
	var logErr, outErr error
	nr.Log, logErr = log.store(context.WithoutCancel(ctx), r.opts.Store)
	var propWarnings []string
	nr.Outputs, propWarnings, outErr = r.storeOutputs(context.WithoutCancel(ctx), x.node.Name, job.OutputDir, res.Outputs)
	nr.Metadata, nr.Series = plainNumbers(log.metadata).(map[string]any), log.series()
	nr.Finished = r.now().UTC()
	if !res.Started.IsZero() {
		nr.Started, nr.Finished = res.Started.UTC(), res.Finished.UTC()
		if res.ExitCode >= 0 {
			code := res.ExitCode
			nr.ExitCode = &code
		}
	}
	nr.ImageDigest = res.ImageDigest
	nr.Placement = res.Placement
	nr.Warnings = append(append(nr.Warnings, res.Warnings...), propWarnings...)
	switch {
	case ctx.Err() != nil:
		nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
	case runErr != nil:
		nr.Status, nr.Reason = store.StatusFailed, runErr.Error()
	case res.Reason == ReasonCompleted:
		nr.Status, nr.Reason = store.StatusSucceeded, ""
	case res.Reason == ReasonFailed:
		nr.Reason = fmt.Sprintf("the command exited with code %d", res.ExitCode)
	case res.Reason == ReasonTimeLimit:
		nr.Reason = fmt.Sprintf("killed after its time limit of %s", job.TimeLimit)
	case res.Reason == ReasonNoOutputTimeout:
		nr.Reason = fmt.Sprintf("killed after printing nothing for %s (no-output-timeout)", job.NoOutputTimeout)
	default:
		nr.Reason = string(res.Reason)
	}
	if storeErr := errors.Join(logErr, outErr); storeErr != nil {
		msg := "the store could not keep its files: " + strings.ReplaceAll(storeErr.Error(), "\n", "; ")
		if nr.Status == store.StatusSucceeded {
			nr.Status, nr.Reason = store.StatusFailed, msg
		} else {
			nr.Warnings = append(nr.Warnings, msg)
		}
	}
	if x.variant != "" {
		r.printf(x.label, "%s %s", nr.Status, nr.Reason)
	}
	if nr.Status == store.StatusSucceeded && nr.CacheKey != "" {
		if err := saveCache(context.WithoutCancel(ctx), r.opts.Store, nr.CacheKey, r.rec.ID, x.node.Name, nr, log.metadata); err != nil {
			nr.Warnings = append(nr.Warnings, fmt.Sprintf("the result was not saved for reuse: %v", err))
		}
	}
}

var errNoResolver = errors.New("the executor cannot name image digests and no image resolver is set")

// executorOf returns the environment slug of a node's step and the executor
// that runs it: its environment's, when sluice.yaml maps the slug, else the
// run's default (the local Docker host).
func (r *pipelineRun) executorOf(np *spec.NodePlan) (string, Executor) {
	slug, env := r.opts.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment)
	if env != nil {
		if e, ok := r.opts.Environments[slug]; ok {
			return slug, e.Executor
		}
	}
	return slug, r.opts.Executor
}

// cacheKey computes what decides an execution's result. It fails when
// neither the node's executor nor Options.ImageResolver can name the image's
// digest, or the code cannot be hashed.
func (r *pipelineRun) cacheKey(ctx context.Context, exec Executor, np *spec.NodePlan, command string, params map[string]any, vals *nodeValues, gpus int) (cacheKey, error) {
	resolver, ok := exec.(ImageResolver)
	if !ok {
		resolver = r.opts.ImageResolver
	}
	if resolver == nil {
		return cacheKey{}, fmt.Errorf("no digest for image %s: %w", np.Image, errNoResolver)
	}
	digest, err := resolver.ImageDigest(ctx, np.Image)
	if err != nil {
		return cacheKey{}, fmt.Errorf("no image digest: %w", err)
	}
	source := ""
	if np.Step.HasSourcePath {
		source = np.Step.SourcePath
	}
	r.codeMu.Lock()
	code, ok := r.codeHashes[source]
	if !ok {
		code, err = codeHash(r.repo, source)
		if err == nil {
			r.codeHashes[source] = code
		}
	}
	r.codeMu.Unlock()
	if err != nil {
		return cacheKey{}, err
	}
	return newCacheKey(digest, command, params, vals.env, vals.inputs, code, gpus), nil
}

// whyRun says why an execution cannot reuse an earlier result: the parts of
// its key that changed since the newest earlier run of the same node.
func (r *pipelineRun) whyRun(ctx context.Context, node, variant string, key cacheKey) string {
	ids, err := store.ListRuns(ctx, r.opts.Store)
	if err != nil {
		return "no earlier result to reuse"
	}
	for i, id := range ids {
		if i == 20 {
			break
		}
		if id == r.rec.ID {
			continue
		}
		rec, err := store.GetRun(ctx, r.opts.Store, id)
		if err != nil || rec.Pipeline != r.rec.Pipeline {
			continue
		}
		prev := rec.Node(node)
		if prev == nil {
			continue
		}
		if variant != "" {
			var match *store.NodeRun
			for _, e := range prev.Executions {
				if e.Variant == variant {
					match = e
				}
			}
			if prev = match; prev == nil {
				continue
			}
		}
		if prev.CacheParts == nil {
			continue
		}
		if changed := key.changedParts(prev.CacheParts); len(changed) > 0 {
			return fmt.Sprintf("%s changed since run %s", strings.Join(changed, ", "), id)
		}
		if prev.Status != store.StatusSucceeded {
			return fmt.Sprintf("it %s in run %s, and only successful results are reused", prev.Status, id)
		}
	}
	return "no earlier result to reuse"
}

func cloneNode(nr *store.NodeRun) *store.NodeRun {
	c := *nr
	return &c
}

// transferWorkers bounds the outputs of a node that are stored at once, and
// the input defaults of a node that are fetched at once. Each upload to GCS
// holds a chunk buffer (8 MiB), allocated afresh for every object: with two
// at once, moving 10 GiB stays under 100 MiB of RSS; with four, the storage
// client alone peaks above it (bench/gcs.sh rss).
const transferWorkers = 2

// maxMetadataLine bounds the lines read as metadata; longer lines are log only.
const maxMetadataLine = 1 << 20
