package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/fakegithub"
	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/runner/docker"
)

// The GitHub Action as GitHub runs it, with act (github.com/nektos/act)
// standing in for the runner, offline, on the local Docker daemon:
//
//   - action.yml says `image: docker://ghcr.io/sluice-ci/sluice:v1`. No
//     registry is reached here, so the test tags the locally built sluice
//     image (SLUICE_IMAGE, default sluice:dev, which .ci/run builds from the
//     Dockerfile) under that name, and act with --pull=false runs it as it
//     is. The tag is put back as it was when the test ends.
//   - The job runs on the busybox test image (-P ubuntu-latest=...): act
//     needs `tail` to keep the job container up and a shell for run: steps,
//     which say `shell: sh` because the image has no bash.
//   - act starts the job container with --network host (its default, given
//     explicitly) and the action's container in the job container's network
//     namespace, so http://127.0.0.1:PORT inside both is the test's
//     fakegithub server, which listens on loopback only. --env
//     GITHUB_API_URL=... is how act lets a run point the API elsewhere: it
//     becomes the GITHUB_API_URL of every step, the Docker action's too.
//   - The workflow starts with actions/checkout, as on GitHub: act does not
//     fetch it but copies the work tree into the job's workspace volume
//     (without it `uses: ./` finds no action.yml).
//   - act bind-mounts the daemon's socket into the action's container;
//     sluice starts the pipeline's steps as sibling containers on that daemon
//     and, since the work tree (a Docker volume act fills) is not on the
//     host at the path sluice sees, copies files through the API. The step
//     prints its metric from a repository file, so it fails unless the
//     repository's files reached its container.
//   - act reads no configuration of the machine's user (HOME is a scratch
//     directory), asks nobody for notices (ACT_DISABLE_VERSION_CHECK=1) and
//     starts no cache or artifact server (--no-cache-server; no
//     --artifact-server-path), so nothing listens beyond loopback.
//
// A pull request whose pipeline passes the gate: act exits 0, one comment
// and one successful check run are posted, the outputs reach the next step.
// Then a commit that fails the gate: the job fails, the same comment is
// edited and the new head's check run concludes failure.
func TestActionUnderAct(t *testing.T) {
	act := actBinary(t)
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		dockertest.Unavailable(t, fmt.Sprintf("act mounts the daemon's socket into the action's container; DOCKER_HOST=%s is not a unix socket", h))
	}
	cli := dockertest.Client(t)
	jobImage := dockertest.Image(t)
	sluiceImage := os.Getenv("SLUICE_IMAGE")
	if sluiceImage == "" {
		sluiceImage = "sluice:dev"
	}
	dockertest.Require(t, sluiceImage, ".ci/run (docker build -t sluice:dev . in the repository's root)")

	actionYAML, err := os.ReadFile(filepath.Join("..", "..", "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+image:\s*["']?docker://([^"'\s]+)`).FindSubmatch(actionYAML)
	if m == nil {
		t.Fatal("action.yml: no runs.image of the form docker://IMAGE")
	}
	actionImage := string(m[1])
	tagAs(t, cli, sluiceImage, actionImage)

	fake := fakegithub.New(demoRepo)
	srv := httptest.NewServer(fake) // 127.0.0.1:PORT
	defer srv.Close()

	// act names its containers and volumes after the workflow and the job:
	// a workflow name of this run's own keeps runs apart and finds what a
	// killed act leaves.
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	workflowName := "sluice-act-" + hex.EncodeToString(suffix)
	t.Cleanup(func() { removeActLeftovers(t, cli, workflowName) })

	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	home := filepath.Join(root, "home")
	for _, d := range []string{filepath.Join(repo, ".github", "workflows"), home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	workflow, err := os.ReadFile(filepath.Join("testdata", "act", "pr.yml"))
	if err != nil {
		t.Fatal(err)
	}
	named := strings.Replace(string(workflow), "\nname: sluice-act\n", "\nname: "+workflowName+"\n", 1)
	if named == string(workflow) {
		t.Fatal("testdata/act/pr.yml: no line `name: sluice-act`")
	}
	files := map[string][]byte{"action.yml": actionYAML, ".github/workflows/pr.yml": []byte(named)}
	for _, f := range []string{"valohai.yaml", "sluice.yaml", "metrics.json"} {
		if files[f], err = os.ReadFile(filepath.Join("testdata", "act", f)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(repo, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, repo, "init", "-q", "-b", "main")
	// act takes GITHUB_REPOSITORY from the remote's URL.
	git(t, repo, "remote", "add", "origin", "https://github.com/"+demoRepo+".git")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "pipeline")
	mainSHA := git(t, repo, "rev-parse", "HEAD")
	git(t, repo, "checkout", "-q", "-b", "feature")
	if err := os.WriteFile(filepath.Join(repo, "NOTES.md"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "notes")
	head1 := git(t, repo, "rev-parse", "HEAD")

	run := func(head string) actResult {
		t.Helper()
		fake.Pulls[7] = head
		event := filepath.Join(root, "event.json")
		if err := os.WriteFile(event, []byte(actPullEvent(7, head, mainSHA)), 0o644); err != nil {
			t.Fatal(err)
		}
		res := runAct(t, act, repo, home, event, jobImage, srv.URL)
		// sluice removes the containers of its run; none may be left.
		if id := res.outputs["run-id"]; id != "" {
			left, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
				Filters: filters.NewArgs(filters.Arg("label", docker.LabelRun+"="+id))})
			if err != nil || len(left) != 0 {
				t.Errorf("containers of run %s left: %d, %v", id, len(left), err)
			}
		}
		return res
	}
	commentWrites := func() (posts, patches int) {
		for _, w := range fake.Writes() {
			switch {
			case w == "POST /repos/"+demoRepo+"/issues/7/comments":
				posts++
			case strings.HasPrefix(w, "PATCH /repos/"+demoRepo+"/issues/comments/"):
				patches++
			}
		}
		return posts, patches
	}
	checkRuns := func(sha string) []fakegithub.Check {
		var out []fakegithub.Check
		for _, c := range fake.Checks() {
			if c.Kind == "check-run" && c.SHA == sha {
				out = append(out, c)
			}
		}
		return out
	}

	// (a) The gate passes.
	res := run(head1)
	if res.code != 0 {
		t.Fatalf("passing gate: act exited %d (want 0)\n%s", res.code, res.log)
	}
	posts, patches := commentWrites()
	comments := fake.Comments()
	if posts != 1 || patches != 0 || len(comments) != 1 || comments[0].Number != 7 {
		t.Fatalf("passing gate: %d comments created, %d edited (want 1 and 0); writes %q\n%s", posts, patches, fake.Writes(), res.log)
	}
	if !strings.HasPrefix(comments[0].Body, report.Marker("gate")) || !strings.Contains(comments[0].Body, "`gate` passed") {
		t.Errorf("passing gate: the comment:\n%s", comments[0].Body)
	}
	if runs := checkRuns(head1); len(runs) != 1 || runs[0].Conclusion != "success" {
		t.Errorf("passing gate: check runs on the head %s: %+v (want one, success); all: %+v", head1, runs, fake.Checks())
	}
	for _, r := range fake.Requests() {
		if !strings.HasSuffix(r.Auth, " "+actFakeToken) {
			t.Errorf("%s %s was sent with Authorization %q, not the job's token", r.Method, r.Path, r.Auth)
		}
	}
	// act prints the job summary the step wrote.
	if !strings.Contains(res.log, "Summary - "+report.Marker("gate")) {
		t.Errorf("passing gate: no job summary in the log\n%s", res.log)
	}
	runID := res.outputs["run-id"]
	want := map[string]string{"verdict": "passed", "exit-code": "0", "report": ".sluice/report.md",
		"accuracy": "0.95", "outcome": "success", "report-file": "present"}
	if !regexp.MustCompile(`^\S{8,}$`).MatchString(runID) || !outputsAre(res.outputs, want) {
		t.Errorf("passing gate: the outputs step printed %q, want a run id and %q\n%s", res.outputs, want, res.log)
	}

	// (b) A commit that lowers the accuracy below the gate's min.
	if err := os.WriteFile(filepath.Join(repo, "metrics.json"), []byte(`{"accuracy": 0.5}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "commit", "-q", "-am", "worse")
	head2 := git(t, repo, "rev-parse", "HEAD")
	res = run(head2)
	if res.code == 0 {
		t.Fatalf("failing gate: act exited 0\n%s", res.log)
	}
	// The gate's failure is an error annotation (act shows the workflow
	// command as it is), and the step fails with it.
	if !regexp.MustCompile(`(?m)::error [^\n]*::evaluate\.accuracy\b[^\n]*0\.5`).MatchString(res.log) ||
		!regexp.MustCompile(`(?m)Failure - Main sluice\b`).MatchString(res.log) {
		t.Errorf("failing gate: the job's log shows no failure of the gate on evaluate.accuracy in the sluice step\n%s", res.log)
	}
	posts, patches = commentWrites()
	comments = fake.Comments()
	if posts != 1 || patches != 1 || len(comments) != 1 {
		t.Errorf("failing gate: %d comments created and %d edited in all (want 1 and 1); writes %q", posts, patches, fake.Writes())
	} else if !strings.Contains(comments[0].Body, "`gate` failed") || !strings.Contains(comments[0].Body, "evaluate.accuracy") {
		t.Errorf("failing gate: the edited comment:\n%s", comments[0].Body)
	}
	if runs := checkRuns(head2); len(runs) != 1 || runs[0].Conclusion != "failure" {
		t.Errorf("failing gate: check runs on the head %s: %+v (want one, failure); all: %+v", head2, runs, fake.Checks())
	}
	want = map[string]string{"verdict": "failed", "exit-code": "2", "accuracy": "0.5", "outcome": "failure"}
	if res.outputs["run-id"] == "" || res.outputs["run-id"] == runID || !outputsAre(res.outputs, want) {
		t.Errorf("failing gate: the outputs step printed %q, want a new run id and %q\n%s", res.outputs, want, res.log)
	}
}

const actFakeToken = "ghs_fakeTokenForActTests0123456789"

type actResult struct {
	code    int
	log     string
	outputs map[string]string // what the outputs step printed, sluice-output KEY=VALUE
}

// runAct runs the workflow of repo on the pull_request event in eventPath.
func runAct(t *testing.T, act, repo, home, eventPath, jobImage, apiURL string) actResult {
	t.Helper()
	args := []string{"pull_request",
		"-W", filepath.Join(".github", "workflows", "pr.yml"),
		"-e", eventPath,
		"--pull=false",          // the images are local: nothing is pulled
		"--action-offline-mode", // nor any action fetched
		"--rm",                  // remove the job's containers and volumes after a failure too
		"--network", "host",
		"-P", "ubuntu-latest=" + jobImage,
		"-s", "GITHUB_TOKEN=" + actFakeToken,
		"--env", "GITHUB_API_URL=" + apiURL,
		"--no-cache-server",
		"--cache-server-addr", "127.0.0.1",
		"--artifact-server-addr", "127.0.0.1",
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "GITHUB_"), strings.HasPrefix(name, "INPUT_"), strings.HasPrefix(name, "RUNNER_"),
			strings.HasPrefix(name, "ACT_"), strings.HasPrefix(name, "XDG_"), name == "HOME":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "ACT_DISABLE_VERSION_CHECK=1")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, act, args...)
	cmd.Dir, cmd.Env = repo, env
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	t.Logf("act took %v", time.Since(t0).Round(10*time.Millisecond))
	res := actResult{log: out.String(), outputs: map[string]string{}}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("act did not finish in time\n%s", res.log)
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run act: %v", err)
	}
	for _, m := range regexp.MustCompile(`(?m)\| sluice-output ([a-z-]+)=(.*?)\r?$`).FindAllStringSubmatch(res.log, -1) {
		res.outputs[m[1]] = m[2]
	}
	return res
}

func outputsAre(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// actPullEvent is a pull_request event payload for a pull request from the
// repository's own branch feature into main.
func actPullEvent(number int, head, base string) string {
	return fmt.Sprintf(`{"action":"synchronize","number":%d,
"pull_request":{"number":%d,"state":"open","labels":[],
"head":{"sha":%q,"ref":"feature","repo":{"full_name":%q}},
"base":{"sha":%q,"ref":"main","repo":{"full_name":%q}}},
"repository":{"full_name":%q,"default_branch":"main"}}`, number, number, head, demoRepo, base, demoRepo, demoRepo)
}

// actBinary is act: SLUICE_ACT, else act on PATH, else GOPATH/bin/act (where
// .ci/run's `go install` puts it).
func actBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_ACT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			dockertest.Unavailable(t, fmt.Sprintf("SLUICE_ACT=%s: %v", p, err))
		}
		return p
	}
	if p, err := exec.LookPath("act"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "act")
	if _, err := os.Stat(p); err != nil {
		dockertest.Unavailable(t, "act not found (SLUICE_ACT, PATH, GOPATH/bin): `go install github.com/nektos/act@v0.2.89`, as .ci/run does")
	}
	return p
}

// tagAs tags image as name for the test, and puts name back as it was (or
// removes the tag) when the test ends.
func tagAs(t *testing.T, cli *client.Client, img, name string) {
	t.Helper()
	ctx := context.Background()
	src, err := cli.ImageInspect(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	var before string
	switch prev, err := cli.ImageInspect(ctx, name); {
	case err == nil:
		before = prev.ID
	case !cerrdefs.IsNotFound(err):
		t.Fatal(err)
	}
	if err := cli.ImageTag(ctx, img, name); err != nil {
		t.Fatalf("tag %s as %s: %v", img, name, err)
	}
	t.Cleanup(func() {
		var err error
		switch before {
		case src.ID:
		case "":
			_, err = cli.ImageRemove(ctx, name, image.RemoveOptions{}) // the tag only: img keeps the image
		default:
			err = cli.ImageTag(ctx, before, name)
		}
		if err != nil {
			t.Errorf("put back %s: %v", name, err)
		}
	})
}

// removeActLeftovers removes what act left of the workflow's runs: the job
// and step containers and the job's volumes, all named after the workflow.
func removeActLeftovers(t *testing.T, cli *client.Client, workflowName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := filters.NewArgs(filters.Arg("name", workflowName))
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Logf("list act's containers: %v", err)
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Logf("remove act's container %v: %v", c.Names, err)
		}
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Logf("list act's volumes: %v", err)
		return
	}
	for _, v := range vs.Volumes {
		if err := cli.VolumeRemove(ctx, v.Name, true); err != nil {
			t.Logf("remove act's volume %s: %v", v.Name, err)
		}
	}
}
