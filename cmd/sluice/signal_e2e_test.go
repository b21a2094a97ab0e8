package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/bigyaml"
)

// SIGTERM half a second into the lint of a 15 MiB file (which takes
// seconds) stops it: exit code 143, one line that says why, and no findings.
// How soon it stops is measured by bench/lint.sh, not asserted here.
func TestLintStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "valohai.yaml")
	if err := os.WriteFile(file, bigyaml.StepsOfSize(15<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "lint", file)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // a guard, not a measure
		cmd.Process.Kill()
		t.Fatal("lint did not stop on SIGTERM")
	}
	t.Logf("lint stopped %s after SIGTERM", time.Since(signalled))
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 143 {
		t.Fatalf("exit: %v, want code 143; stderr:\n%s", err, stderr.String())
	}
	if got := stderr.String(); got != "sluice: stopped by SIGTERM\n" {
		t.Errorf("stderr %q, want the one line %q", got, "sluice: stopped by SIGTERM\n")
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout: %.300s", stdout.String())
	}
}

// SIGINT (Ctrl-C) gives 130 and its own one-line message.
func TestLintStopsOnSIGINT(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "valohai.yaml")
	if err := os.WriteFile(file, bigyaml.StepsOfSize(15<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "lint", file)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want code 130; stderr:\n%s", err, stderr.String())
	}
	if got := stderr.String(); got != "sluice: stopped by SIGINT\n" {
		t.Errorf("stderr %q", got)
	}
}

// The first signal cancels the context with the signal as its cause; a
// second exits at once with its code, whatever the command is still doing.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancelCause(context.Background())
	var stderr bytes.Buffer
	exited := make(chan int, 1)
	go onSignals(sigs, cancel, &stderr, func(code int) { exited <- code })
	sigs <- syscall.SIGTERM
	<-ctx.Done()
	if err := interrupted(ctx); err.Error() != "stopped by SIGTERM" || err.(*exitError).code != 143 {
		t.Fatalf("after one signal: %v", err)
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after one signal", code)
	default:
	}
	sigs <- os.Interrupt
	if code := <-exited; code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	if got := stderr.String(); got != "sluice: SIGINT again: exiting now\n" {
		t.Errorf("stderr %q", got)
	}
}
