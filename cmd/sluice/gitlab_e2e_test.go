package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakegitlab"
	"github.com/sluice-ci/sluice/report"
)

// gitlabJob is the job of templates/sluice.yml with its inputs filled in:
// its variables and script, as GitLab would run them.
type gitlabJob struct {
	name      string
	variables map[string]string
	script    []string
}

// loadComponent reads the component file and renders its job with the
// inputs' defaults, overridden by inputs.
func loadComponent(t *testing.T, path string, inputs map[string]string) gitlabJob {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var header struct {
		Spec struct {
			Inputs map[string]struct {
				Default any `yaml:"default"`
			} `yaml:"inputs"`
		} `yaml:"spec"`
	}
	if err := dec.Decode(&header); err != nil {
		t.Fatalf("%s: the spec header: %v", path, err)
	}
	// The rest of the file, with $[[ inputs.x ]] interpolated as text.
	_, rest, ok := strings.Cut(string(data), "\n---\n")
	if !ok {
		t.Fatalf("%s: no --- after the spec header", path)
	}
	re := regexp.MustCompile(`\$\[\[\s*inputs\.([a-z0-9_-]+)\s*\]\]`)
	rest = re.ReplaceAllStringFunc(rest, func(m string) string {
		name := re.FindStringSubmatch(m)[1]
		if v, ok := inputs[name]; ok {
			return v
		}
		in, ok := header.Spec.Inputs[name]
		if !ok {
			t.Fatalf("%s uses input %q that the spec does not declare", path, name)
		}
		return fmt.Sprint(in.Default)
	})
	var jobs map[string]struct {
		Variables map[string]string `yaml:"variables"`
		Script    []string          `yaml:"script"`
	}
	if err := yaml.Unmarshal([]byte(rest), &jobs); err != nil {
		t.Fatalf("%s: the jobs: %v\n%s", path, err, rest)
	}
	if len(jobs) != 1 {
		t.Fatalf("%s: %d jobs, want 1", path, len(jobs))
	}
	for name, j := range jobs {
		return gitlabJob{name: name, variables: j.Variables, script: j.Script}
	}
	panic("unreachable")
}

// The job of the GitLab component, run as GitLab runs it: its script in a
// shell, with GitLab's predefined variables of a merge request pipeline, the
// API pointed at a stand-in GitLab (internal/fakegitlab, on loopback), and the
// Docker daemon reached over DOCKER_HOST=tcp:// as the docker:dind service is
// (a plain TCP proxy to the local daemon stands in for dind; its TLS is left
// out). The merge request note is posted and then kept up to date, the commit
// status follows the verdict, and so does the job's exit code.
func TestGitLabComponentJob(t *testing.T) {
	dockertest.Image(t)
	addr, proxied := dockerTCPProxy(t)
	job := loadComponent(t, filepath.Join("..", "..", "templates", "sluice.yml"), map[string]string{"job-name-prefix": "sluice"})
	if job.name != "sluice-run" || len(job.script) == 0 {
		t.Fatalf("job %q, script %q", job.name, job.script)
	}

	fake := fakegitlab.New("group/demo", 7)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	sha, base := strings.Repeat("c", 40), strings.Repeat("d", 40)
	fake.MRs[3] = sha

	// `sluice` on PATH is this test binary running main().
	bin := t.TempDir()
	shim := fmt.Sprintf("#!/bin/sh\nSLUICE_TEST_MAIN=1 exec %q \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(bin, "sluice"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "gate-fails"))); err != nil {
		t.Fatal(err)
	}
	run := func() (int, string) {
		t.Helper()
		var env []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(name, "GITHUB_") && !strings.HasPrefix(name, "CI_") && !strings.HasPrefix(name, "GITLAB") &&
				!strings.HasPrefix(name, "DOCKER_") && name != "PATH" {
				env = append(env, kv)
			}
		}
		for k, v := range job.variables {
			switch k {
			case "DOCKER_HOST":
				v = "tcp://" + addr
			case "DOCKER_TLS_CERTDIR", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY":
				continue // the proxy speaks plain TCP
			}
			env = append(env, k+"="+v)
		}
		env = append(env, "PATH="+bin+":"+os.Getenv("PATH"), "GITLAB_CI=true", "CI=true",
			"CI_SERVER_URL=https://gitlab.example.com", "CI_API_V4_URL="+srv.URL+"/api/v4",
			"CI_PROJECT_ID=7", "CI_PROJECT_PATH=group/demo", "CI_PROJECT_DIR="+dir, "CI_DEFAULT_BRANCH=main",
			"CI_PIPELINE_ID=99", "CI_PIPELINE_SOURCE=merge_request_event", "CI_JOB_URL=https://gitlab.example.com/group/demo/-/jobs/555",
			"CI_COMMIT_SHA="+sha, "CI_COMMIT_REF_NAME=feature", "CI_JOB_TOKEN=job-token-cannot-post",
			"CI_MERGE_REQUEST_IID=3", "CI_MERGE_REQUEST_PROJECT_ID=7", "CI_MERGE_REQUEST_PROJECT_PATH=group/demo",
			"CI_MERGE_REQUEST_SOURCE_PROJECT_ID=7", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=feature",
			"CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main", "CI_MERGE_REQUEST_DIFF_BASE_SHA="+base, "CI_MERGE_REQUEST_LABELS=",
			"SLUICE_GITLAB_TOKEN=glpat-stand-in-token")
		var log bytes.Buffer
		code := 0
		for _, line := range job.script {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			cmd := exec.CommandContext(ctx, "sh", "-c", line)
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &log, &log
			err := cmd.Run()
			cancel()
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
				break
			} else if err != nil {
				t.Fatalf("script %q: %v", line, err)
			}
		}
		return code, log.String()
	}

	// accuracy 0.5 against `min: 0.9`: the gate fails the job.
	code, log := run()
	notes := fake.Notes()
	if code != 2 || len(notes) != 1 || notes[0].IID != 3 || !strings.HasPrefix(notes[0].Body, report.Marker("p")) ||
		!strings.Contains(notes[0].Body, "❌ sluice: `p` failed") {
		t.Fatalf("exit %d (want 2), notes %+v\njob log:\n%s", code, notes, log)
	}
	st := fake.Statuses()
	if len(st) != 1 || st[0].SHA != sha || st[0].State != "failed" || st[0].Name != "sluice / p" || st[0].PipelineID != 99 ||
		st[0].TargetURL != "https://gitlab.example.com/group/demo/-/jobs/555" {
		t.Errorf("statuses %+v", st)
	}
	for _, r := range fake.Requests() {
		if r.Token != "glpat-stand-in-token" {
			t.Errorf("%s %s with token %q", r.Method, r.Path, r.Token)
		}
	}
	if proxied.Load() == 0 {
		t.Error("no connection reached Docker through DOCKER_HOST=tcp://")
	}
	metrics, err := os.ReadFile(filepath.Join(dir, job.variables["SLUICE_METRICS_FILE"]))
	if err != nil || !strings.Contains(string(metrics), "evaluate_accuracy 0.5\n") || !strings.HasSuffix(string(metrics), "# EOF\n") {
		t.Errorf("metrics.txt %q, %v", metrics, err)
	}
	dotenv, err := os.ReadFile(filepath.Join(dir, job.variables["SLUICE_DOTENV"]))
	if err != nil || !strings.Contains(string(dotenv), "SLUICE_VERDICT=failed\n") || !strings.Contains(string(dotenv), "SLUICE_EXIT_CODE=2\n") {
		t.Errorf("dotenv %q, %v", dotenv, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".sluice", "report.md")); err != nil {
		t.Errorf("the report artifact: %v", err)
	}
	if strings.Contains(log, "glpat-stand-in-token") {
		t.Errorf("the token is in the job log:\n%s", log)
	}

	// The threshold lowered: the job passes, the same note is edited, the
	// status turns to success.
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("gates:\n  - metric: evaluate.accuracy\n    direction: higher\n    min: 0.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, log = run()
	notes = fake.Notes()
	if code != 0 || len(notes) != 1 || !strings.Contains(notes[0].Body, "✅ sluice: `p` passed") {
		t.Fatalf("exit %d (want 0), notes %+v\njob log:\n%s", code, notes, log)
	}
	if st := fake.Statuses(); len(st) != 2 || st[1].State != "success" {
		t.Errorf("statuses %+v", st)
	}
}
