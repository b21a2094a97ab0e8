// Package liveness names the process that writes a run record, so that a
// later sluice on the same machine can tell whether that process is still
// there: a run whose sluice was killed (-9, an OOM kill, a cancelled CI job
// that did not wait) otherwise stays "running" in its record.
package liveness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Proc is a process as a run record names it.
type Proc struct {
	// Host is the machine's name, for people.
	Host string
	PID  int
	// Token identifies the process beyond its pid: on Linux the boot, the
	// pid namespace and the process's start time, so that a pid used again
	// by another process, or the same pid in another container, is not
	// taken for it. Empty where the system does not say.
	Token string
}

// Self returns this process.
func Self() Proc {
	host, _ := os.Hostname()
	p := Proc{Host: host, PID: os.Getpid()}
	if pre := machine(); pre != "" {
		if start, ok := startTime(p.PID); ok {
			p.Token = fmt.Sprintf("%s:%d:%s", pre, p.PID, start)
		}
	}
	return p
}

// Gone reports whether the process a token names has ended. known is false
// when this process cannot tell: the token is from another machine, boot or
// pid namespace, or from a system without /proc.
func Gone(token string) (gone, known bool) {
	pre := machine()
	if pre == "" || token == "" {
		return false, false
	}
	rest, ok := strings.CutPrefix(token, pre+":")
	if !ok {
		return false, false
	}
	pidText, start, ok := strings.Cut(rest, ":")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 {
		return false, false
	}
	now, alive := startTime(pid)
	return !alive || now != start, true
}

// machine names this boot of this machine and this pid namespace, or ""
// when the system does not say (not Linux, no /proc).
func machine() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return "linux:" + strings.TrimSpace(string(boot)) + ":" + ns
}

// startTime returns when process pid started (in clock ticks since boot, as
// /proc/PID/stat says), and false when there is no such live process (a
// zombie is not live: it has exited and waits to be reaped).
func startTime(pid int) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow start after the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is the state (field 3), fields[19] the start time (field 22).
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return "", false
	}
	return fields[19], true
}
