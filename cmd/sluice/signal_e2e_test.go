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

// lintSignalled starts `sluice lint` of a 15 MiB file (which takes
// seconds), sends it sig after a while, and returns how it exited, what it
// printed, and how long it took to stop after the signal.
func lintSignalled(t *testing.T, sig os.Signal, after time.Duration) (stdout, stderr string, took time.Duration, err error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "valohai.yaml")
	if err := os.WriteFile(file, bigyaml.StepsOfSize(15<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "lint", file)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(after)
	signalled := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // a guard, not a measure
		cmd.Process.Kill()
		t.Fatalf("lint did not stop on %v", sig)
	}
	return out.String(), errOut.String(), time.Since(signalled), err
}

// SIGTERM half a second into the lint of a 15 MiB file stops it: exit code
// 143, one line that says why, and no findings. How soon it stops is
// measured by bench/lint.sh, not asserted here.
func TestLintStopsOnSIGTERM(t *testing.T) {
	stdout, stderr, took, err := lintSignalled(t, syscall.SIGTERM, 500*time.Millisecond)
	t.Logf("lint stopped %s after SIGTERM", took)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 143 {
		t.Fatalf("exit: %v, want code 143; stderr:\n%s", err, stderr)
	}
	if stderr != "sluice: stopped by SIGTERM\n" {
		t.Errorf("stderr %q, want the one line %q", stderr, "sluice: stopped by SIGTERM\n")
	}
	if len(stdout) > 0 {
		t.Errorf("stdout: %.300s", stdout)
	}
}

// SIGINT (Ctrl-C) gives 130 and its own one-line message.
func TestLintStopsOnSIGINT(t *testing.T) {
	_, stderr, _, err := lintSignalled(t, os.Interrupt, 300*time.Millisecond)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want code 130; stderr:\n%s", err, stderr)
	}
	if stderr != "sluice: stopped by SIGINT\n" {
		t.Errorf("stderr %q", stderr)
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
