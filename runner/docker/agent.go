package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/runner/contract"
	"github.com/sluice-ci/sluice/store"
)

// AgentOptions configure TransferStore: a job's files go through the store,
// as they do for a remote backend. A first container of the sluice image
// runs `sluice agent fetch`, which lays out /valohai in a volume from the
// store and places the sluice binary there; the step's image then runs
// `/valohai/.sluice/sluice agent exec`, which runs the command, streams its
// log into the store and puts the outputs there. This host reads back only
// the log chunks and the exit record.
type AgentOptions struct {
	// Store is the run's store; StoreURL names it (gs://BUCKET/PREFIX) for
	// the agent. A store every container can reach: a bucket.
	Store    store.Store
	StoreURL string
	// Image is the sluice image of the first container. Required.
	Image string
	// Env is given to both containers, for the agent itself (say
	// STORAGE_EMULATOR_HOST); the step's command does not see the agent's
	// private variables.
	Env map[string]string
	// Poll is how often the log chunks are looked for; zero means 250 ms.
	Poll time.Duration
}

// DefaultAgentImage is the sluice image of this version, for the agent's
// first container; SLUICE_IMAGE replaces it.
func DefaultAgentImage(version string) string {
	if img := os.Getenv("SLUICE_IMAGE"); img != "" {
		return img
	}
	if version == "" || version == "dev" {
		version = "v1"
	}
	return "ghcr.io/sluice-ci/sluice:" + version
}

// checkAgent says what is missing for TransferStore.
func (o AgentOptions) check() error {
	switch {
	case o.Store == nil || o.StoreURL == "":
		return errors.New("transfer store needs the run's store")
	case !strings.HasPrefix(o.StoreURL, "gs://"):
		return fmt.Errorf("transfer store needs a store every container can reach, a gs:// bucket; %s is a directory on this host (give --store gs://BUCKET/PREFIX, or use transfer auto)", o.StoreURL)
	case o.Image == "":
		return errors.New("transfer store needs the sluice image for its first container")
	}
	return nil
}

// runAgent is Run for TransferStore.
func (e *Executor) runAgent(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	a := e.opts.Agent
	log := e.log.With("run", job.RunID, "node", job.Node, "transfer", TransferStore)
	digest, _, err := e.ensureImage(ctx, job.Image, job.Activity)
	if err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	res.ImageDigest = digest
	if _, _, err := e.ensureImage(ctx, a.Image, nil); err != nil {
		return res, fmt.Errorf("node %s: the sluice image for the agent: %w", job.Node, err)
	}
	if err := runner.Stage(ctx, a.Store, &job); err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	prefix := agent.AttemptPrefix(job)
	spec, err := agent.NewSpec(ctx, job, a.StoreURL, prefix, e.opts.Now())
	if err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	key, err := spec.Put(ctx, a.Store)
	if err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	labels := map[string]string{LabelRun: job.RunID, LabelNode: job.Node}
	vol, err := e.cli.VolumeCreate(ctx, volume.CreateOptions{Labels: labels})
	if err != nil {
		return res, fmt.Errorf("node %s: create the job's volume: %w", job.Node, err)
	}
	defer func() {
		if err := e.removeVolume(ctx, vol.Name); err != nil {
			log.Warn("remove volume", "volume", vol.Name, "err", err)
			res.Warnings = append(res.Warnings, fmt.Sprintf("volume %s not removed: %v (sluice clean removes it)", vol.Name, err))
		}
	}()
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: vol.Name, Target: contract.Root}}
	env := make([]string, 0, len(a.Env))
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	args := []string{"--store", a.StoreURL, "--job", key}
	host := func() *container.HostConfig {
		return &container.HostConfig{Mounts: mounts, NetworkMode: container.NetworkMode(e.opts.Network),
			LogConfig: container.LogConfig{Type: "json-file"}}
	}

	// The first container: fetch.
	fetchCfg := &container.Config{Image: a.Image, Entrypoint: []string{}, Cmd: append([]string{"/usr/local/bin/sluice", "agent", "fetch"}, args...),
		Env: env, Labels: labels}
	code, tail, err := e.runToEnd(ctx, fetchCfg, host(), job, "fetch")
	if err != nil {
		return res, err
	}
	if code != 0 {
		if rec, rerr := agent.ReadExit(context.WithoutCancel(ctx), a.Store, prefix); rerr == nil {
			_, err := rec.Result()
			return res, fmt.Errorf("node %s: %w", job.Node, err)
		}
		return res, fmt.Errorf("node %s: sluice agent fetch exited with code %d: %s", job.Node, code, tail)
	}

	// The step's container: exec.
	stepHost := host()
	stepHost.Resources = resources(job.Resources)
	stepCfg := &container.Config{Image: job.Image, Entrypoint: []string{},
		Cmd:        append([]string{contract.AgentDir + "/" + agent.BinaryName, "agent", "exec"}, args...),
		WorkingDir: contract.RepositoryDir, Env: env, Labels: labels}
	created, err := e.cli.ContainerCreate(ctx, stepCfg, stepHost, nil, nil, containerName(job))
	if err != nil {
		return res, fmt.Errorf("node %s: create container: %w", job.Node, err)
	}
	id := created.ID
	defer func() {
		if rmErr := e.remove(ctx, id); rmErr != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %s not removed: %v (sluice clean removes it)", shortID(id), rmErr))
		}
	}()
	opCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	waitC, waitErrC := e.cli.ContainerWait(opCtx, id, container.WaitConditionNextExit)
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return res, fmt.Errorf("node %s: start container: %w", job.Node, err)
	}
	follow := &agent.Follower{Store: a.Store, Prefix: prefix, Stdout: job.Stdout, Stderr: job.Stderr}
	defer func() {
		for _, w := range []io.Writer{job.Stdout, job.Stderr} {
			if f, ok := w.(runner.Flusher); ok {
				_ = f.Flush()
			}
		}
	}()
	poll := a.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	// The agent enforces the limits; this is the backstop for an agent
	// that cannot (a hung upload).
	var backstop <-chan time.Time
	if job.TimeLimit > 0 {
		t := time.NewTimer(job.TimeLimit + 2*time.Minute)
		defer t.Stop()
		backstop = t.C
	}
	var exit container.WaitResponse
wait:
	for {
		select {
		case <-ctx.Done():
			res.Reason = runner.ReasonCancelled
			res.Finished = e.opts.Now()
			return res, fmt.Errorf("node %s: %w", job.Node, ctx.Err())
		case <-tick.C:
			if _, err := follow.Poll(ctx); err != nil && ctx.Err() == nil {
				log.Warn("follow the log", "err", err)
			}
		case <-backstop:
			backstop = nil
			log.Warn("the agent outlived the time limit; killing its container")
			_ = e.cli.ContainerKill(opCtx, id, "KILL")
		case exit = <-waitC:
			break wait
		case err := <-waitErrC:
			return res, fmt.Errorf("node %s: wait for container: %w", job.Node, err)
		}
	}
	rec, err := agent.ReadExit(context.WithoutCancel(ctx), a.Store, prefix)
	if err != nil {
		tail := e.logTail(opCtx, id)
		if cerrdefs.IsNotFound(err) || isNotExist(err) {
			return res, fmt.Errorf("node %s: the agent left no exit record; its container exited with code %d: %s", job.Node, exit.StatusCode, tail)
		}
		return res, fmt.Errorf("node %s: read the exit record: %w", job.Node, err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := follow.Drain(dctx, rec.LogChunks); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("log: %v", err))
	}
	out, err := rec.Result()
	out.ImageDigest = digest
	out.Warnings = append(res.Warnings, out.Warnings...)
	if err != nil {
		return out, fmt.Errorf("node %s: %w", job.Node, err)
	}
	return out, nil
}

// runToEnd runs a container to its exit and returns its exit code and the
// tail of its log; the container is removed.
func (e *Executor) runToEnd(ctx context.Context, cfg *container.Config, host *container.HostConfig, job runner.Job, what string) (int, string, error) {
	name := containerName(runner.Job{RunID: job.RunID, Node: job.Node + "-" + what})
	created, err := e.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return -1, "", fmt.Errorf("node %s: create the %s container: %w", job.Node, what, err)
	}
	defer func() {
		if err := e.remove(ctx, created.ID); err != nil {
			e.log.Warn("remove container", "container", shortID(created.ID), "err", err)
		}
	}()
	opCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	waitC, waitErrC := e.cli.ContainerWait(opCtx, created.ID, container.WaitConditionNextExit)
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return -1, "", fmt.Errorf("node %s: start the %s container: %w", job.Node, what, err)
	}
	select {
	case <-ctx.Done():
		return -1, "", fmt.Errorf("node %s: %w", job.Node, ctx.Err())
	case err := <-waitErrC:
		return -1, "", fmt.Errorf("node %s: wait for the %s container: %w", job.Node, what, err)
	case exit := <-waitC:
		tail := ""
		if exit.StatusCode != 0 {
			tail = e.logTail(opCtx, created.ID)
		}
		return int(exit.StatusCode), tail, nil
	}
}

// logTail is the last lines of a container's log, for an error message.
func (e *Executor) logTail(ctx context.Context, id string) string {
	rc, err := e.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	_, _ = stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 64<<10))
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return "(it printed nothing)"
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

func (e *Executor) removeVolume(ctx context.Context, name string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.CleanupTimeout)
	defer cancel()
	err := e.cli.VolumeRemove(rctx, name, true)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
