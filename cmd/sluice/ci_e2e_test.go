package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakegithub"
	"github.com/sluice-ci/sluice/report"
)

const demoRepo = "sluice-ci/demo"

// ghJob is one GitHub Actions job running `sluice ci` in a work tree: its
// environment as the runner sets it, with the API pointed at a fake GitHub
// (internal/fakegithub, an httptest server on loopback).
type ghJob struct {
	t                          *testing.T
	dir                        string
	api                        string
	event, eventJSON, sha, ref string
	extra                      []string
}

type ghResult struct {
	code                    int
	stdout, stderr          string
	outputs, summary, rpt   string
	publication, publishErr string
}

func (j ghJob) run(args ...string) ghResult {
	j.t.Helper()
	return j.runWithout(nil, args...)
}

// runWithout runs sluice with the job's environment less the variables
// named in drop.
func (j ghJob) runWithout(drop []string, args ...string) ghResult {
	t := j.t
	t.Helper()
	jobDir := t.TempDir()
	eventPath := filepath.Join(jobDir, "event.json")
	outPath := filepath.Join(jobDir, "output")
	sumPath := filepath.Join(jobDir, "summary.md")
	for _, p := range []string{eventPath, outPath, sumPath} {
		content := ""
		if p == eventPath {
			content = j.eventJSON
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GITHUB_") && !strings.HasPrefix(kv, "INPUT_") && !strings.HasPrefix(kv, "GITLAB") && !strings.HasPrefix(kv, "CI_") {
			env = append(env, kv)
		}
	}
	env = append(env, "SLUICE_TEST_MAIN=1", "GITHUB_ACTIONS=true", "GITHUB_REPOSITORY="+demoRepo,
		"GITHUB_API_URL="+j.api, "GITHUB_SERVER_URL=https://github.com", "GITHUB_RUN_ID=4242",
		"GITHUB_EVENT_NAME="+j.event, "GITHUB_EVENT_PATH="+eventPath, "GITHUB_SHA="+j.sha, "GITHUB_REF="+j.ref,
		"GITHUB_WORKSPACE="+j.dir, "GITHUB_OUTPUT="+outPath, "GITHUB_STEP_SUMMARY="+sumPath,
		"GITHUB_TOKEN=ghs_fakeTokenForTests0123456789")
	env = append(env, j.extra...)
	env = slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(drop, name)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir, cmd.Env = j.dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := ghResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run sluice: %v", err)
	}
	read := func(p string) string { data, _ := os.ReadFile(p); return string(data) }
	res.outputs, res.summary = read(outPath), read(sumPath)
	res.rpt = read(filepath.Join(j.dir, ".sluice", "report.md"))
	res.publication = read(filepath.Join(j.dir, ".sluice", "publication.json"))
	return res
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=sluice", "-c", "user.email=sluice@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func pushEvent(sha string) string {
	return fmt.Sprintf(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":%q,
"repository":{"full_name":%q,"default_branch":"main"},"head_commit":{"id":%q}}`, sha, demoRepo, sha)
}

func pullEvent(number int, head, base string, fork bool) string {
	headRepo := demoRepo
	if fork {
		headRepo = "contributor/demo"
	}
	return fmt.Sprintf(`{"action":"synchronize","number":%d,
"pull_request":{"number":%d,"state":"open","labels":[],
"head":{"sha":%q,"ref":"feature","repo":{"full_name":%q}},
"base":{"sha":%q,"ref":"main","repo":{"full_name":%q}}},
"repository":{"full_name":%q,"default_branch":"main"}}`, number, number, head, headRepo, base, demoRepo, demoRepo)
}

// The digits example through `sluice ci` as GitHub runs it: a push to main
// records the baseline; a pull request with the same model passes and gets
// one comment; a commit that shrinks the model makes accuracy drop, the gate
// fails with exit code 2, and the same comment is edited. Then a fork's
// read-only token: nothing fails because of it, the report is kept in a file,
// and `sluice report --post --from` posts it once the head matches.
func TestCIGitHubDigits(t *testing.T) {
	dockertest.Require(t, dockertest.DigitsImage, "testdata/images/digits/build.sh")
	fake := fakegithub.New(demoRepo)
	srv := httptest.NewServer(fake)
	defer srv.Close()

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "examples", "digits"))); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "main")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "digits")
	main1 := git(t, dir, "rev-parse", "HEAD")
	storeDir := t.TempDir()
	job := ghJob{t: t, dir: dir, api: srv.URL}

	// 1. The push to main: the baseline; a check on the commit, no comment.
	job.event, job.eventJSON, job.sha, job.ref = "push", pushEvent(main1), main1, "refs/heads/main"
	res := job.run("ci", "--store", storeDir, "--pull", "never")
	if res.code != 0 || len(fake.Comments()) != 0 || len(fake.Checks()) != 1 || fake.Checks()[0].SHA != main1 || fake.Checks()[0].Conclusion != "success" {
		t.Fatalf("push: exit %d, comments %v, checks %+v\nstdout:\n%s\nstderr:\n%s", res.code, fake.Comments(), fake.Checks(), res.stdout, res.stderr)
	}
	// Each node's log is folded, inside stop-commands.
	for _, want := range []string{"::group::validate-data: succeeded", "::group::train: succeeded", "::endgroup::", "::stop-commands::"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("push: no %q in the job log:\n%s", want, res.stdout)
		}
	}

	// 2. A pull request that adds notes (the repository changed, so the
	// steps run again): the same metrics, it passes, one comment is created.
	git(t, dir, "checkout", "-q", "-b", "feature")
	if err := os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "notes")
	head1 := git(t, dir, "rev-parse", "HEAD")
	fake.Pulls[7] = head1
	job.event, job.eventJSON, job.sha, job.ref = "pull_request", pullEvent(7, head1, main1, false), head1, "refs/pull/7/merge"
	res = job.run("ci", "--store", storeDir, "--pull", "never")
	comments := fake.Comments()
	if res.code != 0 || len(comments) != 1 || comments[0].Number != 7 || !strings.HasPrefix(comments[0].Body, report.Marker("digits")) {
		t.Fatalf("pull request: exit %d, comments %+v\nstderr:\n%s", res.code, comments, res.stderr)
	}
	if !strings.Contains(comments[0].Body, "✅ sluice: `digits` passed") || !strings.Contains(comments[0].Body, "baseline: run") {
		t.Errorf("the first comment:\n%s", comments[0].Body)
	}
	if !strings.Contains(res.outputs, "verdict<<") || !strings.Contains(res.outputs, "\npassed\n") || !strings.Contains(res.summary, "sluice: `digits` passed") {
		t.Errorf("outputs %q, summary %q\nstderr %s", res.outputs, res.summary, res.stderr)
	}

	// 3. A commit that shrinks the hidden layer to one unit: accuracy drops,
	// the gate fails (exit 2), and the same comment is edited.
	yaml, err := os.ReadFile(filepath.Join(dir, "valohai.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	smaller := strings.Replace(string(yaml), "        target: train.parameter.hidden-size\n        default: 32", "        target: train.parameter.hidden-size\n        default: 1", 1)
	if smaller == string(yaml) {
		t.Fatal("the pipeline's hidden-size default was not found")
	}
	if err := os.WriteFile(filepath.Join(dir, "valohai.yaml"), []byte(smaller), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "commit", "-q", "-am", "smaller model")
	head2 := git(t, dir, "rev-parse", "HEAD")
	fake.Pulls[7] = head2
	job.eventJSON, job.sha = pullEvent(7, head2, main1, false), head2
	res = job.run("ci", "--store", storeDir, "--pull", "never")
	comments = fake.Comments()
	if res.code != 2 || len(comments) != 1 {
		t.Fatalf("regression: exit %d (want 2), %d comments\nstderr:\n%s", res.code, len(comments), res.stderr)
	}
	body := comments[0].Body
	for _, want := range []string{"❌ sluice: `digits` failed", "`evaluate.accuracy`", "❌ fail ↓ worse", "| train | `hidden-size` | `32` | `1` |", "xychart-beta"} {
		if !strings.Contains(body, want) {
			t.Errorf("the edited comment has no %q:\n%s", want, body)
		}
	}
	var posts, patches int
	for _, w := range fake.Writes() {
		switch {
		case strings.HasPrefix(w, "POST /repos/"+demoRepo+"/issues/7/comments"):
			posts++
		case strings.HasPrefix(w, "PATCH /repos/"+demoRepo+"/issues/comments/"):
			patches++
		}
	}
	if posts != 1 || patches != 1 {
		t.Errorf("%d comments created and %d edited, want 1 and 1; writes: %q", posts, patches, fake.Writes())
	}
	last := fake.Checks()[len(fake.Checks())-1]
	if last.SHA != head2 || last.Conclusion != "failure" || last.Name != "sluice / digits" {
		t.Errorf("the last check: %+v", last)
	}
	if !strings.Contains(res.outputs, "\nfailed\n") || !strings.Contains(res.outputs, "exit-code<<") || !strings.Contains(res.stdout, "::error title=sluice%3A digits::") {
		t.Errorf("outputs %q\nstdout %s", res.outputs, res.stdout)
	}

	// 4. The same pull request from a fork: the token is read-only. The
	// run's exit code is the gate's, the report is kept for a publisher.
	fake.ReadOnly = true
	job.eventJSON = pullEvent(7, head2, main1, true)
	res = job.run("ci", "--store", storeDir, "--pull", "never")
	if res.code != 2 || !strings.Contains(res.stderr, "not posted") || res.publication == "" {
		t.Fatalf("fork: exit %d, publication %q\nstderr:\n%s", res.code, res.publication, res.stderr)
	}
	var pub report.Publication
	if err := json.Unmarshal([]byte(res.publication), &pub); err != nil || pub.Number != 7 || pub.HeadSHA != head2 || pub.Passed {
		t.Fatalf("publication %+v, %v", pub, err)
	}

	// 5. The privileged workflow_run publisher posts it, but only while the
	// pull request's head is the commit the report was made for.
	fake.ReadOnly = false
	pubFile := filepath.Join(t.TempDir(), "publication.json")
	if err := os.WriteFile(pubFile, []byte(res.publication), 0o644); err != nil {
		t.Fatal(err)
	}
	fake.Pulls[7] = main1 // pushed again since
	job.event, job.eventJSON, job.sha, job.ref = "workflow_run",
		fmt.Sprintf(`{"action":"completed","workflow_run":{"head_sha":%q,"head_branch":"feature","pull_requests":[],"head_repository":{"full_name":"contributor/demo"}},"repository":{"full_name":%q,"default_branch":"main"}}`, head2, demoRepo),
		main1, "refs/heads/main"
	res = job.run("report", "--post", "--from", pubFile)
	if res.code != 3 || !strings.Contains(res.stderr, "not posted") {
		t.Errorf("stale head: exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	before := len(fake.Writes())
	fake.Pulls[7] = head2
	res = job.run("report", "--post", "--from", pubFile)
	if res.code != 0 || len(fake.Comments()) != 1 || len(fake.Writes()) <= before {
		t.Errorf("publisher: exit %d, comments %d, writes %q\nstderr:\n%s", res.code, len(fake.Comments()), fake.Writes()[before:], res.stderr)
	}
}

// A step's log cannot issue workflow commands or open and close GitLab
// sections: on GitHub every line of it is inside stop-commands with a token
// it cannot guess; on GitLab its escape bytes are neutralised.
func TestCIStepLogCannotIssueCommands(t *testing.T) {
	dockertest.Image(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "hostile-log"))); err != nil {
		t.Fatal(err)
	}
	job := ghJob{t: t, dir: dir, api: "http://127.0.0.1:1", event: "push", eventJSON: pushEvent(strings.Repeat("a", 40)),
		sha: strings.Repeat("a", 40), ref: "refs/heads/main"}
	res := job.run("ci", "--step", "hostile", "--post=false", "--pull", "never")
	if res.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	// Replay the job log as the runner reads it: the commands it would run.
	var stopped string
	var commands []string
	for _, line := range strings.Split(res.stdout, "\n") {
		trimmed := strings.TrimLeft(line, " \t")
		if stopped != "" {
			if trimmed == "::"+stopped+"::" {
				stopped = ""
			}
			continue
		}
		if tok, ok := strings.CutPrefix(trimmed, "::stop-commands::"); ok {
			stopped = tok
			continue
		}
		if strings.HasPrefix(trimmed, "::") {
			commands = append(commands, trimmed)
		}
	}
	for _, c := range commands {
		if !strings.HasPrefix(c, "::group::hostile: succeeded") && c != "::endgroup::" && !strings.HasPrefix(c, "::add-mask::ghs_") {
			t.Errorf("the step issued %q\njob log:\n%s", c, res.stdout)
		}
	}
	if stopped != "" {
		t.Errorf("commands were left stopped at the end of the job log:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "::error::boom") || !strings.Contains(res.outputs, "\npassed\n") {
		t.Errorf("the step's lines are missing from the log, or the verdict output was changed:\n%s\noutputs %q", res.stdout, res.outputs)
	}

	// GitLab: the only sections are sluice's own.
	gl := job
	gl.extra = []string{"GITLAB_CI=true", "CI_PROJECT_PATH=group/demo", "CI_PROJECT_ID=7", "CI_PIPELINE_SOURCE=push",
		"CI_COMMIT_SHA=" + strings.Repeat("b", 40), "CI_COMMIT_BRANCH=main", "CI_API_V4_URL=http://127.0.0.1:1/api/v4",
		"CI_JOB_URL=https://gitlab.example.com/group/demo/-/jobs/1"}
	gl.event = ""
	res = gl.runWithout([]string{"GITHUB_ACTIONS"}, "ci", "--step", "hostile", "--post=false", "--pull", "never")
	if res.code != 0 {
		t.Fatalf("gitlab: exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	if n := strings.Count(res.stdout, "\x1b"); n != 4 {
		t.Errorf("gitlab: %d escape bytes in the job log, want 4 (sluice's own section start and end):\n%q", n, res.stdout)
	}
	if strings.Count(res.stdout, "section_start:") != 1 || strings.Count(res.stdout, "section_end:") != 1 {
		t.Errorf("gitlab: the step opened or closed a section:\n%q", res.stdout)
	}
}
