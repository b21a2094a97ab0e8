package kube

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store/file"
)

var update = flag.Bool("update", false, "rewrite the golden files of the Job specs")

const goldenGPUJob = "testdata/gpu-job.golden.yaml"

// gpuEnvironment is a kubernetes environment with every setting the Job
// shows: the golden file's.
func gpuEnvironment() *spec.Environment {
	price := 0.70
	return &spec.Environment{Name: "gke-gpu", Backend: spec.BackendKubernetes, Kube: spec.KubeEnvironment{
		Namespace:        "ml-ci",
		ServiceAccount:   "sluice-step",
		ImagePullSecrets: []string{"ghcr"},
		Labels:           map[string]string{"team": "ml"},
		Annotations:      map[string]string{"sidecar.istio.io/inject": "false"},
		NodeSelector:     map[string]string{"cloud.google.com/gke-accelerator": "nvidia-l4"},
		Tolerations:      []spec.KubeToleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}},
		PriorityClass:    "ci-low",
		GPUs:             1,
		QueueTimeout:     10 * time.Minute,
		Retries:          new(2),
		TTLAfterFinished: time.Hour,
		HourlyPrice:      &price,
		Image:            "ghcr.io/sluice-ci/sluice:v1",
	}}
}

// gpuJobObject is the Job of a GPU training node in gpuEnvironment, with a
// fixed name and time.
func gpuJobObject(t testing.TB) *batchv1.Job {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The fake clientset only lets New be called; the Job is checked
	// against the real API server in TestCluster.
	e, err := New(Options{Client: fake.NewClientset(), Cluster: "gke_ml_us-central1_ci", Environment: gpuEnvironment(),
		Store: st, StoreURL: "gs://ml-runs/ci", Repository: "github.com/ml-team/digits"})
	if err != nil {
		t.Fatal(err)
	}
	job := runner.Job{RunID: "20261203T101500.000000Z-4f2a", Node: "train", Image: "ghcr.io/ml-team/train:cuda12",
		Command: "python train.py", Attempt: 1, TimeLimit: 2 * time.Hour,
		Resources: runner.Resources{CPU: 8, CPURequest: 4, MemoryMB: 32768, MemoryRequestMB: 16384}}
	obj, err := e.jobObject(job, "sluice-20261203t101500-000000z-train-0a1b2c",
		"runs/20261203T101500.000000Z-4f2a/jobs/20261203T101500.000000Z-4f2a-train/1/job.json",
		time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// The Job of a GPU node is as the golden file has it (go test -update
// rewrites it). TestCluster creates the same Job on a real API server.
func TestGPUJobGolden(t *testing.T) {
	got, err := yaml.Marshal(gpuJobObject(t))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenGPUJob), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenGPUJob, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenGPUJob)
	if err != nil {
		t.Fatalf("%v (go test ./runner/kube -run TestGPUJobGolden -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the GPU Job differs from %s (-update rewrites it):\n%s", goldenGPUJob, got)
	}
}

// Resources map onto requests (min) and limits (max); GPUs go into both;
// "all GPUs" has no meaning for a pod.
func TestResources(t *testing.T) {
	cfg := spec.KubeEnvironment{GPUResource: "amd.com/gpu", GPUs: 2}
	job := runner.Job{Node: "train", Resources: runner.Resources{CPU: 1.5, CPURequest: 0.25, MemoryMB: 512}}
	n, err := gpus(job, cfg)
	if err != nil || n != 2 {
		t.Fatalf("gpus %d, %v; want the environment's 2", n, err)
	}
	r, err := resources(job, cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	lim, req := r.Limits, r.Requests
	if q := lim["cpu"]; q.String() != "1500m" {
		t.Errorf("cpu limit %s", q.String())
	}
	if q := req["cpu"]; q.String() != "250m" {
		t.Errorf("cpu request %s", q.String())
	}
	if q := lim["memory"]; q.String() != "512Mi" {
		t.Errorf("memory limit %s", q.String())
	}
	if _, ok := req["memory"]; ok {
		t.Errorf("memory request %v without memory.min", req)
	}
	if q, p := lim["amd.com/gpu"], req["amd.com/gpu"]; q.Value() != 2 || p.Value() != 2 {
		t.Errorf("gpus: limit %s, request %s", q.String(), p.String())
	}
	job.Resources.GPUs = 1
	if n, _ := gpus(job, cfg); n != 1 {
		t.Errorf("gpus %d, want the step's 1", n)
	}
	job.Resources.GPUs = -1
	if _, err := gpus(job, cfg); err == nil || !strings.Contains(err.Error(), "all GPUs") {
		t.Errorf("all GPUs: %v", err)
	}
	job.Resources = runner.Resources{CPU: 1, CPURequest: 2}
	if _, err := resources(job, cfg, 0); err == nil {
		t.Error("cpu.min above cpu.max: no error")
	}
}

// Names and label values stay within Kubernetes' rules whatever the run id
// and node name are.
func TestNames(t *testing.T) {
	name := jobName("20261203T101500.000000Z-4f2a9c0d", "Train_Model.Big/GPU-variant-with-a-long-name")
	if len(name) > 52 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		t.Errorf("job name %q (%d characters)", name, len(name))
	}
	for in, want := range map[string]string{
		"github.com/ml-team/digits": "github.com-ml-team-digits",
		"_x_":                       "x",
		strings.Repeat("a", 70):     strings.Repeat("a", 63),
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}
