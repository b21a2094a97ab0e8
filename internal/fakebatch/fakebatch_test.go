package fakebatch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	batchapi "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakebatch"
)

// These tests drive the Batch stand-in through the real Batch client, as
// runner/batch does; the jobs' runnables are containers of the busybox test
// image on the local Docker daemon.

const parent = "projects/ml-team/locations/us-central1"

type env struct {
	srv   *fakebatch.Server
	c     *batchapi.Client
	image string
}

func setup(t *testing.T, opts fakebatch.Options) env {
	t.Helper()
	opts.Docker = dockertest.Client(t)
	image := dockertest.Image(t)
	srv := fakebatch.Start(t, opts)
	return env{srv: srv, c: srv.Client(t), image: image}
}

// sh is a container runnable of the busybox image running script, with the
// VM directory /var/lib/fake/shared mounted at /shared.
func (e env) sh(name, script string, alwaysRun bool) *batchpb.Runnable {
	return &batchpb.Runnable{DisplayName: name, AlwaysRun: alwaysRun,
		Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
			ImageUri: e.image, Entrypoint: "/bin/sh", Commands: []string{"-c", script},
			Volumes: []string{"/var/lib/fake/shared:/shared"}}}}
}

// request is a job of runnables on machine in zones.
func request(id, machine string, zones []string, labels map[string]string, rs ...*batchpb.Runnable) *batchpb.CreateJobRequest {
	var locs []string
	for _, z := range zones {
		locs = append(locs, "zones/"+z)
	}
	return &batchpb.CreateJobRequest{Parent: parent, JobId: id, Job: &batchpb.Job{
		TaskGroups: []*batchpb.TaskGroup{{TaskCount: 1, TaskSpec: &batchpb.TaskSpec{Runnables: rs,
			Environment: &batchpb.Environment{Variables: map[string]string{"TASK_ENV": "from-the-task"}}}}},
		AllocationPolicy: &batchpb.AllocationPolicy{
			Location: &batchpb.AllocationPolicy_LocationPolicy{AllowedLocations: locs},
			Instances: []*batchpb.AllocationPolicy_InstancePolicyOrTemplate{{PolicyTemplate: &batchpb.AllocationPolicy_InstancePolicyOrTemplate_Policy{
				Policy: &batchpb.AllocationPolicy_InstancePolicy{MachineType: machine, ProvisioningModel: batchpb.AllocationPolicy_SPOT}}}},
		},
		Labels: labels,
	}}
}

func (e env) create(t *testing.T, req *batchpb.CreateJobRequest) *batchpb.Job {
	t.Helper()
	j, err := e.c.CreateJob(context.Background(), req)
	if err != nil {
		t.Fatalf("create job %s: %v", req.GetJobId(), err)
	}
	return j
}

func (e env) wait(t *testing.T, name string, states ...batchpb.JobStatus_State) *batchpb.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.srv.Wait(ctx, name, states...); err != nil {
		t.Fatalf("%v\nlogs: %+v", err, e.srv.Logs(name))
	}
	// Read it back through the API, as a client sees it.
	j, err := e.c.GetJob(ctx, &batchpb.GetJobRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (e env) noLeftovers(t *testing.T) {
	t.Helper()
	left, err := e.srv.Leftovers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the stand-in left %v", left)
	}
}

func descriptions(evs []*batchpb.StatusEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.GetDescription())
	}
	return out
}

// A failing runnable fails the task with its exit code; the runnables after
// it are skipped except the alwaysRun one, which still sees what the first
// one left in the VM directory they share.
func TestFailedRunnableAlwaysRun(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	req := request("three-runnables", "e2-standard-4", []string{"us-central1-a"}, nil,
		e.sh("write", "echo written-by-the-first > /shared/note", false),
		e.sh("fail", "echo failing >&2; exit 7", false),
		e.sh("skipped", "echo must-not-run", false),
		e.sh("always", "cat /shared/note; exit 3", true),
	)
	created := e.create(t, req)
	if created.GetStatus().GetState() != batchpb.JobStatus_QUEUED || created.GetUid() == "" || created.GetCreateTime() == nil {
		t.Errorf("created job: state %s, uid %q, create time %v; want QUEUED with a uid and a create time",
			created.GetStatus().GetState(), created.GetUid(), created.GetCreateTime())
	}
	name := parent + "/jobs/three-runnables"
	if created.GetName() != name {
		t.Errorf("name %q, want %q", created.GetName(), name)
	}
	j := e.wait(t, name, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	if st := j.GetStatus().GetState(); st != batchpb.JobStatus_FAILED {
		t.Fatalf("state %s, want FAILED", st)
	}
	evs := j.GetStatus().GetStatusEvents()
	got := descriptions(evs)
	want := []string{
		"Job state is set from QUEUED to SCHEDULED for job " + name + ".",
		"Job state is set from SCHEDULED to RUNNING for job " + name + ".",
		"Job state is set from RUNNING to FAILED for job " + name + ". Job failed due to task failure. Specifically, task with index 0 failed due to the following task event: \"Task state is updated from RUNNING to FAILED on zones/us-central1-a/instances/",
	}
	if len(got) != len(want) {
		t.Fatalf("events:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || evs[i].GetType() != "STATUS_CHANGED" || evs[i].GetEventTime() == nil {
			t.Errorf("event %d = %s %q, want STATUS_CHANGED %q...", i, evs[i].GetType(), got[i], want[i])
		}
	}
	if !strings.HasSuffix(got[2], " with exit code 7.\"") {
		t.Errorf("the failure event does not carry the exit code: %q", got[2])
	}
	if code := evs[2].GetTaskExecution().GetExitCode(); code != 7 {
		t.Errorf("task exit code %d, want 7 (the first failing runnable's)", code)
	}

	logs := e.srv.Logs("three-runnables")
	var ran []string
	for _, l := range logs {
		ran = append(ran, fmt.Sprintf("%s:%d", l.DisplayName, l.ExitCode))
	}
	if strings.Join(ran, " ") != "write:0 fail:7 always:3" {
		t.Errorf("runnables ran %v, want write:0 fail:7 always:3", ran)
	}
	if len(logs) != 3 || (logs[1].Stderr != "failing\n" || logs[2].Stdout != "written-by-the-first\n") {
		t.Errorf("logs: %+v", logs)
	}

	task, err := e.c.GetTask(context.Background(), &batchpb.GetTaskRequest{Name: name + "/taskGroups/group0/tasks/0"})
	if err != nil {
		t.Fatal(err)
	}
	var tasks []string
	for _, ev := range task.GetStatus().GetStatusEvents() {
		tasks = append(tasks, ev.GetTaskState().String()+" "+ev.GetDescription())
	}
	if task.GetStatus().GetState() != batchpb.TaskStatus_FAILED || len(tasks) != 3 ||
		!strings.HasPrefix(tasks[0], "ASSIGNED Task state is updated from PENDING to ASSIGNED on zones/us-central1-a/instances/") ||
		!strings.HasPrefix(tasks[1], "RUNNING Task state is updated from ASSIGNED to RUNNING on zones/us-central1-a/instances/") ||
		!strings.HasSuffix(tasks[2], " with exit code 7.") {
		t.Errorf("task %s, events:\n%s", task.GetStatus().GetState(), strings.Join(tasks, "\n"))
	}
	it := e.c.ListTasks(context.Background(), &batchpb.ListTasksRequest{Parent: name + "/taskGroups/group0"})
	if lt, err := it.Next(); err != nil || lt.GetName() != task.GetName() {
		t.Errorf("list tasks: %v, %v", lt.GetName(), err)
	}
	if _, err := it.Next(); !errors.Is(err, iterator.Done) {
		t.Errorf("list tasks: more than one task (%v)", err)
	}
	e.noLeftovers(t)
}

// The task's variables, the VM's (Options.Env) and Batch's own reach every
// container; a job that ends well says so in its events.
func TestEnvironmentAndSuccess(t *testing.T) {
	e := setup(t, fakebatch.Options{Env: map[string]string{"VM_ENV": "from-the-vm", "TASK_ENV": "the-task-wins"}})
	name := e.create(t, request("env", "e2-standard-4", []string{"us-central1-b"}, nil,
		e.sh("env", `echo "$VM_ENV $TASK_ENV $BATCH_TASK_INDEX $BATCH_TASK_COUNT $BATCH_JOB_UID $BATCH_JOB_ID"`, false))).GetName()
	j := e.wait(t, name, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	got := descriptions(j.GetStatus().GetStatusEvents())
	if j.GetStatus().GetState() != batchpb.JobStatus_SUCCEEDED || len(got) != 3 ||
		got[2] != "Job state is set from RUNNING to SUCCEEDED for job "+name+"." {
		t.Fatalf("state %s, events:\n%s\nlogs: %+v", j.GetStatus().GetState(), strings.Join(got, "\n"), e.srv.Logs(name))
	}
	if j.GetStatus().GetRunDuration() == nil || j.GetStatus().GetTaskGroups()["group0"].GetCounts()["SUCCEEDED"] != 1 {
		t.Errorf("status: %v", j.GetStatus())
	}
	logs := e.srv.Logs(name)
	want := fmt.Sprintf("from-the-vm from-the-task 0 1 %s env\n", j.GetUid())
	if len(logs) != 1 || logs[0].Stdout != want {
		t.Errorf("logs %+v, want stdout %q", logs, want)
	}
	e.noLeftovers(t)
}

// DeleteJob through its long-running operation kills a running job's
// container, runs no alwaysRun runnable (the VM is gone), and leaves
// nothing behind.
func TestDeleteRunningJob(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	ctx := context.Background()
	name := e.create(t, request("long", "e2-standard-4", []string{"us-central1-a"}, nil,
		e.sh("sleep", "echo started; sleep 300", false), e.sh("finish", "echo must-not-run", true))).GetName()
	e.wait(t, name, batchpb.JobStatus_RUNNING)
	deadline := time.Now().Add(time.Minute)
	for {
		left, err := e.srv.Leftovers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.Join(left, " "), "container ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container of the running job: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	started := time.Now()
	op, err := e.c.DeleteJob(ctx, &batchpb.DeleteJobRequest{Name: name, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := e.c.GetJob(ctx, &batchpb.GetJobRequest{Name: name})
	if err == nil && j.GetStatus().GetState() != batchpb.JobStatus_DELETION_IN_PROGRESS {
		t.Errorf("right after DeleteJob the job is %s, want DELETION_IN_PROGRESS", j.GetStatus().GetState())
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := op.Wait(wctx); err != nil {
		t.Fatalf("wait for the deletion: %v", err)
	}
	t.Logf("deleted in %s", time.Since(started).Round(time.Millisecond))
	if _, err := e.c.GetJob(ctx, &batchpb.GetJobRequest{Name: name}); status.Code(err) != codes.NotFound {
		t.Errorf("get a deleted job: %v, want NotFound", err)
	}
	if _, err := e.c.DeleteJob(ctx, &batchpb.DeleteJobRequest{Name: name}); status.Code(err) != codes.NotFound {
		t.Errorf("delete a deleted job: %v, want NotFound", err)
	}
	e.noLeftovers(t)
	if logs := e.srv.Logs(name); len(logs) != 1 || logs[0].DisplayName != "sleep" {
		t.Errorf("logs %+v: want the killed runnable only", logs)
	}
}

// HangQueued keeps matching jobs QUEUED while others run; deleting one
// takes it away.
func TestHangQueued(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	e.srv.HangQueued(func(j *batchpb.Job) bool { return j.GetLabels()["hang"] == "yes" })
	hung := e.create(t, request("hung", "e2-standard-4", []string{"us-central1-a"}, map[string]string{"hang": "yes"},
		e.sh("never", "echo must-not-run", false))).GetName()
	other := e.create(t, request("other", "e2-standard-4", []string{"us-central1-a"}, nil, e.sh("ok", "true", false))).GetName()
	e.wait(t, other, batchpb.JobStatus_SUCCEEDED)
	j, err := e.c.GetJob(context.Background(), &batchpb.GetJobRequest{Name: hung})
	if err != nil {
		t.Fatal(err)
	}
	if st := j.GetStatus().GetState(); st != batchpb.JobStatus_QUEUED || len(j.GetStatus().GetStatusEvents()) != 0 {
		t.Errorf("the hung job is %s with events %v, want QUEUED and none", st, descriptions(j.GetStatus().GetStatusEvents()))
	}
	op, err := e.c.DeleteJob(context.Background(), &batchpb.DeleteJobRequest{Name: hung})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.srv.Jobs()) != 1 || len(e.srv.Logs(hung)) != 0 {
		t.Errorf("jobs %v, logs of the hung one %v", e.srv.Jobs(), e.srv.Logs(hung))
	}
	e.noLeftovers(t)
}

// With a machine type exhausted in one zone, a job that may also use
// another zone runs there; a job with only that zone fails as Batch reports
// it; another machine type runs in that zone.
func TestExhaust(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	e.srv.Exhaust("g2-standard-8", "us-central1-a")
	two := e.create(t, request("two-zones", "g2-standard-8", []string{"us-central1-a", "us-central1-c"}, nil, e.sh("ok", "true", false))).GetName()
	one := e.create(t, request("one-zone", "g2-standard-8", []string{"us-central1-a"}, nil, e.sh("never", "echo must-not-run", false))).GetName()
	other := e.create(t, request("other-machine", "e2-standard-4", []string{"us-central1-a"}, nil, e.sh("ok", "true", false))).GetName()

	j := e.wait(t, two, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	if j.GetStatus().GetState() != batchpb.JobStatus_SUCCEEDED {
		t.Errorf("two zones: %s, %v", j.GetStatus().GetState(), descriptions(j.GetStatus().GetStatusEvents()))
	}
	task, err := e.c.GetTask(context.Background(), &batchpb.GetTaskRequest{Name: two + "/taskGroups/group0/tasks/0"})
	if err != nil {
		t.Fatal(err)
	}
	if d := task.GetStatus().GetStatusEvents()[0].GetDescription(); !strings.Contains(d, "on zones/us-central1-c/instances/") {
		t.Errorf("two zones: ran in %q, want us-central1-c", d)
	}

	j = e.wait(t, one, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	got := descriptions(j.GetStatus().GetStatusEvents())
	if j.GetStatus().GetState() != batchpb.JobStatus_FAILED || len(got) != 3 ||
		got[0] != "Job state is set from QUEUED to SCHEDULED for job "+one+"." ||
		!strings.Contains(got[1], "CODE_GCE_ZONE_RESOURCE_POOL_EXHAUSTED") ||
		!strings.Contains(got[1], "zones/us-central1-a' does not have enough resources") ||
		got[2] != "Job state is set from SCHEDULED to FAILED for job "+one+"." {
		t.Errorf("one zone: %s, events:\n%s", j.GetStatus().GetState(), strings.Join(got, "\n"))
	}
	if len(e.srv.Logs(one)) != 0 {
		t.Errorf("the exhausted job ran: %+v", e.srv.Logs(one))
	}
	if j := e.wait(t, other, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED); j.GetStatus().GetState() != batchpb.JobStatus_SUCCEEDED {
		t.Errorf("other machine: %s", j.GetStatus().GetState())
	}
	e.noLeftovers(t)
}

// A preemption strikes once the step has written the file it waits for:
// the step's container is killed, the alwaysRun runnable does not run, and
// the task fails with 50001 and Batch's wording. The next matching job is
// not preempted (Times: 1); a VM lost strikes with 50002.
func TestPreempt(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	e.srv.Preempt(fakebatch.Preemption{Match: func(j *batchpb.Job) bool { return j.GetLabels()["spot"] == "yes" },
		AfterOutput: "out/checkpoint", AtRunnable: 1})
	spot := map[string]string{"spot": "yes"}
	runnables := func(rest string) []*batchpb.Runnable {
		return []*batchpb.Runnable{
			e.sh("fetch", "mkdir -p /shared/out", false),
			e.sh("step", "echo epoch-1; echo saved > /shared/out/checkpoint; "+rest, false),
			e.sh("finish", "echo finished", true),
		}
	}
	first := e.create(t, request("preempted", "g2-standard-8", []string{"us-central1-a"}, spot, runnables("sleep 300")...)).GetName()
	j := e.wait(t, first, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	evs := j.GetStatus().GetStatusEvents()
	last := evs[len(evs)-1]
	if j.GetStatus().GetState() != batchpb.JobStatus_FAILED || last.GetTaskExecution().GetExitCode() != fakebatch.ExitPreempted ||
		!strings.Contains(last.GetDescription(), " due to Spot VM preemption with exit code 50001.") {
		t.Fatalf("preempted job: %s, last event %v", j.GetStatus().GetState(), last)
	}
	logs := e.srv.Logs(first)
	if len(logs) != 2 || logs[1].DisplayName != "step" || logs[1].Stdout != "epoch-1\n" {
		t.Errorf("logs %+v: want fetch and the killed step, no finish", logs)
	}

	second := e.create(t, request("not-preempted", "g2-standard-8", []string{"us-central1-a"}, spot, runnables("true")...)).GetName()
	if j := e.wait(t, second, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED); j.GetStatus().GetState() != batchpb.JobStatus_SUCCEEDED {
		t.Errorf("second job: %s, %v", j.GetStatus().GetState(), descriptions(j.GetStatus().GetStatusEvents()))
	}

	e.srv.Preempt(fakebatch.Preemption{Match: func(j *batchpb.Job) bool { return j.GetLabels()["lost"] == "yes" },
		AtRunnable: 0, Code: fakebatch.ExitVMLost})
	lost := e.create(t, request("lost", "g2-standard-8", []string{"us-central1-a"}, map[string]string{"lost": "yes"}, runnables("true")...)).GetName()
	j = e.wait(t, lost, batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED)
	evs = j.GetStatus().GetStatusEvents()
	if last := evs[len(evs)-1]; last.GetTaskExecution().GetExitCode() != fakebatch.ExitVMLost ||
		!strings.Contains(last.GetDescription(), "with exit code 50002.") {
		t.Errorf("lost VM: last event %v", last)
	}
	e.noLeftovers(t)
}

// ListJobs pages through the jobs oldest first and filters them by label
// and state.
func TestListJobs(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	e.srv.HangQueued(nil)
	ctx := context.Background()
	var want []string
	for i := range 7 {
		labels := map[string]string{"sluice-run": "r1"}
		if i%2 == 0 {
			labels["team"] = "vision"
		}
		want = append(want, e.create(t, request(fmt.Sprintf("job-%d", i), "e2-standard-4", nil, labels, e.sh("x", "true", false))).GetName())
	}
	it := e.c.ListJobs(ctx, &batchpb.ListJobsRequest{Parent: parent})
	pager := iterator.NewPager(it, 3, "")
	var pages []int
	var got []string
	for {
		var page []*batchpb.Job
		tok, err := pager.NextPage(&page)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page))
		for _, j := range page {
			got = append(got, j.GetName())
		}
		if tok == "" {
			break
		}
	}
	if fmt.Sprint(pages) != "[3 3 1]" || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pages %v of %v, want [3 3 1] of %v", pages, got, want)
	}

	count := func(filter string) (int, error) {
		it := e.c.ListJobs(ctx, &batchpb.ListJobsRequest{Parent: parent, Filter: filter})
		n := 0
		for {
			_, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			n++
		}
	}
	for filter, n := range map[string]int{
		``:                       7,
		`labels."team"="vision"`: 4,
		`labels.team="vision"`:   4,
		`labels.team!="vision"`:  3,
		`status.state="QUEUED"`:  7,
		`status.state="RUNNING"`: 0,
		`labels."sluice-run"="r1" AND labels.team="vision" AND status.state="QUEUED"`: 4,
		`name="` + want[3] + `"`: 1,
	} {
		if got, err := count(filter); err != nil || got != n {
			t.Errorf("filter %s: %d jobs (%v), want %d", filter, got, err, n)
		}
	}
	if _, err := count(`create_time > "2020"`); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a filter the stand-in cannot read: %v, want InvalidArgument", err)
	}
	if n, err := count(`labels.team="vision"`); err != nil || n != 4 {
		t.Errorf("filter again: %d, %v", n, err)
	}
	if it := e.c.ListJobs(ctx, &batchpb.ListJobsRequest{Parent: "projects/ml-team/locations/europe-west4"}); true {
		if _, err := it.Next(); !errors.Is(err, iterator.Done) {
			t.Errorf("another region lists %v", err)
		}
	}
}

// CreateJob refuses what Batch refuses, and Requests keeps every request.
func TestCreateJobValidation(t *testing.T) {
	e := setup(t, fakebatch.Options{})
	e.srv.HangQueued(nil)
	ok := func() *batchpb.CreateJobRequest {
		return request("fine", "e2-standard-4", []string{"us-central1-a", "us-central1-b"}, nil, e.sh("x", "true", false))
	}
	e.create(t, ok())
	cases := []struct {
		name string
		edit func(r *batchpb.CreateJobRequest)
		code codes.Code
	}{
		{"duplicate", func(r *batchpb.CreateJobRequest) {}, codes.AlreadyExists},
		{"job id with capitals", func(r *batchpb.CreateJobRequest) { r.JobId = "Fine" }, codes.InvalidArgument},
		{"job id ending in -", func(r *batchpb.CreateJobRequest) { r.JobId = "fine-" }, codes.InvalidArgument},
		{"job id of 64 characters", func(r *batchpb.CreateJobRequest) { r.JobId = "a" + strings.Repeat("b", 63) }, codes.InvalidArgument},
		{"parent without a location", func(r *batchpb.CreateJobRequest) { r.Parent = "projects/ml-team" }, codes.InvalidArgument},
		{"two task groups", func(r *batchpb.CreateJobRequest) {
			r.Job.TaskGroups = append(r.Job.TaskGroups, r.Job.TaskGroups[0])
		}, codes.InvalidArgument},
		{"no runnables", func(r *batchpb.CreateJobRequest) { r.Job.TaskGroups[0].TaskSpec.Runnables = nil }, codes.InvalidArgument},
		{"zones of two regions", func(r *batchpb.CreateJobRequest) {
			r.Job.AllocationPolicy.Location.AllowedLocations = []string{"zones/us-central1-a", "zones/us-west1-b"}
		}, codes.InvalidArgument},
		{"a region and a zone of another", func(r *batchpb.CreateJobRequest) {
			r.Job.AllocationPolicy.Location.AllowedLocations = []string{"regions/us-central1", "zones/us-west1-b"}
		}, codes.InvalidArgument},
		{"a script runnable", func(r *batchpb.CreateJobRequest) {
			r.Job.TaskGroups[0].TaskSpec.Runnables[0].Executable = &batchpb.Runnable_Script_{Script: &batchpb.Runnable_Script{}}
		}, codes.Unimplemented},
	}
	for _, c := range cases {
		r := ok()
		if c.name != "duplicate" {
			r.JobId = "other"
		}
		c.edit(r)
		if _, err := e.c.CreateJob(context.Background(), r); status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	r := ok()
	r.JobId = "region-and-its-zone"
	r.Job.AllocationPolicy.Location.AllowedLocations = []string{"regions/us-central1", "zones/us-central1-b"}
	e.create(t, r)
	if n := len(e.srv.Requests()); n != len(cases)+2 {
		t.Errorf("%d requests kept, want %d", n, len(cases)+2)
	}
	if n := len(e.srv.Jobs()); n != 2 {
		t.Errorf("%d jobs, want 2", n)
	}
}
