package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const envPipeline = `
- step:
    name: prepare
    image: busybox
    command: echo prepare
- step:
    name: train
    image: busybox
    command: echo train
    environment: gpu-v100
- pipeline:
    name: main
    nodes:
      - name: prepare
        type: execution
        step: prepare
      - name: train-big
        type: execution
        step: train
        override:
          environment: gpu-a100
    edges: []
`

// writeSluice writes text as sluice.yaml in dir and returns its path.
func writeSluice(t *testing.T, dir, text string) string {
	t.Helper()
	name := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLoadEnvironments(t *testing.T) {
	cfg := parseOK(t, envPipeline)
	dir := t.TempDir()
	sc, diags := LoadSluiceConfig(writeSluice(t, dir, `default-environment: local
environments:
  local:
    backend: docker
  gpu-v100:
    backend: docker
    max-parallel: 1
    transfer: store
    network: host
    image: ghcr.io/sluice-ci/sluice:v1
steps:
  prepare:
    environment: gpu-v100
`), cfg)
	if diags.HasErrors() || sc == nil {
		t.Fatalf("config %+v, %v", sc, diags)
	}
	if sc.DefaultEnvironment != "local" || len(sc.Environments) != 2 || sc.Steps["prepare"].Environment != "gpu-v100" {
		t.Fatalf("config %+v", sc)
	}
	want := Environment{Name: "gpu-v100", Backend: BackendDocker, MaxParallel: 1,
		Docker: DockerEnvironment{Transfer: TransferStore, Network: "host", Image: "ghcr.io/sluice-ci/sluice:v1"},
		File:   sc.File, Pos: Pos{Line: 5, Col: 3}}
	if got := *sc.Environments["gpu-v100"]; !reflect.DeepEqual(got, want) {
		t.Errorf("gpu-v100:\n got %+v\nwant %+v", got, want)
	}
	if got := *sc.Environments["local"]; got.Backend != BackendDocker || got.MaxParallel != 0 || got.Docker != (DockerEnvironment{}) || got.Pos != (Pos{Line: 3, Col: 3}) {
		t.Errorf("local: %+v", got)
	}

	for _, c := range []struct{ name, text, want string }{
		{"unknown backend", "environments:\n  gpu:\n    backend: nomad\n",
			`sluice.yaml:3:14: error: environments.gpu.backend: "nomad" is not valid here; use one of: docker, batch, kubernetes`},
		{"backend typo", "environments:\n  gpu:\n    backend: dokcer\n",
			`sluice.yaml:3:14: error: environments.gpu.backend: "dokcer" is not valid here; use one of: docker, batch, kubernetes (did you mean "docker"?)`},
		{"no backend", "environments:\n  gpu:\n    max-parallel: 2\n",
			`sluice.yaml:3:5: error: environments.gpu: missing required key "backend" (an environment needs ` + "`backend`)"},
		{"max-parallel 0", "environments:\n  gpu:\n    backend: docker\n    max-parallel: 0\n",
			`sluice.yaml:4:19: error: environments.gpu.max-parallel: max-parallel 0 lets no node of this environment run; give at least 1, or leave it out (then only --concurrency limits it)`},
		{"max-parallel negative", "environments:\n  gpu:\n    backend: docker\n    max-parallel: -3\n",
			`sluice.yaml:4:19: error: environments.gpu.max-parallel: max-parallel -3 lets no node of this environment run; give at least 1`},
		{"max-parallel fraction", "environments:\n  gpu:\n    backend: docker\n    max-parallel: 1.5\n",
			`sluice.yaml:4:19: error: environments.gpu.max-parallel: expected an integer, got a number (1.5)`},
		{"default unknown", "default-environment: gpu-v10\nenvironments:\n  gpu-v100:\n    backend: docker\n",
			`sluice.yaml:1:22: error: default-environment: environment "gpu-v10" is not a key of environments (did you mean "gpu-v100"?); they are: gpu-v100`},
		{"default without environments", "default-environment: gpu\n",
			`sluice.yaml:1:22: error: default-environment: environment "gpu" is not defined: sluice.yaml has no ` + "`environments:`"},
		{"default empty", "default-environment: ''\n",
			`sluice.yaml:1:22: error: default-environment: "" is not valid: expected an environment slug, a key of environments`},
		{"step environment unknown", "environments:\n  gpu-v100:\n    backend: docker\nsteps:\n  train:\n    environment: gpu-v10\n",
			`sluice.yaml:6:18: error: steps.train.environment: environment "gpu-v10" is not a key of environments (did you mean "gpu-v100"?); they are: gpu-v100`},
		{"transfer bogus", "environments:\n  gpu:\n    backend: docker\n    transfer: bogus\n",
			`sluice.yaml:4:15: error: environments.gpu.transfer: "bogus" is not valid here; use one of: auto, copy, bind, store`},
		{"unknown key", "environments:\n  gpu:\n    backend: docker\n    netwrok: host\n",
			`sluice.yaml:4:5: error: environments.gpu.netwrok: unknown key "netwrok" in a docker environment (did you mean "network"?); valid keys: backend, max-parallel, transfer, network, image`},
		{"unknown key, unknown backend", "environments:\n  gpu:\n    backend: nope\n    zone: x\n",
			"sluice.yaml:3:14: error: environments.gpu.backend: \"nope\" is not valid here; use one of: docker, batch, kubernetes\n" +
				`sluice.yaml:4:5: error: environments.gpu.zone: unknown key "zone" in an environment (did you mean "zones"?); valid keys: backend, max-parallel, transfer, network, image, project, region, zones,`},
		{"empty network", "environments:\n  gpu:\n    backend: docker\n    network: ' '\n",
			`sluice.yaml:4:14: error: environments.gpu.network: " " is not valid: expected a Docker network name, such as host`},
		{"entry not a mapping", "environments:\n  gpu: docker\n",
			`sluice.yaml:2:8: error: environments.gpu: expected a mapping of settings, such as ` + "`backend: docker`" + `, got a string ("docker")`},
		{"empty slug", "environments:\n  '':\n    backend: docker\n",
			"sluice.yaml:2:3: error: environments: an environment slug cannot be empty ('')"},
		{"environments a list", "environments:\n  - gpu\n",
			`sluice.yaml:2:3: error: environments: expected a mapping of environment slugs to where their steps run, got a list`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, diags := LoadSluiceConfig(writeSluice(t, dir, c.text), cfg)
			got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("%q:\n got %s\nwant %s", c.text, got, c.want)
			}
		})
	}
}

// A key of another backend says whose it is, rather than "unknown key".
func TestEnvironmentKeyOfAnotherBackend(t *testing.T) {
	dir := t.TempDir()
	_, diags := LoadSluiceConfig(writeSluice(t, dir, `environments:
  gpu:
    backend: batch
    project: ml-team
    region: us-central1
    machine-type: g2-standard-8
    transfer: copy
  cpu:
    backend: docker
    zones: [us-central1-a]
    netwrk: y
`), nil)
	got := strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "")
	want := `sluice.yaml:7:5: error: environments.gpu.transfer: "transfer" is a setting of backend docker; this environment's backend is batch, whose settings are: backend, max-parallel, project, region, zones, machine-type,
sluice.yaml:10:5: error: environments.cpu.zones: "zones" is a setting of backend batch; this environment's backend is docker, whose settings are: backend, max-parallel, transfer, network, image
sluice.yaml:11:5: error: environments.cpu.netwrk: unknown key "netwrk" in a docker environment (did you mean "network"?)`
	for _, line := range strings.Split(want, "\n") {
		if !strings.Contains(got, line) {
			t.Errorf("got\n%s\nwant a line starting\n%s", got, line)
		}
	}
	if strings.Count(got, "\n") != 2 {
		t.Errorf("want three errors, got\n%s", got)
	}
}

// EnvironmentOf: sluice.yaml's step setting first, then what valohai.yaml
// names (the node's override applied), then default-environment; a slug
// without an entry runs on the local Docker host (nil).
func TestEnvironmentOf(t *testing.T) {
	gpu := &Environment{Name: "gpu", Backend: BackendDocker}
	cpu := &Environment{Name: "cpu", Backend: BackendDocker}
	sc := &SluiceConfig{
		Environments:       map[string]*Environment{"gpu": gpu, "cpu": cpu},
		DefaultEnvironment: "cpu",
		Steps:              map[string]StepConfig{"train": {Environment: "gpu"}, "plain": {}},
	}
	for _, c := range []struct {
		name          string
		sc            *SluiceConfig
		step, stepEnv string
		slug          string
		env           *Environment
	}{
		{"sluice.yaml step setting wins", sc, "train", "cpu", "gpu", gpu},
		{"sluice.yaml step setting over none", sc, "train", "", "gpu", gpu},
		{"valohai.yaml environment", sc, "evaluate", "gpu", "gpu", gpu},
		{"step section without environment", sc, "plain", "gpu", "gpu", gpu},
		{"default environment", sc, "evaluate", "", "cpu", cpu},
		{"unmapped slug", sc, "evaluate", "gpu-v100", "gpu-v100", nil},
		{"no default, no slug", &SluiceConfig{}, "evaluate", "", "", nil},
		{"no sluice.yaml", nil, "train", "gpu-v100", "gpu-v100", nil},
		{"no sluice.yaml, no slug", nil, "train", "", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			slug, env := c.sc.EnvironmentOf(c.step, c.stepEnv)
			if slug != c.slug || env != c.env {
				t.Errorf("EnvironmentOf(%q, %q) = %q, %v; want %q, %v", c.step, c.stepEnv, slug, env, c.slug, c.env)
			}
		})
	}
}

func TestLintEnvironments(t *testing.T) {
	cfg := parseOK(t, envPipeline)
	// Without sluice.yaml: both the step's and the override's slug are unmapped.
	diags := LintEnvironments(cfg, nil)
	if len(diags) != 2 || diags.HasErrors() {
		t.Fatalf("without sluice.yaml: %v", diags)
	}
	if d := diags[0]; d.Line != 10 || d.Col != 18 || d.Path != `step "train".environment` ||
		!strings.HasPrefix(d.Message, `step "train" names environment "gpu-v100", which sluice.yaml does not map: it runs on the local Docker host`) {
		t.Errorf("step warning: %s", d)
	}
	if d := diags[1]; d.Line != 21 || d.Col != 24 || d.Path != `pipeline "main".nodes[1].override.environment` ||
		!strings.HasPrefix(d.Message, `node "train-big" of pipeline "main" names environment "gpu-a100"`) {
		t.Errorf("override warning: %s", d)
	}
	// Mapped slugs, and a step that sluice.yaml sends elsewhere, are not warned about.
	dir := t.TempDir()
	sc, scDiags := LoadSluiceConfig(writeSluice(t, dir, "environments:\n  gpu-v100: {backend: docker}\n  gpu-a10: {backend: docker}\n"), cfg)
	if scDiags.HasErrors() {
		t.Fatal(scDiags)
	}
	diags = LintEnvironments(cfg, sc)
	if len(diags) != 1 || !strings.Contains(diags[0].Message, `"gpu-a100", which sluice.yaml does not map (did you mean "gpu-a10"?)`) {
		t.Errorf("with gpu-v100 mapped: %v", diags)
	}
	sc.Steps["train"] = StepConfig{Environment: "gpu-v100"}
	if diags := LintEnvironments(cfg, sc); len(diags) != 0 {
		t.Errorf("with train sent to gpu-v100: %v", diags)
	}
}

// TestLintEnvironmentsGolden checks what `sluice lint` prints for a
// valohai.yaml and the sluice.yaml beside it: one folder per scenario
// under testdata/environments, its output in lint.golden.
func TestLintEnvironmentsGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/environments/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, _, diags := LintFile(filepath.Join(dir, "valohai.yaml"))
			var b strings.Builder
			for _, d := range diags {
				b.WriteString(d.String())
				b.WriteByte('\n')
			}
			got := b.String()
			golden := filepath.Join(dir, "lint.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for _, d := range diags {
				if d.Line == 0 || d.Col == 0 {
					t.Errorf("diagnostic without a position: %s", d)
				}
			}
		})
	}
}

// The plan says where each node runs, in text, JSON and Mermaid.
func TestPlanWhere(t *testing.T) {
	cfg := parseOK(t, envPipeline)
	pp, err := cfg.NewPipelinePlan(cfg.Pipeline("main"), nil)
	if err != nil {
		t.Fatal(err)
	}
	where := func() map[string]string {
		out := map[string]string{}
		var b strings.Builder
		if err := pp.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		node := ""
		for _, line := range strings.Split(b.String(), "\n") {
			if name, _, ok := strings.Cut(strings.TrimPrefix(line, "  "), "  ("); ok && !strings.HasPrefix(line, "    ") {
				node = name
			}
			if s, ok := strings.CutPrefix(line, "    runs on: "); ok {
				out[node] = s
			}
		}
		for _, layer := range pp.JSON()["layers"].([][]map[string]any) {
			for _, m := range layer {
				out[m["name"].(string)+" json"] = fmt.Sprintf("%v %v %v %v", m["environment"], m["backend"], m["mapped"], m["max_parallel"])
			}
		}
		return out
	}
	// No sluice.yaml: everything on local docker; the slugs still show.
	got := where()
	for k, want := range map[string]string{
		"prepare":        "local docker",
		"train-big":      `local docker (environment "gpu-a100" is not in sluice.yaml)`,
		"prepare json":   " docker false <nil>",
		"train-big json": "gpu-a100 docker false <nil>",
	} {
		if got[k] != want {
			t.Errorf("no sluice.yaml, %s: %q, want %q", k, got[k], want)
		}
	}
	if m := pp.Mermaid(); !strings.Contains(m, `n0["prepare<br/>local docker"]`) || !strings.Contains(m, `n1["train-big<br/><small>train</small><br/>local docker"]`) {
		t.Errorf("mermaid without sluice.yaml:\n%s", m)
	}

	// default-environment places prepare; the override's slug places train-big.
	pp.Sluice = &SluiceConfig{DefaultEnvironment: "cpu", Environments: map[string]*Environment{
		"cpu":      {Name: "cpu", Backend: BackendDocker},
		"gpu-a100": {Name: "gpu-a100", Backend: BackendDocker, MaxParallel: 2},
	}}
	got = where()
	for k, want := range map[string]string{
		"prepare":        `docker (environment "cpu")`,
		"train-big":      `docker (environment "gpu-a100", at most 2 at once)`,
		"prepare json":   "cpu docker true <nil>",
		"train-big json": "gpu-a100 docker true 2",
	} {
		if got[k] != want {
			t.Errorf("with sluice.yaml, %s: %q, want %q", k, got[k], want)
		}
	}
	if m := pp.Mermaid(); !strings.Contains(m, `n0["prepare<br/>cpu (docker)"]`) || !strings.Contains(m, `n1["train-big<br/><small>train</small><br/>gpu-a100 (docker)"]`) {
		t.Errorf("mermaid with sluice.yaml:\n%s", m)
	}
}
