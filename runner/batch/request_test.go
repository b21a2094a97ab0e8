package batch

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	batchapi "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store/file"
)

var update = flag.Bool("update", false, "rewrite the golden job requests")

func gpuEnvironment() *spec.Environment {
	price := 0.85
	return &spec.Environment{Name: "gpu-l4", Backend: spec.BackendBatch, MaxParallel: 2, Batch: spec.BatchEnvironment{
		Project: "ml-team", Region: "us-central1", Zones: []string{"us-central1-a", "us-central1-c"},
		Machine:    spec.BatchMachine{MachineType: "g2-standard-8", Accelerator: "nvidia-l4", AcceleratorCount: 1},
		Fallback:   []spec.BatchMachine{{MachineType: "a2-highgpu-1g", Accelerator: "nvidia-tesla-a100", AcceleratorCount: 1}},
		BootDiskGB: 200, Provisioning: spec.ProvisioningSpot, SpotFallbackAfter: 2,
		ServiceAccount: "sluice-runner@ml-team.iam.gserviceaccount.com",
		Network:        "projects/ml-team/global/networks/default",
		Subnetwork:     "projects/ml-team/regions/us-central1/subnetworks/default",
		NoExternalIP:   true, Labels: map[string]string{"team": "vision"},
		MaxRunDuration: 6 * time.Hour, HourlyPrice: &price, Image: "ghcr.io/sluice-ci/sluice:v1.4.0",
	}}
}

// The CreateJobRequest of a GPU spot node, and of its try on the fallback
// machine, kept as golden JSON (protojson) to be read field by field against
// the Batch API reference.
func TestRequestGolden(t *testing.T) {
	// Credentials of the host must never reach a job.
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secret/key.json")
	t.Setenv("GITHUB_TOKEN", "ghp_secret")
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Client: &batchapi.Client{}, Environment: gpuEnvironment(), Store: st, StoreURL: "gs://ml-team-sluice/ci",
		Repository: "github.com/ml-team/digits"})
	if err != nil {
		t.Fatal(err)
	}
	job := runner.Job{RunID: "20261203T101500.000000Z-a1b2c3", Node: "train", Image: "ghcr.io/ml-team/train:cuda12",
		Command: "python train.py --epochs 3", Resources: runner.Resources{CPU: 8, MemoryMB: 30000, GPUs: 1}, Attempt: 1}
	now := time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC)
	key := "runs/20261203T101500.000000Z-a1b2c3/jobs/20261203T101500.000000Z-a1b2c3-train/1/try-1/job.json"
	cases := []struct {
		file string
		try  try
	}{
		{"request-spot-l4.json", try{n: 1, machine: e.cfg.Machine, provisioning: spec.ProvisioningSpot, jobID: "sluice-20261203t101500-000000z-train-1-abcdef"}},
		{"request-fallback-a100.json", try{n: 2, machine: e.cfg.Fallback[0], provisioning: spec.ProvisioningSpot, jobID: "sluice-20261203t101500-000000z-train-2-abcdef"}},
	}
	for _, c := range cases {
		req := e.request(job, c.try, key, now)
		got, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		// protojson's spacing is not stable across versions: compare the
		// canonical form, keep the readable one.
		path := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./runner/batch -run TestRequestGolden -update writes it)", err)
		}
		if canon(t, got) != canon(t, want) {
			t.Errorf("%s differs from the golden file:\n%s", c.file, got)
		}
		for _, secret := range []string{"/secret/key.json", "ghp_secret", "private_key", "GOOGLE_APPLICATION_CREDENTIALS"} {
			if strings.Contains(string(got), secret) {
				t.Errorf("%s holds %q: no credential may reach a job", c.file, secret)
			}
		}
		if !isJobID(c.try.jobID) {
			t.Errorf("job id %q breaks Batch's rules", c.try.jobID)
		}
	}
}

func canon(t *testing.T, data []byte) string {
	t.Helper()
	req := new(batchpb.CreateJobRequest)
	if err := protojson.Unmarshal(data, req); err != nil {
		t.Fatal(err)
	}
	out, err := protojson.MarshalOptions{}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestJobID(t *testing.T) {
	for _, c := range [][2]string{
		{"20261203T101500.000000Z-a1b2c3", "train"},
		{"x", strings.Repeat("Node_With.Long/Name", 5)},
		{"--", "--"},
	} {
		if id := jobID(c[0], c[1], 12); !isJobID(id) || len(id) > 63 {
			t.Errorf("jobID(%q, %q) = %q: not a Batch job id", c[0], c[1], id)
		}
	}
}

var jobIDRe = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

func isJobID(s string) bool { return jobIDRe.MatchString(s) }
