// Package kube is the runner.Executor for Kubernetes: each node execution
// is one batch/v1 Job, each of its pods a try, running `sluice agent` beside
// the step (see runner/agent):
//
//   - an init container (the sluice image) fetches the repository and the
//     inputs from the store into an emptyDir mounted at /valohai, and places
//     the agent there;
//   - the step's container (the step's image) runs `sluice agent exec`: the
//     command, its limits, its log in chunks, its outputs and exit record
//     into the store.
//
// Kubernetes retries what is not the step's doing: the Job's pod failure
// policy ignores a pod's failure with a DisruptionTarget condition (an
// eviction, a preemption, a lost node), and the Job controller makes a new
// pod, which sluice records as a new try; sluice counts those against the
// environment's retries itself and fails the node past them. The step's own
// non-zero exit fails the Job at once. Each pod's agent keeps its files
// apart (agent.TryEnv, the pod's name), and Run follows the pod it watches.
//
// Run watches the Job and its pods (watches, re-listed when one ends) and
// turns what the pods say into the node's errors: an image that cannot be
// pulled, a pod that no node can take within queue-timeout (with the
// scheduler's message), an OOM kill (with the limit). The agent's exit
// record decides the result when it is there; the pod's own log (GetLogs)
// is shown only when it is not, since it goes with the node.
//
// Every Job carries the labels below (sluice-ttl bounds how long `sluice gc
// --cloud` leaves it alone), ttlSecondsAfterFinished, and, for a node with a
// time limit, activeDeadlineSeconds as a backstop (the agent enforces the
// limit itself: the deadline counts Pending time too). A cancelled Run
// deletes its Job with foreground propagation and waits until the Job and
// its pods are gone.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// Labels every Job (and its pod) of sluice carries; `sluice gc --cloud`
// finds what a killed CI job left by them.
const (
	LabelRun     = "sluice-run"
	LabelRepo    = "sluice-repo"
	LabelNode    = "sluice-node"
	LabelCreated = "sluice-created" // unix seconds
	LabelTTL     = "sluice-ttl"     // seconds after LabelCreated when the Job may be deleted
	LabelTry     = "sluice-try"
)

// Options configure an Executor.
type Options struct {
	// Client talks to the cluster.
	Client kubernetes.Interface
	// Cluster names the cluster for the report (the kubeconfig context, or
	// the API server's host).
	Cluster string
	// Environment is the sluice.yaml environment, with its Kube settings.
	Environment *spec.Environment
	// Store is the run's store; StoreURL names it (gs://BUCKET/PREFIX) for
	// the agent in the pod.
	Store    store.Store
	StoreURL string
	// AgentImage is the sluice image of the init container; empty means
	// Environment.Kube.Image.
	AgentImage string
	// AgentEnv is given to the pod's containers (STORAGE_EMULATOR_HOST for
	// an emulator); never credentials.
	AgentEnv map[string]string
	// Repository names the repository, for the sluice-repo label.
	Repository    string
	ImageResolver runner.ImageResolver
	Logger        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LogPoll is how often the agent's log chunks are looked for (default 1 s).
	LogPoll time.Duration
	// DeleteTimeout bounds the wait for a cancelled Job's deletion (default 5 s).
	DeleteTimeout time.Duration
}

// Executor runs nodes as Kubernetes Jobs. It is safe for concurrent use.
type Executor struct {
	opts Options
	cfg  spec.KubeEnvironment
	log  *slog.Logger
}

var _ runner.Executor = (*Executor)(nil)

// New checks the options: a kubernetes environment, a client, a gs:// store
// (the pods read their files from there) and a sluice image; it fills in
// the environment's defaults.
func New(opts Options) (*Executor, error) {
	if opts.Client == nil {
		return nil, errors.New("kube: no client")
	}
	if opts.Environment == nil || opts.Environment.Backend != spec.BackendKubernetes {
		return nil, errors.New("kube: not a kubernetes environment")
	}
	if opts.Store == nil {
		return nil, errors.New("kube: no store")
	}
	if !strings.HasPrefix(opts.StoreURL, "gs://") {
		return nil, fmt.Errorf("kube: the pods need a store they can reach, a gs:// bucket, not %q", opts.StoreURL)
	}
	cfg := opts.Environment.Kube
	if cfg.Namespace == "" {
		cfg.Namespace = spec.DefaultKubeNamespace
	}
	if cfg.GPUResource == "" {
		cfg.GPUResource = spec.DefaultKubeGPUResource
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = spec.DefaultKubeQueueTimeout
	}
	if cfg.TTLAfterFinished <= 0 {
		cfg.TTLAfterFinished = spec.DefaultKubeTTL
	}
	if opts.AgentImage == "" {
		opts.AgentImage = cfg.Image
	}
	if opts.AgentImage == "" {
		return nil, errors.New("kube: no sluice image for the agent")
	}
	if opts.Now == nil {
		opts.Now = time.Now
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

// Namespace is the namespace the environment's Jobs are created in.
func (e *Executor) Namespace() string { return e.cfg.Namespace }

// ImageDigest names the image from its registry (runner.ImageResolver).
func (e *Executor) ImageDigest(ctx context.Context, ref string) (string, error) {
	if e.opts.ImageResolver == nil {
		return "", fmt.Errorf("no registry to ask for the digest of %s", ref)
	}
	return e.opts.ImageResolver.ImageDigest(ctx, ref)
}

// Run implements runner.Executor: one Job for the node, watched to its end.
func (e *Executor) Run(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	pl := &store.Placement{Backend: spec.BackendKubernetes, Environment: e.opts.Environment.Name, Location: e.opts.Cluster,
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
	gpu, err := gpus(job, e.cfg)
	if err != nil {
		return res, err
	}
	if gpu > 0 {
		pl.Accelerator, pl.AcceleratorCount = e.cfg.GPUResource, gpu
	}
	if err := runner.Stage(ctx, e.opts.Store, &job); err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	// The node pulls the image itself; its registry names the digest that
	// the run record keeps.
	digest, digestErr := "", error(nil)
	if e.opts.ImageResolver != nil {
		digest, digestErr = e.opts.ImageResolver.ImageDigest(ctx, job.Image)
	}
	now := e.opts.Now()
	prefix := agent.AttemptPrefix(job)
	sp, err := agent.NewSpec(ctx, job, e.opts.StoreURL, prefix, now)
	if err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	sp.Checkpoints = agent.CheckpointsPrefix(job)
	key, err := sp.Put(ctx, e.opts.Store)
	if err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	name := jobName(job.RunID, job.Node)
	obj, err := e.jobObject(job, name, key, now)
	if err != nil {
		return res, err
	}
	created, err := e.opts.Client.BatchV1().Jobs(e.cfg.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		if ctx.Err() != nil {
			res.Reason = runner.ReasonCancelled
			return res, fmt.Errorf("node %s: %w", job.Node, ctx.Err())
		}
		return res, fmt.Errorf("node %s: create the Job %s in namespace %s: %w", job.Node, name, e.cfg.Namespace, err)
	}
	progress("kube: job %s/%s created on %s", e.cfg.Namespace, name, e.opts.Cluster)
	w := &watch{e: e, job: job, created: created, prefix: prefix, progress: progress, pl: pl, gpus: gpu,
		pods: map[string]*podState{}}
	out, err := w.run(ctx)
	out.Placement = pl
	out.ImageDigest = digest
	if digestErr != nil && err == nil {
		out.Warnings = append(out.Warnings, fmt.Sprintf("image %s: no digest for the run record: %v", job.Image, digestErr))
	}
	return out, err
}

// flushSinks flushes the job's output sinks once, after the last write.
func flushSinks(job runner.Job) {
	for _, s := range []any{job.Stdout, job.Stderr} {
		if f, ok := s.(runner.Flusher); ok {
			_ = f.Flush()
		}
	}
}
