package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// removeRunContainers removes what a killed run left, whatever the test
// found.
func removeRunContainers(t *testing.T, cli *client.Client, runID string) {
	ctx := context.Background()
	left, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "sluice.run="+runID))})
	if err != nil {
		t.Errorf("list the run's containers: %v", err)
		return
	}
	for _, c := range left {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// sluiceIn runs the sluice binary with args in dir and returns its exit code
// and output.
func sluiceIn(t *testing.T, dir string, args ...string) binResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := binResult{stdout: out.String(), stderr: errb.String(), dir: dir}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// noControl fails when text holds a control character other than newline
// and tab: one that moves the cursor, clears the screen or starts an escape.
func noControl(t *testing.T, what, text string) {
	t.Helper()
	for _, c := range text {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f || c >= 0x80 && c <= 0x9f {
			t.Errorf("%s holds the control character %q:\n%q", what, c, text)
			return
		}
	}
}

// A step prints escapes, carriage returns and bells, names an output
// "a\nb.txt" and a metadata key "evil\nkey": run shows its log lines with the
// control characters visible, and run, show, the summary and the Markdown
// report print the names quoted, so nothing forges a line of sluice's own.
func TestControlCharactersStayVisible(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	res := runBinary(t, "control-chars", "run", "--pull", "never", "--step", "ctl")
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	noControl(t, "run's output", res.stdout)
	for _, want := range []string{"ctl | ␛[2Jcleared the screen\n", "ctl | progress␍ctl | sluice: forged\n", "ctl | bell␇ and tab\tkept\n", `"evil\nkey"=1`} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run's output lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "\nctl | sluice: forged") {
		t.Errorf("the step forged a line of sluice's:\n%s", res.stdout)
	}
	rec := res.lastRun(t)
	if rec.Node("ctl").Output("a\nb.txt") == nil {
		t.Fatalf("outputs %v: the file with a newline in its name is missing", rec.Node("ctl").Outputs)
	}

	show := sluiceIn(t, res.dir, "show", rec.ID, "ctl")
	if show.code != 0 {
		t.Fatalf("show: exit %d: %s", show.code, show.stderr)
	}
	noControl(t, "show's output", show.stdout)
	for _, want := range []string{"\noutput \"a\\nb.txt\"  1 bytes  sha256:", "\nmetadata \"evil\\nkey\" = 1\n", "\n␛[2Jcleared the screen\n"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, show.stdout)
		}
	}
	for _, line := range strings.Split(show.stdout, "\n") {
		if line == "b.txt  1 bytes" || strings.HasPrefix(line, "b.txt") || strings.HasPrefix(line, "key") {
			t.Errorf("a name broke a line of show in two: %q", line)
		}
	}

	summary := sluiceIn(t, res.dir, "show", rec.ID)
	noControl(t, "the run summary", summary.stdout)
	if !strings.Contains(summary.stdout, `"evil\nkey"=1`) {
		t.Errorf("summary:\n%s", summary.stdout)
	}

	md := sluiceIn(t, res.dir, "report", "--format", "markdown")
	if md.code != 0 {
		t.Fatalf("report: exit %d: %s", md.code, md.stderr)
	}
	noControl(t, "the Markdown report", md.stdout)
	for _, want := range []string{"`\"a\\nb.txt\"`", "`\"ctl.evil\\nkey\"`"} {
		if !strings.Contains(md.stdout, want) {
			t.Errorf("the report lacks %s:\n%s", want, md.stdout)
		}
	}
}

// lint and plan print names from the file quoted when they hold control
// characters: the findings and the plan keep one line per line.
func TestLintAndPlanQuoteControlCharacters(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(dir+"/"+name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad.yaml", "- step:\n    name: \"a\\nvalohai.yaml:1:1: error: forged\"\n    image: \"\"\n    command: x\n"+
		"- pipeline:\n    name: p\n    nodes:\n      - {name: \"n\\e[2J\", type: execution, step: \"gone\\rstep\"}\n    edges: []\n")
	lint := sluiceIn(t, dir, "lint", "bad.yaml")
	if lint.code != 1 {
		t.Fatalf("lint: exit %d\n%s%s", lint.code, lint.stdout, lint.stderr)
	}
	noControl(t, "lint's findings", lint.stdout+lint.stderr)
	for _, want := range []string{`step "a\nvalohai.yaml:1:1: error: forged"`, `"gone\rstep"`, `node "n\x1b[2J"`} {
		if !strings.Contains(lint.stdout, want) {
			t.Errorf("lint lacks %s:\n%s", want, lint.stdout)
		}
	}
	if n := strings.Count(lint.stdout, "\n"); n != 2 {
		t.Errorf("%d lines of findings, want 2:\n%s", n, lint.stdout)
	}

	write("valohai.yaml", "- step: {name: s, image: busybox, command: \"printf 'a\\\\033[2Jb'\"}\n"+
		"- pipeline:\n    name: p\n    nodes:\n      - {name: \"n\\e[2J\\nlayer 9\", type: execution, step: s}\n    edges: []\n")
	plan := sluiceIn(t, dir, "plan", "--reuse=false")
	if plan.code != 0 {
		t.Fatalf("plan: exit %d\n%s%s", plan.code, plan.stdout, plan.stderr)
	}
	noControl(t, "the plan", plan.stdout)
	if !strings.Contains(plan.stdout, `"n\x1b[2J\nlayer 9"`) || strings.Contains(plan.stdout, "\nlayer 9") {
		t.Errorf("plan:\n%s", plan.stdout)
	}
}

// lint refuses, at their line and column, the input defaults and the edge
// glob that a run refuses: the run of each says why it failed.
func TestLintAgreesWithRunOnInputPaths(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	lint := runBinary(t, "input-escape", "lint")
	if lint.code != 1 {
		t.Fatalf("lint: exit %d\n%s%s", lint.code, lint.stdout, lint.stderr)
	}
	for _, want := range []string{
		`valohai.yaml:3:126: error: step "absolute".inputs[0].default: input "in": default "/etc/passwd": input paths are relative to the repository`,
		`valohai.yaml:12:13: error: step "climbing".inputs[0].default: input "in": default "../../../etc/passwd"`,
		`valohai.yaml:21:9: error: pipeline "climb".edges[0]: edge make.output.../../x -> take.input.in: output glob "../../x"`,
	} {
		if !strings.Contains(lint.stdout, want) {
			t.Errorf("lint lacks\n  %s\n%s", want, lint.stdout)
		}
	}
	if n := strings.Count(lint.stdout, ": error: "); n != 3 {
		t.Errorf("%d errors, want 3:\n%s", n, lint.stdout)
	}
	for _, c := range []struct {
		args []string
		why  string
	}{
		{[]string{"--step", "absolute"}, "/etc/passwd: input paths are relative to the repository and stay inside it"},
		{[]string{"--step", "climbing"}, "../../../etc/passwd: input paths are relative to the repository and stay inside it"},
		{[]string{"--pipeline", "climb"}, "no files matched make.output.../../x"},
	} {
		run := sluiceIn(t, lint.dir, append([]string{"run", "--pull", "never"}, c.args...)...)
		if run.code != 1 || !strings.Contains(run.stdout, c.why) {
			t.Errorf("run %v: exit %d, want 1 and %q:\n%s%s", c.args, run.code, c.why, run.stdout, run.stderr)
		}
	}
}

// sluice killed with -9 mid-run leaves its record saying running: runs, show
// and the report show it interrupted at once (its process is gone), clean
// records that in the store and removes the container it left, and a rerun
// reuses the node that had finished.
func TestKilledRunShowsInterrupted(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.Image(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "killed"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--pull", "never")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.Contains(lines.Text(), "slow | started") {
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no clean-up, no last record
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	_ = cmd.Wait()
	rec := binResult{dir: dir}.lastRun(t)
	t.Cleanup(func() { removeRunContainers(t, cli, rec.ID) })
	if rec.Status != store.StatusRunning || rec.Node("slow").Status != store.StatusRunning || rec.Host == "" || rec.PID != cmd.Process.Pid || rec.Heartbeat.IsZero() {
		t.Fatalf("the killed run's record: status %s, slow %s, host %q, pid %d (was %d), heartbeat %v", rec.Status, rec.Node("slow").Status, rec.Host, rec.PID, cmd.Process.Pid, rec.Heartbeat)
	}

	runs := sluiceIn(t, dir, "runs")
	if !strings.Contains(runs.stdout, rec.ID+"\tinterrupted\tp\t") {
		t.Errorf("runs:\n%s%s", runs.stdout, runs.stderr)
	}
	show := sluiceIn(t, dir, "show", rec.ID)
	for _, want := range []string{"\nquick  succeeded", "\nslow   interrupted", "run " + rec.ID + " interrupted: interrupted: its sluice (pid "} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, show.stdout)
		}
	}
	md := sluiceIn(t, dir, "report", "--format", "markdown")
	if md.code != 1 || !strings.Contains(md.stdout, "the pipeline was interrupted") || !strings.Contains(md.stdout, "💥 interrupted") {
		t.Errorf("report: exit %d\n%s%s", md.code, md.stdout, md.stderr)
	}

	// clean of that run only: a bare clean would remove every sluice
	// container on the daemon, those of tests running beside this one too.
	clean := sluiceIn(t, dir, "clean", rec.ID)
	if clean.code != 0 || !strings.Contains(clean.stdout, "marked run "+rec.ID+" interrupted") || !strings.Contains(clean.stdout, "removed 1 container") {
		t.Errorf("clean: exit %d\n%s%s", clean.code, clean.stdout, clean.stderr)
	}
	stored := binResult{dir: dir}.lastRun(t)
	if stored.Status != store.StatusInterrupted || stored.Node("slow").Status != store.StatusInterrupted || stored.Node("quick").Status != store.StatusSucceeded || stored.Finished.IsZero() {
		t.Errorf("after clean the record says %s (slow %s, quick %s, finished %v)", stored.Status, stored.Node("slow").Status, stored.Node("quick").Status, stored.Finished)
	}
	if again := sluiceIn(t, dir, "clean", rec.ID); !strings.Contains(again.stdout, "marked 0 runs interrupted") {
		t.Errorf("a second clean: %s", again.stdout)
	}

	res, rerun := runIn(t, dir, "-p", "secs=0")
	if res.code != 0 || rerun.Node("quick").ReusedFrom != rec.ID || rerun.Node("slow").ReusedFrom != "" {
		t.Errorf("rerun: exit %d, quick reused from %q (want %s), slow from %q\n%s", res.code, rerun.Node("quick").ReusedFrom, rec.ID, rerun.Node("slow").ReusedFrom, res.stdout)
	}
}

// Commands that only read the store do not make one: artifacts get, runs
// and show outside a repository with a store say there is none and leave
// the directory as it was. artifacts get into a directory that does not
// exist names it; DEST/ makes it.
func TestReadOnlyCommandsAndMissingDirectories(t *testing.T) {
	empty := t.TempDir()
	for _, args := range [][]string{{"artifacts", "get", "20261204T000000.000000Z-abcdef", "n", "x.txt"}, {"runs"}, {"show", "20261204T000000.000000Z-abcdef"}, {"report"}} {
		res := sluiceIn(t, empty, args...)
		if res.code != exitUsage || !strings.Contains(res.stderr, "there is no store at "+filepath.Join(empty, ".sluice")) {
			t.Errorf("%v: exit %d: %s", args, res.code, res.stderr)
		}
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("read-only commands left %v in the directory", entries)
	}

	dir := t.TempDir()
	st, err := file.New(filepath.Join(dir, ".sluice"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, size, err := store.PutBlob(ctx, st, strings.NewReader("weights"))
	if err != nil {
		t.Fatal(err)
	}
	id := "20261204T000000.000000Z-abcdef"
	rec := &store.Run{ID: id, Pipeline: "p", Status: store.StatusSucceeded, Nodes: []*store.NodeRun{
		{Name: "n", Status: store.StatusSucceeded, Outputs: []store.File{{Path: "models/m.pkl", Digest: d, Size: size}}}}}
	if err := store.PutRun(ctx, st, rec); err != nil {
		t.Fatal(err)
	}
	res := sluiceIn(t, dir, "artifacts", "get", id, "n", "models/m.pkl", "out/sub/m.pkl")
	if res.code != exitUsage || !strings.Contains(res.stderr, "the directory out/sub does not exist") || strings.Contains(res.stderr, ".sluice-get") {
		t.Errorf("into a missing directory: exit %d: %s", res.code, res.stderr)
	}
	res = sluiceIn(t, dir, "artifacts", "get", id, "n", "models/m.pkl", "out/sub/")
	if got, err := os.ReadFile(filepath.Join(dir, "out", "sub", "m.pkl")); res.code != 0 || err != nil || string(got) != "weights" {
		t.Errorf("into DEST/: exit %d: %s; file %q, %v", res.code, res.stderr, got, err)
	}
}
