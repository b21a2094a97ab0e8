package ci

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// env is a fake environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// githubEnv is what the runner sets in every job, plus extra.
func githubEnv(event, sha, ref string, extra env) env {
	e := env{
		"GITHUB_ACTIONS":    "true",
		"GITHUB_REPOSITORY": "acme/models",
		"GITHUB_EVENT_NAME": event,
		"GITHUB_SHA":        sha,
		"GITHUB_REF":        ref,
		"GITHUB_RUN_ID":     "9876543210",
		"GITHUB_SERVER_URL": "https://github.com",
		"GITHUB_API_URL":    "https://api.github.com",
		"GITHUB_WORKSPACE":  "/home/runner/work/models/models",
		"GITHUB_TOKEN":      "ghs_env",
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// Trimmed but real-shaped payloads: the fields GitHub sends around the ones
// Detect reads are kept where they could be confused with them.
const (
	prSameRepo = `{
  "action": "synchronize",
  "number": 42,
  "pull_request": {
    "url": "https://api.github.com/repos/acme/models/pulls/42",
    "id": 1, "number": 42, "state": "open",
    "labels": [{"id": 7, "name": "ml"}, {"id": 8, "name": "retrain"}],
    "merge_commit_sha": "mmmm000000000000000000000000000000000000",
    "head": {"label": "acme:feature", "ref": "feature", "sha": "hhhh000000000000000000000000000000000000",
             "repo": {"id": 100, "name": "models", "full_name": "acme/models", "default_branch": "main"}},
    "base": {"label": "acme:main", "ref": "main", "sha": "bbbb000000000000000000000000000000000000",
             "repo": {"id": 100, "name": "models", "full_name": "acme/models", "default_branch": "main"}}
  },
  "repository": {"id": 100, "name": "models", "full_name": "acme/models", "default_branch": "main"},
  "sender": {"login": "alice"}
}`
	prFork = `{
  "action": "opened",
  "number": 43,
  "pull_request": {
    "number": 43, "labels": [],
    "head": {"label": "mallory:main", "ref": "main", "sha": "ffff000000000000000000000000000000000000",
             "repo": {"id": 555, "name": "models", "full_name": "mallory/models", "default_branch": "main"}},
    "base": {"label": "acme:main", "ref": "main", "sha": "bbbb000000000000000000000000000000000000",
             "repo": {"id": 100, "name": "models", "full_name": "acme/models", "default_branch": "main"}}
  },
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"}
}`
	prDeletedFork = `{
  "number": 44,
  "pull_request": {
    "number": 44,
    "head": {"ref": "patch-1", "sha": "dddd000000000000000000000000000000000000", "repo": null},
    "base": {"ref": "main", "sha": "bbbb000000000000000000000000000000000000",
             "repo": {"id": 100, "full_name": "acme/models"}}
  },
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"}
}`
	push = `{
  "ref": "refs/heads/main",
  "before": "0000000000000000000000000000000000000001",
  "after": "aaaa000000000000000000000000000000000000",
  "created": false, "deleted": false,
  "head_commit": {"id": "aaaa000000000000000000000000000000000000"},
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main", "master_branch": "main"}
}`
	pushTag = `{
  "ref": "refs/tags/v1.2.0",
  "after": "tttt000000000000000000000000000000000000",
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"}
}`
	workflowRunSameRepo = `{
  "action": "completed",
  "workflow_run": {
    "id": 30433642, "name": "ci", "event": "pull_request", "status": "completed", "conclusion": "success",
    "head_branch": "feature", "head_sha": "hhhh000000000000000000000000000000000000",
    "pull_requests": [{
      "url": "https://api.github.com/repos/acme/models/pulls/42", "id": 1, "number": 42,
      "head": {"ref": "feature", "sha": "hhhh000000000000000000000000000000000000",
               "repo": {"id": 100, "url": "https://api.github.com/repos/acme/models", "name": "models"}},
      "base": {"ref": "main", "sha": "bbbb000000000000000000000000000000000000",
               "repo": {"id": 100, "url": "https://api.github.com/repos/acme/models", "name": "models"}}
    }],
    "head_repository": {"id": 100, "full_name": "acme/models"},
    "repository": {"id": 100, "full_name": "acme/models"}
  },
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"}
}`
	workflowRunFork = `{
  "action": "completed",
  "workflow_run": {
    "event": "pull_request",
    "head_branch": "main", "head_sha": "ffff000000000000000000000000000000000000",
    "pull_requests": [],
    "head_repository": {"id": 555, "full_name": "mallory/models"},
    "repository": {"id": 100, "full_name": "acme/models"}
  },
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"}
}`
	dispatch = `{
  "inputs": {"pipeline": "train"},
  "ref": "refs/heads/experiment",
  "repository": {"id": 100, "full_name": "acme/models", "default_branch": "main"},
  "workflow": ".github/workflows/sluice.yml"
}`
)

func writeEvent(t *testing.T, payload string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(path, []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDetectGitHub(t *testing.T) {
	const jobURL = "https://github.com/acme/models/actions/runs/9876543210"
	const workspace = "/home/runner/work/models/models"
	tests := []struct {
		name     string
		payload  string
		env      env
		want     Context
		wantFork bool
	}{{
		name:    "pull_request from the same repository",
		payload: prSameRepo,
		// GITHUB_SHA is the test merge commit; the head is in the payload.
		env: githubEnv("pull_request", "mmmm000000000000000000000000000000000000", "refs/pull/42/merge",
			env{"GITHUB_HEAD_REF": "feature", "GITHUB_BASE_REF": "main"}),
		want: Context{Number: 42, Event: "pull_request",
			HeadSHA: "hhhh000000000000000000000000000000000000", BaseSHA: "bbbb000000000000000000000000000000000000",
			Commit: "mmmm000000000000000000000000000000000000", Branch: "feature", TargetBranch: "main",
			DefaultBranch: "main", Labels: []string{"ml", "retrain"}, Token: "ghs_env"},
	}, {
		name:    "pull_request from a fork",
		payload: prFork,
		env: githubEnv("pull_request", "mmmm000000000000000000000000000000000000", "refs/pull/43/merge",
			env{"INPUT_TOKEN": "ghp_input"}),
		want: Context{Number: 43, Event: "pull_request",
			HeadSHA: "ffff000000000000000000000000000000000000", BaseSHA: "bbbb000000000000000000000000000000000000",
			Commit: "mmmm000000000000000000000000000000000000", Branch: "main", TargetBranch: "main",
			DefaultBranch: "main", Fork: true, Token: "ghp_input"},
	}, {
		name:    "pull_request whose fork was deleted",
		payload: prDeletedFork,
		env:     githubEnv("pull_request", "mmmm000000000000000000000000000000000000", "refs/pull/44/merge", nil),
		want: Context{Number: 44, Event: "pull_request",
			HeadSHA: "dddd000000000000000000000000000000000000", BaseSHA: "bbbb000000000000000000000000000000000000",
			Commit: "mmmm000000000000000000000000000000000000", Branch: "patch-1", TargetBranch: "main",
			DefaultBranch: "main", Fork: true, Token: "ghs_env"},
	}, {
		name:    "pull_request_target from a fork",
		payload: prFork,
		// GITHUB_SHA is the base branch's last commit here.
		env: githubEnv("pull_request_target", "cccc000000000000000000000000000000000000", "refs/heads/main", nil),
		want: Context{Number: 43, Event: "pull_request_target",
			HeadSHA: "ffff000000000000000000000000000000000000", BaseSHA: "bbbb000000000000000000000000000000000000",
			Commit: "cccc000000000000000000000000000000000000", Branch: "main", TargetBranch: "main",
			DefaultBranch: "main", Fork: true, Token: "ghs_env"},
	}, {
		name:    "push to a branch",
		payload: push,
		env: githubEnv("push", "aaaa000000000000000000000000000000000000", "refs/heads/main",
			env{"GITHUB_REF_NAME": "main"}),
		want: Context{Event: "push", HeadSHA: "aaaa000000000000000000000000000000000000",
			Commit: "aaaa000000000000000000000000000000000000", Branch: "main", DefaultBranch: "main", Token: "ghs_env"},
	}, {
		name:    "push of a tag is not a branch",
		payload: pushTag,
		env: githubEnv("push", "tttt000000000000000000000000000000000000", "refs/tags/v1.2.0",
			env{"GITHUB_REF_NAME": "v1.2.0"}),
		want: Context{Event: "push", HeadSHA: "tttt000000000000000000000000000000000000",
			Commit: "tttt000000000000000000000000000000000000", DefaultBranch: "main", Token: "ghs_env"},
	}, {
		name:    "workflow_run for a pull request in the same repository",
		payload: workflowRunSameRepo,
		// GITHUB_SHA is the default branch's head for workflow_run.
		env: githubEnv("workflow_run", "cccc000000000000000000000000000000000000", "refs/heads/main", nil),
		want: Context{Event: "workflow_run", Number: 42,
			HeadSHA: "hhhh000000000000000000000000000000000000", BaseSHA: "bbbb000000000000000000000000000000000000",
			Commit: "cccc000000000000000000000000000000000000", Branch: "feature", TargetBranch: "main",
			DefaultBranch: "main", Token: "ghs_env"},
	}, {
		name:    "workflow_run for a fork has no pull request number",
		payload: workflowRunFork,
		env:     githubEnv("workflow_run", "cccc000000000000000000000000000000000000", "refs/heads/main", nil),
		want: Context{Event: "workflow_run",
			HeadSHA: "ffff000000000000000000000000000000000000",
			Commit:  "cccc000000000000000000000000000000000000", Branch: "main",
			DefaultBranch: "main", Fork: true, Token: "ghs_env"},
	}, {
		name:    "workflow_dispatch",
		payload: dispatch,
		env:     githubEnv("workflow_dispatch", "eeee000000000000000000000000000000000000", "refs/heads/experiment", nil),
		want: Context{Event: "workflow_dispatch", HeadSHA: "eeee000000000000000000000000000000000000",
			Commit: "eeee000000000000000000000000000000000000", Branch: "experiment", DefaultBranch: "main", Token: "ghs_env"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["GITHUB_EVENT_PATH"] = writeEvent(t, tt.payload)
			got, err := Detect(tt.env.get)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Platform = GitHub
			want.Repository = "acme/models"
			want.APIURL = "https://api.github.com"
			want.ServerURL = "https://github.com"
			want.JobURL = jobURL
			want.Workspace = workspace
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Detect:\n got %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestDetectGitHubHeadIsNotMergeCommit(t *testing.T) {
	e := githubEnv("pull_request", "mmmm000000000000000000000000000000000000", "refs/pull/42/merge", nil)
	e["GITHUB_EVENT_PATH"] = writeEvent(t, prSameRepo)
	c, err := Detect(e.get)
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadSHA == e["GITHUB_SHA"] || c.HeadSHA != "hhhh000000000000000000000000000000000000" {
		t.Errorf("HeadSHA = %s, want pull_request.head.sha, not GITHUB_SHA", c.HeadSHA)
	}
}

func TestDetectGitHubDefaults(t *testing.T) {
	// GHES sets its own URLs; github.com is the default when none are set.
	e := env{"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "schedule", "GITHUB_SHA": "s", "GITHUB_REPOSITORY": "a/b"}
	e["GITHUB_EVENT_PATH"] = writeEvent(t, `{}`)
	c, err := Detect(e.get)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL != "https://api.github.com" || c.ServerURL != "https://github.com" || c.JobURL != "" {
		t.Errorf("got APIURL %q ServerURL %q JobURL %q", c.APIURL, c.ServerURL, c.JobURL)
	}
	e["GITHUB_API_URL"], e["GITHUB_SERVER_URL"] = "https://ghe.example.com/api/v3/", "https://ghe.example.com"
	e["GITHUB_RUN_ID"] = "5"
	if c, err = Detect(e.get); err != nil {
		t.Fatal(err)
	}
	if c.APIURL != "https://ghe.example.com/api/v3" || c.JobURL != "https://ghe.example.com/a/b/actions/runs/5" {
		t.Errorf("got APIURL %q JobURL %q", c.APIURL, c.JobURL)
	}
}

func TestDetectGitHubEventErrors(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"number": 42, "pull_request": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	noPR := filepath.Join(dir, "nopr.json")
	if err := os.WriteFile(noPR, []byte(`{"number": 42}`), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	for _, tt := range []struct {
		name, path, want string
	}{
		{"broken", broken, broken},
		{"missing", missing, missing},
		{"pull_request without pull_request", noPR, noPR},
		{"unset", "", "GITHUB_EVENT_PATH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := githubEnv("pull_request", "m", "refs/pull/42/merge", env{"GITHUB_EVENT_PATH": tt.path})
			c, err := Detect(e.get)
			if err == nil {
				t.Fatalf("Detect = %+v, want an error", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func gitlabEnv(extra env) env {
	e := env{
		"GITLAB_CI":         "true",
		"CI":                "true",
		"CI_PROJECT_PATH":   "acme/models",
		"CI_PROJECT_ID":     "100",
		"CI_API_V4_URL":     "https://gitlab.example.com/api/v4",
		"CI_SERVER_URL":     "https://gitlab.example.com",
		"CI_DEFAULT_BRANCH": "main",
		"CI_JOB_URL":        "https://gitlab.example.com/acme/models/-/jobs/77",
		"CI_PIPELINE_ID":    "123456789012",
		"CI_PROJECT_DIR":    "/builds/acme/models",
		"CI_JOB_TOKEN":      "job-token",
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// mrEnv is a merge request pipeline's variables, without merged results.
func mrEnv(extra env) env {
	e := gitlabEnv(env{
		"CI_PIPELINE_SOURCE":                  "merge_request_event",
		"CI_COMMIT_SHA":                       "hhhh",
		"CI_COMMIT_REF_NAME":                  "feature",
		"CI_MERGE_REQUEST_IID":                "7",
		"CI_MERGE_REQUEST_PROJECT_ID":         "100",
		"CI_MERGE_REQUEST_PROJECT_PATH":       "acme/models",
		"CI_MERGE_REQUEST_SOURCE_PROJECT_ID":  "100",
		"CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
		"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
		"CI_MERGE_REQUEST_DIFF_BASE_SHA":      "bbbb",
		"CI_MERGE_REQUEST_EVENT_TYPE":         "detached",
		"CI_MERGE_REQUEST_LABELS":             "ml, retrain,",
	})
	for k, v := range extra {
		e[k] = v
	}
	return e
}

func TestDetectGitLab(t *testing.T) {
	base := Context{Platform: GitLab, Repository: "acme/models", ProjectID: "100",
		APIURL: "https://gitlab.example.com/api/v4", ServerURL: "https://gitlab.example.com",
		DefaultBranch: "main", JobURL: "https://gitlab.example.com/acme/models/-/jobs/77",
		PipelineID: 123456789012, Workspace: "/builds/acme/models", Token: "job-token", JobToken: true}
	mr := base
	mr.Event, mr.Number = "merge_request_event", 7
	mr.HeadSHA, mr.BaseSHA, mr.Commit = "hhhh", "bbbb", "hhhh"
	mr.Branch, mr.TargetBranch = "feature", "main"
	mr.Labels = []string{"ml", "retrain"}

	merged := mr
	merged.Commit = "rrrr" // the merged result; the head is the source branch's

	fork := mr
	fork.Fork = true
	fork.Token, fork.JobToken = "glpat-sluice", false

	branch := base
	branch.Event, branch.HeadSHA, branch.Commit, branch.Branch = "push", "aaaa", "aaaa", "main"
	branch.Token, branch.JobToken = "glpat-gitlab", false

	tests := []struct {
		name string
		env  env
		want Context
	}{
		{"merge request pipeline", mrEnv(nil), mr},
		{"merged results pipeline", mrEnv(env{
			"CI_MERGE_REQUEST_EVENT_TYPE":        "merged_result",
			"CI_COMMIT_SHA":                      "rrrr",
			"CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": "hhhh",
			"CI_MERGE_REQUEST_TARGET_BRANCH_SHA": "tttt",
		}), merged},
		{"merge request from a fork, run in the parent project", mrEnv(env{
			"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "555",
			"SLUICE_GITLAB_TOKEN":                "glpat-sluice",
			"GITLAB_TOKEN":                       "glpat-gitlab",
		}), fork},
		{"branch pipeline", gitlabEnv(env{
			"CI_PIPELINE_SOURCE": "push",
			"CI_COMMIT_SHA":      "aaaa",
			"CI_COMMIT_BRANCH":   "main",
			"CI_COMMIT_REF_NAME": "main",
			"GITLAB_TOKEN":       "glpat-gitlab",
		}), branch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(tt.env.get)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Detect:\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestDetectGitLabForkPipelineInFork(t *testing.T) {
	// A fork's merge request pipeline that runs in the fork: CI_PROJECT_*
	// name the fork, the MR variables the target.
	e := mrEnv(env{
		"CI_PROJECT_PATH":                    "mallory/models",
		"CI_PROJECT_ID":                      "555",
		"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "555",
	})
	c, err := Detect(e.get)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Fork || c.ProjectID != "100" || c.Repository != "acme/models" {
		t.Errorf("got Fork %v ProjectID %q Repository %q, want the target project", c.Fork, c.ProjectID, c.Repository)
	}
}

func TestDetectGitLabErrors(t *testing.T) {
	for _, name := range []string{"CI_MERGE_REQUEST_IID", "CI_PIPELINE_ID"} {
		e := mrEnv(env{name: "seven"})
		if _, err := Detect(e.get); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=seven: error %v, want one naming %s", name, err, name)
		}
	}
}

func TestDetectLocal(t *testing.T) {
	// CI=true alone is not a platform sluice knows; GITHUB_ACTIONS must be
	// exactly "true".
	c, err := Detect(env{"CI": "true", "GITHUB_ACTIONS": "1", "GITHUB_TOKEN": "x", "HOME": "/root"}.get)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*c, Context{Platform: Local}) {
		t.Errorf("Detect = %+v, want only Platform local", *c)
	}
}

func TestContextStringHidesToken(t *testing.T) {
	c := &Context{Platform: GitHub, Repository: "acme/models", Number: 3, Token: "ghs_secret", Fork: true}
	s := c.String()
	if strings.Contains(s, "ghs_secret") || !strings.Contains(s, "acme/models#3") {
		t.Errorf("String() = %q", s)
	}
}
