package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/dockertest"
)

// The live status on a real terminal: `sluice run` of three parallel
// nodes and one that waits for them, in a tmux pane (a terminal of 100x30,
// on a tmux server of the test's own). While the three run, the pane shows
// a line for each under the log, saying what it does (all three
// "running" at some point); when the run ends,
// the status lines are gone and the summary is there. The screen seen
// while they run is written to $SLUICE_TMUX_SCREEN when set (the README's
// capture).
func TestLiveStatusInTmux(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		dockertest.Unavailable(t, "tmux is not installed (apt-get install tmux)")
		return
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "live"))); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The pane's shell runs sluice, then says it ended, and stays open.
	script := "cd " + dir + " && env -u CI SLUICE_TEST_MAIN=1 " + os.Args[0] +
		" run --pull never --concurrency 3; echo sluice-exited-$?; sleep 600"
	run("new-session", "-d", "-x", "100", "-y", "30", "sh", "-c", script)
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	capture := func() string { return run("capture-pane", "-p") }

	statusLine := regexp.MustCompile(`(?m)^  (prepare|train|evaluate) +[a-z ]+ \d+s \(\d+s in all\)$`)
	runningLine := regexp.MustCompile(`(?m)^  \w+ +running \d+s`)
	var during string
	deadline := time.Now().Add(2 * time.Minute) // a guard
	for {
		screen := capture()
		if strings.Contains(screen, "[0/4 done, 3 running]") && len(statusLine.FindAllString(screen, -1)) == 3 &&
			len(runningLine.FindAllString(screen, -1)) == 3 {
			during = screen
			break
		}
		if strings.Contains(screen, "sluice-exited-") || time.Now().After(deadline) {
			t.Fatalf("never saw the three nodes' status lines; the pane:\n%s", screen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("while the nodes run:\n%s", during)
	if p := os.Getenv("SLUICE_TMUX_SCREEN"); p != "" {
		if err := os.WriteFile(p, []byte(strings.TrimRight(during, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var after string
	for {
		after = capture()
		if strings.Contains(after, "sluice-exited-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice did not end; the pane:\n%s", after)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("at the end:\n%s", after)
	if !strings.Contains(after, "sluice-exited-0") {
		t.Errorf("sluice failed:\n%s", after)
	}
	if statusLine.MatchString(after) || strings.Contains(after, "running]") {
		t.Errorf("status lines left on the screen:\n%s", after)
	}
	for _, want := range []string{"prepare | begin", "total", "succeeded"} {
		if !strings.Contains(after, want) {
			t.Errorf("the screen has no %q:\n%s", want, after)
		}
	}
}
