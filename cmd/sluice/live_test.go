package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/liveness"
	"github.com/sluice-ci/sluice/store"
)

// A run of another machine is interrupted once its heartbeat is older than
// a minute; one of this machine's live processes stays running whatever its
// heartbeat says; a finished run is never interrupted.
func TestGoneReason(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	self := liveness.Self()
	for _, c := range []struct {
		name string
		rec  store.Run
		want string // in the reason; "" for none
	}{
		{"elsewhere, fresh", store.Run{Status: store.StatusRunning, Host: "ci-7", PID: 42, Process: "linux:other-boot:pid:[1]:42:99", Heartbeat: now.Add(-30 * time.Second)}, ""},
		{"elsewhere, stale", store.Run{Status: store.StatusRunning, Host: "ci-7", PID: 42, Process: "linux:other-boot:pid:[1]:42:99", Heartbeat: now.Add(-2 * time.Minute)},
			"no word from its sluice (pid 42 on ci-7) since its heartbeat at 2026-12-04T11:58:00Z"},
		{"old record, no heartbeat", store.Run{Status: store.StatusRunning, Started: now.Add(-time.Hour)}, "pid 0 on an unknown host) since its start"},
		{"this process, stale heartbeat", store.Run{Status: store.StatusRunning, Host: self.Host, PID: self.PID, Process: self.Token, Heartbeat: now.Add(-time.Hour)}, ""},
		{"finished", store.Run{Status: store.StatusFailed, Heartbeat: now.Add(-time.Hour)}, ""},
	} {
		got := goneReason(&c.rec, now)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
