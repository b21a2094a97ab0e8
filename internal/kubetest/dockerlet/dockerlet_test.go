package dockerlet_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/kubetest"
	"github.com/sluice-ci/sluice/internal/kubetest/dockerlet"
)

const waitTimeout = 2 * time.Minute

// TestDockerNode runs pods through the real scheduler onto the Docker
// stand-in's node: an init container hands a file to the container through
// an emptyDir, the exit code comes back in the pod's status, and deleting
// a Job's pods removes their containers and volumes.
func TestDockerNode(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Image(t)
	c := kubetest.Start(t, kubetest.Options{Nodes: []kubetest.Node{}})
	k := dockerlet.Start(t, c.Clientset, dockerlet.Options{Docker: cli,
		Capacity: corev1.ResourceList{kubetest.DefaultGPUResource: resource.MustParse("2")}})
	cs := c.Clientset

	node, err := cs.CoreV1().Nodes().Get(context.Background(), k.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !kubetest.NodeReady(node) || node.Labels[kubetest.NodeTypeLabel] != "docker" {
		t.Fatalf("node %s: ready %v, labels %v", node.Name, kubetest.NodeReady(node), node.Labels)
	}
	if q := node.Status.Allocatable[kubetest.DefaultGPUResource]; q.Value() != 2 {
		t.Errorf("node %s: allocatable %s = %s, want the 2 of Options.Capacity", node.Name, kubetest.DefaultGPUResource, q.String())
	}

	t.Run("init container hands a file over an emptyDir", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "handover", Namespace: "default"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				NodeSelector:  map[string]string{kubetest.NodeTypeLabel: "docker"},
				Volumes:       []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				InitContainers: []corev1.Container{{
					Name:         "fetch",
					Image:        img,
					Command:      []string{"sh", "-c", `echo "$GREETING" > /work/msg`},
					Env:          []corev1.EnvVar{{Name: "GREETING", Value: "hello from init"}},
					VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
				}},
				Containers: []corev1.Container{{
					Name:       "step",
					Image:      img,
					Command:    []string{"sh", "-c"},
					Args:       []string{`echo "$(cat msg) in $(pwd) as $POD"; exit 3`},
					WorkingDir: "/work",
					Env: []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
					}}},
					VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := waitPod(t, cs, pod.Name, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
		})
		if got.Spec.NodeName != k.NodeName || got.Status.Phase != corev1.PodFailed {
			t.Fatalf("pod on %q ended %s, want Failed on %s", got.Spec.NodeName, got.Status.Phase, k.NodeName)
		}
		initTerm := got.Status.InitContainerStatuses[0].State.Terminated
		if initTerm == nil || initTerm.ExitCode != 0 || initTerm.Reason != "Completed" {
			t.Fatalf("init container state %+v, want terminated 0 Completed", got.Status.InitContainerStatuses[0].State)
		}
		term := got.Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			t.Fatalf("container state %+v, want terminated 3 Error", got.Status.ContainerStatuses[0].State)
		}
		if out := containerOutput(t, cli, got.Status.ContainerStatuses[0].ContainerID); out != "hello from init in /work as handover\n" {
			t.Fatalf("container printed %q", out)
		}
	})

	t.Run("a job's pod succeeds, and deletion removes its containers", func(t *testing.T) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "docker-ok", Namespace: "default"},
			Spec: batchv1.JobSpec{
				BackoffLimit: new(int32(0)),
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					NodeSelector:  map[string]string{kubetest.NodeTypeLabel: "docker"},
					Volumes:       []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					Containers: []corev1.Container{{
						Name:         "step",
						Image:        img,
						Command:      []string{"sh", "-c", "echo ok > /scratch/ok"},
						VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
					}},
				}},
			},
		}
		created, err := cs.BatchV1().Jobs("default").Create(context.Background(), job, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "job docker-ok to complete", func(ctx context.Context) (bool, error) {
			j, err := cs.BatchV1().Jobs("default").Get(ctx, job.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return j.Status.Succeeded == 1, nil
		})
		uidLabel := "sluice.test/dockerlet-pod-uid"
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{
			LabelSelector: "batch.kubernetes.io/controller-uid=" + string(created.UID),
		})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("job pods: %v, %v", pods, err)
		}
		podUID := string(pods.Items[0].UID)
		if n := dockerObjects(t, cli, uidLabel+"="+podUID); n != 2 {
			t.Fatalf("%d containers and volumes for the finished pod, want 2 (kept until it is deleted)", n)
		}
		fg := metav1.DeletePropagationForeground
		if err := cs.BatchV1().Jobs("default").Delete(context.Background(), job.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the job and its pod to be gone", func(ctx context.Context) (bool, error) {
			_, err := cs.BatchV1().Jobs("default").Get(ctx, job.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return false, err
			}
			_, err = cs.CoreV1().Pods("default").Get(ctx, pods.Items[0].Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		waitFor(t, "the pod's containers and volumes to be removed", func(context.Context) (bool, error) {
			return dockerObjects(t, cli, uidLabel+"="+podUID) == 0, nil
		})
	})
}

// dockerObjects counts the containers and volumes that carry label.
func dockerObjects(t *testing.T, cli interface {
	ContainerList(context.Context, container.ListOptions) ([]container.Summary, error)
	VolumeList(context.Context, volume.ListOptions) (volume.ListResponse, error)
}, label string) int {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", label))
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := cli.VolumeList(context.Background(), volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs) + len(vs.Volumes)
}

func containerOutput(t *testing.T, cli interface {
	ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error)
}, id string) string {
	t.Helper()
	rc, err := cli.ContainerLogs(context.Background(), strings.TrimPrefix(id, "docker://"), container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func waitPod(t *testing.T, cs kubernetes.Interface, name string, ok func(*corev1.Pod) bool) *corev1.Pod {
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
