package spec

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const kubeFull = `max-cost: 20
environments:
  gke-gpu:
    backend: kubernetes
    max-parallel: 2
    kubeconfig: ~/.kube/ml
    context: gke_ml-team_us-central1_ml
    namespace: ml-ci
    service-account: sluice-step
    image-pull-secrets: [ghcr, registry.example.com]
    labels: {team: ml, example.com/cost-center: "1234", empty: ""}
    annotations: {sidecar.istio.io/inject: "false", note: "any text at all"}
    node-selector: {cloud.google.com/gke-accelerator: nvidia-l4}
    tolerations:
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
      - {key: spot, value: "true", effect: NoExecute, toleration-seconds: 60}
      - {operator: Exists}
    priority-class: ci-low
    gpu-resource: amd.com/gpu
    gpus: 2
    queue-timeout: 5m
    retries: 0
    ttl-after-finished: 2h
    hourly-price: 0.70
    image: ghcr.io/sluice-ci/sluice:v1
  cpu:
    backend: kubernetes
    in-cluster: true
    hourly-price: 0.05
`

func TestLoadKubeEnvironment(t *testing.T) {
	dir := t.TempDir()
	sc, diags := LoadSluiceConfig(writeSluice(t, dir, kubeFull), nil)
	if diags.HasErrors() || sc == nil {
		t.Fatalf("config %+v, %v", sc, diags)
	}
	zero, price, cpuPrice, sixty := 0, 0.70, 0.05, int64(60)
	want := KubeEnvironment{
		Kubeconfig: "~/.kube/ml", Context: "gke_ml-team_us-central1_ml", Namespace: "ml-ci",
		ServiceAccount: "sluice-step", ImagePullSecrets: []string{"ghcr", "registry.example.com"},
		Labels:       map[string]string{"team": "ml", "example.com/cost-center": "1234", "empty": ""},
		Annotations:  map[string]string{"sidecar.istio.io/inject": "false", "note": "any text at all"},
		NodeSelector: map[string]string{"cloud.google.com/gke-accelerator": "nvidia-l4"},
		Tolerations: []KubeToleration{
			{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"},
			{Key: "spot", Operator: "Equal", Value: "true", Effect: "NoExecute", Seconds: &sixty},
			{Operator: "Exists"},
		},
		PriorityClass: "ci-low", GPUResource: "amd.com/gpu", GPUs: 2,
		QueueTimeout: 5 * time.Minute, Retries: &zero, TTLAfterFinished: 2 * time.Hour,
		HourlyPrice: &price, Image: "ghcr.io/sluice-ci/sluice:v1",
	}
	env := sc.Environments["gke-gpu"]
	if env.Backend != BackendKubernetes || env.MaxParallel != 2 || env.Pos != (Pos{Line: 3, Col: 3}) {
		t.Errorf("gke-gpu: %+v", env)
	}
	if !reflect.DeepEqual(env.Kube, want) {
		t.Errorf("gke-gpu:\n got %+v\nwant %+v", env.Kube, want)
	}
	if env.Kube.RetriesOr() != 0 {
		t.Errorf("retries: 0 reads as %d", env.Kube.RetriesOr())
	}
	if got, want := env.Kube.Describe(), "context gke_ml-team_us-central1_ml, namespace ml-ci, 2 x amd.com/gpu, nodes cloud.google.com/gke-accelerator=nvidia-l4, priority ci-low"; got != want {
		t.Errorf("describe:\n got %s\nwant %s", got, want)
	}
	// The defaults: namespace default, nvidia.com/gpu, 10 minutes' queue,
	// an hour's TTL, 3 retries.
	cpu := sc.Environments["cpu"].Kube
	wantCPU := KubeEnvironment{InCluster: true, Namespace: "default", GPUResource: "nvidia.com/gpu",
		QueueTimeout: 10 * time.Minute, TTLAfterFinished: time.Hour, HourlyPrice: &cpuPrice}
	if !reflect.DeepEqual(cpu, wantCPU) || cpu.RetriesOr() != 3 {
		t.Errorf("cpu:\n got %+v\nwant %+v", cpu, wantCPU)
	}
	if got := cpu.Describe(); got != "in-cluster, namespace default" {
		t.Errorf("describe cpu: %s", got)
	}
	if got := (KubeEnvironment{GPUs: 1}).Describe(); got != "the kubeconfig's current context, namespace default, 1 x nvidia.com/gpu" {
		t.Errorf("describe the zero value: %s", got)
	}
}

// Each bad kubernetes setting is one error at its own line and column,
// before any Job exists.
func TestKubeEnvironmentErrors(t *testing.T) {
	const head = "environments:\n  gke:\n    backend: kubernetes\n" // lines 1-3
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"gpus without resource (null)", head + "    gpu-resource: null\n    gpus: 1\n",
			`sluice.yaml:5:11: error: environments.gke.gpus: gpus 1, but gpu-resource (line 4) is empty: a GPU count needs a GPU resource name such as nvidia.com/gpu`},
		{"gpus without resource (empty)", head + "    gpus: 2\n    gpu-resource: ''\n",
			`sluice.yaml:4:11: error: environments.gke.gpus: gpus 2, but gpu-resource (line 5) is empty: a GPU count needs a GPU resource name such as nvidia.com/gpu`},
		{"resource without domain", head + "    gpu-resource: gpu\n",
			`sluice.yaml:4:19: error: environments.gke.gpu-resource: "gpu" is not an extended resource name: it needs a domain, domain/name, such as nvidia.com/gpu or amd.com/gpu`},
		{"resource in kubernetes.io", head + "    gpu-resource: kubernetes.io/gpu\n",
			`sluice.yaml:4:19: error: environments.gke.gpu-resource: "kubernetes.io/gpu" is not an extended resource name: the kubernetes.io domain is Kubernetes' own`},
		{"resource bad domain", head + "    gpu-resource: NVIDIA.com/gpu\n",
			`sluice.yaml:4:19: error: environments.gke.gpu-resource: "NVIDIA.com/gpu" is not an extended resource name: the prefix "NVIDIA.com" must be a DNS subdomain`},
		{"negative gpus", head + "    gpus: -1\n",
			`sluice.yaml:4:11: error: environments.gke.gpus: -1 is less than the minimum 0`},
		{"in-cluster and kubeconfig", head + "    kubeconfig: ~/.kube/config\n    in-cluster: true\n",
			`sluice.yaml:4:17: error: environments.gke.kubeconfig: kubeconfig and in-cluster: true (line 5) both say how to reach the cluster`},
		{"in-cluster false and kubeconfig", head + "    kubeconfig: ~/.kube/config\n    in-cluster: false\n    namespace: Bad\n",
			`sluice.yaml:6:16: error: environments.gke.namespace: "Bad" is not valid: expected a namespace name (an RFC 1123 label`},
		{"namespace too long", head + "    namespace: " + strings.Repeat("a", 64) + "\n",
			`sluice.yaml:4:16: error: environments.gke.namespace: "` + strings.Repeat("a", 64) + `" is 64 characters long; at most 63 are allowed`},
		{"service account", head + "    service-account: runner@ml.iam.gserviceaccount.com\n",
			`sluice.yaml:4:22: error: environments.gke.service-account: "runner@ml.iam.gserviceaccount.com" is not valid: expected the name of a service account`},
		{"pull secret", head + "    image-pull-secrets: [Ghcr]\n",
			`sluice.yaml:4:26: error: environments.gke.image-pull-secrets[0]: "Ghcr" is not valid: expected the name of a secret`},
		{"sluice label", head + "    labels: {sluice-ttl: '1'}\n",
			`sluice.yaml:4:14: error: environments.gke.labels.sluice-ttl: label "sluice-ttl": the sluice- prefix is sluice's own`},
		{"label key", head + "    labels: {'team name': ml}\n",
			`sluice.yaml:4:14: error: environments.gke.labels.team name: label key "team name" is not valid for Kubernetes: the name "team name" must be at most 63`},
		{"label key prefix", head + "    labels: {Example.com/team: ml}\n",
			`sluice.yaml:4:14: error: environments.gke.labels.Example.com/team: label key "Example.com/team" is not valid for Kubernetes: the prefix "Example.com" must be a DNS subdomain`},
		{"label value", head + "    labels: {team: -ml}\n",
			`sluice.yaml:4:20: error: environments.gke.labels.team: label value "-ml" is not valid for Kubernetes`},
		{"label value a number", head + "    labels: {cost-center: 1234}\n",
			`sluice.yaml:4:27: error: environments.gke.labels.cost-center: expected a string, got an integer (1234)`},
		{"annotation key", head + "    annotations: {a/b/c: x}\n",
			`sluice.yaml:4:19: error: environments.gke.annotations.a/b/c: annotation key "a/b/c" is not valid for Kubernetes: a key has at most one /`},
		{"node selector value", head + "    node-selector: {pool: 'gpu pool'}\n",
			`sluice.yaml:4:27: error: environments.gke.node-selector.pool: node label value "gpu pool" is not valid for Kubernetes`},
		{"exists with value", head + "    tolerations:\n      - {key: gpu, operator: Exists, value: present}\n",
			`sluice.yaml:5:45: error: environments.gke.tolerations[0].value: value "present" with operator: Exists: the API server refuses it`},
		{"seconds without NoExecute", head + "    tolerations:\n      - {key: gpu, effect: NoSchedule, toleration-seconds: 30}\n",
			`sluice.yaml:5:60: error: environments.gke.tolerations[0].toleration-seconds: toleration-seconds is only for effect: NoExecute`},
		{"no key, Equal", head + "    tolerations:\n      - {value: x}\n",
			`sluice.yaml:5:9: error: environments.gke.tolerations[0].key: a toleration with no key matches every taint, which only operator: Exists can say`},
		{"operator typo", head + "    tolerations:\n      - {key: gpu, operator: exists}\n",
			`sluice.yaml:5:30: error: environments.gke.tolerations[0].operator: "exists" is not valid here; use one of: Exists, Equal (did you mean "Exists"?)`},
		{"effect typo", head + "    tolerations:\n      - {key: gpu, operator: Exists, effect: NoScheduled}\n",
			`sluice.yaml:5:46: error: environments.gke.tolerations[0].effect: "NoScheduled" is not valid here; use one of: NoSchedule, PreferNoSchedule, NoExecute (did you mean "NoSchedule"?)`},
		{"toleration unknown key", head + "    tolerations:\n      - {key: gpu, operater: Exists}\n",
			`sluice.yaml:5:20: error: environments.gke.tolerations[0].operater: unknown key "operater" in a toleration (did you mean "operator"?)`},
		{"zero queue timeout", head + "    queue-timeout: 0\n",
			`sluice.yaml:4:20: error: environments.gke.queue-timeout: queue-timeout 0 is no time at all`},
		{"ttl fraction", head + "    ttl-after-finished: 1.5s\n",
			`sluice.yaml:4:25: error: environments.gke.ttl-after-finished: ttl-after-finished '1.5s' is not a whole number of seconds`},
		{"retries too many", head + "    retries: 101\n",
			`sluice.yaml:4:14: error: environments.gke.retries: 101 is greater than the maximum 100`},
		{"max-cost without hourly-price", "max-cost: 10\n" + head,
			`sluice.yaml:3:3: error: environments.gke: environment gke has no hourly-price, so max-cost (line 1) cannot count what its nodes cost; give its price per node hour in USD`},
		{"a batch key", head + "    machine-type: n1-standard-4\n",
			`sluice.yaml:4:5: error: environments.gke.machine-type: "machine-type" is a setting of backend batch; this environment's backend is kubernetes, whose settings are: backend, max-parallel, kubeconfig, context, in-cluster,`},
		{"unknown key", head + "    namespaces: ml\n",
			`sluice.yaml:4:5: error: environments.gke.namespaces: unknown key "namespaces" in a kubernetes environment (did you mean "namespace"?)`},
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
