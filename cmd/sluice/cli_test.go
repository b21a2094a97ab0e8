package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpus = "../../spec/testdata/conformance/valohai-yaml/"

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// runCLIEnv is runCLI with the environment getenv instead of the process's.
func runCLIEnv(t *testing.T, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainEnv(context.Background(), getenv, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestLintExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"valid", []string{"lint", corpus + "examples/pipeline-example.yaml"}, 0, ""},
		{"errors", []string{"lint", corpus + "error_examples/invalid-edge-parts.yaml"}, 1, "invalid-edge-parts.yaml:19:42: error: "},
		{"warnings pass", []string{"lint", corpus + "warning_examples/ineffective-optional-on-flag.yaml"}, 0, "warning: "},
		{"warnings strict", []string{"lint", "--strict", corpus + "warning_examples/ineffective-optional-on-flag.yaml"}, 1, "warning: "},
		{"several files", []string{"lint", corpus + "examples/example1.yaml", corpus + "error_examples/step-invalid-resources.yaml"}, 1, "step-invalid-resources.yaml:7:14: error"},
		{"missing file", []string{"lint", "does-not-exist.yaml"}, 1, "does-not-exist.yaml: error: no such file"},
		{"bad format", []string{"lint", "--format", "xml", corpus + "examples/example1.yaml"}, 3, ""},
		{"unknown flag", []string{"lint", "--nope"}, 3, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			if !strings.Contains(out, c.out) {
				t.Errorf("stdout %q does not contain %q", out, c.out)
			}
		})
	}
}

func TestLintDefaultsToValohaiYAML(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(corpus + "examples/example2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "valohai.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if code, out, errOut := runCLI(t, "lint"); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

func TestLintJSON(t *testing.T) {
	code, out, _ := runCLI(t, "lint", "--format", "json", corpus+"error_examples/step-missing-required-properties.yaml")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var got struct {
		Errors      int `json:"errors"`
		Diagnostics []struct {
			File     string `json:"file"`
			Line     int    `json:"line"`
			Col      int    `json:"col"`
			Severity string `json:"severity"`
			Path     string `json:"path"`
			Message  string `json:"message"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.Errors != 4 || len(got.Diagnostics) != 4 {
		t.Fatalf("errors = %d, diagnostics = %d, want 4 each", got.Errors, len(got.Diagnostics))
	}
	d := got.Diagnostics[2]
	if d.Line != 2 || d.Col != 12 || d.Path != `step (item 1).image` || d.Severity != "error" {
		t.Errorf("diagnostic = %+v", d)
	}
}

func TestPlan(t *testing.T) {
	code, out, errOut := runCLI(t, "plan", "--reuse=false", "--pipeline", "My little pipeline", corpus+"examples/pipeline-example.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`pipeline "My little pipeline": 3 nodes, 6 edges, 3 layers`,
		"layer 1\n  batch1  (execution, step \"Batch feature extraction\")",
		"input training-images <- batch1.output.processed-images*",
		"after:   batch1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan does not contain %q:\n%s", want, out)
		}
	}
}

func TestPlanRendersCommandWithPipelineParameters(t *testing.T) {
	code, out, errOut := runCLI(t, "plan", "--reuse=false", "--pipeline", "Example Pipeline with Parameters", "-p", "param0-float=2.5", "--format", "json", corpus+"examples/pipeline-with-parameters-example.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Layers [][]struct {
			Name    string   `json:"name"`
			Command []string `json:"command"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	cmd := strings.Join(plan.Layers[0][0].Command, " && ")
	for _, want := range []string{"--id=123", "--param0-float=2.5", "--param0-int=0", "--listings=abc,def,ghi"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command %q lacks %q", cmd, want)
		}
	}
	if code, _, errOut := runCLI(t, "plan", "--reuse=false", "--pipeline", "Example Pipeline with Parameters", "-p", "nope=1", corpus+"examples/pipeline-with-parameters-example.yaml"); code != 3 || !strings.Contains(errOut, `no parameter "nope"`) {
		t.Errorf("unknown parameter: exit %d, %s", code, errOut)
	}
}

func TestPlanMermaid(t *testing.T) {
	code, out, _ := runCLI(t, "plan", "--reuse=false", "--format", "mermaid", "--pipeline", "My little pipeline", corpus+"examples/pipeline-example.yaml")
	if code != 0 || !strings.HasPrefix(out, "flowchart LR\n") || !strings.Contains(out, `n0["batch1<br/><small>Batch feature extraction</small><br/>local docker"]`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestPlanChoosingPipeline(t *testing.T) {
	code, _, errOut := runCLI(t, "plan", "--reuse=false", corpus+"examples/pipeline-example.yaml")
	if code != 3 || !strings.Contains(errOut, "choose one with --pipeline") {
		t.Errorf("several pipelines: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "plan", "--reuse=false", "--pipeline", "nope", corpus+"examples/pipeline-example.yaml")
	if code != 3 || !strings.Contains(errOut, `no pipeline "nope"`) {
		t.Errorf("unknown pipeline: exit %d, %s", code, errOut)
	}
	code, out, errOut := runCLI(t, "plan", "--reuse=false", "--step", "run training", corpus+"examples/example1.yaml")
	if code != 0 || !strings.Contains(out, "--seed=1") {
		t.Errorf("single step: exit %d, %s %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "plan", "--reuse=false", corpus+"error_examples/invalid-edge-parts.yaml")
	if code != 3 || !strings.Contains(errOut, "must have 3 parts") {
		t.Errorf("invalid file: exit %d, %s", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "sluice ") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

// Every example project's pipeline lints clean, warnings included.
func TestExamplesLint(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*/valohai.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	for _, f := range files {
		if code, out, errOut := runCLI(t, "lint", "--strict", f); code != 0 {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, errOut)
		}
		if code, _, errOut := runCLI(t, "plan", "--reuse=false", f); code != 0 {
			t.Errorf("plan %s: exit %d\n%s", f, code, errOut)
		}
	}
}

// -p sets a step's parameters when a single step is planned or run.
func TestPlanStepWithParameter(t *testing.T) {
	code, out, errOut := runCLI(t, "plan", "--reuse=false", "--step", "run training", "-p", "seed=7", corpus+"examples/example1.yaml")
	if code != 0 || !strings.Contains(out, "--seed=7") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "plan", "--reuse=false", "--step", "run training", "-p", "sed=7", corpus+"examples/example1.yaml")
	if code != 3 || !strings.Contains(errOut, `no parameter "sed"`) || !strings.Contains(errOut, "seed") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
