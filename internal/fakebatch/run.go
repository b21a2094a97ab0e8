package fakebatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"math/big"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// job is one job of the stand-in; its fields are guarded by Server.mu,
// except those set at creation (id, zones, cancel, done).
type job struct {
	id     string
	pb     *batchpb.Job
	task   *batchpb.Task
	zones  []string // where it may run, in order
	cancel context.CancelFunc
	done   chan struct{} // closed once its containers and volumes are gone

	deleteOp string    // the deletion's operation, once deleted
	zone     string    // where it runs
	instance string    // its VM's (made-up) instance id
	running  time.Time // when it became RUNNING
}

// ended reports whether a job state is final.
func ended(st batchpb.JobStatus_State) bool {
	return st == batchpb.JobStatus_SUCCEEDED || st == batchpb.JobStatus_FAILED || st == batchpb.JobStatus_DELETION_IN_PROGRESS
}

// transitionLocked moves job j to state to with Batch's event; extra is
// appended to the event's description, exec is the failed task's execution.
func (s *Server) transitionLocked(j *job, to batchpb.JobStatus_State, extra string, exec *batchpb.TaskExecution) {
	st := j.pb.Status
	now := timestamppb.New(s.opts.Now())
	desc := fmt.Sprintf("Job state is set from %s to %s for job %s.", st.State, to, j.pb.GetName())
	if extra != "" {
		desc += " " + extra
	}
	st.StatusEvents = append(st.StatusEvents, &batchpb.StatusEvent{Type: "STATUS_CHANGED", Description: desc,
		EventTime: now, TaskExecution: exec})
	st.State = to
	if to == batchpb.JobStatus_RUNNING {
		j.running = now.AsTime()
	}
	if (to == batchpb.JobStatus_SUCCEEDED || to == batchpb.JobStatus_FAILED) && !j.running.IsZero() {
		st.RunDuration = durationpb.New(now.AsTime().Sub(j.running))
	}
	j.pb.UpdateTime = now
	s.notifyLocked()
}

// eventLocked adds a job status event that is no state change.
func (s *Server) eventLocked(j *job, typ, desc string) {
	j.pb.Status.StatusEvents = append(j.pb.Status.StatusEvents, &batchpb.StatusEvent{Type: typ, Description: desc,
		EventTime: timestamppb.New(s.opts.Now())})
	j.pb.UpdateTime = timestamppb.New(s.opts.Now())
	s.notifyLocked()
}

// taskLocked moves the task to state to with Batch's task event and
// returns the event's description; why (e.g. "due to Spot VM preemption")
// and exec describe a failure.
func (s *Server) taskLocked(j *job, to batchpb.TaskStatus_State, why string, exec *batchpb.TaskExecution) string {
	st := j.task.Status
	desc := fmt.Sprintf("Task state is updated from %s to %s on zones/%s/instances/%s", st.State, to, j.zone, j.instance)
	if why != "" {
		desc += " " + why
	}
	if exec != nil {
		desc += fmt.Sprintf(" with exit code %d", exec.GetExitCode())
	}
	desc += "."
	st.StatusEvents = append(st.StatusEvents, &batchpb.StatusEvent{Type: "STATUS_CHANGED", Description: desc,
		EventTime: timestamppb.New(s.opts.Now()), TaskExecution: exec, TaskState: to})
	st.State = to
	counts := map[string]int64{to.String(): 1}
	j.pb.Status.TaskGroups = map[string]*batchpb.JobStatus_TaskGroupStatus{"group0": {Counts: counts,
		Instances: j.pb.Status.GetTaskGroups()["group0"].GetInstances()}}
	s.notifyLocked()
	return desc
}

// live runs f under the lock unless the job is being deleted, and reports
// whether it ran.
func (s *Server) live(j *job, f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.deleteOp != "" {
		return false
	}
	f()
	return true
}

// run takes job j through its life, from QUEUED to its end, on the daemon.
func (s *Server) run(ctx context.Context, j *job) {
	defer s.wg.Done()
	defer close(j.done)
	s.mu.Lock()
	hang := slices.ContainsFunc(s.hangs, func(m func(*batchpb.Job) bool) bool { return m(j.pb) })
	machine := machineType(j.pb)
	zone, exhausted := "", []string{}
	for _, z := range j.zones {
		if s.exhausted[[2]string{machine, z}] || s.exhausted[[2]string{"", z}] {
			exhausted = append(exhausted, z)
			continue
		}
		zone = z
		break
	}
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return
	}
	project := strings.Split(j.pb.GetName(), "/")[1]
	if !s.live(j, func() {
		s.transitionLocked(j, batchpb.JobStatus_SCHEDULED, "", nil)
		if zone == "" {
			var why []string
			for _, z := range exhausted {
				why = append(why, fmt.Sprintf("The zone 'projects/%s/zones/%s' does not have enough resources available to fulfill the request. A %s VM instance is currently unavailable in the %s zone.", project, z, machine, z))
			}
			s.eventLocked(j, "", "Job gets non-retryable information Batch Error: code - CODE_GCE_ZONE_RESOURCE_POOL_EXHAUSTED, description - "+strings.Join(why, " "))
			s.transitionLocked(j, batchpb.JobStatus_FAILED, "", nil)
			return
		}
		j.zone, j.instance = zone, instanceID()
		j.pb.Status.TaskGroups = map[string]*batchpb.JobStatus_TaskGroupStatus{"group0": {Counts: map[string]int64{"PENDING": 1},
			Instances: []*batchpb.JobStatus_InstanceStatus{{MachineType: machine, ProvisioningModel: provisioning(j.pb), TaskPack: 1}}}}
	}) || zone == "" {
		return
	}
	preempt := s.armPreemption(j)

	vols, err := s.makeVolumes(ctx, j)
	defer s.removeVolumes(vols) // a no-op when removed already
	if !s.live(j, func() {
		s.taskLocked(j, batchpb.TaskStatus_ASSIGNED, "", nil)
		s.transitionLocked(j, batchpb.JobStatus_RUNNING, "", nil)
		s.taskLocked(j, batchpb.TaskStatus_RUNNING, "", nil)
	}) {
		return
	}

	spec := j.pb.GetTaskGroups()[0].GetTaskSpec()
	runCtx := ctx
	if d := spec.GetMaxRunDuration(); d != nil && d.AsDuration() > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, d.AsDuration())
		defer cancel()
	}
	failed, code, why := false, 0, ""
	if err != nil {
		failed, code = true, ExitStartFailed
		s.addLog(j, Log{Runnable: -1, ExitCode: code, Stderr: err.Error()})
	}
	for i, r := range spec.GetRunnables() {
		if failed && !r.GetAlwaysRun() {
			continue
		}
		res := s.runnable(runCtx, j, i, r, vols, preempt)
		if ctx.Err() != nil {
			return // deleted, or the server stops
		}
		if res.preempted {
			failed, code = true, preempt.Code
			why = "due to Spot VM preemption"
			if code == ExitVMLost {
				why = "due to Batch no longer receives VM updates"
			}
			break
		}
		if runCtx.Err() != nil {
			failed, code, why = true, ExitMaxRunDuration, "due to task execution exceeding the max run duration"
			break
		}
		if res.code != 0 && !r.GetIgnoreExitStatus() && !failed {
			failed, code = true, res.code
		}
	}
	// The VM is gone before the job is seen to end.
	s.removeVolumes(vols)
	s.live(j, func() {
		if !failed {
			s.taskLocked(j, batchpb.TaskStatus_SUCCEEDED, "", nil)
			s.transitionLocked(j, batchpb.JobStatus_SUCCEEDED, "", nil)
			return
		}
		exec := &batchpb.TaskExecution{ExitCode: int32(code)}
		ev := s.taskLocked(j, batchpb.TaskStatus_FAILED, why, exec)
		s.transitionLocked(j, batchpb.JobStatus_FAILED, fmt.Sprintf("Job failed due to task failure. Specifically, task with index 0 failed due to the following task event: %q", ev), exec)
	})
}

// machineType is the machine type of the job's instance policy.
func machineType(j *batchpb.Job) string {
	if in := j.GetAllocationPolicy().GetInstances(); len(in) > 0 {
		return in[0].GetPolicy().GetMachineType()
	}
	return ""
}

func provisioning(j *batchpb.Job) batchpb.AllocationPolicy_ProvisioningModel {
	if in := j.GetAllocationPolicy().GetInstances(); len(in) > 0 {
		return in[0].GetPolicy().GetProvisioningModel()
	}
	return batchpb.AllocationPolicy_STANDARD
}

// instanceID is a made-up Compute Engine instance id (19 digits).
func instanceID() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e18))
	return strconv.FormatInt(n.Int64()+1e18, 10)
}

// armPreemption picks the preemption, if any, that may strike job j.
func (s *Server) armPreemption(j *job) *preemption {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.preempts {
		if p.left > 0 && p.Match(j.pb) {
			return p
		}
	}
	return nil
}

// strike uses up one of p's preemptions and reports whether there was one
// left (another job may have taken the last).
func (s *Server) strike(p *preemption) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.left == 0 {
		return false
	}
	p.left--
	return true
}

// volumes maps each host path of the job's runnables to a Docker volume of
// the job's own; first is the first host path seen.
type volumes struct {
	byHost map[string]string
	first  string
}

// makeVolumes creates a volume for every host path the runnables mount.
func (s *Server) makeVolumes(ctx context.Context, j *job) (volumes, error) {
	v := volumes{byHost: map[string]string{}}
	for _, r := range j.pb.GetTaskGroups()[0].GetTaskSpec().GetRunnables() {
		for _, spec := range r.GetContainer().GetVolumes() {
			host, _, _ := parseVolume(spec)
			if _, ok := v.byHost[host]; ok {
				continue
			}
			name := fmt.Sprintf("sluice-fakebatch-%s-%s-%d", s.id, j.id, len(v.byHost))
			_, err := s.docker.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: s.labels(j)})
			if err != nil {
				return v, fmt.Errorf("the stand-in could not make the VM directory %s: %w", host, err)
			}
			v.byHost[host] = name
			if v.first == "" {
				v.first = host
			}
		}
	}
	return v, nil
}

func (s *Server) removeVolumes(v volumes) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range v.byHost {
		if err := s.docker.VolumeRemove(ctx, name, true); err != nil && !isNotFound(err) {
			s.log.Warn("fakebatch: remove volume", "volume", name, "err", err)
		}
	}
}

// parseVolume splits a container volume "HOST:CONTAINER[:OPTIONS]"; a lone
// path is both.
func parseVolume(spec string) (host, target string, readOnly bool) {
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 1:
		return parts[0], parts[0], false
	case 2:
		return parts[0], parts[1], false
	default:
		return parts[0], parts[1], slices.Contains(strings.Split(parts[2], ","), "ro")
	}
}

func (s *Server) labels(j *job) map[string]string {
	return map[string]string{LabelFake: "1", LabelServer: s.id, LabelJob: j.id}
}

// result is how a runnable ended.
type result struct {
	code      int
	preempted bool
}

// runnable runs runnable i of job j to its end and keeps its log.
func (s *Server) runnable(ctx context.Context, j *job, i int, r *batchpb.Runnable, vols volumes, p *preemption) result {
	c := r.GetContainer()
	lg := Log{Runnable: i, DisplayName: r.GetDisplayName(), Image: c.GetImageUri(), ExitCode: ExitStartFailed}
	defer func() { s.addLog(j, lg) }()

	env := map[string]string{}
	maps.Copy(env, s.opts.Env)
	maps.Copy(env, j.pb.GetTaskGroups()[0].GetTaskSpec().GetEnvironment().GetVariables())
	maps.Copy(env, r.GetEnvironment().GetVariables())
	env["BATCH_TASK_INDEX"] = "0"
	env["BATCH_TASK_COUNT"] = "1"
	env["BATCH_JOB_UID"] = j.pb.GetUid()
	env["BATCH_JOB_ID"] = j.id
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	cfg := &container.Config{Image: c.GetImageUri(), Cmd: c.GetCommands(), Env: envList, Labels: s.labels(j)}
	if c.GetEntrypoint() != "" {
		cfg.Entrypoint = []string{c.GetEntrypoint()}
	}
	host := &container.HostConfig{NetworkMode: "host"}
	if c.GetBlockExternalNetwork() {
		host.NetworkMode = "none"
	}
	watchDir := "" // where the preemption's path is looked for in this container
	for _, spec := range c.GetVolumes() {
		h, target, ro := parseVolume(spec)
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: vols.byHost[h], Target: target, ReadOnly: ro})
		if h == vols.first {
			watchDir = target
		}
	}
	name := fmt.Sprintf("sluice-fakebatch-%s-%s-%d", s.id, j.id, i)

	// The create is not cancelled with the job: a create the client gives up
	// on can still finish on the daemon, after the stand-in's last sweep,
	// leaving a container nobody removes. Created, it is removed below.
	bg := context.WithoutCancel(ctx)
	cctx, cancelCreate := context.WithTimeout(bg, 30*time.Second)
	created, err := s.docker.ContainerCreate(cctx, cfg, host, nil, nil, name)
	cancelCreate()
	if err != nil {
		lg.Stderr = fmt.Sprintf("the stand-in could not create the container: %v", err)
		return result{code: ExitStartFailed}
	}
	id := created.ID
	defer func() {
		rctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if err := s.docker.ContainerRemove(rctx, id, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			s.log.Warn("fakebatch: remove container", "container", name, "err", err)
		}
	}()
	waitC, waitErrC := s.docker.ContainerWait(bg, id, container.WaitConditionNextExit)
	if err := s.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		lg.Stderr = fmt.Sprintf("the stand-in could not start the container: %v", err)
		return result{code: ExitStartFailed}
	}
	s.log.Debug("fakebatch: runnable started", "job", j.id, "runnable", i, "container", name)

	var tick <-chan time.Time
	every := time.NewTicker(100 * time.Millisecond)
	defer every.Stop()
	if p != nil && i >= p.AtRunnable && (p.AfterOutput == "" || watchDir != "") {
		tick = every.C
		if p.AfterOutput == "" && i == p.AtRunnable {
			fire := make(chan time.Time, 1)
			fire <- time.Now()
			tick = fire
		}
	}
	res := result{code: -1}
	kill := func() {
		kctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if err := s.docker.ContainerKill(kctx, id, "KILL"); err != nil && !isNotFound(err) && !cerrdefs.IsConflict(err) {
			s.log.Warn("fakebatch: kill container", "container", name, "err", err)
		}
	}
wait:
	for {
		select {
		case w := <-waitC:
			res.code = int(w.StatusCode)
			if w.Error != nil {
				lg.Stderr += w.Error.Message
			}
			break wait
		case err := <-waitErrC:
			lg.Stderr += fmt.Sprintf("the stand-in lost the container: %v", err)
			break wait
		case <-ctx.Done():
			kill()
			ctx = bg
		case <-tick:
			if p.Ready != nil && !p.Ready() {
				if p.AfterOutput == "" {
					tick = every.C
				}
				continue
			}
			if p.AfterOutput != "" {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.docker.ContainerStatPath(sctx, id, path.Join(watchDir, p.AfterOutput))
				cancel()
				if err != nil {
					continue
				}
			}
			tick = nil
			if s.strike(p) {
				res.preempted = true
				s.log.Debug("fakebatch: preempting", "job", j.id, "runnable", i)
				kill()
			}
		}
	}
	lg.ExitCode = res.code
	lctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	if rc, err := s.docker.ContainerLogs(lctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		var out, errb bytes.Buffer
		_, _ = stdcopy.StdCopy(&out, &errb, rc)
		rc.Close()
		lg.Stdout, lg.Stderr = out.String(), errb.String()+lg.Stderr
	}
	return res
}

func (s *Server) addLog(j *job, l Log) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs[j.id] = append(s.logs[j.id], l)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
