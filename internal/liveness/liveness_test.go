package liveness

import (
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestSelfIsAlive(t *testing.T) {
	p := Self()
	if p.PID <= 0 || p.Host == "" {
		t.Fatalf("self: %+v", p)
	}
	if runtime.GOOS != "linux" {
		return
	}
	if p.Token == "" {
		t.Fatal("no token on Linux")
	}
	if gone, known := Gone(p.Token); gone || !known {
		t.Errorf("this process: gone %v, known %v", gone, known)
	}
}

// A process that ended is gone, once reaped or not; one from another
// machine cannot be told; a pid used again by a later process is not taken
// for the first.
func TestGone(t *testing.T) {
	if machine() == "" {
		// Without /proc nothing can be told: every token is unknown, and a
		// run falls back to its heartbeat.
		if runtime.GOOS == "linux" {
			t.Fatal("no /proc/sys/kernel/random/boot_id or /proc/self/ns/pid on Linux")
		}
		if _, known := Gone(Self().Token); known {
			t.Error("a token is known on a system without /proc")
		}
		return
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pre := machine()
	start, ok := startTime(cmd.Process.Pid)
	if !ok {
		t.Fatal("no start time for a live child")
	}
	token := pre + ":" + itoa(cmd.Process.Pid) + ":" + start
	if gone, known := Gone(token); gone || !known {
		t.Fatalf("live child: gone %v, known %v", gone, known)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if gone, known := Gone(token); !gone || !known {
		t.Errorf("killed child: gone %v, known %v", gone, known)
	}
	reused := pre + ":" + itoa(Self().PID) + ":1"
	if gone, known := Gone(reused); !gone || !known {
		t.Errorf("a pid with another start time: gone %v, known %v", gone, known)
	}
	other := strings.Replace(token, "linux:", "linux:x", 1)
	if _, known := Gone(other); known {
		t.Errorf("a token of another machine is known")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
