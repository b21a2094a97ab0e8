package dockertest

import (
	"context"
	"strings"
	"testing"
)

// fakeTB records what unavailable asks of the test instead of stopping it.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                          {}
func (f *fakeTB) Skipf(format string, args ...any) { f.skipped = format }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
}

func TestUnavailableSkipsLocallyAndFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{
		{"", false},
		{"false", false},
		{"true", true},
		{"1", true},
	} {
		f := &fakeTB{TB: t}
		unavailable(f, func(k string) string {
			if k == "CI" {
				return tc.ci
			}
			return ""
		}, "no daemon")
		if got := f.failed != ""; got != tc.wantFail {
			t.Errorf("CI=%q: failed=%v (skipped=%q), want failed=%v", tc.ci, got, f.skipped, tc.wantFail)
		}
		if (f.skipped != "") == tc.wantFail {
			t.Errorf("CI=%q: skipped=%q, want skipped=%v", tc.ci, f.skipped, !tc.wantFail)
		}
	}
}

// TestDocker is the canary: in CI it fails when the daemon or the test image
// is missing, whatever else the suite does.
func TestDocker(t *testing.T) {
	cli := Client(t)
	img := Image(t)
	info, err := cli.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(img, "busybox") {
		t.Errorf("Image = %q", img)
	}
	t.Logf("docker %s (API %s), storage driver %s, image %s", info.ServerVersion, cli.ClientVersion(), info.Driver, img)
}
