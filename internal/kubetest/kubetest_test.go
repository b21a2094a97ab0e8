package kubetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// waitTimeout guards each wait on the cluster; the waits take seconds.
const waitTimeout = 90 * time.Second

func TestFindBinariesSaysHowToBuild(t *testing.T) {
	_, err := findBinaries(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "testdata/k8s/build.sh") {
		t.Fatalf("findBinaries on an empty dir: %v, want an error naming testdata/k8s/build.sh", err)
	}
}

func TestCacheDir(t *testing.T) {
	env := map[string]string{"HOME": "/home/u"}
	dir, err := CacheDir(func(k string) string { return env[k] })
	if err != nil || dir != "/home/u/.cache/sluice/k8s/"+KubernetesVersion {
		t.Fatalf("CacheDir = %q, %v", dir, err)
	}
	env["SLUICE_K8S_CACHE"] = "/c"
	if dir, _ := CacheDir(func(k string) string { return env[k] }); dir != "/c/"+KubernetesVersion {
		t.Fatalf("CacheDir with SLUICE_K8S_CACHE = %q", dir)
	}
}

// TestCluster starts one control plane and runs Jobs on its kwok nodes
// through the real Job controller and scheduler, then stops it and checks
// that no component is left running.
func TestCluster(t *testing.T) {
	c := Start(t, Options{Nodes: []Node{GPUNode("kwok-gpu", 4), CPUNode("kwok-cpu")}})
	cs := c.Clientset

	t.Run("version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != KubernetesVersion || v.Major != "1" || v.Minor != "37" {
			t.Fatalf("server version %+v, want %s (major 1, minor 37)", v, KubernetesVersion)
		}
	})

	t.Run("nodes", func(t *testing.T) {
		gpu, err := cs.CoreV1().Nodes().Get(context.Background(), "kwok-gpu", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if q := gpu.Status.Allocatable[DefaultGPUResource]; q.Value() != 4 || !NodeReady(gpu) {
			t.Fatalf("kwok-gpu: ready %v, %s = %s; want ready with 4", NodeReady(gpu), DefaultGPUResource, q.String())
		}
		cpu, err := cs.CoreV1().Nodes().Get(context.Background(), "kwok-cpu", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cpu.Status.Allocatable[DefaultGPUResource]; ok || !NodeReady(cpu) {
			t.Fatalf("kwok-cpu: ready %v, allocatable %v; want ready without GPUs", NodeReady(cpu), cpu.Status.Allocatable)
		}
	})

	t.Run("gpu job succeeds", func(t *testing.T) {
		job := gpuJob("gpu-ok", 1, nil)
		job = createJob(t, cs, job)
		cond := waitJobFinished(t, cs, job.Name)
		if cond != batchv1.JobComplete {
			t.Fatalf("job ended %s, want Complete", cond)
		}
		pods := jobPods(t, cs, job)
		if len(pods) != 1 || pods[0].Spec.NodeName != "kwok-gpu" || pods[0].Status.Phase != corev1.PodSucceeded {
			t.Fatalf("pods %s, want one Succeeded on kwok-gpu", describePods(pods))
		}
	})

	t.Run("exit code fails the job", func(t *testing.T) {
		job := gpuJob("gpu-42", 1, map[string]string{ExitCodeAnnotation: "42"})
		job = createJob(t, cs, job)
		if cond := waitJobFinished(t, cs, job.Name); cond != batchv1.JobFailed {
			t.Fatalf("job ended %s, want Failed", cond)
		}
		got, err := cs.BatchV1().Jobs("default").Get(context.Background(), job.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if reason := jobCondition(got, batchv1.JobFailed).Reason; reason != batchv1.JobReasonPodFailurePolicy {
			t.Errorf("Failed reason %q, want %q (the FailJob rule on the exit code)", reason, batchv1.JobReasonPodFailurePolicy)
		}
		pods := jobPods(t, cs, job)
		if len(pods) != 1 {
			t.Fatalf("pods %s, want exactly one (FailJob: no retry)", describePods(pods))
		}
		term := pods[0].Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != 42 {
			t.Fatalf("container state %+v, want terminated with 42", pods[0].Status.ContainerStatuses[0].State)
		}
	})

	t.Run("an eviction does not use up a retry", func(t *testing.T) {
		// backoffLimit 0: a try that counted would fail the Job.
		job := gpuJob("gpu-evicted", 1, map[string]string{DurationAnnotation: "1h"})
		job = createJob(t, cs, job)
		first := waitPod(t, cs, job, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		annotate(t, cs, first.Name, EvictAnnotation, "true")
		evicted := waitPodNamed(t, cs, first.Name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		if evicted.Status.Reason != "Evicted" || !hasCondition(evicted, corev1.DisruptionTarget) {
			t.Fatalf("evicted pod: reason %q, conditions %v; want Evicted with DisruptionTarget", evicted.Status.Reason, evicted.Status.Conditions)
		}
		second := waitPod(t, cs, job, func(p *corev1.Pod) bool {
			return p.Name != first.Name && p.Status.Phase == corev1.PodRunning
		})
		// The Job controller's own back-off, before it replaces a failed pod.
		t.Logf("the replacement pod was created %s after the eviction",
			second.CreationTimestamp.Sub(podCondition(evicted, corev1.DisruptionTarget).LastTransitionTime.Time))
		annotate(t, cs, second.Name, DurationAnnotation, "0s")
		if cond := waitJobFinished(t, cs, job.Name); cond != batchv1.JobComplete {
			t.Fatalf("job ended %s, want Complete after the retry", cond)
		}
		got, err := cs.BatchV1().Jobs("default").Get(context.Background(), job.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Failed != 0 || got.Status.Succeeded != 1 {
			t.Fatalf("job status failed %d, succeeded %d; want 0 and 1 (Ignore on DisruptionTarget)", got.Status.Failed, got.Status.Succeeded)
		}
	})

	t.Run("too many GPUs stay unschedulable", func(t *testing.T) {
		job := createJob(t, cs, gpuJob("gpu-8", 8, nil))
		pod := waitPod(t, cs, job, func(p *corev1.Pod) bool {
			c := podCondition(p, corev1.PodScheduled)
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		})
		if msg := podCondition(pod, corev1.PodScheduled).Message; !strings.Contains(msg, "Insufficient nvidia.com/gpu") {
			t.Fatalf("PodScheduled message %q, want the scheduler's Insufficient nvidia.com/gpu", msg)
		}
	})

	t.Run("image pull error", func(t *testing.T) {
		job := createJob(t, cs, gpuJob("gpu-pull", 1, map[string]string{ImagePullErrorAnnotation: "true"}))
		pod := waitPod(t, cs, job, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil
		})
		w := pod.Status.ContainerStatuses[0].State.Waiting
		if pod.Status.Phase != corev1.PodPending || w.Reason != "ImagePullBackOff" || !strings.Contains(w.Message, "sluice-test/none:1") {
			t.Fatalf("pod %s, waiting %+v; want Pending in ImagePullBackOff naming the image", pod.Status.Phase, w)
		}
	})

	t.Run("a lost node's pods are evicted", func(t *testing.T) {
		c.AddNode(t, GPUNode("kwok-doomed", 1))
		job := gpuJob("gpu-lost", 1, map[string]string{DurationAnnotation: "1h"})
		job.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "kwok-doomed"}
		job = createJob(t, cs, job)
		first := waitPod(t, cs, job, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := c.LoseNode(ctx, "kwok-doomed"); err != nil {
			t.Fatal(err)
		}
		gone := waitPodNamed(t, cs, first.Name, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && hasCondition(p, corev1.DisruptionTarget)
		})
		t.Logf("pod on the lost node: %s, DisruptionTarget %q", gone.Status.Phase, podCondition(gone, corev1.DisruptionTarget).Reason)
		got, err := cs.BatchV1().Jobs("default").Get(context.Background(), job.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Failed != 0 || jobCondition(got, batchv1.JobFailed).Status == corev1.ConditionTrue {
			t.Fatalf("job status %+v: the lost node's pod was counted as a failure", got.Status)
		}
	})

	t.Run("stop leaves no process", func(t *testing.T) {
		pids := c.PIDs()
		if len(pids) != len(components) {
			t.Fatalf("PIDs %v, want one per component %v", pids, components)
		}
		c.Stop()
		for name, pid := range pids {
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s (process group %d) still there after Stop: %v", name, pid, err)
			}
		}
	})
}

// gpuJob is a Job of one pod asking for gpus nvidia.com/gpu, with no retry
// to spare and the pod failure policy a step's Job has: Ignore disruptions,
// FailJob on the step's own non-zero exit.
func gpuJob(name string, gpus int64, annotations map[string]string) *batchv1.Job {
	gpu := *resource.NewQuantity(gpus, resource.DecimalSI)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				{
					Action:          batchv1.PodFailurePolicyActionIgnore,
					OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
				},
				{
					Action:      batchv1.PodFailurePolicyActionFailJob,
					OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{0}},
				},
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:  "step",
						Image: "sluice-test/none:1",
						Resources: corev1.ResourceRequirements{
							Limits: corev1.ResourceList{DefaultGPUResource: gpu},
						},
					}},
				},
			},
		},
	}
}

func createJob(t *testing.T, cs kubernetes.Interface, job *batchv1.Job) *batchv1.Job {
	t.Helper()
	got, err := cs.BatchV1().Jobs(job.Namespace).Create(context.Background(), job, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create job %s: %v", job.Name, err)
	}
	return got
}

// waitJobFinished waits for the Job's Complete or Failed condition.
func waitJobFinished(t *testing.T, cs kubernetes.Interface, name string) batchv1.JobConditionType {
	t.Helper()
	var finished batchv1.JobConditionType
	waitFor(t, "job "+name+" to finish", func(ctx context.Context) (bool, error) {
		job, err := cs.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, ct := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
			if jobCondition(job, ct).Status == corev1.ConditionTrue {
				finished = ct
				return true, nil
			}
		}
		return false, nil
	})
	return finished
}

func jobCondition(job *batchv1.Job, ct batchv1.JobConditionType) batchv1.JobCondition {
	for _, c := range job.Status.Conditions {
		if c.Type == ct {
			return c
		}
	}
	return batchv1.JobCondition{}
}

func podCondition(p *corev1.Pod, ct corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == ct {
			return c
		}
	}
	return corev1.PodCondition{}
}

func hasCondition(p *corev1.Pod, ct corev1.PodConditionType) bool {
	return podCondition(p, ct).Status == corev1.ConditionTrue
}

func jobPods(t *testing.T, cs kubernetes.Interface, job *batchv1.Job) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(job.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: "batch.kubernetes.io/controller-uid=" + string(job.UID),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitPod waits until one of the Job's pods satisfies ok and returns it.
func waitPod(t *testing.T, cs kubernetes.Interface, job *batchv1.Job, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	waitFor(t, "a pod of job "+job.Name, func(ctx context.Context) (bool, error) {
		for _, p := range jobPods(t, cs, job) {
			if ok(&p) {
				found = &p
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

func waitPodNamed(t *testing.T, cs kubernetes.Interface, name string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	waitFor(t, "pod "+name, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		found = p
		return ok(p), nil
	})
	return found
}

func annotate(t *testing.T, cs kubernetes.Interface, pod, key, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	if _, err := cs.CoreV1().Pods("default").Patch(context.Background(), pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotate pod %s: %v", pod, err)
	}
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// waitTimeout with the last error.
func waitFor(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "[%s on %q: %s] ", p.Name, p.Spec.NodeName, p.Status.Phase)
	}
	return b.String()
}
