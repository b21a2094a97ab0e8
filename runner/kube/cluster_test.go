package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/internal/kubetest"
	"github.com/sluice-ci/sluice/internal/kubetest/dockerlet"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/runner/executortest"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// These tests run the Executor against a real control plane
// (internal/kubetest: the real API server, Job controller and scheduler),
// with fake-gcs-server (internal/gcstest) as the run's gs:// store. Pods
// go to one of two kinds of node, by the environment's node selector:
//
//   - the Docker kubelet stand-in (dockerlet), which really runs them: the
//     sluice image fetches, the busybox test image runs the agent. The
//     conformance suite runs there.
//   - kwok's fake nodes, which run nothing and move pods through their
//     phases as pod annotations say (evicted, OOM-killed, image errors,
//     a lost node). Where a test needs the agent's exit record, the test
//     plays the agent (playAgent): it writes the record a real agent would
//     have written, then lets the pod end.

// pools of kwok nodes, by the label "pool".
const (
	poolGPU  = "gpu"  // kwok-gpu: 8 nvidia.com/gpu
	poolCPU  = "cpu"  // kwok-cpu: no GPU
	poolLose = "lose" // kwok-lose-a, kwok-lose-b: 1 GPU each, for the lost node
)

type cluster struct {
	c       *kubetest.Cluster
	cs      kubernetes.Interface
	st      store.Store
	url     string
	gcsHost string
	sluice  string // the sluice image
	image   string // the step's image (busybox)
	images  runner.ImageResolver
}

// daemonImages names images by their id on the local daemon: the Docker
// node takes its images from there, not from a registry.
type daemonImages struct{ cli *client.Client }

func (d daemonImages) ImageDigest(ctx context.Context, ref string) (string, error) {
	img, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	cli := dockertest.Client(t)
	image := dockertest.Image(t)
	sluice := dockertest.SluiceImage(t)
	gcsSrv := gcstest.Start(t, "kube-runs")
	url := "gs://kube-runs/ci"
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(name string) map[string]string { return map[string]string{"pool": name} }
	c := kubetest.Start(t, kubetest.Options{Nodes: []kubetest.Node{
		{Name: "kwok-gpu", GPUs: 8, Labels: map[string]string{"pool": poolGPU, instanceTypeLabel: "g2-standard-8"}},
		{Name: "kwok-cpu", Labels: pool(poolCPU)},
		{Name: "kwok-lose-a", GPUs: 1, Labels: pool(poolLose)},
		{Name: "kwok-lose-b", GPUs: 1, Labels: pool(poolLose)},
	}})
	// The Docker node offers 2 GPUs that it does not have, for a GPU
	// node's pod to be scheduled there and run.
	dockerlet.Start(t, c.Clientset, dockerlet.Options{Docker: cli,
		Capacity: corev1.ResourceList{kubetest.DefaultGPUResource: resource.MustParse("2")}})
	return &cluster{c: c, cs: c.Clientset, st: st, url: url, gcsHost: gcstest.Host(gcsSrv), sluice: sluice, image: image, images: daemonImages{cli}}
}

// executor makes an executor for the environment cfg.
func (x *cluster) executor(t testing.TB, cfg spec.KubeEnvironment) *Executor {
	t.Helper()
	e, err := New(x.options(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (x *cluster) options(cfg spec.KubeEnvironment) Options {
	return Options{Client: x.cs, Cluster: "kubetest", Environment: &spec.Environment{Name: "k8s", Backend: spec.BackendKubernetes, Kube: cfg},
		Store: x.st, StoreURL: x.url, AgentImage: x.sluice, AgentEnv: map[string]string{"STORAGE_EMULATOR_HOST": x.gcsHost},
		Repository: "github.com/ml-team/digits", ImageResolver: x.images, LogPoll: 100 * time.Millisecond, DeleteTimeout: 10 * time.Second}
}

// leftovers counts the run's Jobs that have not finished and its pods that
// have not ended (a finished Job stays until its ttlSecondsAfterFinished,
// as in a cluster; it holds no node).
func (x *cluster) leftovers(ctx context.Context, runID string) (int, error) {
	sel := LabelRun + "=" + labelValue(runID)
	jobs, err := x.cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range jobs.Items {
		if finished(&j) == nil {
			n++
		}
	}
	pods, err := x.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, err
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n, nil
}

// gone says what is left of the run's Jobs and pods at all.
func (x *cluster) gone(t testing.TB, runID string) {
	t.Helper()
	sel := LabelRun + "=" + labelValue(runID)
	jobs, err := x.cs.BatchV1().Jobs("").List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := x.cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items)+len(pods.Items) > 0 {
		t.Errorf("left behind: %d Jobs, %d pods", len(jobs.Items), len(pods.Items))
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

// kwokJob is a node for kwok's nodes: nothing runs it, its image is never
// pulled.
func (x *cluster) kwokJob(out, progress *lines) runner.Job {
	return runner.Job{RunID: runID(), Node: "train", Image: x.image, Attempt: 1, Command: "python train.py",
		Stdout: runner.NewLineWriter(out.add), Stderr: runner.NewLineWriter(out.add), Progress: progress.add}
}

// playAgent stands in for the agent on kwok's nodes, which run nothing:
// each pod of job's run that starts running is handed to act once, with
// its number (from 1), until the test ends.
func (x *cluster) playAgent(t testing.TB, job runner.Job, act func(n int, p *corev1.Pod)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		seen := map[string]bool{}
		for ctx.Err() == nil {
			list, err := x.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: LabelRun + "=" + labelValue(job.RunID)})
			if err == nil {
				for i := range list.Items {
					p := &list.Items[i]
					if p.Status.Phase == corev1.PodRunning && !seen[p.Name] && p.DeletionTimestamp == nil {
						seen[p.Name] = true
						act(len(seen), p)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// finishPod plays the agent's end of a try: a log line and the exit record
// below the pod's prefix, then the pod's containers exit with code.
func (x *cluster) finishPod(t testing.TB, job runner.Job, p *corev1.Pod, code int, line string) {
	ctx := context.Background()
	prefix := agent.TryPrefix(agent.AttemptPrefix(job), p.Name)
	if _, err := x.st.Put(ctx, agent.LogKey(prefix, 1), strings.NewReader("o "+line+"\n")); err != nil {
		t.Error(err)
	}
	reason := runner.ReasonCompleted
	if code != 0 {
		reason = runner.ReasonFailed
	}
	now := time.Now()
	if err := agent.PutExit(ctx, x.st, prefix, &agent.Exit{ExitCode: code, Reason: reason, Started: now.Add(-time.Second), Finished: now,
		Outputs: []runner.OutputFile{}, LogChunks: 1, Phase: "exec"}); err != nil {
		t.Error(err)
	}
	ann := map[string]string{kubetest.DurationAnnotation: "0s"}
	if code != 0 {
		ann[kubetest.ExitCodeAnnotation] = fmt.Sprint(code)
	}
	x.annotate(t, p, ann)
}

func (x *cluster) annotate(t testing.TB, p *corev1.Pod, ann map[string]string) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := x.cs.CoreV1().Pods(p.Namespace).Patch(context.Background(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("annotate pod %s: %v", p.Name, err)
	}
}

func runCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func kwok(pool string, more spec.KubeEnvironment) spec.KubeEnvironment {
	more.NodeSelector = map[string]string{"pool": pool}
	return more
}

// TestCluster shares one control plane between the tests that need one
// (it takes seconds to start).
func TestCluster(t *testing.T) {
	x := startCluster(t)

	t.Run("Conformance", func(t *testing.T) {
		t.Parallel()
		opts := x.options(spec.KubeEnvironment{NodeSelector: map[string]string{kubetest.NodeTypeLabel: "docker"}, QueueTimeout: time.Minute})
		executortest.Run(t, executortest.Harness{
			New: func(t *testing.T) runner.Executor {
				e, err := New(opts)
				if err != nil {
					t.Fatal(err)
				}
				return e
			},
			Store:       x.st,
			Image:       x.image,
			StoreNative: true,
			Leftovers:   x.leftovers,
		})
	})

	t.Run("GoldenJobAccepted", func(t *testing.T) { t.Parallel(); testGoldenAccepted(t, x) })
	t.Run("QueueTimeout", func(t *testing.T) { t.Parallel(); testQueueTimeout(t, x) })
	t.Run("Evicted", func(t *testing.T) { t.Parallel(); testEvicted(t, x) })
	t.Run("EvictedPastRetries", func(t *testing.T) { t.Parallel(); testEvictedPastRetries(t, x) })
	t.Run("ExitCode", func(t *testing.T) { t.Parallel(); testExitCode(t, x) })
	t.Run("ImagePull", func(t *testing.T) { t.Parallel(); testImagePull(t, x) })
	t.Run("ImagePullDocker", func(t *testing.T) { t.Parallel(); testImagePullDocker(t, x) })
	t.Run("OOMKilled", func(t *testing.T) { t.Parallel(); testOOMKilled(t, x) })
	t.Run("LostNode", func(t *testing.T) { t.Parallel(); testLostNode(t, x) })
	t.Run("Cancel", func(t *testing.T) { t.Parallel(); testCancelKwok(t, x) })
	t.Run("LeastPrivilege", func(t *testing.T) { t.Parallel(); testLeastPrivilege(t, x) })
	t.Run("OldAgent", func(t *testing.T) { t.Parallel(); testOldAgent(t, x) })
	t.Run("CancelDocker", func(t *testing.T) { t.Parallel(); testCancelDocker(t, x) })
	t.Run("RunsNode", func(t *testing.T) { t.Parallel(); testRunsNode(t, x) })
}

// The golden GPU Job is accepted by the real API server as it is (the
// fake clientset would accept Jobs the server rejects), and the Job
// controller makes its pod from it.
func testGoldenAccepted(t *testing.T, x *cluster) {
	ctx := context.Background()
	data, err := os.ReadFile(goldenGPUJob)
	if err != nil {
		t.Fatal(err)
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(data, &job); err != nil {
		t.Fatal(err)
	}
	// What the Job names must exist: its namespace, service account and
	// priority class (the admission plugins check).
	if _, err := x.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: job.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: job.Spec.Template.Spec.ServiceAccountName, Namespace: job.Namespace}}
	if _, err := x.cs.CoreV1().ServiceAccounts(job.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: job.Spec.Template.Spec.PriorityClassName}, Value: 100}
	if _, err := x.cs.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := x.cs.BatchV1().Jobs(job.Namespace).Create(ctx, &job, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server rejects the golden Job: %v", err)
	}
	if r := created.Spec.PodFailurePolicy.Rules; len(r) != 3 || *created.Spec.BackoffLimit != 2 ||
		created.Spec.Template.Spec.Containers[0].Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("the server changed the Job: %+v", created.Spec)
	}
	// The Job controller makes a pod of it, which no node here takes (no
	// GKE accelerator label): the scheduler says why.
	deadline := time.Now().Add(time.Minute)
	for {
		pods, err := x.cs.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/controller-uid=" + string(created.UID)})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 1 && podCondition(&pods.Items[0], corev1.PodScheduled).Reason == corev1.PodReasonUnschedulable {
			p := pods.Items[0]
			if q := p.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"]; q.Value() != 1 || p.Spec.PriorityClassName != "ci-low" {
				t.Errorf("pod %s: gpu %s, priority class %q", p.Name, q.String(), p.Spec.PriorityClassName)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no unschedulable pod of the golden Job within a minute: %d pods", len(pods.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := x.executor(t, gpuEnvironment().Kube)
	e.deleteJob(ctx, created, func(string, ...any) {})
	if _, err := x.cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{}); err == nil {
		t.Error("the golden Job is still there after deleteJob")
	}
}

// A GPU request that no node can take fails after queue-timeout (counted
// from the pod's creation) with the scheduler's reason, and the Job goes.
func testQueueTimeout(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolCPU, spec.KubeEnvironment{GPUs: 1, QueueTimeout: 3 * time.Second}))
	job := x.kwokJob(&out, &progress)
	start := time.Now()
	res, err := e.Run(runCtx(t), job)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("no error; result %+v", res)
	}
	msg := err.Error()
	for _, want := range []string{"queue-timeout 3s", "0/5 nodes are available", "Insufficient nvidia.com/gpu"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if took < 3*time.Second {
		t.Errorf("failed after %s, before queue-timeout", took)
	}
	if !strings.Contains(progress.text(), "is waiting for a node: 0/5 nodes are available") {
		t.Errorf("progress:\n%s", progress.text())
	}
	if pl := res.Placement; pl == nil || len(pl.Tries) != 1 || pl.Tries[0].Outcome != "no-capacity" ||
		pl.Accelerator != "nvidia.com/gpu" || pl.AcceleratorCount != 1 {
		t.Errorf("placement %+v", res.Placement)
	}
	x.gone(t, job.RunID)
}

// An evicted pod is tried again by the Job controller without counting as
// a failure of the Job; the node succeeds with the second pod, whose log
// and exit record are its own.
func testEvicted(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{GPUs: 1, Retries: new(1),
		Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	job := x.kwokJob(&out, &progress)
	x.playAgent(t, job, func(n int, p *corev1.Pod) {
		switch n {
		case 1:
			// The first pod's agent logged a line before the eviction.
			prefix := agent.TryPrefix(agent.AttemptPrefix(job), p.Name)
			if _, err := x.st.Put(context.Background(), agent.LogKey(prefix, 1), strings.NewReader("o epoch 1 on try 1\n")); err != nil {
				t.Error(err)
			}
			x.annotate(t, p, map[string]string{kubetest.EvictAnnotation: "true"})
		default:
			x.finishPod(t, job, p, 0, "trained on try 2")
		}
	})
	res, err := e.Run(runCtx(t), job)
	if err != nil || res.Reason != runner.ReasonCompleted || res.ExitCode != 0 {
		t.Fatalf("run: %v, %s %d\nprogress:\n%s", err, res.Reason, res.ExitCode, progress.text())
	}
	if out.text() != "epoch 1 on try 1\ntrained on try 2" {
		t.Errorf("log %q, want the first pod's line, then the second's", out.text())
	}
	pl := res.Placement
	if len(pl.Tries) != 2 || pl.Tries[0].Outcome != "preempted" || !strings.Contains(pl.Tries[0].Why, "TerminationByKubelet") ||
		pl.Tries[1].Outcome != string(runner.ReasonCompleted) {
		t.Fatalf("tries %+v", pl.Tries)
	}
	if pl.Location != "kubetest/kwok-gpu" || pl.Machine != "g2-standard-8" || pl.Tries[1].Machine != "g2-standard-8" ||
		pl.Accelerator != "nvidia.com/gpu" || pl.AcceleratorCount != 1 {
		t.Errorf("placement %+v", pl)
	}
	if !strings.Contains(progress.text(), "was evicted or preempted") || !strings.Contains(progress.text(), "(try 2") {
		t.Errorf("progress:\n%s", progress.text())
	}
	jobs, err := x.cs.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{LabelSelector: LabelRun + "=" + labelValue(job.RunID)})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	if st := jobs.Items[0].Status; st.Failed != 0 || st.Succeeded != 1 {
		t.Errorf("job status failed %d succeeded %d: the eviction was counted", st.Failed, st.Succeeded)
	}
}

// More disruptions than retries fail the node, saying so; the Job goes
// (the Ignore rule alone would retry forever).
func testEvictedPastRetries(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{Retries: new(0),
		Annotations: map[string]string{kubetest.EvictAnnotation: "true"}}))
	job := x.kwokJob(&out, &progress)
	res, err := e.Run(runCtx(t), job)
	if err == nil || !strings.Contains(err.Error(), "evicted, preempted or lost 1 times, more than retries: 0") {
		t.Fatalf("run: %v (%s)\nprogress:\n%s", err, res.Reason, progress.text())
	}
	x.gone(t, job.RunID)
}

// The step's own exit code fails the node at once: one pod, no retry.
func testExitCode(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{GPUs: 1, Retries: new(3),
		Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	job := x.kwokJob(&out, &progress)
	x.playAgent(t, job, func(n int, p *corev1.Pod) { x.finishPod(t, job, p, 42, "loss is nan") })
	res, err := e.Run(runCtx(t), job)
	if err != nil || res.Reason != runner.ReasonFailed || res.ExitCode != 42 {
		t.Fatalf("run: %v, %s %d\nprogress:\n%s", err, res.Reason, res.ExitCode, progress.text())
	}
	if len(res.Placement.Tries) != 1 || res.Placement.Tries[0].Outcome != string(runner.ReasonFailed) {
		t.Errorf("tries %+v, want one failed", res.Placement.Tries)
	}
	jobs, err := x.cs.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{LabelSelector: LabelRun + "=" + labelValue(job.RunID)})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	if c := finished(&jobs.Items[0]); c == nil || c.Reason != batchv1.JobReasonPodFailurePolicy {
		t.Errorf("the Job ended %+v, want Failed by the pod failure policy", c)
	}
	if !strings.Contains(out.text(), "loss is nan") {
		t.Errorf("log %q", out.text())
	}
}

// An image that cannot be pulled fails the node at ImagePullBackOff,
// naming the image and the kubelet's message.
func testImagePull(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{Annotations: map[string]string{kubetest.ImagePullErrorAnnotation: "true"}}))
	job := x.kwokJob(&out, &progress)
	job.Image = "ghcr.io/ml-team/no-such-image:1"
	res, err := e.Run(runCtx(t), job)
	if err == nil || !strings.Contains(err.Error(), "the image ghcr.io/ml-team/no-such-image:1 of container step cannot be pulled (ImagePullBackOff)") ||
		!strings.Contains(err.Error(), "pull access denied") {
		t.Fatalf("run: %v (%s)", err, res.Reason)
	}
	x.gone(t, job.RunID)
}

// An OOM-killed step (here without the agent's record: the kill took the
// agent too) fails with 137 and names the memory limit.
func testOOMKilled(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{Annotations: map[string]string{
		kubetest.ExitCodeAnnotation: "137", kubetest.ReasonAnnotation: "OOMKilled", kubetest.DurationAnnotation: "1s"}}))
	job := x.kwokJob(&out, &progress)
	job.Resources.MemoryMB = 256
	res, err := e.Run(runCtx(t), job)
	if err == nil || !strings.Contains(err.Error(), "OOMKilled") || !strings.Contains(err.Error(), "memory limit of 256Mi") {
		t.Fatalf("run: %v", err)
	}
	if res.ExitCode != 137 || res.Reason != runner.ReasonFailed {
		t.Errorf("result %d %s, want 137 failed", res.ExitCode, res.Reason)
	}
}

// A pod whose node goes away is tried again on another node, recorded as
// a lost try.
func testLostNode(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolLose, spec.KubeEnvironment{GPUs: 1, Retries: new(1),
		Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	job := x.kwokJob(&out, &progress)
	lost := make(chan string, 1)
	x.playAgent(t, job, func(n int, p *corev1.Pod) {
		switch n {
		case 1:
			lost <- p.Spec.NodeName
			if err := x.c.LoseNode(context.Background(), p.Spec.NodeName); err != nil {
				t.Error(err)
			}
		default:
			x.finishPod(t, job, p, 0, "trained after the node loss")
		}
	})
	res, err := e.Run(runCtx(t), job)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("run: %v, %s\nprogress:\n%s", err, res.Reason, progress.text())
	}
	pl := res.Placement
	if len(pl.Tries) != 2 || pl.Tries[0].Outcome != "lost" || pl.Tries[1].Outcome != string(runner.ReasonCompleted) {
		t.Fatalf("tries %+v\nprogress:\n%s", pl.Tries, progress.text())
	}
	if first := <-lost; pl.Location == "kubetest/"+first || !strings.HasPrefix(pl.Location, "kubetest/kwok-lose-") {
		t.Errorf("location %q, want the other node than %s", pl.Location, first)
	}
}

// A cancelled run deletes its Job and waits until the Job and its pods
// are gone.
func testCancelKwok(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{GPUs: 1, Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	job := x.kwokJob(&out, &progress)
	ctx, cancel := context.WithCancel(runCtx(t))
	var cancelled time.Time
	x.playAgent(t, job, func(n int, p *corev1.Pod) {
		cancelled = time.Now()
		cancel()
	})
	res, err := e.Run(ctx, job)
	took := time.Since(cancelled)
	if res.Reason != runner.ReasonCancelled || err == nil || ctx.Err() == nil {
		t.Fatalf("run: %v, %s", err, res.Reason)
	}
	t.Logf("Run returned %s after the cancel", took)
	if took > 7*time.Second {
		t.Errorf("Run returned %s after the cancel, want well under 7 s", took)
	}
	x.gone(t, job.RunID)
}

// A GPU node runs on the Docker node end to end (its GPU is the node's
// capacity only), its placement says where, and its cost accrues from the
// pod's start.
func testRunsNode(t *testing.T, x *cluster) {
	var out, progress lines
	price := 3.6 // a tenth of a cent a second
	var spent float64
	var mu sync.Mutex
	e := x.executor(t, spec.KubeEnvironment{NodeSelector: map[string]string{kubetest.NodeTypeLabel: "docker"}, HourlyPrice: &price, GPUs: 1})
	job := runner.Job{RunID: runID(), Node: "train", Image: x.image, Attempt: 1,
		Command: `echo "try $SLUICE_AGENT_TRY"; sleep 1; echo done > /valohai/outputs/model.txt`,
		Stdout:  runner.NewLineWriter(out.add), Stderr: runner.NewLineWriter(out.add), Progress: progress.add,
		Spend: func(usd float64) {
			mu.Lock()
			spent += usd
			mu.Unlock()
		}}
	res, err := e.Run(runCtx(t), job)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("run: %v, %s\nlog:\n%s\nprogress:\n%s", err, res.Reason, out.text(), progress.text())
	}
	if !strings.HasPrefix(out.text(), "try sluice-") {
		t.Errorf("log %q, want the pod's name in SLUICE_AGENT_TRY", out.text())
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Path != "model.txt" || !res.Outputs[0].Stored {
		t.Errorf("outputs %+v", res.Outputs)
	}
	pl := res.Placement
	if pl.Backend != spec.BackendKubernetes || pl.Location != "kubetest/docker" || len(pl.Tries) != 1 ||
		pl.Accelerator != "nvidia.com/gpu" || pl.AcceleratorCount != 1 {
		t.Errorf("placement %+v", pl)
	}
	mu.Lock()
	defer mu.Unlock()
	if pl.Cost < 0.001 || pl.Cost != spent || !pl.CostKnown {
		t.Errorf("cost %g, spent %g; want at least a second's worth, the same", pl.Cost, spent)
	}
}

// On the Docker node, where the agent really runs, a cancelled run stops
// the step (the agent gets SIGTERM with the pod's deletion) and the Job
// and its pod are gone well within 7 s.
func testCancelDocker(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, spec.KubeEnvironment{NodeSelector: map[string]string{kubetest.NodeTypeLabel: "docker"}})
	job := x.kwokJob(&out, &progress)
	job.Command = "echo started; sleep 120"
	ctx, cancel := context.WithCancel(runCtx(t))
	var mu sync.Mutex
	var cancelled time.Time
	job.Stdout = runner.NewLineWriter(func(string) {
		mu.Lock()
		defer mu.Unlock()
		if cancelled.IsZero() {
			cancelled = time.Now()
			cancel()
		}
	})
	res, err := e.Run(ctx, job)
	returned := time.Now()
	if res.Reason != runner.ReasonCancelled || !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, %s\nprogress:\n%s", err, res.Reason, progress.text())
	}
	mu.Lock()
	took := returned.Sub(cancelled)
	mu.Unlock()
	t.Logf("Run returned %s after the cancel", took)
	if took > 7*time.Second {
		t.Errorf("Run returned %s after the cancel, want well under 7 s", took)
	}
	if !strings.Contains(progress.text(), "deleted") {
		t.Errorf("progress:\n%s", progress.text())
	}
	x.gone(t, job.RunID)
}

// An agent image older than this sluice (its agent writes below the
// attempt's prefix, not its pod's) is named as the cause.
func testOldAgent(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, kwok(poolGPU, spec.KubeEnvironment{Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	job := x.kwokJob(&out, &progress)
	x.playAgent(t, job, func(n int, p *corev1.Pod) {
		if err := agent.PutExit(context.Background(), x.st, agent.AttemptPrefix(job), &agent.Exit{ExitCode: 0, Reason: runner.ReasonCompleted,
			Outputs: []runner.OutputFile{}, Phase: "exec"}); err != nil {
			t.Error(err)
		}
		x.annotate(t, p, map[string]string{kubetest.DurationAnnotation: "0s"})
	})
	_, err := e.Run(runCtx(t), job)
	if err == nil || !strings.Contains(err.Error(), "is older than this sluice") || !strings.Contains(err.Error(), x.sluice) {
		t.Fatalf("run: %v", err)
	}
}

// The executor needs no more than Preflight checks: create, get, watch and
// delete Jobs; get, list and watch pods; get pods/log (namespaced, so
// nodes cannot be read: the placement then has no machine type).
func testLeastPrivilege(t *testing.T, x *cluster) {
	ctx := context.Background()
	const ns = "least"
	if _, err := x.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "sluice", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
	}}
	if _, err := x.cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sluice", Namespace: ns},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "ci"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "sluice"}}
	if _, err := x.cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := x.c.UserConfig("ci")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := x.options(kwok(poolGPU, spec.KubeEnvironment{Namespace: ns, Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	opts.Client = cs
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var out, progress lines
	job := x.kwokJob(&out, &progress)
	x.playAgent(t, job, func(n int, p *corev1.Pod) { x.finishPod(t, job, p, 0, "trained") })
	res, err := e.Run(runCtx(t), job)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("run: %v, %s\nprogress:\n%s", err, res.Reason, progress.text())
	}
	if res.Placement.Location != "kubetest/kwok-gpu" || res.Placement.Machine != "" {
		t.Errorf("placement %+v", res.Placement)
	}
	// And a cancel, which deletes the Job and waits for it.
	job = x.kwokJob(&out, &progress)
	cctx, cancel := context.WithCancel(runCtx(t))
	x.playAgent(t, job, func(int, *corev1.Pod) { cancel() })
	if res, _ := e.Run(cctx, job); res.Reason != runner.ReasonCancelled {
		t.Fatalf("cancel: %s\nprogress:\n%s", res.Reason, progress.text())
	}
	if strings.Contains(progress.text(), "still there") || strings.Contains(progress.text(), "forbidden") {
		t.Errorf("progress:\n%s", progress.text())
	}
	x.gone(t, job.RunID)
}

// On the Docker node the pull really fails (no registry has the image):
// the node fails at the kubelet's back-off, naming the image and the
// daemon's error, rather than waiting.
func testImagePullDocker(t *testing.T, x *cluster) {
	var out, progress lines
	e := x.executor(t, spec.KubeEnvironment{NodeSelector: map[string]string{kubetest.NodeTypeLabel: "docker"}})
	job := x.kwokJob(&out, &progress)
	job.Image = "sluice-test/no-such-image:1"
	res, err := e.Run(runCtx(t), job)
	if err == nil || !strings.Contains(err.Error(), "the image sluice-test/no-such-image:1 of container step cannot be pulled (ImagePullBackOff)") {
		t.Fatalf("run: %v (%s)\nprogress:\n%s", err, res.Reason, progress.text())
	}
	t.Logf("error: %v", err)
	x.gone(t, job.RunID)
}
