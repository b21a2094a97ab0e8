package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// The view: a count, then one line per running node with what it does, for
// how long, and how long it has run; a task's executions show under their
// node; nothing once stopped.
func TestStatusView(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &statusModel{now: func() time.Time { return now }, total: 4, running: map[string]*nodeState{}}
	m.Update(statusMsg{"train", store.StatusRunning})
	m.Update(statusMsg{"prep", store.StatusRunning})
	now = now.Add(2 * time.Second)
	m.Update(activityMsg{"train", "copying in"})
	now = now.Add(time.Second)
	m.Update(activityMsg{"train", "running"})
	m.Update(activityMsg{"prep[lr-0.1]", "pulling image"})
	m.Update(statusMsg{"lint", store.StatusSucceeded})
	now = now.Add(72 * time.Second)
	want := strings.Join([]string{
		"[1/4 done, 2 running]",
		"  prep   pulling image 1m12s (1m15s in all)",
		"  train  running 1m12s (1m15s in all)",
	}, "\n")
	if got := m.View(); got != want {
		t.Errorf("view:\n%s\nwant:\n%s", got, want)
	}
	m.Update(statusMsg{"prep", store.StatusFailed})
	if got := m.View(); !strings.HasPrefix(got, "[2/4 done, 1 running]\n  train") || strings.Contains(got, "prep") {
		t.Errorf("after prep ended:\n%s", got)
	}
	m.Update(stopMsg{})
	if got := m.View(); got != "" {
		t.Errorf("view after stop: %q", got)
	}
}

func TestLiveTerminal(t *testing.T) {
	env := func(ci string) func(string) string {
		return func(k string) string {
			if k == "CI" {
				return ci
			}
			return ""
		}
	}
	var b strings.Builder
	if liveTerminal(&b, env("")) {
		t.Error("a buffer is not a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if liveTerminal(null, env("")) {
		t.Error("/dev/null is a character device, not a terminal")
	}
	// A real terminal, and CI=true there, is TestLiveStatusInTmux's.
}
