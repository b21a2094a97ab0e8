package spec

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const batchFull = `max-cost: 20
environments:
  gpu-l4:
    backend: batch
    max-parallel: 2
    project: ml-team
    region: us-central1
    zones: [us-central1-a, us-central1-c]
    machine-type: g2-standard-8
    boot-disk-gb: 100
    boot-image: batch-cos
    provisioning: spot
    spot-fallback-after: 2
    retries: 0
    queue-timeout: 10m
    fallback:
      - machine-type: a2-highgpu-1g
      - {machine-type: n1-standard-8, accelerator: {type: nvidia-tesla-t4, count: 2}}
    service-account: runner@ml-team.iam.gserviceaccount.com
    network: projects/ml-team/global/networks/default
    subnetwork: projects/ml-team/regions/us-central1/subnetworks/default
    no-external-ip: true
    labels: {team: vision, cost-center: "1234"}
    max-run-duration: 6h
    hourly-price: 0.85
    image: ghcr.io/sluice-ci/sluice:v1
  cpu:
    backend: batch
    project: ml-team
    region: europe-west4
    machine-type: n2-standard-4
    hourly-price: 0.19
`

func TestLoadBatchEnvironment(t *testing.T) {
	dir := t.TempDir()
	sc, diags := LoadSluiceConfig(writeSluice(t, dir, batchFull), nil)
	if diags.HasErrors() || sc == nil {
		t.Fatalf("config %+v, %v", sc, diags)
	}
	zero, price, cpuPrice := 0, 0.85, 0.19
	want := BatchEnvironment{
		Project: "ml-team", Region: "us-central1", Zones: []string{"us-central1-a", "us-central1-c"},
		Machine: BatchMachine{MachineType: "g2-standard-8", Accelerator: "nvidia-l4", AcceleratorCount: 1},
		Fallback: []BatchMachine{
			{MachineType: "a2-highgpu-1g", Accelerator: "nvidia-tesla-a100", AcceleratorCount: 1},
			{MachineType: "n1-standard-8", Accelerator: "nvidia-tesla-t4", AcceleratorCount: 2},
		},
		BootDiskGB: 100, BootImage: "batch-cos", Provisioning: ProvisioningSpot, SpotFallbackAfter: 2,
		Retries: &zero, QueueTimeout: 10 * time.Minute,
		ServiceAccount: "runner@ml-team.iam.gserviceaccount.com",
		Network:        "projects/ml-team/global/networks/default",
		Subnetwork:     "projects/ml-team/regions/us-central1/subnetworks/default",
		NoExternalIP:   true,
		Labels:         map[string]string{"team": "vision", "cost-center": "1234"},
		MaxRunDuration: 6 * time.Hour, HourlyPrice: &price, Image: "ghcr.io/sluice-ci/sluice:v1",
	}
	env := sc.Environments["gpu-l4"]
	if env.Backend != BackendBatch || env.MaxParallel != 2 || env.Pos != (Pos{Line: 3, Col: 3}) {
		t.Errorf("gpu-l4: %+v", env)
	}
	if !reflect.DeepEqual(env.Batch, want) {
		t.Errorf("gpu-l4:\n got %+v\nwant %+v", env.Batch, want)
	}
	if env.Batch.RetriesOr() != 0 {
		t.Errorf("retries: 0 reads as %d", env.Batch.RetriesOr())
	}
	// The defaults: spot, 3 retries, 15 minutes in the queue, 24 hours' run.
	cpu := sc.Environments["cpu"].Batch
	wantCPU := BatchEnvironment{Project: "ml-team", Region: "europe-west4", Machine: BatchMachine{MachineType: "n2-standard-4"},
		Provisioning: ProvisioningSpot, QueueTimeout: 15 * time.Minute, MaxRunDuration: 24 * time.Hour, HourlyPrice: &cpuPrice}
	if !reflect.DeepEqual(cpu, wantCPU) || cpu.RetriesOr() != 3 {
		t.Errorf("cpu:\n got %+v\nwant %+v", cpu, wantCPU)
	}
	if sc.MaxCost == nil || *sc.MaxCost != 20 {
		t.Errorf("max-cost %v", sc.MaxCost)
	}
}

// Each bad Batch setting is one error at its own line and column, before
// any job exists.
func TestBatchEnvironmentErrors(t *testing.T) {
	const head = "environments:\n  gpu:\n    backend: batch\n    project: ml-team\n" // lines 1-4
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"missing keys", "environments:\n  gpu:\n    backend: batch\n",
			"sluice.yaml:3:5: error: environments.gpu: missing required key \"project\" (a batch environment needs `backend`, `project`, `region` and `machine-type`)\n" +
				"sluice.yaml:3:5: error: environments.gpu: missing required key \"region\" (a batch environment needs `backend`, `project`, `region` and `machine-type`)\n" +
				"sluice.yaml:3:5: error: environments.gpu: missing required key \"machine-type\" (a batch environment needs `backend`, `project`, `region` and `machine-type`)"},
		{"accelerator short name", head + "    region: us-central1\n    machine-type: a3-highgpu-1g\n    accelerator: {type: h100}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: "h100" is not a Compute Engine GPU type (did you mean "nvidia-h100-80gb"?)`},
		{"unknown accelerator", head + "    region: us-central1\n    machine-type: n1-standard-8\n    accelerator: {type: nvidia-tesla-t5}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: "nvidia-tesla-t5" is not a Compute Engine GPU type (did you mean "nvidia-tesla-t4"?); the types are: nvidia-a100-80gb, nvidia-b200,`},
		{"retired accelerator", head + "    region: us-central1\n    machine-type: n1-standard-8\n    accelerator: {type: nvidia-tesla-k80}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: nvidia-tesla-k80: Compute Engine retired K80 GPUs in 2024`},
		{"A100 on g2", head + "    region: us-central1\n    machine-type: g2-standard-8\n    accelerator: {type: nvidia-tesla-a100}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: nvidia-tesla-a100 GPUs need a machine type of a2-highgpu-* or a2-megagpu-*, not g2-standard-8 (which comes with nvidia-l4 GPUs`},
		{"L4 on n1", head + "    region: us-central1\n    machine-type: n1-standard-8\n    accelerator:\n      type: nvidia-l4\n",
			`sluice.yaml:8:13: error: environments.gpu.accelerator.type: nvidia-l4 GPUs need a machine type of g2-standard-*, not n1-standard-8`},
		{"H100 on a2", head + "    region: us-central1\n    machine-type: a2-highgpu-1g\n    accelerator: {type: nvidia-h100-80gb, count: 1}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: nvidia-h100-80gb GPUs need a machine type of a3-highgpu-* or a3-edgegpu-*, not a2-highgpu-1g (which comes with nvidia-tesla-a100 GPUs`},
		{"GPU on e2", head + "    region: us-central1\n    machine-type: e2-standard-8\n    accelerator: {type: nvidia-tesla-t4}\n",
			`sluice.yaml:7:25: error: environments.gpu.accelerator.type: nvidia-tesla-t4 GPUs need a machine type of n1-*, not e2-standard-8`},
		{"count against machine type", head + "    region: us-central1\n    machine-type: a2-highgpu-2g\n    accelerator: {type: nvidia-tesla-a100, count: 1}\n",
			`sluice.yaml:7:51: error: environments.gpu.accelerator.count: a2-highgpu-2g comes with 2 nvidia-tesla-a100 GPUs, not 1`},
		{"n1 count", head + "    region: us-central1\n    machine-type: n1-standard-8\n    accelerator: {type: nvidia-tesla-t4, count: 3}\n",
			`sluice.yaml:7:49: error: environments.gpu.accelerator.count: an N1 machine takes nvidia-tesla-t4 GPUs in counts of 1, 2, 4, not 3`},
		{"no such g2", head + "    region: us-central1\n    machine-type: g2-standard-6\n",
			`sluice.yaml:6:19: error: environments.gpu.machine-type: machine type g2-standard-6 is not one Compute Engine offers with nvidia-l4 GPUs`},
		{"fallback checked too", head + "    region: us-central1\n    machine-type: g2-standard-8\n    fallback:\n      - {machine-type: n1-standard-4, accelerator: {type: nvidia-l4}}\n",
			`sluice.yaml:8:59: error: environments.gpu.fallback[0].accelerator.type: nvidia-l4 GPUs need a machine type of g2-standard-*, not n1-standard-4`},
		{"zone as region", head + "    region: us-central1-a\n    machine-type: n2-standard-4\n",
			`sluice.yaml:5:13: error: environments.gpu.region: "us-central1-a" is a zone; region takes its region, us-central1`},
		{"bad region", head + "    region: central\n    machine-type: n2-standard-4\n",
			`sluice.yaml:5:13: error: environments.gpu.region: "central" is not a Compute Engine region`},
		{"zone outside region", head + "    region: us-central1\n    zones: [us-central1-a, europe-west4-b]\n    machine-type: n2-standard-4\n",
			`sluice.yaml:6:28: error: environments.gpu.zones[1]: zone europe-west4-b is in region europe-west4, not in this environment's region us-central1`},
		{"not a zone", head + "    region: us-central1\n    zones: [a]\n    machine-type: n2-standard-4\n",
			`sluice.yaml:6:13: error: environments.gpu.zones[0]: "a" is not a Compute Engine zone: expected a zone of us-central1 such as us-central1-a`},
		{"no zones", head + "    region: us-central1\n    zones: []\n    machine-type: n2-standard-4\n",
			`sluice.yaml:6:12: error: environments.gpu.zones: zones is empty`},
		{"subnetwork elsewhere", head + "    region: us-central1\n    machine-type: n2-standard-4\n    subnetwork: regions/us-east1/subnetworks/default\n",
			`sluice.yaml:7:17: error: environments.gpu.subnetwork: subnetwork regions/us-east1/subnetworks/default is in region us-east1, not in this environment's region us-central1`},
		{"sluice label", head + "    region: us-central1\n    machine-type: n2-standard-4\n    labels: {sluice-run: x}\n",
			`sluice.yaml:7:14: error: environments.gpu.labels.sluice-run: label "sluice-run": the sluice- prefix is sluice's own`},
		{"label upper case", head + "    region: us-central1\n    machine-type: n2-standard-4\n    labels: {Team: x}\n",
			`sluice.yaml:7:14: error: environments.gpu.labels.Team: label name "Team" is not valid for Batch`},
		{"label value", head + "    region: us-central1\n    machine-type: n2-standard-4\n    labels: {team: ML Ops}\n",
			`sluice.yaml:7:20: error: environments.gpu.labels.team: label value "ML Ops" is not valid for Batch`},
		{"boot disk too small", head + "    region: us-central1\n    machine-type: n2-standard-4\n    boot-disk-gb: 5\n",
			`sluice.yaml:7:19: error: environments.gpu.boot-disk-gb: 5 is less than the minimum 10`},
		{"provisioning typo", head + "    region: us-central1\n    machine-type: n2-standard-4\n    provisioning: preemptible\n",
			`sluice.yaml:7:19: error: environments.gpu.provisioning: "preemptible" is not valid here; use one of: spot, standard`},
		{"spot fallback on standard", head + "    region: us-central1\n    machine-type: n2-standard-4\n    provisioning: standard\n    spot-fallback-after: 1\n",
			`sluice.yaml:8:26: error: environments.gpu.spot-fallback-after: spot-fallback-after moves a node from spot to standard VMs, but this environment's provisioning is already standard`},
		{"bad duration", head + "    region: us-central1\n    machine-type: n2-standard-4\n    queue-timeout: 10 fortnights\n",
			`sluice.yaml:7:20: error: environments.gpu.queue-timeout: unknown unit "fortnights" in duration`},
		{"zero duration", head + "    region: us-central1\n    machine-type: n2-standard-4\n    max-run-duration: 0\n",
			`sluice.yaml:7:23: error: environments.gpu.max-run-duration: max-run-duration 0 is no time at all`},
		{"retries a string", head + "    region: us-central1\n    machine-type: n2-standard-4\n    retries: three\n",
			`sluice.yaml:7:14: error: environments.gpu.retries: expected an integer, got a string ("three")`},
		{"hourly price negative", head + "    region: us-central1\n    machine-type: n2-standard-4\n    hourly-price: -1\n",
			`sluice.yaml:7:19: error: environments.gpu.hourly-price: -1 is less than the minimum 0`},
		{"max-cost without hourly-price", "max-cost: 10\n" + head + "    region: us-central1\n    machine-type: n2-standard-4\n",
			`sluice.yaml:3:3: error: environments.gpu: environment gpu has no hourly-price, so max-cost (line 1) cannot count what its VMs cost`},
		{"max-cost a string", "max-cost: lots\n",
			`sluice.yaml:1:11: error: max-cost: expected a price in USD, such as 20, got a string ("lots")`},
		{"unknown key", head + "    region: us-central1\n    machine-type: n2-standard-4\n    zone: us-central1-a\n",
			`sluice.yaml:7:5: error: environments.gpu.zone: unknown key "zone" in a batch environment (did you mean "zones"?)`},
		{"service account", head + "    region: us-central1\n    machine-type: n2-standard-4\n    service-account: runner\n",
			`sluice.yaml:7:22: error: environments.gpu.service-account: "runner" is not valid: expected a service account's email`},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc, diags := LoadSluiceConfig(writeSluice(t, dir, c.text), nil)
			got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("%s\n got %s\nwant %s", c.text, got, c.want)
			}
			if sc != nil || strings.Count(got, "\n") != strings.Count(c.want, "\n") {
				t.Errorf("want exactly one error and no config, got %d lines, config %v", strings.Count(got, "\n")+1, sc != nil)
			}
		})
	}
}

// Every accelerator-optimized machine type sluice knows names its GPUs.
func TestBuiltInGPUs(t *testing.T) {
	for mt, want := range map[string]struct {
		typ string
		n   int
	}{
		"a2-highgpu-1g": {"nvidia-tesla-a100", 1}, "a2-megagpu-16g": {"nvidia-tesla-a100", 16},
		"a2-ultragpu-8g": {"nvidia-a100-80gb", 8}, "g2-standard-4": {"nvidia-l4", 1}, "g2-standard-48": {"nvidia-l4", 4},
		"a3-highgpu-8g": {"nvidia-h100-80gb", 8}, "a3-megagpu-8g": {"nvidia-h100-mega-80gb", 8},
		"a3-ultragpu-8g": {"nvidia-h200-141gb", 8}, "a4-highgpu-8g": {"nvidia-b200", 8}, "g4-standard-96": {"nvidia-rtx-pro-6000", 2},
	} {
		typ, n, ok := builtInGPUs(mt)
		if !ok || typ != want.typ || n != want.n {
			t.Errorf("%s: %s x %d (%v), want %s x %d", mt, typ, n, ok, want.typ, want.n)
		}
	}
	for _, mt := range []string{"n1-standard-8", "e2-medium", "n2-highmem-16", "c3-standard-4"} {
		if typ, _, ok := builtInGPUs(mt); ok {
			t.Errorf("%s has no GPUs of its own, got %s", mt, typ)
		}
	}
}
