// Package batch is the runner.Executor for Google Cloud Batch: each try of
// a node is one Batch job of one task on a VM of its own, with GPUs and spot
// provisioning, running `sluice agent` beside the step (see runner/agent):
//
//  1. sluice-fetch (the sluice image) lays out /valohai from the store on
//     the VM's boot disk and places the agent;
//  2. step (the step's image) runs `sluice agent exec`: the command, its
//     limits, its log in chunks, its outputs and exit record into the store;
//  3. sluice-finish (the sluice image, alwaysRun) makes sure the exit record
//     is there whatever happened to the step's container.
//
// sluice owns the retries: Batch's maxRetryCount stays 0, and a preempted
// spot VM (task exit code 50001) or a VM that stopped reporting (50002) is
// tried again as a fresh job with its own log and output prefix, never
// counted as the step's failure. When Batch has no capacity (resources
// exhausted, or the job waits past queue-timeout), the node moves on to the
// environment's next fallback machine, then from spot to standard VMs.
//
// Every job carries labels (sluice-run, sluice-repo, sluice-node,
// sluice-created, sluice-ttl) and Batch's maxRunDuration, so that no VM
// outlives a killed CI job by more than its TTL; Sweep deletes what is past
// it. A cancelled Run deletes its job before it returns.
package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	batchapi "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// Task exit codes Batch reports for what is not the step's doing.
const (
	ExitPreempted      = 50001 // the spot VM was preempted
	ExitVMLost         = 50002 // the VM stopped reporting
	ExitMaxRunDuration = 50005 // the task ran past maxRunDuration
)

// Options configure an Executor.
type Options struct {
	// Client is the Batch client (cloud.google.com/go/batch/apiv1).
	Client *batchapi.Client
	// Environment is the sluice.yaml environment, with its Batch settings.
	Environment *spec.Environment
	// Store is the run's store; StoreURL names it (gs://BUCKET/PREFIX) for
	// the agent on the VM.
	Store    store.Store
	StoreURL string
	// AgentImage is the sluice image of the fetch and finish runnables;
	// empty means Environment.Batch.Image.
	AgentImage string
	// AgentEnv is given to the task (STORAGE_EMULATOR_HOST for an
	// emulator); never credentials: the VM uses its service account.
	AgentEnv map[string]string
	// Repository names the repository, for the sluice-repo label.
	Repository string
	// ImageResolver names image digests (from the registry) for reuse, and
	// the digest of the image a node ran for its record.
	ImageResolver runner.ImageResolver
	Logger        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Poll is how often the job's state is read (default 5 s), LogPoll how
	// often its log chunks are looked for (default 1 s).
	Poll, LogPoll time.Duration
	// DeleteTimeout bounds the wait for a cancelled job's deletion
	// (default 5 s).
	DeleteTimeout time.Duration
}

// Executor runs nodes on Cloud Batch. It is safe for concurrent use.
type Executor struct {
	opts Options
	cfg  spec.BatchEnvironment
	log  *slog.Logger
}

var _ runner.Executor = (*Executor)(nil)

// CheckStore says why a store cannot serve a batch environment: its VMs
// read and write the store themselves, so it must be a gs:// bucket.
func CheckStore(storeURL string) error {
	return runner.CheckRemoteStore(storeURL, "batch", "VMs")
}

// New checks the options: a Batch environment with what Batch needs, a
// gs:// store (the VM reads its files from there), a sluice image.
func New(opts Options) (*Executor, error) {
	if opts.Client == nil {
		return nil, errors.New("batch: no client")
	}
	if opts.Environment == nil || opts.Environment.Backend != spec.BackendBatch {
		return nil, errors.New("batch: not a batch environment")
	}
	if err := CheckStore(opts.StoreURL); err != nil {
		return nil, err
	}
	if opts.Store == nil {
		return nil, errors.New("batch: no store")
	}
	cfg := opts.Environment.Batch
	switch {
	case cfg.Project == "":
		return nil, errors.New("batch: no project")
	case cfg.Region == "":
		return nil, errors.New("batch: no region")
	case cfg.Machine.MachineType == "":
		return nil, errors.New("batch: no machine-type")
	}
	if cfg.Provisioning == "" {
		cfg.Provisioning = spec.ProvisioningSpot
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = spec.DefaultBatchQueueTimeout
	}
	if cfg.MaxRunDuration <= 0 {
		cfg.MaxRunDuration = spec.DefaultBatchMaxRunDuration
	}
	if opts.AgentImage == "" {
		opts.AgentImage = cfg.Image
	}
	if opts.AgentImage == "" {
		return nil, errors.New("batch: no sluice image for the agent")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.LogPoll <= 0 {
		opts.LogPoll = time.Second
	}
	if opts.DeleteTimeout <= 0 {
		opts.DeleteTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{opts: opts, cfg: cfg, log: log}, nil
}

func (e *Executor) agentImage() string { return e.opts.AgentImage }

// Parent is the Batch location the environment's jobs are created in.
func (e *Executor) Parent() string {
	return fmt.Sprintf("projects/%s/locations/%s", e.cfg.Project, e.cfg.Region)
}

// ImageDigest names the image from its registry (runner.ImageResolver).
func (e *Executor) ImageDigest(ctx context.Context, ref string) (string, error) {
	if e.opts.ImageResolver == nil {
		return "", fmt.Errorf("no registry to ask for the digest of %s", ref)
	}
	return e.opts.ImageResolver.ImageDigest(ctx, ref)
}

// outcome is how one try ended.
type outcome int

const (
	outcomeDone       outcome = iota // the agent's exit record tells (or the executor failed)
	outcomePreempted                 // spot preemption: try again
	outcomeLost                      // the VM stopped reporting: try again
	outcomeNoCapacity                // no VM to be had: next fallback
)

// Run implements runner.Executor.
func (e *Executor) Run(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	pl := &store.Placement{Backend: spec.BackendBatch, Environment: e.opts.Environment.Name, Location: e.cfg.Region,
		CostKnown: e.cfg.HourlyPrice != nil}
	res.Placement = pl
	if err := job.Validate(); err != nil {
		return res, err
	}
	defer flushSinks(job)
	progress := func(format string, args ...any) {
		if job.Progress != nil {
			job.Progress(fmt.Sprintf(format, args...))
		}
	}
	if err := runner.Stage(ctx, e.opts.Store, &job); err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	// The VM pulls the image itself; its registry names the digest that
	// the run record keeps.
	digest, digestErr := "", error(nil)
	if e.opts.ImageResolver != nil {
		digest, digestErr = e.opts.ImageResolver.ImageDigest(ctx, job.Image)
	}
	machines := append([]spec.BatchMachine{e.cfg.Machine}, e.cfg.Fallback...)
	provisioning := e.cfg.Provisioning
	mi, preemptions, lost := 0, 0, 0
	for n := 1; ; n++ {
		if provisioning == spec.ProvisioningSpot && e.cfg.SpotFallbackAfter > 0 && preemptions >= e.cfg.SpotFallbackAfter {
			if preemptions == e.cfg.SpotFallbackAfter {
				progress("batch: %d preemptions on spot VMs: moving to standard VMs", preemptions)
			}
			provisioning = spec.ProvisioningStandard
		}
		t := try{n: n, machine: machines[mi], provisioning: provisioning,
			prefix: fmt.Sprintf("%s/try-%d", agent.AttemptPrefix(job), n), jobID: jobID(job.RunID, job.Node, n)}
		pl.Machine, pl.Accelerator, pl.AcceleratorCount, pl.Provisioning = t.machine.MachineType, t.machine.Accelerator, t.machine.AcceleratorCount, provisioning
		out, how, err := e.runTry(ctx, job, t, pl, progress)
		switch how {
		case outcomeDone:
			out.Placement = pl
			out.ImageDigest = digest
			if digestErr != nil {
				out.Warnings = append(out.Warnings, fmt.Sprintf("image %s: no digest for the run record: %v", job.Image, digestErr))
			}
			return out, err
		case outcomePreempted, outcomeLost:
			if how == outcomePreempted {
				preemptions++
			} else {
				lost++
			}
			if preemptions+lost > e.cfg.RetriesOr() {
				res.Finished = e.opts.Now()
				return res, fmt.Errorf("node %s: the VM was taken away %d times (%d preemptions, %d lost), more than retries: %d", job.Node, preemptions+lost, preemptions, lost, e.cfg.RetriesOr())
			}
			progress("batch: trying again (try %d; preemptions and lost VMs do not count as the step's failure)", n+1)
		case outcomeNoCapacity:
			switch {
			case mi+1 < len(machines):
				mi++
				progress("batch: no capacity for %s: falling back to %s", describe(t.machine), describe(machines[mi]))
			case provisioning == spec.ProvisioningSpot:
				mi, provisioning = 0, spec.ProvisioningStandard
				progress("batch: no spot capacity for any machine: trying standard VMs, from %s", describe(machines[0]))
			default:
				res.Finished = e.opts.Now()
				return res, fmt.Errorf("node %s: Batch has no capacity for any machine of environment %q in %s: %w", job.Node, e.opts.Environment.Name, strings.Join(locationsOf(e.cfg), ", "), err)
			}
		}
		if ctx.Err() != nil {
			res.Reason = runner.ReasonCancelled
			return res, fmt.Errorf("node %s: %w", job.Node, ctx.Err())
		}
	}
}

func describe(m spec.BatchMachine) string {
	if m.Accelerator == "" {
		return m.MachineType
	}
	return fmt.Sprintf("%s with %d x %s", m.MachineType, m.AcceleratorCount, m.Accelerator)
}

func locationsOf(c spec.BatchEnvironment) []string {
	if len(c.Zones) > 0 {
		return c.Zones
	}
	return []string{c.Region}
}

// runTry runs one Batch job and says how it ended.
func (e *Executor) runTry(ctx context.Context, job runner.Job, t try, pl *store.Placement, progress func(string, ...any)) (runner.Result, outcome, error) {
	res := runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	now := e.opts.Now()
	sp, err := agent.NewSpec(ctx, job, e.opts.StoreURL, t.prefix, now)
	if err != nil {
		return res, outcomeDone, fmt.Errorf("node %s: %w", job.Node, err)
	}
	sp.Checkpoints = agent.CheckpointsPrefix(job)
	key, err := sp.Put(ctx, e.opts.Store)
	if err != nil {
		return res, outcomeDone, fmt.Errorf("node %s: %w", job.Node, err)
	}
	req := e.request(job, t, key, now)
	rec := store.Try{Job: e.Parent() + "/jobs/" + t.jobID, Machine: describe(t.machine), Provisioning: t.provisioning, Started: now}
	defer func() { pl.Tries = append(pl.Tries, rec) }()
	created, err := e.opts.Client.CreateJob(ctx, req)
	if err != nil {
		rec.Finished = e.opts.Now()
		if status.Code(err) == codes.ResourceExhausted {
			rec.Outcome, rec.Why = "no-capacity", err.Error()
			return res, outcomeNoCapacity, err
		}
		rec.Outcome, rec.Why = "error", err.Error()
		if ctx.Err() != nil {
			res.Reason = runner.ReasonCancelled
			rec.Outcome = "cancelled"
		}
		return res, outcomeDone, fmt.Errorf("node %s: create the Batch job: %w", job.Node, err)
	}
	rec.Job = created.GetName()
	progress("batch: job %s created (%s, %s) in %s", rec.Job, describe(t.machine), t.provisioning, strings.Join(locationsOf(e.cfg), ", "))

	w := &watch{e: e, job: job, name: created.GetName(), progress: progress, created: now, rec: &rec, pl: pl,
		follow: &agent.Follower{Store: e.opts.Store, Prefix: t.prefix, Stdout: job.Stdout, Stderr: job.Stderr}}
	final, err := w.wait(ctx)
	rec.Finished = e.opts.Now()
	if err != nil {
		if ctx.Err() != nil {
			rec.Outcome = "cancelled"
			res.Reason, res.Finished = runner.ReasonCancelled, e.opts.Now()
			e.delete(ctx, created.GetName(), progress)
			return res, outcomeDone, fmt.Errorf("node %s: %w", job.Node, ctx.Err())
		}
		if errors.Is(err, errQueueTimeout) {
			rec.Outcome, rec.Why = "no-capacity", err.Error()
			e.delete(ctx, created.GetName(), progress)
			return res, outcomeNoCapacity, err
		}
		rec.Outcome, rec.Why = "error", err.Error()
		e.delete(ctx, created.GetName(), progress)
		return res, outcomeDone, fmt.Errorf("node %s: %w", job.Node, err)
	}

	// The agent's exit record decides, when it is there and complete: a
	// stale preemption reported after a success is no failure.
	exit, exitErr := agent.ReadExit(context.WithoutCancel(ctx), e.opts.Store, t.prefix)
	code, why := taskExit(final)
	if exitErr == nil && exit.Reason != runner.ReasonError {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		out, err := exit.Result()
		if derr := w.follow.Drain(dctx, exit.LogChunks); derr != nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("log: %v", derr))
		}
		rec.Outcome = string(out.Reason)
		return out, outcomeDone, err
	}
	switch {
	case code == ExitPreempted:
		rec.Outcome, rec.Why = "preempted", why
		progress("batch: the spot VM was preempted (exit code %d)", code)
		return res, outcomePreempted, nil
	case code == ExitVMLost:
		rec.Outcome, rec.Why = "lost", why
		progress("batch: the VM stopped reporting (exit code %d)", code)
		return res, outcomeLost, nil
	case final.GetStatus().GetState() == batchpb.JobStatus_FAILED && exhausted(final) != "":
		why = exhausted(final)
		rec.Outcome, rec.Why = "no-capacity", why
		return res, outcomeNoCapacity, errors.New(why)
	case code == ExitMaxRunDuration:
		rec.Outcome, rec.Why = "failed", why
		res.Reason = runner.ReasonTimeLimit
		return res, outcomeDone, fmt.Errorf("node %s: the Batch job ran past max-run-duration %s", job.Node, e.cfg.MaxRunDuration)
	}
	if exitErr == nil {
		out, err := exit.Result()
		rec.Outcome, rec.Why = "error", exit.Error
		return out, outcomeDone, fmt.Errorf("node %s: %w", job.Node, err)
	}
	rec.Outcome, rec.Why = "error", why
	return res, outcomeDone, fmt.Errorf("node %s: the Batch job ended %s (task exit code %d) without the agent's exit record: %s", job.Node,
		strings.ToLower(final.GetStatus().GetState().String()), code, why)
}

// taskExit is the task's exit code from the job's status events (the last
// event with one), and the last event's description.
func taskExit(j *batchpb.Job) (int, string) {
	code, why := -1, ""
	for _, ev := range j.GetStatus().GetStatusEvents() {
		if te := ev.GetTaskExecution(); te != nil {
			code = int(te.GetExitCode())
		}
		if ev.GetDescription() != "" {
			why = ev.GetDescription()
		}
	}
	return code, why
}

// exhausted is the description of the status event that says the job
// failed for want of resources (Batch follows it with a bare state
// change), or "".
func exhausted(j *batchpb.Job) string {
	for _, ev := range j.GetStatus().GetStatusEvents() {
		d := strings.ToLower(ev.GetType() + " " + ev.GetDescription())
		if strings.Contains(d, "exhausted") || strings.Contains(d, "resource_pool") || strings.Contains(d, "stockout") {
			return ev.GetDescription()
		}
	}
	return ""
}

// delete deletes a job, waiting for Batch to take it away for at most
// DeleteTimeout.
func (e *Executor) delete(ctx context.Context, name string, progress func(string, ...any)) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.DeleteTimeout)
	defer cancel()
	op, err := e.opts.Client.DeleteJob(dctx, &batchpb.DeleteJobRequest{Name: name})
	if err == nil {
		err = op.Wait(dctx)
	}
	if err != nil && status.Code(err) != codes.NotFound {
		e.log.Warn("delete the Batch job", "job", name, "err", err)
		progress("batch: deleting job %s: %v (sluice gc --cloud deletes it, and its max-run-duration bounds it)", name, err)
		return
	}
	progress("batch: job %s deleted", name)
}

var errQueueTimeout = errors.New("queue timeout")

// watch follows one Batch job to its end.
type watch struct {
	e        *Executor
	job      runner.Job
	name     string
	progress func(string, ...any)
	follow   *agent.Follower
	created  time.Time
	rec      *store.Try
	pl       *store.Placement

	events    int       // status events already shown
	scheduled time.Time // when the VM was scheduled: billing starts
	charged   time.Time // cost counted up to here
	running   bool
	exited    bool // the agent's exit record is in the store
}

// exitRecorded reports whether the agent's exit record of this try is in
// the store.
func (w *watch) exitRecorded(ctx context.Context) bool {
	_, err := w.e.opts.Store.Stat(ctx, agent.ExitKey(w.follow.Prefix))
	return err == nil
}

// wait polls the job until it ends, showing its status events, following
// its log and counting its cost; it returns the final job.
func (w *watch) wait(ctx context.Context) (*batchpb.Job, error) {
	e := w.e
	poll := time.NewTicker(e.opts.Poll)
	defer poll.Stop()
	logs := time.NewTicker(e.opts.LogPoll)
	defer logs.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-logs.C:
				// The log is followed from the store whatever the job's state
				// last read: the step's first lines show as soon as they are
				// there, not at the next poll of the job.
				if _, err := w.follow.Poll(ctx); err != nil && ctx.Err() == nil {
					e.log.Warn("follow the log", "job", w.name, "err", err)
				}
				// Once the agent's exit record is there, the job is about to
				// end: read it at once and then often, not a Poll later.
				if !w.exited && w.exitRecorded(ctx) {
					w.exited = true
					poll.Reset(min(e.opts.Poll, 250*time.Millisecond))
				} else {
					continue
				}
			case <-poll.C:
			}
		}
		j, err := e.opts.Client.GetJob(ctx, &batchpb.GetJobRequest{Name: w.name})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if status.Code(err) == codes.NotFound {
				return nil, fmt.Errorf("the Batch job %s is gone (deleted by someone else?)", w.name)
			}
			e.log.Warn("read the Batch job", "job", w.name, "err", err)
			continue
		}
		w.showEvents(j)
		st := j.GetStatus().GetState()
		now := e.opts.Now()
		if w.scheduled.IsZero() && (st == batchpb.JobStatus_SCHEDULED || st == batchpb.JobStatus_RUNNING || ended(st)) {
			w.scheduled = w.firstScheduled(j, now)
			w.charged = w.scheduled
		}
		w.charge(now)
		switch {
		case st == batchpb.JobStatus_RUNNING:
			w.running = true
		case ended(st):
			if _, err := w.follow.Poll(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("follow the log", "job", w.name, "err", err)
			}
			return j, nil
		case !w.running && now.Sub(w.created) > e.cfg.QueueTimeout:
			return nil, fmt.Errorf("the Batch job %s waited %s for a VM (%s): %w", w.name, e.cfg.QueueTimeout,
				strings.ToLower(st.String()), errQueueTimeout)
		}
	}
}

func ended(st batchpb.JobStatus_State) bool {
	return st == batchpb.JobStatus_SUCCEEDED || st == batchpb.JobStatus_FAILED || st == batchpb.JobStatus_DELETION_IN_PROGRESS
}

// firstScheduled is when the job's state first became SCHEDULED (Batch
// writes "Job state is set from QUEUED to SCHEDULED for job ..."), else now.
func (w *watch) firstScheduled(j *batchpb.Job, now time.Time) time.Time {
	for _, ev := range j.GetStatus().GetStatusEvents() {
		if strings.Contains(ev.GetDescription(), "to SCHEDULED") && ev.GetEventTime() != nil {
			return ev.GetEventTime().AsTime()
		}
	}
	return now
}

// charge counts the VM time since the last charge into the node's cost and
// the run's spend.
func (w *watch) charge(now time.Time) {
	price := w.e.cfg.HourlyPrice
	if price == nil || w.scheduled.IsZero() || !now.After(w.charged) {
		return
	}
	usd := now.Sub(w.charged).Hours() * *price
	w.charged = now
	w.rec.Cost += usd
	w.pl.Cost += usd
	if w.job.Spend != nil {
		w.job.Spend(usd)
	}
}

// showEvents prints the status events not shown yet as sluice lines.
func (w *watch) showEvents(j *batchpb.Job) {
	evs := j.GetStatus().GetStatusEvents()
	for _, ev := range evs[min(w.events, len(evs)):] {
		w.progress("batch: %s", ev.GetDescription())
	}
	w.events = max(w.events, len(evs))
}

// flushSinks flushes the job's output sinks once, after the last write.
func flushSinks(job runner.Job) {
	for _, s := range []any{job.Stdout, job.Stderr} {
		if f, ok := s.(runner.Flusher); ok {
			_ = f.Flush()
		}
	}
}
