package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

func TestLiveStatus(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newLiveStatus(&out, 3, func() time.Time { return now })
	s.Node("train", store.StatusRunning)
	now = now.Add(12 * time.Second)
	s.Node("prep", store.StatusSucceeded)
	if got := s.line(); got != "[1/3 done] running: train 12s" {
		t.Errorf("line = %q", got)
	}
	s.Write([]byte("train | epoch 1\n"))
	// The log line replaces the status line, which comes back under it.
	if !strings.HasSuffix(out.String(), "\r\x1b[Ktrain | epoch 1\n[1/3 done] running: train 12s") {
		t.Errorf("output %q", out.String())
	}
	s.Stop()
	if !strings.HasSuffix(out.String(), "\r\x1b[K") {
		t.Errorf("the status line was not cleared: %q", out.String())
	}
	s.Write([]byte("after\n"))
	if !strings.HasSuffix(out.String(), "\r\x1b[Kafter\n") {
		t.Errorf("status drawn after Stop: %q", out.String())
	}
}
