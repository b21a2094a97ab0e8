package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakebatch"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/runner/batch"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// copyBatchPipeline copies testdata/run/batch (prepare and evaluate on the
// local Docker, train on the batch environment gpu-l4) into a new directory.
func copyBatchPipeline(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "batch"))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A batch node with a directory store fails before any container or job
// starts, saying what to give instead.
func TestBatchNeedsBucket(t *testing.T) {
	dockertest.Client(t)
	dir := copyBatchPipeline(t)
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"run", "--pull", "never", "--store", filepath.Join(dir, "store"), filepath.Join(dir, "valohai.yaml")}, nil, &stdout, &stderr)
	want := `sluice.yaml:2:3: environment "gpu-l4": a batch environment needs a store its VMs can reach, a gs:// bucket; ` + filepath.Join(dir, "store") + ` is on this host (give --store gs://BUCKET/PREFIX)`
	if code != exitUsage || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, want %d and %q in\n%s", code, exitUsage, want, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "runs")); err == nil {
		t.Error("a run was recorded")
	}
}

// Without Google Cloud credentials (no GOOGLE_APPLICATION_CREDENTIALS, no
// gcloud login, no metadata server) a batch node fails before any job is
// created, naming the ways to give them.
func TestBatchNeedsCredentials(t *testing.T) {
	dockertest.Client(t)
	gcstest.Start(t, "batch-creds")
	dir := copyBatchPipeline(t)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv(BatchEmulatorEnv, "")
	var stdout, stderr strings.Builder
	start := time.Now()
	code := Main(context.Background(), []string{"run", "--pull", "never", "--store", "gs://batch-creds/ci", filepath.Join(dir, "valohai.yaml")}, nil, &stdout, &stderr)
	t.Logf("took %s", time.Since(start))
	for _, want := range []string{`sluice.yaml:2:3: environment "gpu-l4": cloud batch: no Google Cloud credentials`, "GOOGLE_APPLICATION_CREDENTIALS", "google-github-actions/auth"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, want %q in\n%s", code, want, stderr.String())
		}
	}
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
}

// batchRig is a batch pipeline's world: the Batch stand-in
// (internal/fakebatch, which runs each job's containers on the local
// Docker) and fake-gcs-server as the gs:// store, both on 127.0.0.1, and
// the pipeline's directory.
type batchRig struct {
	srv *fakebatch.Server
	st  store.Store
	url string
	dir string
	env []string
}

func newBatchRig(t *testing.T, bucket string) *batchRig {
	t.Helper()
	cli := dockertest.Client(t)
	dockertest.Image(t)
	sluiceImage := dockertest.SluiceImage(t)
	gcstest.Start(t, bucket)
	url := "gs://" + bucket + "/ci"
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	srv := fakebatch.Start(t, fakebatch.Options{Docker: cli})
	return &batchRig{srv: srv, st: st, url: url, dir: copyBatchPipeline(t), env: append(os.Environ(), "SLUICE_TEST_MAIN=1",
		BatchEmulatorEnv+"="+srv.Addr(), "SLUICE_IMAGE="+sluiceImage, "SLUICE_BATCH_POLL=100ms")}
}

// edit replaces old by new in one of the pipeline's files.
func (r *batchRig) edit(t *testing.T, file, old, new string) {
	t.Helper()
	name := filepath.Join(r.dir, file)
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", file, old)
	}
	if err := os.WriteFile(name, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *batchRig) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir, cmd.Env = r.dir, r.env
	return cmd
}

// sluice runs the binary in the pipeline's directory.
func (r *batchRig) sluice(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := r.command(ctx, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return string(out), code
}

func (r *batchRig) lastRun(t *testing.T) *store.Run {
	t.Helper()
	ctx := context.Background()
	ids, err := store.ListRuns(ctx, r.st)
	if err != nil || len(ids) == 0 {
		t.Fatalf("runs: %v %v", ids, err)
	}
	rec, err := store.GetRun(ctx, r.st, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// noneLeft fails when the stand-in still holds a job, or a container or
// volume of one.
func (r *batchRig) noneLeft(t *testing.T) {
	t.Helper()
	for _, j := range r.srv.Jobs() {
		if st := j.GetStatus().GetState(); st != batchpb.JobStatus_SUCCEEDED && st != batchpb.JobStatus_FAILED {
			t.Errorf("job %s is left %s", j.GetName(), st)
		}
	}
	left, err := r.srv.Leftovers(context.Background())
	if err != nil || len(left) > 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
}

// The headline: train runs on "Cloud Batch" (the stand-in) while prepare and
// evaluate run on the local Docker host, and files and metadata go both ways
// through the bucket. Batch has no g2-standard-8 in either allowed zone, so
// the node falls back to the next machine, a2-highgpu-1g; that try's spot VM
// is preempted once the step's first checkpoint is in the store, and the
// third try resumes from the checkpoint instead of starting over.
func TestBatchRunFallsBackAndResumesFromCheckpoint(t *testing.T) {
	r := newBatchRig(t, "batch-e2e")
	r.edit(t, "valohai.yaml", "default: 0.2", "default: 1.5") // epochs long enough to be preempted in
	r.srv.Exhaust("g2-standard-8", "us-central1-a")
	r.srv.Exhaust("g2-standard-8", "us-central1-b")
	ctx := context.Background()
	checkpointed := func() bool {
		for info, err := range r.st.List(ctx, "runs/") {
			if err == nil && strings.HasSuffix(info.Key, "/checkpoints/index.json") {
				return true
			}
		}
		return false
	}
	r.srv.Preempt(fakebatch.Preemption{
		Match:       func(j *batchpb.Job) bool { return j.GetLabels()[batch.LabelNode] == "train" },
		AtRunnable:  1,
		AfterOutput: "outputs/checkpoints/epoch",
		Ready:       checkpointed,
	})

	out, code := r.sluice(t, "run", "--pull", "never", "--store", r.url)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"CODE_GCE_ZONE_RESOURCE_POOL_EXHAUSTED",             // Batch's word on the first try
		"due to Spot VM preemption with exit code 50001",    // ... and on the second
		"train | resumed from epoch",                        // the third try read the checkpoint
		"train | epoch 3",                                   // and went on to the end
		"Job state is set from QUEUED to SCHEDULED for job", // Batch's events as sluice lines
		"evaluate | {\"sum\": 6}",                           // evaluate read train's model
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}

	rec := r.lastRun(t)
	train, eval := rec.Node("train"), rec.Node("evaluate")
	if rec.Status != store.StatusSucceeded || train.Status != store.StatusSucceeded {
		t.Fatalf("run %s, train %s", rec.Status, train.Status)
	}
	pl := train.Placement
	if pl == nil || pl.Backend != "batch" || pl.Environment != "gpu-l4" || len(pl.Tries) != 3 {
		t.Fatalf("train's placement: %+v", pl)
	}
	var outcomes, machines []string
	for _, try := range pl.Tries {
		outcomes, machines = append(outcomes, try.Outcome), append(machines, try.Machine)
	}
	if strings.Join(outcomes, " ") != "no-capacity preempted completed" {
		t.Errorf("tries ended %v, want no-capacity, preempted, completed", outcomes)
	}
	if !strings.HasPrefix(machines[0], "g2-standard-8") || !strings.HasPrefix(machines[1], "a2-highgpu-1g") || !strings.HasPrefix(machines[2], "a2-highgpu-1g") {
		t.Errorf("tries ran on %v, want g2-standard-8 then a2-highgpu-1g twice", machines)
	}
	if !pl.CostKnown || pl.Cost <= 0 {
		t.Errorf("train's estimated cost: %v (known %v)", pl.Cost, pl.CostKnown)
	}
	if from, ok := train.Metadata["resumed_from"].(float64); !ok || from < 1 {
		t.Errorf("train's metadata %v: want resumed_from of at least epoch 1", train.Metadata)
	}
	if train.Output("model.txt") == nil {
		t.Errorf("train's outputs %+v lack model.txt", train.Outputs)
	}
	if eval.Metadata["sum"] != 6.0 {
		t.Errorf("evaluate's metadata %v, want sum 6 from train's model", eval.Metadata)
	}
	if rec.Node("prepare").Placement != nil || eval.Placement != nil {
		t.Error("a local node has a remote placement")
	}
	// Every try was its own job, and no machine is left running.
	reqs := r.srv.Requests()
	if len(reqs) != 3 {
		t.Errorf("%d jobs created, want 3", len(reqs))
	}
	for _, q := range reqs {
		if n := q.GetJob().GetTaskGroups()[0].GetTaskSpec().GetMaxRetryCount(); n != 0 {
			t.Errorf("job %s: maxRetryCount %d; sluice owns the retries", q.GetJobId(), n)
		}
	}
	r.noneLeft(t)

	// show tells the story of each try; the report costs the node.
	if out, code := r.sluice(t, "show", "--store", r.url, rec.ID, "train"); code != 0 || !strings.Contains(out, "try 2: preempted on a2-highgpu-1g") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
}

// The job request carries no credential of this host: not the stand-in's
// address of a credentials file, not a token, not a key.
func TestBatchRequestCarriesNoCredential(t *testing.T) {
	r := newBatchRig(t, "batch-creds-scan")
	keyFile := filepath.Join(t.TempDir(), "key.json")
	secret := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
	if err := os.WriteFile(keyFile, []byte(`{"type":"service_account","private_key":"`+strings.ReplaceAll(secret, "\n", `\n`)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = append(r.env, "GOOGLE_APPLICATION_CREDENTIALS="+keyFile, "GITHUB_TOKEN=ghp_notarealtokenbutlookslikeone0000000", "CI_JOB_TOKEN=glcbt-secretjobtoken")
	if out, code := r.sluice(t, "run", "--pull", "never", "--store", r.url); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	reqs := r.srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("no job was created")
	}
	for _, q := range reqs {
		b, err := protojson.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, bad := range []string{keyFile, "PRIVATE KEY", "private_key", "ghp_", "glcbt-", "GOOGLE_APPLICATION_CREDENTIALS", "GITHUB_TOKEN", "CI_JOB_TOKEN", "access_token", "Bearer "} {
			if strings.Contains(text, bad) {
				t.Errorf("job %s carries %q:\n%s", q.GetJobId(), bad, text)
			}
		}
		vars := q.GetJob().GetTaskGroups()[0].GetTaskSpec().GetEnvironment().GetVariables()
		for k := range vars {
			if k != "STORAGE_EMULATOR_HOST" {
				t.Errorf("job %s passes %s to the VM; only the storage emulator's address may go", q.GetJobId(), k)
			}
		}
	}
}

// SIGTERM (a cancelled CI job) while train runs on its VM: sluice deletes
// the Batch job before it exits, and the stand-in holds no job, container
// or volume afterwards.
func TestBatchSIGTERMDeletesJobs(t *testing.T) {
	r := newBatchRig(t, "batch-sigterm")
	r.edit(t, "valohai.yaml", "default: 0.2", "default: 60")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := r.command(ctx, "run", "--pull", "never", "--store", r.url)
	seen, stdout := startUntil(t, cmd, "train | epoch 1")
	if len(r.srv.Jobs()) != 1 {
		t.Fatalf("want train's job running on the stand-in; output:\n%s", strings.Join(seen, "\n"))
	}
	_, took, _, err := sigterm(t, cmd, stdout)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want code 1", err)
	}
	// How fast is measured by bench/batch.sh; here: nothing is left.
	t.Logf("sluice stopped %s after SIGTERM", took)
	if jobs := r.srv.Jobs(); len(jobs) != 0 {
		t.Errorf("%d jobs left on the stand-in after SIGTERM: %v", len(jobs), jobs[0].GetName())
	}
	r.noneLeft(t)
	if rec := r.lastRun(t); rec.Status != store.StatusCancelled || rec.Node("train").Status != store.StatusCancelled {
		t.Errorf("run %s, train %s; want both cancelled", rec.Status, rec.Node("train").Status)
	}
}

// max-cost: once the run's estimated spend crosses it, the run is stopped,
// train's job deleted, and the output says why.
func TestBatchMaxCostStopsRun(t *testing.T) {
	r := newBatchRig(t, "batch-cost")
	r.edit(t, "valohai.yaml", "default: 0.2", "default: 60")
	r.edit(t, "sluice.yaml", "hourly-price: 0.85", "hourly-price: 3600") // a dollar a second
	r.edit(t, "sluice.yaml", "environments:", "max-cost: 2\nenvironments:")
	out, code := r.sluice(t, "run", "--pull", "never", "--store", r.url)
	if code == 0 || !strings.Contains(out, "crossed max-cost $2.00") {
		t.Fatalf("exit %d, want the run stopped at max-cost\n%s", code, out)
	}
	if jobs := r.srv.Jobs(); len(jobs) != 0 {
		t.Errorf("%d jobs left after the cost cap", len(jobs))
	}
	r.noneLeft(t)
	rec := r.lastRun(t)
	if pl := rec.Node("train").Placement; pl == nil || pl.Cost < 2 {
		t.Errorf("train's placement %+v, want a cost past the cap", pl)
	}
	if rec.Node("evaluate").Status != store.StatusSkipped {
		t.Errorf("evaluate: %s, want skipped", rec.Node("evaluate").Status)
	}
}

// gc --cloud deletes the jobs a killed CI job left once they are past their
// TTL, and keeps a young one; --dry-run only lists.
func TestBatchGCCloud(t *testing.T) {
	r := newBatchRig(t, "batch-gc")
	ctx := context.Background()
	client := r.srv.Client(t)
	now := time.Now()
	create := func(id string, created time.Time) {
		t.Helper()
		_, err := client.CreateJob(ctx, &batchpb.CreateJobRequest{Parent: "projects/ml-team/locations/us-central1", JobId: id,
			Job: &batchpb.Job{
				TaskGroups: []*batchpb.TaskGroup{{TaskCount: 1, TaskSpec: &batchpb.TaskSpec{Runnables: []*batchpb.Runnable{{
					Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
						ImageUri: dockertest.Image(t), Commands: []string{"sleep", "300"}}}}}}}},
				Labels: map[string]string{batch.LabelRun: "r1", batch.LabelNode: "train", batch.LabelRepo: "ml-team-digits",
					batch.LabelCreated: strconv.FormatInt(created.Unix(), 10), batch.LabelTTL: "3600"},
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	create("sluice-old-train-1-aaaaaa", now.Add(-2*time.Hour))
	create("sluice-young-train-1-bbbbbb", now.Add(-10*time.Minute))
	// A job that is not sluice's is never touched.
	if _, err := client.CreateJob(ctx, &batchpb.CreateJobRequest{Parent: "projects/ml-team/locations/us-central1", JobId: "someone-else",
		Job: &batchpb.Job{TaskGroups: []*batchpb.TaskGroup{{TaskCount: 1, TaskSpec: &batchpb.TaskSpec{Runnables: []*batchpb.Runnable{{
			Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{ImageUri: dockertest.Image(t), Commands: []string{"sleep", "300"}}}}}}}}}}); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		var out []string
		for _, j := range r.srv.Jobs() {
			out = append(out, j.GetName()[strings.LastIndex(j.GetName(), "/")+1:])
		}
		slices.Sort(out)
		return out
	}

	out, code := r.sluice(t, "gc", "--cloud", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete projects/ml-team/locations/us-central1/jobs/sluice-old-train-1-aaaaaa (run r1, node train") ||
		strings.Contains(out, "sluice-young") || len(names()) != 3 {
		t.Fatalf("dry run: exit %d, jobs %v\n%s", code, names(), out)
	}
	out, code = r.sluice(t, "gc", "--cloud")
	if code != 0 || !strings.Contains(out, "deleted projects/ml-team/locations/us-central1/jobs/sluice-old-train-1-aaaaaa") ||
		!strings.Contains(out, "deleted 1 job past their TTL") {
		t.Fatalf("gc --cloud: exit %d\n%s", code, out)
	}
	// gc asks Batch to delete and does not wait: the job goes once Batch
	// has taken it away.
	for deadline := time.Now().Add(30 * time.Second); len(names()) == 3 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := strings.Join(names(), " "); got != "sluice-young-train-1-bbbbbb someone-else" {
		t.Errorf("jobs after gc --cloud: %s, want the young one and the one that is not sluice's", got)
	}
}
