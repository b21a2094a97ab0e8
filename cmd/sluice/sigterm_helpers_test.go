package main

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startUntil starts cmd with its stdout and stderr on one pipe and reads its
// lines until one contains marker. It returns the lines read and the pipe,
// to read the rest from; the test fails if cmd ends first.
func startUntil(t *testing.T, cmd *exec.Cmd, marker string) ([]string, io.Reader) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var seen []string
	for lines.Scan() {
		seen = append(seen, lines.Text())
		if strings.Contains(lines.Text(), marker) {
			return seen, stdout
		}
	}
	_ = cmd.Wait()
	t.Fatalf("%q never came; output:\n%s", marker, strings.Join(seen, "\n"))
	return nil, nil
}

// sigterm sends cmd SIGTERM and waits for it, reading what it still prints
// from rest. It returns when the signal was sent, the time from it to the
// exit, what was printed after it, and Wait's error.
func sigterm(t *testing.T, cmd *exec.Cmd, rest io.Reader) (time.Time, time.Duration, string, error) {
	t.Helper()
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	tail := make(chan string)
	go func() {
		b, _ := io.ReadAll(rest)
		tail <- string(b)
	}()
	err := cmd.Wait()
	took := time.Since(signalled)
	return signalled, took, <-tail, err
}
