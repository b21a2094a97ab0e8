package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const envScenarios = "../../spec/testdata/environments/"

// lint reads the sluice.yaml beside the pipeline file: its errors fail the
// lint, and the environments it does not map are warnings.
func TestLintReadsSluiceYAML(t *testing.T) {
	code, out, errOut := runCLI(t, "lint", envScenarios+"partly-mapped/valohai.yaml")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		`partly-mapped/valohai.yaml:15:18: warning: step "evaluate".environment: step "evaluate" names environment "azure westeurope", which sluice.yaml does not map: it runs on the local Docker host; to send it elsewhere, add to sluice.yaml:` + "\n  environments:\n    \"azure westeurope\":\n      backend: ...",
		`partly-mapped/valohai.yaml:31:24: warning: pipeline "training".nodes[1].override.environment: node "train-large"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"gpu-v100"`) || strings.Contains(out, `"cpu-small"`) {
		t.Errorf("lint warns about a mapped environment:\n%s", out)
	}
	if code, _, _ := runCLI(t, "lint", "--strict", envScenarios+"partly-mapped/valohai.yaml"); code != exitFailed {
		t.Errorf("--strict with unmapped environments: exit %d", code)
	}
	code, out, _ = runCLI(t, "lint", envScenarios+"bad-sluice-yaml/valohai.yaml")
	if code != exitFailed || !strings.Contains(out, `bad-sluice-yaml/sluice.yaml:4:14: error: environments.gpu-v100.backend: "nomad" is not valid here; use one of: docker, batch, kubernetes`) {
		t.Errorf("a bad sluice.yaml: exit %d\n%s", code, out)
	}
}

func TestPlanShowsWhereNodesRun(t *testing.T) {
	file := envScenarios + "partly-mapped/valohai.yaml"
	code, out, errOut := runCLI(t, "plan", "--reuse=false", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"  train  (execution, step \"train\")\n    runs on: docker (environment \"gpu-v100\", at most 1 at once)\n",
		"  train-large  (execution, step \"train\")\n    runs on: local docker (environment \"gpu-a100\" is not in sluice.yaml)\n",
		"  report  (execution, step \"report\")\n    runs on: docker (environment \"gpu-a10\")\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI(t, "plan", "--reuse=false", "--format", "json", file)
	if code != 0 {
		t.Fatalf("json: exit %d: %s", code, errOut)
	}
	var plan struct {
		Layers [][]struct {
			Name        string `json:"name"`
			Environment string `json:"environment"`
			Backend     string `json:"backend"`
			Mapped      bool   `json:"mapped"`
			MaxParallel int    `json:"max_parallel"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, layer := range plan.Layers {
		for _, n := range layer {
			got[n.Name] = strings.Join([]string{n.Environment, n.Backend, map[bool]string{true: "mapped", false: "local"}[n.Mapped]}, " ")
			if n.Name == "train" && n.MaxParallel != 1 {
				t.Errorf("train: max_parallel %d", n.MaxParallel)
			}
		}
	}
	want := map[string]string{"train": "gpu-v100 docker mapped", "train-large": "gpu-a100 docker local",
		"evaluate": "azure westeurope docker local", "report": "gpu-a10 docker mapped"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("json node %s: %q, want %q", k, got[k], v)
		}
	}

	code, out, _ = runCLI(t, "plan", "--reuse=false", "--format", "mermaid", file)
	for _, want := range []string{`n0["train<br/>gpu-v100 (docker)"]`, `n1["train-large<br/><small>train</small><br/>local docker"]`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("mermaid: exit %d, lacks %q:\n%s", code, want, out)
		}
	}

	// A step planned alone, with no sluice.yaml: local docker.
	code, out, errOut = runCLI(t, "plan", "--reuse=false", "--step", "train", envScenarios+"no-sluice-yaml/valohai.yaml")
	if code != 0 || !strings.Contains(out, "runs on: local docker (environment \"gpu-v100\" is not in sluice.yaml)") {
		t.Errorf("no sluice.yaml: exit %d\n%s%s", code, out, errOut)
	}
	// A sluice.yaml with errors stops the plan.
	if code, _, errOut := runCLI(t, "plan", "--reuse=false", "--step", "train", envScenarios+"bad-sluice-yaml/valohai.yaml"); code != exitUsage || !strings.Contains(errOut, "sluice.yaml has 4 errors") {
		t.Errorf("bad sluice.yaml: exit %d, %s", code, errOut)
	}
}

// A Batch environment: lint takes it, plan says where each node runs and on
// what, and a bad one fails lint at its line and column.
func TestLintAndPlanBatchEnvironment(t *testing.T) {
	file := envScenarios + "batch/valohai.yaml"
	if code, out, errOut := runCLI(t, "lint", "--strict", file); code != 0 {
		t.Fatalf("lint: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "plan", "--reuse=false", file)
	want := "  train  (execution, step \"train\")\n    runs on: batch (environment \"gpu-l4\", us-central1-a/us-central1-c, g2-standard-8 with 1 x nvidia-l4, spot, 1 fallback, at most 2 at once)\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("plan: exit %d, want %q in\n%s%s", code, want, out, errOut)
	}
	code, out, _ = runCLI(t, "lint", envScenarios+"batch-bad/valohai.yaml")
	for _, want := range []string{
		`batch-bad/sluice.yaml:7:28: error: environments.gpu-l4.zones[1]: zone europe-west4-b is in region europe-west4`,
		`batch-bad/sluice.yaml:9:25: error: environments.gpu-l4.accelerator.type: nvidia-tesla-a100 GPUs need a machine type of a2-highgpu-* or a2-megagpu-*, not g2-standard-8`,
		`batch-bad/sluice.yaml:11:59: error: environments.gpu-l4.fallback[0].accelerator.type: "nvidia-h100" is not a Compute Engine GPU type (did you mean "nvidia-h100-80gb"?)`,
		`batch-bad/sluice.yaml:12:14: error: environments.gpu-l4.labels.sluice-run:`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint of batch-bad lacks %q:\n%s", want, out)
		}
	}
	if code != exitFailed {
		t.Errorf("lint of batch-bad: exit %d", code)
	}
}

// A kubernetes environment: lint takes it, plan says where each node runs
// and on what, and a bad one (a GPU count without a GPU resource name among
// them) fails lint at its line and column.
func TestLintAndPlanKubeEnvironment(t *testing.T) {
	file := envScenarios + "kubernetes/valohai.yaml"
	if code, out, errOut := runCLI(t, "lint", "--strict", file); code != 0 {
		t.Fatalf("lint: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "plan", "--reuse=false", file)
	want := "  train  (execution, step \"train\")\n    runs on: kubernetes (environment \"gke-gpu\", context gke_ml-team_us-central1_ml, namespace ml-ci, 1 x nvidia.com/gpu, nodes cloud.google.com/gke-accelerator=nvidia-l4, priority ci-low, at most 2 at once)\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("plan: exit %d, want %q in\n%s%s", code, want, out, errOut)
	}
	code, out, _ = runCLI(t, "lint", envScenarios+"kubernetes-bad/valohai.yaml")
	for _, want := range []string{
		`kubernetes-bad/sluice.yaml:5:14: error: environments.gke-gpu.context: context and in-cluster: true (line 4) both say how to reach the cluster`,
		`kubernetes-bad/sluice.yaml:6:14: error: environments.gke-gpu.labels.sluice-run: label "sluice-run": the sluice- prefix is sluice's own`,
		`kubernetes-bad/sluice.yaml:8:56: error: environments.gke-gpu.tolerations[0].value: value "present" with operator: Exists: the API server refuses it`,
		`kubernetes-bad/sluice.yaml:9:76: error: environments.gke-gpu.tolerations[1].toleration-seconds: toleration-seconds is only for effect: NoExecute`,
		`kubernetes-bad/sluice.yaml:11:11: error: environments.gke-gpu.gpus: gpus 1, but gpu-resource (line 10) is empty: a GPU count needs a GPU resource name such as nvidia.com/gpu`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint of kubernetes-bad lacks %q:\n%s", want, out)
		}
	}
	if code != exitFailed {
		t.Errorf("lint of kubernetes-bad: exit %d", code)
	}
}
