package file_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// childDirEnv, when set, makes TestCrossProcessUpdate act as one of the
// child processes it starts, incrementing the counter in that store.
const childDirEnv = "SLUICE_TEST_FILE_STORE_CHILD_DIR"

const (
	procs         = 4
	perProc       = 25
	counterKey    = "refs/counter"
	childLineHead = "wrote "
)

// TestCrossProcessUpdate re-executes the test binary as several processes
// that increment one counter with compare-and-swap at the same time; no
// increment may be lost, and generations must increase with the counter.
func TestCrossProcessUpdate(t *testing.T) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		runChild(t, dir)
		return
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stdout bytes.Buffer
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(exe, "-test.run=^TestCrossProcessUpdate$", "-test.count=1")}
		c.cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
		c.cmd.Stdout = &c.stdout
		c.cmd.Stderr = &c.stdout
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	// Start line: every child waits for EOF on stdin before it begins.
	for _, c := range children {
		c.stdin.Close()
	}
	type write struct {
		value int
		gen   int64
	}
	var writes []write
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.stdout.String())
		}
		sc := bufio.NewScanner(&c.stdout)
		for sc.Scan() {
			var w write
			if _, err := fmt.Sscanf(sc.Text(), childLineHead+"%d %d", &w.value, &w.gen); err == nil {
				writes = append(writes, w)
			}
		}
	}

	s, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(t.Context(), counterKey)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), strconv.Itoa(procs*perProc); got != want {
		t.Errorf("counter = %s, want %s: increments were lost", got, want)
	}
	slices.SortFunc(writes, func(a, b write) int { return a.value - b.value })
	if len(writes) != procs*perProc {
		t.Fatalf("children reported %d writes, want %d", len(writes), procs*perProc)
	}
	for i, w := range writes {
		if w.value != i+1 {
			t.Fatalf("values written %v, want each of 1..%d once", writes, procs*perProc)
		}
		if i > 0 && w.gen <= writes[i-1].gen {
			t.Fatalf("value %d has generation %d, value %d has %d: want increasing", w.value, w.gen, i, writes[i-1].gen)
		}
	}
}

func runChild(t *testing.T, dir string) {
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	s, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for range perProc {
		var value int
		info, err := store.Update(t.Context(), s, counterKey, func(old []byte, exists bool) ([]byte, error) {
			value = 1
			if exists {
				v, err := strconv.Atoi(strings.TrimSpace(string(old)))
				if err != nil {
					return nil, err
				}
				value = v + 1
			}
			return []byte(strconv.Itoa(value)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf(childLineHead+"%d %d\n", value, info.Generation)
	}
}
