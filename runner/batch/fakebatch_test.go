package batch

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakebatch"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/runner/executortest"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// These tests run the Executor end to end against stand-ins: the Batch
// stand-in (internal/fakebatch), which runs each job's runnables on the
// local Docker, and fake-gcs-server (internal/gcstest) as the run's gs://
// store. The agent's runnables are the real sluice image; the step's image
// is the busybox test image.

type standIn struct {
	srv   *fakebatch.Server
	exec  *Executor
	store store.Store
	image string
}

func newStandIn(t testing.TB, env spec.BatchEnvironment) standIn {
	t.Helper()
	cli := dockertest.Client(t)
	image := dockertest.Image(t)
	sluiceImage := dockertest.SluiceImage(t)
	gcsSrv := gcstest.Start(t, "batch-runs")
	url := "gs://batch-runs/ci"
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	srv := fakebatch.Start(t, fakebatch.Options{Docker: cli})
	env.Project, env.Region = "ml-team", "us-central1"
	if env.Machine.MachineType == "" {
		env.Machine.MachineType = "e2-standard-4"
	}
	e, err := New(Options{Client: srv.Client(t), Environment: &spec.Environment{Name: "cloud", Backend: spec.BackendBatch, Batch: env},
		Store: st, StoreURL: url, AgentImage: sluiceImage, AgentEnv: map[string]string{"STORAGE_EMULATOR_HOST": gcstest.Host(gcsSrv)},
		Repository: "github.com/ml-team/digits", Poll: 100 * time.Millisecond, LogPoll: 100 * time.Millisecond,
		ImageResolver: daemonImages{cli}})
	if err != nil {
		t.Fatal(err)
	}
	return standIn{srv: srv, exec: e, store: st, image: image}
}

// daemonImages names images by their id on the local daemon: the stand-in's
// "VMs" take their images from there, not from a registry.
type daemonImages struct{ cli *client.Client }

func (d daemonImages) ImageDigest(ctx context.Context, ref string) (string, error) {
	img, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// repository puts a repository with train.sh into the store as the run's
// snapshot.
func (s standIn) repository(t testing.TB, script string) func(context.Context) (store.File, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "train.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var f store.File
	var ferr error
	return func(ctx context.Context) (store.File, error) {
		once.Do(func() {
			pr, pw := io.Pipe()
			go func() {
				tw := tar.NewWriter(pw)
				err := runner.TarTree(tw, "", dir)
				if err == nil {
					err = tw.Close()
				}
				pw.CloseWithError(err)
			}()
			d, size, err := store.PutBlob(ctx, s.store, pr)
			f, ferr = store.File{Digest: d, Size: size}, err
		})
		return f, ferr
	}
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, s)
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "20261203T101500.000000Z-" + hex.EncodeToString(b[:])
}

func (s standIn) job(t testing.TB, command, script string, out, progress *lines) runner.Job {
	return runner.Job{RunID: runID(), Node: "train", Image: s.image, Attempt: 1, Command: command,
		Parameters: map[string]any{"epochs": 2}, RepositoryBlob: s.repository(t, script),
		Stdout: runner.NewLineWriter(out.add), Stderr: runner.NewLineWriter(out.add), Progress: progress.add}
}

// A node runs on "Batch" end to end: the sluice image fetches its inputs
// and repository onto the VM, the step's image runs `sluice agent exec`,
// the alwaysRun finish leaves the record; its log, outputs and metadata
// come back through the store.
func TestStandInRunsNode(t *testing.T) {
	s := newStandIn(t, spec.BatchEnvironment{Zones: []string{"us-central1-a", "us-central1-b"}})
	ctx := context.Background()
	in, size, err := store.PutBlob(ctx, s.store, strings.NewReader("pixels\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out, progress lines
	job := s.job(t, `./train.sh && cp /valohai/inputs/data/digits.csv /valohai/outputs/copy.csv && echo '{"accuracy": 0.93}'`,
		"echo training with $(cat /valohai/config/parameters.json)\n", &out, &progress)
	job.Inputs = []runner.Input{{Name: "data", Files: []runner.InputFile{{Name: "digits.csv", Blob: in, Size: size, Digest: in.Hex(),
		Open: func() (io.ReadCloser, error) { return nil, errors.New("the host must not read a staged input") }}}}}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	res, err := s.exec.Run(rctx, job)
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s\nprogress:\n%s\nstand-in logs: %+v", err, out.text(), progress.text(), s.srv.Jobs())
	}
	if res.Reason != runner.ReasonCompleted || res.ExitCode != 0 {
		t.Fatalf("reason %s, exit %d\nlog:\n%s", res.Reason, res.ExitCode, out.text())
	}
	if !strings.Contains(out.text(), `"epochs": 2`) || !strings.Contains(out.text(), `{"accuracy": 0.93}`) {
		t.Errorf("log:\n%s", out.text())
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Path != "copy.csv" || res.Outputs[0].Digest != in.Hex() || !res.Outputs[0].Stored {
		t.Errorf("outputs %+v, want copy.csv with the input's digest", res.Outputs)
	}
	for _, want := range []string{"batch: job projects/ml-team/locations/us-central1/jobs/sluice-", "Job state is set from QUEUED to SCHEDULED",
		"Job state is set from RUNNING to SUCCEEDED"} {
		if !strings.Contains(progress.text(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.text())
		}
	}
	if !strings.HasPrefix(res.ImageDigest, "sha256:") {
		t.Errorf("image digest %q, want the image's from the resolver", res.ImageDigest)
	}
	if pl := res.Placement; pl == nil || len(pl.Tries) != 1 || pl.Tries[0].Outcome != string(runner.ReasonCompleted) {
		t.Errorf("placement %+v", res.Placement)
	}
	reqs := s.srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d jobs created, want 1", len(reqs))
	}
	var names []string
	for _, l := range s.srv.Logs(reqs[0].GetJobId()) {
		names = append(names, l.DisplayName)
		if l.ExitCode != 0 {
			t.Errorf("runnable %s exited %d:\n%s\n%s", l.DisplayName, l.ExitCode, l.Stdout, l.Stderr)
		}
	}
	if strings.Join(names, " ") != "sluice-fetch step sluice-finish" {
		t.Errorf("runnables ran %v", names)
	}
	if left, err := s.srv.Leftovers(ctx); err != nil || len(left) > 0 {
		t.Errorf("leftovers %v, %v", left, err)
	}
}

// A spot VM preempted mid-step (after the step wrote a checkpoint, once
// the agent had put it into the store) is tried again as a fresh job,
// which starts from that checkpoint; the record says it took two tries and
// why.
func TestStandInRetriesPreemptedTry(t *testing.T) {
	s := newStandIn(t, spec.BatchEnvironment{Zones: []string{"us-central1-a"}})
	ctx := context.Background()
	var out, progress lines
	job := s.job(t, "./train.sh", `ck=/valohai/outputs/checkpoints/epoch-1
if [ -f $ck ]; then
	echo "resumed from $(cat $ck)"
	echo model > /valohai/outputs/model.bin
else
	echo first try
	mkdir -p /valohai/outputs/checkpoints
	echo weights-1 > $ck
	sleep 120
fi
`, &out, &progress)
	ckptIndex := agent.CheckpointsKey(agent.CheckpointsPrefix(job))
	s.srv.Preempt(fakebatch.Preemption{
		Match:       func(j *batchpb.Job) bool { return j.GetLabels()[LabelTry] == "1" },
		AtRunnable:  1,
		AfterOutput: "outputs/checkpoints/epoch-1",
		Ready: func() bool {
			_, err := s.store.Stat(ctx, ckptIndex)
			return err == nil
		},
	})
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	res, err := s.exec.Run(rctx, job)
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s\nprogress:\n%s", err, out.text(), progress.text())
	}
	if res.Reason != runner.ReasonCompleted || res.ExitCode != 0 {
		t.Fatalf("reason %s, exit %d\nlog:\n%s\nprogress:\n%s", res.Reason, res.ExitCode, out.text(), progress.text())
	}
	if !strings.Contains(out.text(), "first try") || !strings.Contains(out.text(), "resumed from weights-1") {
		t.Errorf("the second try did not start from the checkpoint; log:\n%s", out.text())
	}
	if !strings.Contains(progress.text(), "due to Spot VM preemption with exit code 50001") ||
		!strings.Contains(progress.text(), "batch: trying again (try 2") {
		t.Errorf("progress:\n%s", progress.text())
	}
	pl := res.Placement
	if pl == nil || len(pl.Tries) != 2 || pl.Tries[0].Outcome != "preempted" || pl.Tries[1].Outcome != string(runner.ReasonCompleted) {
		t.Fatalf("placement %+v", pl)
	}
	reqs := s.srv.Requests()
	if len(reqs) != 2 || reqs[0].GetJobId() == reqs[1].GetJobId() || reqs[1].GetJob().GetLabels()[LabelTry] != "2" {
		t.Errorf("requests: %d, want a fresh job for try 2", len(reqs))
	}
	// The preempted VM ran no finish runnable.
	if logs := s.srv.Logs(reqs[0].GetJobId()); len(logs) != 2 {
		t.Errorf("the preempted try ran %d runnables, want fetch and step", len(logs))
	}
	var paths []string
	for _, f := range res.Outputs {
		paths = append(paths, f.Path)
	}
	if strings.Join(paths, " ") != "checkpoints/epoch-1 model.bin" {
		t.Errorf("outputs %v", paths)
	}
	if left, err := s.srv.Leftovers(ctx); err != nil || len(left) > 0 {
		t.Errorf("leftovers %v, %v", left, err)
	}
}

// TestExecutorConformance runs the executor conformance suite against the
// stand-ins. A run leaves nothing behind when none of its Batch jobs is
// still queued, running or being deleted and no container or volume of
// them is left on the daemon (a finished job's record stays, as in Batch;
// it holds no VM).
func TestExecutorConformance(t *testing.T) {
	s := newStandIn(t, spec.BatchEnvironment{Zones: []string{"us-central1-a"}})
	executortest.Run(t, executortest.Harness{
		New: func(t *testing.T) runner.Executor {
			e, err := New(s.exec.opts)
			if err != nil {
				t.Fatal(err)
			}
			return e
		},
		Store:       s.store,
		Image:       s.image,
		StoreNative: true,
		Leftovers: func(ctx context.Context, runID string) (int, error) {
			left, err := s.srv.Leftovers(ctx)
			if err != nil {
				return 0, err
			}
			n := 0
			for _, j := range s.srv.Jobs() {
				if j.GetLabels()[LabelRun] != labelValue(runID) {
					continue
				}
				switch j.GetStatus().GetState() {
				case batchpb.JobStatus_SUCCEEDED, batchpb.JobStatus_FAILED:
				default:
					n++
				}
				id := j.GetName()[strings.LastIndex(j.GetName(), "/")+1:]
				for _, l := range left {
					if strings.HasSuffix(l, " of job "+id) {
						n++
					}
				}
			}
			return n, nil
		},
	})
}

// A machine type Batch has no capacity for in the only allowed zone moves
// the node on to the next fallback machine; one that waits in QUEUED past
// queue-timeout does too, and the waiting job is deleted.
func TestStandInFallsBack(t *testing.T) {
	env := spec.BatchEnvironment{Zones: []string{"us-central1-a"},
		Machine: spec.BatchMachine{MachineType: "g2-standard-8", Accelerator: "nvidia-l4", AcceleratorCount: 1},
		Fallback: []spec.BatchMachine{
			{MachineType: "a2-highgpu-1g", Accelerator: "nvidia-tesla-a100", AcceleratorCount: 1},
			{MachineType: "n1-standard-8", Accelerator: "nvidia-tesla-t4", AcceleratorCount: 1},
		},
		QueueTimeout: 2 * time.Second}
	s := newStandIn(t, env)
	s.srv.Exhaust("g2-standard-8", "us-central1-a")
	s.srv.HangQueued(func(j *batchpb.Job) bool { return machineOf(j) == "a2-highgpu-1g" })
	var out, progress lines
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := s.exec.Run(rctx, s.job(t, "./train.sh", "echo trained\n", &out, &progress))
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("run: %v, %s\nprogress:\n%s", err, res.Reason, progress.text())
	}
	var got []string
	for _, tr := range res.Placement.Tries {
		got = append(got, tr.Machine+": "+tr.Outcome)
	}
	want := []string{"g2-standard-8 with 1 x nvidia-l4: no-capacity", "a2-highgpu-1g with 1 x nvidia-tesla-a100: no-capacity",
		"n1-standard-8 with 1 x nvidia-tesla-t4: completed"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tries:\n%s\nwant:\n%s\nprogress:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), progress.text())
	}
	if why := res.Placement.Tries[0].Why; !strings.Contains(why, "CODE_GCE_ZONE_RESOURCE_POOL_EXHAUSTED") {
		t.Errorf("the exhausted try says %q", why)
	}
	if res.Placement.Machine != "n1-standard-8" || !strings.Contains(out.text(), "trained") {
		t.Errorf("placement %+v, log %q", res.Placement, out.text())
	}
	for _, j := range s.srv.Jobs() {
		if machineOf(j) == "a2-highgpu-1g" {
			t.Errorf("the job that waited in QUEUED is still there: %s", j.GetName())
		}
	}
	if left, err := s.srv.Leftovers(context.Background()); err != nil || len(left) > 0 {
		t.Errorf("leftovers %v, %v", left, err)
	}
}

func machineOf(j *batchpb.Job) string {
	return j.GetAllocationPolicy().GetInstances()[0].GetPolicy().GetMachineType()
}
