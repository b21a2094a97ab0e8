package kube

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/internal/kubetest"
)

// sleeper is a Job whose pod runs on a kwok node for an hour, with labels.
func sleeper(name string, labels map[string]string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "step", Image: "busybox", Command: []string{"sleep", "3600"}}}},
		}},
	}
}

// done is a Job whose pod succeeds at once on a kwok node.
func done(name string, labels map[string]string) *batchv1.Job {
	j := sleeper(name, labels)
	j.Spec.Template.Annotations = nil
	return j
}

func sluiceLabels(run string, created time.Time, ttl time.Duration) map[string]string {
	return map[string]string{LabelRun: run, LabelNode: "train", LabelRepo: "ml-team.digits",
		LabelCreated: strconv.FormatInt(created.Unix(), 10), LabelTTL: strconv.Itoa(int(ttl.Seconds()))}
}

func jobNames(t *testing.T, cs kubernetes.Interface, namespace string) []string {
	t.Helper()
	list, err := cs.BatchV1().Jobs(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range list.Items {
		if j.DeletionTimestamp == nil {
			out = append(out, j.Name)
		}
	}
	slices.Sort(out)
	return out
}

// waitGone waits until no Job of namespace but keep is left, nor a pod of
// one (foreground deletion takes the pods first).
func waitGone(t *testing.T, cs kubernetes.Interface, namespace string, keep ...string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		jobs, err1 := cs.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{})
		pods, err2 := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		var left []string
		for _, j := range jobs.Items {
			if !slices.Contains(keep, j.Name) {
				left = append(left, "job "+j.Name)
			}
		}
		for _, p := range pods.Items {
			if !slices.Contains(keep, p.Labels["job-name"]) {
				left = append(left, "pod "+p.Name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still there after a minute: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sweep and SweepRun against a real control plane: the Job controller makes
// the pods, foreground deletion takes them away with their Jobs.
func TestSweep(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: []kubetest.Node{kubetest.CPUNode("kwok-cpu")}})
	cs := c.Clientset
	ctx := context.Background()
	const ns = "default"
	now := time.Now()
	for _, j := range []*batchv1.Job{
		sleeper("sluice-old-train", sluiceLabels("r1", now.Add(-2*time.Hour), time.Hour)),
		sleeper("sluice-young-train", sluiceLabels("r2", now.Add(-10*time.Minute), time.Hour)),
		sleeper("sluice-no-ttl", map[string]string{LabelRun: "r3"}),
		sleeper("someone-else", map[string]string{LabelCreated: "1", LabelTTL: "1"}),
		done("sluice-done-prepare", sluiceLabels("r2", now.Add(-10*time.Minute), time.Hour)),
	} {
		if _, err := cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The pods exist before the sweep, so that the foreground deletion has
	// something to take first.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		finishedJob, err := cs.BatchV1().Jobs(ns).Get(ctx, "sluice-done-prepare", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 5 && finished(finishedJob) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods, want 5, and the short Job finished", len(pods.Items))
		}
	}

	swept, err := Sweep(ctx, cs, ns, now, true)
	if err != nil || len(swept) != 1 || swept[0].Name != "sluice-old-train" || swept[0].Run != "r1" || swept[0].Node != "train" ||
		swept[0].Namespace != ns || !swept[0].Expired.Equal(time.Unix(now.Add(-time.Hour).Unix(), 0)) {
		t.Fatalf("dry run: %+v %v", swept, err)
	}
	if got := jobNames(t, cs, ns); len(got) != 5 {
		t.Fatalf("a dry run deleted: %v", got)
	}
	swept, err = Sweep(ctx, cs, ns, now, false)
	if err != nil || len(swept) != 1 || swept[0].Name != "sluice-old-train" || swept[0].Err != nil {
		t.Fatalf("sweep: %+v %v", swept, err)
	}
	old, err := cs.BatchV1().Jobs(ns).Get(ctx, "sluice-old-train", metav1.GetOptions{})
	if err == nil && !slices.Contains(old.Finalizers, metav1.FinalizerDeleteDependents) {
		t.Errorf("the Job is deleted without foreground propagation: finalizers %v", old.Finalizers)
	}
	waitGone(t, cs, ns, "sluice-young-train", "sluice-no-ttl", "someone-else", "sluice-done-prepare")
	// A second sweep finds nothing more.
	if swept, err := Sweep(ctx, cs, ns, now, false); err != nil || len(swept) != 0 {
		t.Errorf("second sweep: %+v %v", swept, err)
	}

	// SweepRun takes every Job of its run that has not finished, young or
	// without a TTL, and nothing else: a finished one stays for its TTL.
	deleted, err := SweepRun(ctx, cs, ns, "r2")
	if err != nil || !slices.Equal(deleted, []string{"sluice-young-train"}) {
		t.Fatalf("sweep run r2: %v %v", deleted, err)
	}
	if deleted, err := SweepRun(ctx, cs, ns, "r3"); err != nil || !slices.Equal(deleted, []string{"sluice-no-ttl"}) {
		t.Fatalf("sweep run r3: %v %v", deleted, err)
	}
	waitGone(t, cs, ns, "someone-else", "sluice-done-prepare")
	if _, err := SweepRun(ctx, cs, ns, ""); err == nil {
		t.Error("a sweep of no run id: no error")
	}
}
