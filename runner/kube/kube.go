// Package kube is the runner.Executor for Kubernetes: each try of a node is
// one batch/v1 Job of one pod, running `sluice agent` beside the step (see
// runner/agent):
//
//   - an init container (the sluice image) fetches the repository and the
//     inputs from the store into an emptyDir mounted at /valohai, and places
//     the agent there;
//   - the step's container (the step's image) runs `sluice agent exec`: the
//     command, its limits, its log in chunks, its outputs and exit record
//     into the store.
//
// SKELETON: the API the cmd wiring is written against; Run is not written yet.
package kube

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/runner"
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
}

var _ runner.Executor = (*Executor)(nil)

// New checks the options.
func New(opts Options) (*Executor, error) { return &Executor{opts: opts}, nil }

// Run implements runner.Executor.
func (e *Executor) Run(ctx context.Context, job runner.Job) (runner.Result, error) {
	return runner.Result{ExitCode: -1, Reason: runner.ReasonError}, errors.New("kube: not written yet")
}
