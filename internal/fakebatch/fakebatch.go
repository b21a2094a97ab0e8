// Package fakebatch is the tests' stand-in for Google Cloud Batch: a gRPC
// server on 127.0.0.1 that speaks Batch's v1 API (batchpb.BatchService, and
// google.longrunning.Operations for the deletion's long-running operation),
// so that the real client, cloud.google.com/go/batch/apiv1, reaches it
// through option.WithEndpoint, insecure transport credentials and no
// authentication (ClientOptions). It is not Cloud Batch: no VM is made, no
// GPU driver installed, nothing is billed. It runs each job's one task on
// this machine's Docker daemon, as Batch runs it on a VM:
//
//   - the task's container runnables in order, each a container of its
//     image (present on the daemon: the stand-in pulls nothing), with its
//     entrypoint, commands, volumes and the task's environment
//     (BATCH_TASK_INDEX, BATCH_TASK_COUNT, BATCH_JOB_UID and BATCH_JOB_ID
//     added), on the host's network, so that servers on 127.0.0.1 (say,
//     fake-gcs-server) are reachable from them;
//   - a host path in a runnable's volumes ("/var/lib/x:/data") stands for a
//     directory on the job's VM: it is a Docker volume of that job alone, so
//     concurrent jobs never share it, shared by the job's runnables and
//     removed when the job ends;
//   - a runnable that exits non-zero fails the task, whose exit code is then
//     the first failing runnable's; the runnables after it are skipped,
//     except those with alwaysRun;
//   - the job moves QUEUED -> SCHEDULED -> RUNNING -> SUCCEEDED or FAILED,
//     and its task PENDING -> ASSIGNED -> RUNNING -> SUCCEEDED or FAILED, each
//     change a status event worded as Batch words it; a failed task's exit
//     code is in the job's last event's TaskExecution;
//   - DeleteJob returns a long-running operation; the job is
//     DELETION_IN_PROGRESS while its containers are killed and its volumes
//     removed, then it is gone and the operation is done.
//
// Tests steer it with HangQueued (jobs that never leave QUEUED), Exhaust (a
// machine type without capacity in a zone) and Preempt (a spot VM taken
// away), and inspect it with Requests, Jobs, Logs, Wait and Leftovers.
//
// What is not there: CancelJob and the other Operations methods answer
// Unimplemented; script and barrier runnables, background runnables,
// task volumes (GCS, NFS, disks), secret and encrypted variables and more
// than one task answer Unimplemented at CreateJob; a runnable's timeout and
// container options are not enforced. ListJobs' filter takes labels."k"="v"
// (or labels.k="v"), status.state="STATE", name="..." and uid="...", with =
// or !=, joined by AND. A job whose allowedLocations name a region
// (regions/R) may run in its zones R-a, R-b and R-c.
package fakebatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchapi "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Labels of every container and volume the stand-in makes.
const (
	LabelFake   = "sluice-fakebatch"        // "1"
	LabelServer = "sluice-fakebatch-server" // the Server's own id
	LabelJob    = "sluice-fakebatch-job"    // the job id
)

// Exit codes Batch reserves for what is not a runnable's doing.
const (
	ExitPreempted      = 50001 // the spot VM was preempted
	ExitVMLost         = 50002 // Batch no longer hears from the VM
	ExitMaxRunDuration = 50005 // the task ran past its maxRunDuration
	// ExitStartFailed is a runnable whose container could not be created or
	// started (say, its image is not on the daemon), as `docker run` says.
	ExitStartFailed = 125
)

// Options configure a Server.
type Options struct {
	// Docker is the daemon the jobs' containers run on; nil means a client
	// from the environment (DOCKER_HOST, default the local socket), closed
	// when the test ends.
	Docker client.APIClient
	// Env is added to every container, as a VM's own environment would be
	// (say STORAGE_EMULATOR_HOST); the task's variables win over it.
	Env map[string]string
	// Logger receives what the stand-in does, at debug level; nil discards.
	Logger *slog.Logger
	// Now is the clock of create times and event times; nil means time.Now.
	Now func() time.Time
}

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	docker   client.APIClient
	log      *slog.Logger
	id       string
	addr     string
	grpc     *grpc.Server
	rootCtx  context.Context
	stopJobs context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	jobs      map[string]*job // by name
	ops       map[string]*longrunningpb.Operation
	requests  []*batchpb.CreateJobRequest
	hangs     []func(*batchpb.Job) bool
	exhausted map[[2]string]bool // machine type, zone
	preempts  []*preemption
	logs      map[string][]Log // by job id; kept after the job is gone
	changed   chan struct{}    // closed and replaced on every change
	closed    bool
}

// Log is what one runnable's container wrote, kept after the container is
// gone.
type Log struct {
	Runnable    int // index in the task's runnables
	DisplayName string
	Image       string
	ExitCode    int
	Stdout      string
	Stderr      string
}

// Preemption tells the stand-in to take spot VMs away: the container of the
// runnable running then is killed, no further runnable runs (alwaysRun ones
// neither: the VM is gone), and the task fails with Code and Batch's
// preemption wording.
type Preemption struct {
	// Match picks the jobs; nil means every job.
	Match func(*batchpb.Job) bool
	// Times is how many jobs are preempted; 0 means 1.
	Times int
	// AfterOutput, when set, waits until this path exists below the job's
	// first volume directory (the one a runnable's first volume maps; with
	// sluice, /valohai), e.g. "outputs/checkpoints/epoch-1".
	AfterOutput string
	// AtRunnable is the index of the first runnable during which the VM may
	// be preempted: without AfterOutput, as soon as that runnable's
	// container has started; with it, once the path exists while that
	// runnable or a later one runs.
	AtRunnable int
	// Code is the task's exit code: 50001 (ExitPreempted, the default) or
	// 50002 (ExitVMLost).
	Code int
	// Ready, when set, must also say yes before the preemption strikes (say,
	// once a checkpoint is in the store); it is asked every 100 ms.
	Ready func() bool
}

type preemption struct {
	Preemption
	left int
}

// Start starts a stand-in on 127.0.0.1 and stops it when the test ends:
// the jobs' containers are killed, their volumes removed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(opts)
	if err != nil {
		t.Fatalf("start the Batch stand-in: %v", err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Errorf("stop the Batch stand-in: %v", err)
		}
	})
	return s
}

func start(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, docker: opts.Docker, log: log, id: randomHex(6),
		jobs: map[string]*job{}, ops: map[string]*longrunningpb.Operation{}, exhausted: map[[2]string]bool{},
		logs: map[string][]Log{}, changed: make(chan struct{})}
	if s.docker == nil {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		s.docker = cli
	}
	// The client negotiates its API version on its first request, unguarded
	// against requests made at the same time: have it done now, before the
	// jobs' goroutines share the client.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s.docker.NegotiateAPIVersion(ctx)
	cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.closeDocker()
		return nil, err
	}
	s.addr = lis.Addr().String()
	s.rootCtx, s.stopJobs = context.WithCancel(context.Background())
	s.grpc = grpc.NewServer()
	batchpb.RegisterBatchServiceServer(s.grpc, &batchService{s: s})
	longrunningpb.RegisterOperationsServer(s.grpc, &opsService{s: s})
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// close stops serving, kills every job's containers and removes what the
// stand-in left on the daemon.
func (s *Server) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.grpc.Stop()
	s.stopJobs()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-time.After(time.Minute):
		errs = append(errs, errors.New("jobs still running a minute after they were told to stop"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.removeAll(ctx); err != nil {
		errs = append(errs, err)
	}
	// Every job has ended: what is still there now was leaked.
	if left, err := s.Leftovers(ctx); err != nil || len(left) > 0 {
		errs = append(errs, fmt.Errorf("left on the daemon after the stand-in stopped: %v %v", left, err))
	}
	s.closeDocker()
	return errors.Join(errs...)
}

func (s *Server) closeDocker() {
	if s.opts.Docker == nil {
		if c, ok := s.docker.(*client.Client); ok {
			_ = c.Close()
		}
	}
}

// removeAll force-removes the containers and volumes of this server.
func (s *Server) removeAll(ctx context.Context) error {
	f := filters.NewArgs(filters.Arg("label", LabelServer+"="+s.id))
	var errs []error
	cs, err := s.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list the stand-in's containers: %w", err)
	}
	for _, c := range cs {
		if err := s.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
		}
	}
	vs, err := s.docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list the stand-in's volumes: %w", err))...)
	}
	for _, v := range vs.Volumes {
		if err := s.docker.VolumeRemove(ctx, v.Name, true); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Addr is the server's host:port, the endpoint for the client.
func (s *Server) Addr() string { return s.addr }

// ClientOptions point the real Batch client at the stand-in: its endpoint,
// plaintext gRPC, no credentials.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
}

// Client is the real Batch client (cloud.google.com/go/batch/apiv1) on the
// stand-in, closed when the test ends.
func (s *Server) Client(t testing.TB) *batchapi.Client {
	t.Helper()
	c, err := batchapi.NewClient(context.Background(), s.ClientOptions()...)
	if err != nil {
		t.Fatalf("batch client for the stand-in: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// HangQueued makes the jobs created from now on that match stay QUEUED
// until they are deleted, as a job does that Batch finds no VM for; nil
// matches every job.
func (s *Server) HangQueued(match func(*batchpb.Job) bool) {
	if match == nil {
		match = func(*batchpb.Job) bool { return true }
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangs = append(s.hangs, match)
}

// Exhaust takes away the capacity for machineType in zone (say
// "us-central1-a"); an empty machineType means every machine type. A job
// whose allowed zones are all exhausted for its machine type fails as Batch
// reports it (CODE_GCE_ZONE_RESOURCE_POOL_EXHAUSTED); a job with another
// allowed zone runs there.
func (s *Server) Exhaust(machineType, zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exhausted[[2]string{machineType, zone}] = true
}

// Preempt arranges for matching jobs' spot VMs to be taken away (see
// Preemption). Only jobs that start running after the call are affected.
func (s *Server) Preempt(p Preemption) {
	if p.Match == nil {
		p.Match = func(*batchpb.Job) bool { return true }
	}
	if p.Times <= 0 {
		p.Times = 1
	}
	if p.Code == 0 {
		p.Code = ExitPreempted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.preempts = append(s.preempts, &preemption{Preemption: p, left: p.Times})
}

// Requests returns every CreateJobRequest received, refused ones too, in
// order, as copies.
func (s *Server) Requests() []*batchpb.CreateJobRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*batchpb.CreateJobRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = proto.Clone(r).(*batchpb.CreateJobRequest)
	}
	return out
}

// Jobs returns copies of the jobs there are now, oldest first.
func (s *Server) Jobs() []*batchpb.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked("")
}

// sortedLocked returns copies of the jobs (of parent, unless empty or "-"
// for its location) by create time, then name.
func (s *Server) sortedLocked(parent string) []*batchpb.Job {
	var out []*batchpb.Job
	for _, j := range s.jobs {
		if parent != "" && !inParent(j.pb.GetName(), parent) {
			continue
		}
		out = append(out, proto.Clone(j.pb).(*batchpb.Job))
	}
	slices.SortFunc(out, func(a, b *batchpb.Job) int {
		if c := a.GetCreateTime().AsTime().Compare(b.GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	return out
}

// Logs returns what each runnable of job jobID (its id or its full name)
// wrote, in the order they ran. Logs are kept after the job is deleted.
func (s *Server) Logs(jobID string) []Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.logs[shortID(jobID)])
}

// Wait waits until job name (its full name, or its id) is in one of states
// (any state when none is given) and returns a copy of it. It fails when ctx
// ends first or the job is not there (any more): NotFound.
func (s *Server) Wait(ctx context.Context, name string, states ...batchpb.JobStatus_State) (*batchpb.Job, error) {
	for {
		s.mu.Lock()
		j := s.findLocked(name)
		changed := s.changed
		var pb *batchpb.Job
		if j != nil {
			pb = proto.Clone(j.pb).(*batchpb.Job)
		}
		s.mu.Unlock()
		if pb == nil {
			return nil, status.Errorf(codes.NotFound, "job %s not found", name)
		}
		if len(states) == 0 || slices.Contains(states, pb.GetStatus().GetState()) {
			return pb, nil
		}
		select {
		case <-ctx.Done():
			return pb, fmt.Errorf("job %s is %s, waited for %v: %w", name, pb.GetStatus().GetState(), states, ctx.Err())
		case <-changed:
		}
	}
}

// Leftovers lists the containers and volumes of this stand-in still on the
// daemon, as "container NAME of job ID" and "volume NAME of job ID". A job
// that ended, or was deleted, leaves none.
func (s *Server) Leftovers(ctx context.Context) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", LabelServer+"="+s.id))
	cs, err := s.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list the stand-in's containers: %w", err)
	}
	var out []string
	for _, c := range cs {
		name := c.ID[:12]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, "container "+name+" of job "+c.Labels[LabelJob])
	}
	vs, err := s.docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return out, fmt.Errorf("list the stand-in's volumes: %w", err)
	}
	for _, v := range vs.Volumes {
		out = append(out, "volume "+v.Name+" of job "+v.Labels[LabelJob])
	}
	return out, nil
}

// findLocked finds a job by its name or id.
func (s *Server) findLocked(name string) *job {
	if j, ok := s.jobs[name]; ok {
		return j
	}
	if !strings.Contains(name, "/") {
		for _, j := range s.jobs {
			if j.id == name {
				return j
			}
		}
	}
	return nil
}

// notifyLocked wakes the waiters.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func shortID(name string) string {
	if i := strings.LastIndex(name, "/jobs/"); i >= 0 {
		name = name[i+len("/jobs/"):]
	}
	return name
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
