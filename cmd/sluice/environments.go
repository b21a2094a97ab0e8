package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/batch"
	"github.com/sluice-ci/sluice/runner/docker"
	"github.com/sluice-ci/sluice/runner/imageref"
	"github.com/sluice-ci/sluice/runner/kube"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// executors are the executors of one run: the local Docker host's, and one
// per environment of sluice.yaml that a node of the pipeline runs in.
type executors struct {
	local *docker.Executor
	envs  map[string]runner.Environment
	// dockers are the Docker executors of environments, for the sweep.
	dockers []*docker.Executor
	// kubes are the namespaces of the kubernetes environments, for the sweep.
	kubes []kubeNamespace
}

// kubeNamespace is a cluster's namespace that a run's Jobs go to.
type kubeNamespace struct {
	client             kubernetes.Interface
	cluster, namespace string
}

// runOptions are what the executors of a run are made from.
type runOptions struct {
	pull     docker.PullPolicy
	logger   *slog.Logger
	getenv   func(string) string
	st       store.Store
	storeURL string
	// repo names the repository, for the labels of cloud jobs.
	repo   string
	clouds *cloudClients
}

// startExecutors makes the local executor and those of the environments the
// pipeline's nodes run in, checking each environment's settings against the
// store before any container starts.
func startExecutors(ctx context.Context, o runOptions, cfg *spec.Config, p *spec.Pipeline, sc *spec.SluiceConfig) (*executors, error) {
	local, err := startExecutor(ctx, o.pull, o.logger, o.getenv)
	if err != nil {
		return nil, err
	}
	ex := &executors{local: local, envs: map[string]runner.Environment{}}
	plans, err := cfg.Plan(p, nil)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	used := map[string]*spec.Environment{}
	for _, np := range plans {
		if np.Step == nil {
			continue
		}
		if slug, env := sc.EnvironmentOf(np.Step.Name, np.Step.Environment); env != nil {
			used[slug] = env
		}
	}
	for _, slug := range slices.Sorted(maps.Keys(used)) {
		env := used[slug]
		e, err := o.environmentExecutor(ctx, env)
		if err != nil {
			where := sc.File
			if env.Pos.Line > 0 {
				where = fmt.Sprintf("%s:%d:%d", sc.File, env.Pos.Line, env.Pos.Col)
			}
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("%s: environment %q: %w", where, slug, err)}
		}
		ex.envs[slug] = runner.Environment{Executor: e, MaxParallel: env.MaxParallel}
		if d, ok := e.(*docker.Executor); ok {
			ex.dockers = append(ex.dockers, d)
		}
		if env.Backend == spec.BackendKubernetes {
			client, cluster, _ := o.clouds.Kube(env.Kube) // made above, without an error
			ns := kubeNamespace{client: client, cluster: cluster, namespace: env.Kube.Namespace}
			// One sweep per client (kubeconfig and context) and namespace:
			// two contexts may well share a name.
			if !slices.ContainsFunc(ex.kubes, func(k kubeNamespace) bool { return k.client == ns.client && k.namespace == ns.namespace }) {
				ex.kubes = append(ex.kubes, ns)
			}
		}
	}
	return ex, nil
}

// environmentExecutor makes the executor of one environment of sluice.yaml.
func (o runOptions) environmentExecutor(ctx context.Context, env *spec.Environment) (runner.Executor, error) {
	switch env.Backend {
	case spec.BackendBatch:
		// Before the client: a local store needs no credentials to refuse.
		if err := batch.CheckStore(o.storeURL); err != nil {
			return nil, err
		}
		client, err := o.clouds.Batch(ctx)
		if err != nil {
			return nil, err
		}
		image := env.Batch.Image
		if image == "" {
			image = docker.DefaultAgentImage(version())
		}
		return batch.New(batch.Options{Client: client, Environment: env, Store: o.st, StoreURL: o.storeURL,
			AgentImage: image, AgentEnv: agentEnv(o.getenv), Repository: o.repo,
			ImageResolver: imageref.New(imageref.Options{Logger: o.logger}), Logger: o.logger,
			Poll: durationEnv(o.getenv, "SLUICE_BATCH_POLL")})
	case spec.BackendKubernetes:
		// Before the cluster: a local store needs no cluster to refuse.
		if err := kube.CheckStore(o.storeURL); err != nil {
			return nil, err
		}
		client, cluster, err := o.clouds.Kube(env.Kube)
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
		defer cancel()
		if err := kube.Preflight(pctx, client, env.Kube.Namespace); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("cluster %s: %w", cluster, err)
		}
		image := env.Kube.Image
		if image == "" {
			image = docker.DefaultAgentImage(version())
		}
		return kube.New(kube.Options{Client: client, Cluster: cluster, Environment: env, Store: o.st, StoreURL: o.storeURL,
			AgentImage: image, AgentEnv: agentEnv(o.getenv), Repository: o.repo,
			ImageResolver: imageref.New(imageref.Options{Logger: o.logger}), Logger: o.logger})
	case spec.BackendDocker:
		opts := docker.Options{Pull: o.pull, Logger: o.logger, CleanupTimeout: 30 * time.Second,
			RegistryAuth: docker.ConfigAuth(o.getenv), Transfer: docker.Transfer(env.Docker.Transfer),
			Network: env.Docker.Network, Registry: imageref.New(imageref.Options{Logger: o.logger})}
		if opts.Transfer == docker.TransferStore {
			image := env.Docker.Image
			if image == "" {
				image = docker.DefaultAgentImage(version())
			}
			opts.Agent = docker.AgentOptions{Store: o.st, StoreURL: o.storeURL, Image: image, Env: agentEnv(o.getenv)}
		}
		return docker.NewFromEnv(opts)
	}
	return nil, fmt.Errorf("backend %q is not one this sluice has", env.Backend)
}

// preflightTimeout bounds the questions sluice asks a cluster before a run.
const preflightTimeout = 30 * time.Second

// agentEnv is what `sluice agent` needs of this process's environment to
// reach the store: the Cloud Storage emulator's address, if one is used.
// Credentials never travel: the agent uses those where it runs.
func agentEnv(getenv func(string) string) map[string]string {
	env := map[string]string{}
	if v := getenv("STORAGE_EMULATOR_HOST"); v != "" {
		env["STORAGE_EMULATOR_HOST"] = v
	}
	return env
}

// sweep removes what the run's executors could not remove themselves.
func (ex *executors) sweep(ctx context.Context, runID string, stderr io.Writer) {
	sweepContainers(ctx, ex.local, runID, stderr)
	for _, d := range ex.dockers {
		sweepContainers(ctx, d, runID, stderr)
	}
	for _, k := range ex.kubes {
		sweepJobs(ctx, k, runID, stderr)
	}
}

// sweepJobs deletes the run's Jobs that are still running in a namespace:
// its executor deletes each of its own, even when cancelled; this is for
// what it could not. Finished Jobs stay for their ttl-after-finished.
func sweepJobs(ctx context.Context, k kubeNamespace, runID string, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	deleted, err := kube.SweepRun(ctx, k.client, k.namespace, runID)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: deleting the run's Jobs in %s/%s: %v (run `sluice gc --cloud` once they are past their TTL)\n", k.cluster, k.namespace, err)
	}
	if len(deleted) > 0 {
		fmt.Fprintf(stderr, "sluice: deleted %s the run left in %s/%s: %s\n", plural(len(deleted), "Job"), k.cluster, k.namespace, strings.Join(deleted, ", "))
	}
}

// durationEnv reads a Go duration from the environment; zero when unset or
// bad (the executor's default then).
func durationEnv(getenv func(string) string, name string) time.Duration {
	d, err := time.ParseDuration(getenv(name))
	if err != nil {
		return 0
	}
	return d
}

// repositoryName names the repository for the labels of cloud jobs: the CI's
// name for it (owner/name), else the directory's name.
func repositoryName(getenv func(string) string, dir string) string {
	for _, k := range []string{"GITHUB_REPOSITORY", "CI_PROJECT_PATH"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return filepath.Base(dir)
}

// maxCost is sluice.yaml's max-cost, 0 when unset.
func maxCost(sc *spec.SluiceConfig) float64 {
	if sc == nil || sc.MaxCost == nil {
		return 0
	}
	return *sc.MaxCost
}
