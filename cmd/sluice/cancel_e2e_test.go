package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
)

// SIGTERM in the middle of a run (what CI sends when a job is cancelled):
// every container is gone, the record says cancelled, the exit code is 1.
func TestRunCancelledBySIGTERM(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.Image(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "cancel"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--pull", "never", "--concurrency", "2")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	seen := 0
	for seen < 2 && lines.Scan() {
		if strings.Contains(lines.Text(), "started") {
			seen++
		}
	}
	if seen < 2 {
		t.Fatal("the steps never started")
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	took := time.Since(signalled)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want code 1", err)
	}
	// How fast is measured by bench/cancel.sh, not asserted here.
	t.Logf("sluice stopped %s after SIGTERM", took)
	rec := binResult{dir: dir}.lastRun(t)
	if rec.Status != store.StatusCancelled {
		t.Errorf("run status %s, want cancelled", rec.Status)
	}
	for _, n := range []string{"long", "long2"} {
		if s := rec.Node(n).Status; s != store.StatusCancelled {
			t.Errorf("node %s: %s, want cancelled", n, s)
		}
	}
	if s := rec.Node("after").Status; s != store.StatusSkipped {
		t.Errorf("node after: %s, want skipped", s)
	}
	left, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "sluice.run="+rec.ID))})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%d containers of run %s left behind", len(left), rec.ID)
	}
}

// With no Docker daemon, run fails at once with a message that says what to do.
func TestRunWithoutDocker(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "retry"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1", "DOCKER_HOST=unix://"+filepath.Join(dir, "no-docker.sock"))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "cannot reach a Docker daemon") {
		t.Fatalf("exit %v:\n%s", err, out)
	}
}

// SIGTERM while the container of a node that waits is prepared (made ahead,
// not started, while the node it waits for runs): the run removes it
// itself (the final sweep finds nothing), and nothing of the run is left
// when sluice exits.
func TestRunSIGTERMWhilePrepared(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.Image(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "cancel"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--pull", "never", "--concurrency", "2")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	runID := ""
	for runID == "" && lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "sluice: run "); ok {
			runID, _, _ = strings.Cut(rest, " ")
		}
	}
	if runID == "" {
		t.Fatal("sluice never said its run id")
	}
	var rest strings.Builder
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		for lines.Scan() {
			rest.WriteString(lines.Text() + "\n")
		}
	}()
	f := filters.NewArgs(filters.Arg("label", "sluice.run="+runID), filters.Arg("label", "sluice.node=after"))
	deadline := time.Now().Add(60 * time.Second) // a guard
	for prepared := false; !prepared; {
		if time.Now().After(deadline) {
			t.Fatal("node after's container was never prepared")
		}
		list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		prepared = len(list) == 1 && list[0].State == "created"
		time.Sleep(20 * time.Millisecond)
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-copied
	err = cmd.Wait()
	t.Logf("sluice stopped %s after SIGTERM", time.Since(signalled))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want code 1; stderr:\n%s", err, rest.String())
	}
	if strings.Contains(rest.String(), "the run left") {
		t.Errorf("the final sweep had to remove containers: the run did not:\n%s", rest.String())
	}
	left, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "sluice.run="+runID))})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%d containers of run %s left behind", len(left), runID)
	}
}
