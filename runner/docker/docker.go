// Package docker is the default runner.Executor: one container per node on a
// Docker Engine. Files go in and out in one of two ways (Options.Transfer):
// through the API, CopyToContainer before the start and CopyFromContainer
// after the exit (tar streams), which works with any daemon, also a remote
// one (DOCKER_HOST=tcp://..., dind); or, when the daemon runs on this
// machine and sees this process's files, through bind mounts of a host
// directory prepared for the job, which saves the two archive calls (each
// mounts the container's file system: tens of milliseconds per node). By
// default a probe, once per Executor, decides.
//
// Every container it creates carries the labels sluice.run=<run id> and
// sluice.node=<node>, and is removed when Run returns (in the background
// when the job was not cancelled: Wait waits for those); Cleanup removes the
// ones a killed process left behind.
package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// Labels put on every container.
const (
	LabelRun  = "sluice.run"
	LabelNode = "sluice.node"
)

// ErrImageNotFound is returned (wrapped) when the image is not on the Docker
// host and the pull policy forbids pulling it.
var ErrImageNotFound = errors.New("image not found")

// PullPolicy says when Run pulls a job's image.
type PullPolicy string

const (
	// PullMissing pulls only images the Docker host does not have (the default).
	PullMissing PullPolicy = "missing"
	// PullAlways pulls before every run, so a moving tag is current.
	PullAlways PullPolicy = "always"
	// PullNever uses the Docker host's images only.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy accepts "always", "missing", "never" and "" (missing).
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case "":
		return PullMissing, nil
	case PullAlways, PullMissing, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: want always, missing or never", s)
}

// RegistryAuthFunc returns the credentials for pulling ref, or nil to pull
// anonymously. It is called once per pull, from the goroutine that runs the job.
type RegistryAuthFunc func(ctx context.Context, ref string) (*registry.AuthConfig, error)

// Options configure an Executor; the zero value is usable.
type Options struct {
	// Pull is the pull policy; empty means PullMissing.
	Pull PullPolicy
	// RegistryAuth supplies registry credentials; nil pulls anonymously.
	RegistryAuth RegistryAuthFunc
	// Registry, when set, names the digest of an image without pulling it
	// (imageref.Resolver asks the image's registry): ImageDigest uses it for
	// an image the Docker host does not have, and for every image with
	// PullAlways, so that deciding whether a node's result can be reused
	// pulls nothing, and a reused node never pulls. When it fails, the image
	// is pulled to learn its digest, as without it. PullNever never uses it.
	Registry runner.ImageResolver
	// Logger receives the executor's own messages (not the job's output);
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock for Result.Started and Finished; nil means time.Now.
	// Limits are enforced with real timers.
	Now func() time.Time
	// CleanupTimeout bounds the kill and remove calls made after the job's
	// context is done; zero means 10 seconds.
	CleanupTimeout time.Duration
	// Transfer is how files go into and out of the containers; empty means
	// TransferAuto.
	Transfer Transfer
	// Network is the Docker network the containers join; empty means the
	// daemon's default.
	Network string
	// Agent configures TransferStore.
	Agent AgentOptions
	// TempDir is where the bind transfer prepares each job's directory (and
	// the probe its own); empty means os.TempDir(). It must be on a file
	// system the daemon sees under the same path; input files on the same
	// file system are hard-linked instead of copied.
	TempDir string
}

// Executor runs jobs as containers on one Docker Engine. It is safe for
// concurrent use.
//
// With TransferAuto, the first Run probes, once, whether bind mounts work
// (see probeBind): only with a daemon on a local socket that sees this
// process's files, with sluice running as root; never over tcp://. Every
// later Run uses what the probe chose.
type Executor struct {
	cli  client.APIClient
	opts Options
	log  *slog.Logger

	geteuid  func() int    // os.Geteuid; tests replace it
	probeSem chan struct{} // held while probing
	removing *removals     // the containers of finished jobs, being removed
	probed   Transfer      // what the probe chose; empty until it ran
	probeWhy string
}

var (
	_ runner.Executor = (*Executor)(nil)
	_ runner.Waiter   = (*Executor)(nil)
)

// New returns an Executor that talks to the engine through cli.
func New(cli client.APIClient, opts Options) (*Executor, error) {
	p, err := ParsePullPolicy(string(opts.Pull))
	if err != nil {
		return nil, err
	}
	opts.Pull = p
	t, err := ParseTransfer(string(opts.Transfer))
	if err != nil {
		return nil, err
	}
	opts.Transfer = t
	if t == TransferStore {
		if err := opts.Agent.check(); err != nil {
			return nil, err
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{cli: cli, opts: opts, log: log, geteuid: os.Geteuid, probeSem: make(chan struct{}, 1), removing: newRemovals()}, nil
}

// NewFromEnv returns an Executor on the engine that DOCKER_HOST,
// DOCKER_API_VERSION, DOCKER_CERT_PATH and DOCKER_TLS_VERIFY name (the local
// socket by default), negotiating the API version with it. When
// opts.Transfer is empty, SLUICE_DOCKER_TRANSFER (auto, copy or bind) sets it.
func NewFromEnv(opts Options) (*Executor, error) {
	if opts.Transfer == "" {
		opts.Transfer = Transfer(os.Getenv(TransferEnv))
		if _, err := ParseTransfer(string(opts.Transfer)); err != nil {
			return nil, fmt.Errorf("%s: %w", TransferEnv, err)
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return New(cli, opts)
}

// Client returns the Docker API client the executor uses.
func (e *Executor) Client() client.APIClient { return e.cli }

// Run implements runner.Executor.
func (e *Executor) Run(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	defer cancelledReason(ctx, &res, &err)
	if err := job.Validate(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	if e.opts.Transfer == TransferStore {
		return e.runAgent(ctx, job)
	}
	c, err := e.create(ctx, job, contract.PartAll)
	if err != nil {
		return res, err
	}
	return e.runIn(ctx, job, c)
}

// cancelledReason makes the result of a run that failed because ctx was
// done say so (ReasonCancelled, an error wrapping ctx.Err()).
func cancelledReason(ctx context.Context, res *runner.Result, err *error) {
	if *err != nil && res.Reason == runner.ReasonError && ctx.Err() != nil {
		res.Reason = runner.ReasonCancelled
		if !errors.Is(*err, ctx.Err()) {
			*err = fmt.Errorf("%w (%w)", *err, ctx.Err())
		}
	}
}

// jobContainer is a created container of a job, not started yet.
type jobContainer struct {
	id     string
	node   string
	jobDir string // with TransferBind, the host directory behind /valohai
	// transfer is how files go in and out; user is the image's USER.
	transfer Transfer
	user     string
	digest   string
	warnings []string
	// cfg and host are what the container was created with (host without
	// its mounts), to tell whether a job can run in it.
	cfg  *container.Config
	host *container.HostConfig
}

// create makes job's container, with the given part of its /valohai tree
// in it (copied in, or in its job directory): the image is there (the pull
// policy applied), the container created, nothing started. On error it
// leaves nothing behind.
func (e *Executor) create(ctx context.Context, job runner.Job, part contract.Part) (c *jobContainer, err error) {
	c = &jobContainer{node: job.Node}
	if c.digest, c.user, err = e.ensureImage(ctx, job.Image, job.Activity); err != nil {
		return nil, fmt.Errorf("node %s: %w", job.Node, err)
	}
	if c.transfer, err = e.transfer(ctx, job.Image, job.RunID); err != nil {
		return nil, fmt.Errorf("node %s: choose how files go to the container: %w", job.Node, err)
	}
	cfg, hostCfg, warnings := containerConfig(job)
	hostCfg.NetworkMode = container.NetworkMode(e.opts.Network)
	c.warnings = warnings
	c.cfg, c.host = cfg, hostCfg
	defer func() {
		if err != nil && c != nil {
			var res runner.Result
			e.release(context.WithoutCancel(ctx), c, &res, false)
			for _, w := range res.Warnings {
				e.log.Warn(w, "node", job.Node)
			}
		}
	}()
	if c.transfer == TransferBind {
		if c.jobDir, err = prepareJobDir(e.opts.TempDir, job, !isRootUser(c.user), e.opts.Now(), part); err != nil {
			return c, fmt.Errorf("node %s: %w", job.Node, err)
		}
		withMounts := *hostCfg
		withMounts.Mounts = bindMounts(c.jobDir)
		hostCfg = &withMounts
	}
	// The create is not cut short by ctx: a create cancelled in flight may
	// still make the container, with no id to remove it by. It is bounded
	// by CleanupTimeout instead, and a ctx done meanwhile removes it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.CleanupTimeout)
	created, err := e.cli.ContainerCreate(cctx, cfg, hostCfg, nil, nil, containerName(job))
	cancel()
	if err != nil {
		return c, fmt.Errorf("node %s: create container: %w", job.Node, err)
	}
	c.id = created.ID
	if err := ctx.Err(); err != nil {
		return c, fmt.Errorf("node %s: %w", job.Node, err)
	}
	e.log.Debug("container created", "run", job.RunID, "node", job.Node, "container", shortID(c.id), "image", job.Image)
	for _, w := range created.Warnings {
		c.warnings = append(c.warnings, "docker: "+w)
	}
	if c.transfer != TransferBind {
		tell(job.Activity, "copying in")
		if err := e.copyIn(ctx, c.id, job, part); err != nil {
			return c, fmt.Errorf("node %s: %w", job.Node, err)
		}
	}
	return c, nil
}

// tell calls activity, when set.
func tell(activity func(string), what string) {
	if activity != nil {
		activity(what)
	}
}

// complete puts the given part of job's /valohai tree into the container
// made with the rest.
func (e *Executor) complete(ctx context.Context, c *jobContainer, job runner.Job, part contract.Part) error {
	tell(job.Activity, "copying in")
	if c.transfer == TransferBind {
		if err := contract.WriteDirPart(filepath.Join(c.jobDir, "valohai"), job, !isRootUser(c.user), e.opts.Now(), part); err != nil {
			return fmt.Errorf("node %s: prepare %s: %w", job.Node, c.jobDir, err)
		}
		return nil
	}
	if err := e.copyIn(ctx, c.id, job, part); err != nil {
		return fmt.Errorf("node %s: %w", job.Node, err)
	}
	return nil
}

// release removes the container, then the job directory: in the
// background when background is set (Wait waits for it), else at once,
// telling what failed in res.Warnings.
func (e *Executor) release(ctx context.Context, c *jobContainer, res *runner.Result, background bool) {
	if background && c.id != "" {
		e.removeLater(c.id, c.node, c.jobDir)
		return
	}
	if c.id != "" {
		if rmErr := e.remove(ctx, c.id); rmErr != nil {
			e.log.Warn("remove container", "node", c.node, "container", shortID(c.id), "err", rmErr)
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %s not removed: %v (sluice clean removes it)", shortID(c.id), rmErr))
		}
	}
	if c.jobDir != "" {
		if err := removeJobDir(c.jobDir); err != nil {
			e.log.Warn("remove job directory", "node", c.node, "err", err)
			res.Warnings = append(res.Warnings, fmt.Sprintf("job directory %s not removed: %v", c.jobDir, err))
		}
	}
}

// runIn starts the created container c of job, streams its logs, enforces
// the limits, waits for its exit and copies its outputs out. The container,
// and its job directory, are removed when it returns: in the background
// when the job ran its course (Wait waits for it), at once when it was
// cancelled, so that Run leaves nothing then.
func (e *Executor) runIn(ctx context.Context, job runner.Job, c *jobContainer) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError, ImageDigest: c.digest}
	res.Warnings = append(res.Warnings, c.warnings...)
	defer cancelledReason(ctx, &res, &err)
	defer func() { e.release(ctx, c, &res, ctx.Err() == nil) }()
	id, jobDir, transfer := c.id, c.jobDir, c.transfer
	log := e.log.With("run", job.RunID, "node", job.Node, "container", shortID(id))

	// Calls that must outlive a cancelled ctx long enough to clean up run on
	// opCtx; it is cancelled when Run returns.
	opCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()

	// Wait before start, so that a fast exit is not missed.
	waitC, waitErrC := e.cli.ContainerWait(opCtx, id, container.WaitConditionNextExit)
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return res, fmt.Errorf("node %s: start container: %w", job.Node, err)
	}
	res.Started = e.opts.Now()
	tell(job.Activity, "running")
	log.Debug("container started")

	var lastOutput atomic.Int64
	lastOutput.Store(time.Now().UnixNano())
	stdout := &sink{w: job.Stdout, last: &lastOutput}
	stderr := &sink{w: job.Stderr, last: &lastOutput}
	logsDone := make(chan error, 1)
	go func() { logsDone <- e.streamLogs(opCtx, id, stdout, stderr) }()
	// Every path out of Run waits for the log goroutine: no sink Write after Run.
	logsFinished := false
	finishLogs := func(grace time.Duration) {
		if logsFinished {
			return
		}
		logsFinished = true
		t := time.NewTimer(grace)
		defer t.Stop()
		var err error
		select {
		case err = <-logsDone:
		case <-t.C:
			stopOps()
			err = <-logsDone
			if err != nil {
				err = fmt.Errorf("log stream did not end %s after the container exited: %w", grace, err)
			}
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("logs: %v", err))
		}
		for _, s := range []*sink{stdout, stderr} {
			if err := s.flush(); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("log sink: %v", err))
			}
		}
	}
	defer func() {
		stopOps()
		finishLogs(0)
	}()

	var timeLimitC, noOutputC <-chan time.Time
	if job.TimeLimit > 0 {
		t := time.NewTimer(job.TimeLimit)
		defer t.Stop()
		timeLimitC = t.C
	}
	var noOutput *time.Timer
	if job.NoOutputTimeout > 0 {
		noOutput = time.NewTimer(job.NoOutputTimeout)
		defer noOutput.Stop()
		noOutputC = noOutput.C
	}

	var killed runner.Reason
	kill := func(reason runner.Reason, why string) {
		killed = reason
		timeLimitC, noOutputC = nil, nil
		log.Info("killing container", "reason", reason, "why", why)
		kctx, cancel := context.WithTimeout(opCtx, e.opts.CleanupTimeout)
		defer cancel()
		if err := e.cli.ContainerKill(kctx, id, "KILL"); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			// The wait below still ends when the container does; say why it may not.
			res.Warnings = append(res.Warnings, fmt.Sprintf("kill after %s: %v", reason, err))
		}
	}

	var exit container.WaitResponse
wait:
	for {
		select {
		case <-ctx.Done():
			res.Finished = e.opts.Now()
			res.Reason = runner.ReasonCancelled
			log.Info("cancelled; removing container")
			return res, fmt.Errorf("node %s: %w", job.Node, ctx.Err())
		case <-timeLimitC:
			kill(runner.ReasonTimeLimit, "time limit "+job.TimeLimit.String())
		case <-noOutputC:
			idle := time.Since(time.Unix(0, lastOutput.Load()))
			if idle < job.NoOutputTimeout {
				noOutput.Reset(job.NoOutputTimeout - idle)
				continue
			}
			kill(runner.ReasonNoOutputTimeout, "no output for "+idle.Round(time.Millisecond).String())
		case exit = <-waitC:
			break wait
		case err := <-waitErrC:
			return res, fmt.Errorf("node %s: wait for container: %w", job.Node, err)
		}
	}
	res.Finished = e.opts.Now()
	res.ExitCode = int(exit.StatusCode)
	if exit.Error != nil && exit.Error.Message != "" {
		return res, fmt.Errorf("node %s: wait for container: %s", job.Node, exit.Error.Message)
	}
	switch {
	case killed != "":
		res.Reason = killed
	case exit.StatusCode == 0:
		res.Reason = runner.ReasonCompleted
	default:
		res.Reason = runner.ReasonFailed
	}
	log.Debug("container exited", "code", exit.StatusCode, "reason", res.Reason)
	reason := res.Reason
	finishLogs(10 * time.Second)

	if job.OutputDir != "" {
		tell(job.Activity, "copying out")
		res.Reason = runner.ReasonError // until the outputs are out
		var (
			outs     []runner.OutputFile
			warnings []string
			err      error
		)
		if transfer == TransferBind {
			outs, warnings, err = readOutputs(filepath.Join(jobDir, "valohai", "outputs"), job.OutputDir)
			if errors.Is(err, fs.ErrPermission) {
				// sluice is not root (an explicit bind) and the step left a
				// file only root may read: the daemon can read it.
				log.Warn("outputs unreadable on the host; copying them through the API", "err", err)
				outs, warnings, err = e.copyOut(ctx, id, job.OutputDir)
			} else if err != nil {
				err = fmt.Errorf("copy outputs to %s: %w", job.OutputDir, err)
			}
		} else {
			outs, warnings, err = e.copyOut(ctx, id, job.OutputDir)
		}
		res.Warnings = append(res.Warnings, warnings...)
		for _, w := range warnings {
			log.Warn("output", "warning", w)
		}
		if err != nil {
			return res, fmt.Errorf("node %s: %w", job.Node, err)
		}
		res.Outputs = outs
		res.Reason = reason
	}
	return res, nil
}

// ensureImage applies the pull policy and returns the image's digest and
// user (its USER, empty for root).
func (e *Executor) ensureImage(ctx context.Context, ref string, activity func(string)) (string, string, error) {
	if e.opts.Pull == PullAlways {
		tell(activity, "pulling image")
		if err := e.pull(ctx, ref); err != nil {
			return "", "", err
		}
	}
	img, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		if e.opts.Pull == PullNever {
			return "", "", fmt.Errorf("image %s is not on the Docker host and the pull policy is never: %w", ref, ErrImageNotFound)
		}
		tell(activity, "pulling image")
		if err := e.pull(ctx, ref); err != nil {
			return "", "", err
		}
		img, err = e.cli.ImageInspect(ctx, ref)
	}
	if err != nil {
		return "", "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	var user string
	if img.Config != nil {
		user = img.Config.User
	}
	return imageDigest(ref, img), user, nil
}

// imageDigest names an image the Docker host has: its repository digest for
// ref's repository (the host may know it under several names), else its
// first one, else its id (an image built on the host and never pushed).
func imageDigest(ref string, img image.InspectResponse) string {
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		prefix := reference.FamiliarName(named) + "@"
		for _, d := range img.RepoDigests {
			if strings.HasPrefix(d, prefix) {
				return d
			}
		}
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

// isRootUser reports whether a container USER (user[:group]) is root.
func isRootUser(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	return name == "" || name == "root" || name == "0"
}

func (e *Executor) pull(ctx context.Context, ref string) error {
	var opts image.PullOptions
	if e.opts.RegistryAuth != nil {
		auth, err := e.opts.RegistryAuth(ctx, ref)
		if err != nil {
			return fmt.Errorf("registry credentials for %s: %w", ref, err)
		}
		if auth != nil {
			if opts.RegistryAuth, err = registry.EncodeAuthConfig(*auth); err != nil {
				return fmt.Errorf("registry credentials for %s: %w", ref, err)
			}
		}
	}
	e.log.Info("pulling image", "image", ref)
	rc, err := e.cli.ImagePull(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("pull image %s: %w", ref, err)
	}
	defer rc.Close()
	if err := drainPull(rc); err != nil {
		return fmt.Errorf("pull image %s: %w", ref, err)
	}
	return nil
}

// drainPull reads a pull's progress stream to its end: errors arrive inside
// the 200 response, as JSON messages with an "error" field.
func drainPull(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read progress: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// streamLogs copies the container's stdout and stderr, demultiplexed, to the
// sinks until the container stops or ctx is done.
//
// Following a container's logs can miss the very last message on some
// daemons (seen on 20.10: a final line without "\n", logged as the container
// stops, after the follower was closed). So the logs come with timestamps,
// and once the followed stream ends, the messages at or after the newest
// timestamp seen are read once more without following; those already
// delivered are skipped.
func (e *Executor) streamLogs(ctx context.Context, id string, stdout, stderr io.Writer) error {
	d := &logDemux{}
	read := func(opts container.LogsOptions) error {
		opts.ShowStdout, opts.ShowStderr, opts.Timestamps = true, true, true
		rc, err := e.cli.ContainerLogs(ctx, id, opts)
		if err != nil {
			return err
		}
		defer rc.Close()
		// StdCopy hands each frame, one log message, to one Write call.
		_, err = stdcopy.StdCopy(d.writer(stdout), d.writer(stderr), rc)
		return err
	}
	err := read(container.LogsOptions{Follow: true})
	if err == nil {
		since := ""
		if !d.newest.IsZero() {
			since = d.newest.Format(time.RFC3339Nano)
		}
		d.catchUp()
		err = read(container.LogsOptions{Since: since})
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// logDemux strips the timestamp the daemon puts before each log message and
// remembers the newest one, so that the catch-up read delivers only what the
// followed read did not.
type logDemux struct {
	newest     time.Time
	atNewest   int  // messages delivered with timestamp newest
	catchingUp bool // in the catch-up read
	skip       int  // in the catch-up read: messages at newest still to skip
}

func (d *logDemux) catchUp() { d.catchingUp, d.skip = true, d.atNewest }

func (d *logDemux) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		ts, msg, ok := bytes.Cut(p, []byte{' '})
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if !ok || err != nil {
			return w.Write(p) // no timestamp: deliver as is
		}
		switch {
		case d.catchingUp && t.Before(d.newest):
			return len(p), nil // delivered already (the daemon ignored since)
		case d.catchingUp && t.Equal(d.newest) && d.skip > 0:
			d.skip--
			return len(p), nil // delivered already
		case t.After(d.newest):
			d.newest, d.atNewest = t, 1
		case t.Equal(d.newest):
			d.atNewest++
		}
		if _, err := w.Write(msg); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// remove force-removes the container (killing it if it runs), within
// CleanupTimeout even when ctx is already done.
func (e *Executor) remove(ctx context.Context, id string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.CleanupTimeout)
	defer cancel()
	err := e.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// sink wraps a job's output writer: it records when output last came (for
// the no-output timeout) and keeps draining after the writer failed, so a
// broken sink never stalls the container.
type sink struct {
	w    io.Writer
	last *atomic.Int64
	err  error
}

func (s *sink) Write(p []byte) (int, error) {
	s.last.Store(time.Now().UnixNano())
	if s.w != nil && s.err == nil {
		if _, err := s.w.Write(p); err != nil {
			s.err = err
		}
	}
	return len(p), nil
}

func (s *sink) flush() error {
	if s.err != nil {
		return s.err
	}
	if f, ok := s.w.(runner.Flusher); ok {
		return f.Flush()
	}
	return nil
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// containerName is sluice-<run>-<node>-<random>, readable in `docker ps`.
func containerName(job runner.Job) string {
	clean := func(s string) string {
		s = nameUnsafe.ReplaceAllString(s, "_")
		if len(s) > 40 {
			s = s[:40]
		}
		return s
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "sluice-" + clean(job.RunID) + "-" + clean(job.Node) + "-" + hex.EncodeToString(b[:])
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
