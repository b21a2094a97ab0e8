package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// runIn runs the sluice binary in dir (not a copy) and returns the newest run.
func runIn(t *testing.T, dir string, args ...string) (binResult, *store.Run) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run", "--pull", "never"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	res := binResult{stdout: string(out), dir: dir}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res, res.lastRun(t)
}

// reused lists, in pipeline order, which nodes took an earlier result.
func reused(rec *store.Run) string {
	var out []string
	for _, n := range rec.Nodes {
		if n.ReusedFrom != "" {
			out = append(out, n.Name)
		}
	}
	return strings.Join(out, ",")
}

func TestReuse(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "reuse"))); err != nil {
		t.Fatal(err)
	}
	step := func(name, want string, args ...string) (binResult, *store.Run) {
		t.Helper()
		res, rec := runIn(t, dir, args...)
		if got := reused(rec); got != want {
			t.Fatalf("%s: reused %q, want %q\n%s", name, got, want, res.stdout)
		}
		return res, rec
	}
	first, rec1 := step("first run", "")
	if first.code != 0 || rec1.Status != store.StatusSucceeded {
		t.Fatalf("first run: %d %s\n%s", first.code, rec1.Status, first.stdout)
	}

	res, rec := step("unchanged", "prepare,train,report")
	if res.code != 0 || rec.Node("report").ReusedFrom != rec1.ID || rec.Node("report").Metadata == nil && len(rec.Node("report").Outputs) != len(rec1.Node("report").Outputs) {
		t.Errorf("unchanged rerun: exit %d, report reused from %q", res.code, rec.Node("report").ReusedFrom)
	}
	for _, n := range rec.Nodes {
		if n.Attempts != 0 {
			t.Errorf("node %s ran (%d attempts) though reused", n.Name, n.Attempts)
		}
	}

	res, _ = step("parameter of the last node", "prepare,train", "-p", "title=other")
	if !strings.Contains(res.stdout, "report | sluice: runs: command, parameters changed") || !strings.Contains(res.stdout, "report | report other: 2") {
		t.Errorf("why report ran is not said:\n%s", res.stdout)
	}

	// plan says the same before anything runs, and runs and records nothing.
	st, err := file.New(filepath.Join(dir, ".sluice"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := store.ListRuns(context.Background(), st)
	state := dirState(t, dir)
	plan := exec.Command(os.Args[0], "plan", "-p", "title=third")
	plan.Dir = dir
	plan.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	out, err := plan.CombinedOutput()
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	for _, want := range []string{"prepare  reused from run " + rec1.ID, "report   runs: command, parameters changed since run"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if after, _ := store.ListRuns(context.Background(), st); len(after) != len(before) {
		t.Errorf("plan recorded a run: %d runs before, %d after", len(before), len(after))
	}
	if !reflect.DeepEqual(dirState(t, dir), state) {
		t.Errorf("plan changed the repository or its store")
	}

	os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte("changed, but no step sees it\n"), 0o644)
	step("file outside every source-path", "prepare,train,report", "-p", "title=other")

	os.WriteFile(filepath.Join(dir, "report.sh"), []byte("echo \"report v2 $1: $(cat /valohai/inputs/model/model.txt)\"\nexit \"$2\"\n"), 0o644)
	res, _ = step("the last node's code", "prepare,train", "-p", "title=other")
	if !strings.Contains(res.stdout, "runs: code changed") {
		t.Errorf("code change not named:\n%s", res.stdout)
	}

	os.WriteFile(filepath.Join(dir, "data", "raw.txt"), []byte("a\nb\nc\n"), 0o644)
	res, rec = step("input of the first node", "", "-p", "title=other")
	if !strings.Contains(res.stdout, "prepare | sluice: runs: inputs changed") || !strings.Contains(res.stdout, "report v2 other: 3") {
		t.Errorf("input change:\n%s", res.stdout)
	}

	// Deleting a blob a cached result needs makes that node run again.
	model := rec.Node("train").Output("model.txt")
	if err := os.Remove(filepath.Join(dir, ".sluice", store.BlobKey(model.Digest))); err != nil {
		t.Fatal(err)
	}
	res, _ = step("deleted output blob", "prepare,report", "-p", "title=other")
	if !strings.Contains(res.stdout, "is no longer in the store") {
		t.Errorf("the missing blob is not named:\n%s", res.stdout)
	}

	// A failed node is never reused.
	step("failing", "prepare,train", "-p", "code=3")
	res, _ = step("failing again", "prepare,train", "-p", "code=3")
	if res.code != 1 || !strings.Contains(res.stdout, "only successful results are reused") {
		t.Errorf("failed node: exit %d\n%s", res.code, res.stdout)
	}

	// --no-cache=train runs train and what depends on it; --no-cache runs all.
	step("no cache for train", "prepare", "--no-cache=train")
	step("no cache", "", "--no-cache")

	// A step can opt out in sluice.yaml; what it produces is the same, so
	// what comes after it is still reused.
	os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("steps:\n  prepare:\n    reuse: false\n"), 0o644)
	step("sluice.yaml opt-out", "train,report")
	os.Remove(filepath.Join(dir, "sluice.yaml"))

	// kill -9 in the middle of a run, then run again: what finished is reused.
	cmd := exec.Command(os.Args[0], "run", "--pull", "never", "--no-cache=report", "-p", "sleep=30")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "sleeping") {
	}
	cmd.Process.Kill()
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	// clean of that run only: a bare clean would remove every sluice
	// container on the daemon, those of tests running beside this one too.
	clean := exec.Command(os.Args[0], "clean", binResult{dir: dir}.lastRun(t).ID)
	clean.Dir = dir
	clean.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	if out, err := clean.CombinedOutput(); err != nil {
		t.Errorf("sluice clean: %v\n%s", err, out)
	}
	step("after kill -9", "prepare,train", "-p", "sleep=1")
	verifyBlobs(t, filepath.Join(dir, ".sluice"))
}

// verifyBlobs checks that every blob's content matches its name.
func verifyBlobs(t *testing.T, root string) {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(root, "blobs", "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".sluice-") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("read %s: %v", p, err)
			return nil
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != d.Name() {
			t.Errorf("blob %s does not match its content", d.Name())
		}
		n++
		return nil
	})
	if n == 0 {
		t.Error("no blobs found")
	}
}
