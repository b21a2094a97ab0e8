package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// The end-to-end tests run the sluice binary: the test binary re-executed
// with SLUICE_TEST_MAIN=1 runs main() instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type binResult struct {
	code           int
	stdout, stderr string
	dir            string
}

// runBinary copies testdata/run/<scenario> to a temporary directory and runs
// `sluice ARGS...` there.
func runBinary(t *testing.T, scenario string, args ...string) binResult {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", "run", scenario)
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run sluice: %v", err)
	}
	return binResult{code: code, stdout: out.String(), stderr: errb.String(), dir: dir}
}

// lastRun reads the newest run record of the scenario's store.
func (b binResult) lastRun(t *testing.T) *store.Run {
	t.Helper()
	st, err := file.New(filepath.Join(b.dir, ".sluice"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.ListRuns(context.Background(), st)
	if err != nil || len(ids) == 0 {
		t.Fatalf("no run recorded (%v)\nstdout:\n%s\nstderr:\n%s", err, b.stdout, b.stderr)
	}
	rec, err := store.GetRun(context.Background(), st, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRunScenarios(t *testing.T) {
	dockertest.Client(t)
	dockertest.Image(t)
	cases := []struct {
		scenario string
		args     []string
		code     int
		run      store.Status
		nodes    map[string]store.Status
		out      []string // in stdout
		notOut   []string
		check    func(t *testing.T, rec *store.Run)
	}{
		{
			scenario: "fan-out-fan-in", code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"split": "succeeded", "left": "succeeded", "right": "succeeded", "join": "succeeded"},
			out:   []string{"join | LEFT.txt RIGHT.txt\n"},
			check: func(t *testing.T, rec *store.Run) {
				join := rec.Node("join")
				if join.Metadata["files"] != float64(2) || join.Output("joined.txt") == nil {
					t.Errorf("join: metadata %v, outputs %v", join.Metadata, join.Outputs)
				}
				if !rec.Node("join").Started.After(rec.Node("left").Finished.Add(-time.Millisecond)) {
					t.Errorf("join started before left finished")
				}
			},
		},
		{
			scenario: "on-error-stop-all", code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"fail": "failed", "slow": "cancelled", "after": "skipped"},
			out:   []string{"fail | failing", "exited with code 3"},
			check: func(t *testing.T, rec *store.Run) {
				if d := rec.Node("slow").Duration(); d > 20*time.Second {
					t.Errorf("slow ran %s: not cancelled", d)
				}
				if !strings.Contains(rec.Reason, `node "fail" failed`) {
					t.Errorf("reason %q", rec.Reason)
				}
			},
		},
		{
			scenario: "on-error-stop-next", code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"fail": "failed", "ok": "succeeded", "after": "skipped"},
			out:   []string{"ok | fine"},
		},
		{
			scenario: "on-error-continue", code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"fail": "failed", "after": "succeeded"},
			out:   []string{"after | ran anyway"},
		},
		{
			scenario: "retry", code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"flaky": "failed"},
			out:   []string{"retrying (attempt 3 of 3)"},
			check: func(t *testing.T, rec *store.Run) {
				if a := rec.Node("flaky").Attempts; a != 3 {
					t.Errorf("attempts = %d, want 3", a)
				}
			},
		},
		{
			scenario: "stop-pipeline-action", code: 2, run: store.StatusStopped,
			nodes: map[string]store.Status{"evaluate": "succeeded", "deploy": "skipped"},
			check: func(t *testing.T, rec *store.Run) {
				ev := rec.Node("evaluate")
				if ev.Metadata["accuracy"] != 0.75 || len(ev.Series["accuracy"]) != 2 {
					t.Errorf("metadata %v series %v", ev.Metadata, ev.Series)
				}
				if !strings.Contains(rec.Reason, "metadata.accuracy < 0.9") || !strings.Contains(rec.Reason, "stop-pipeline") {
					t.Errorf("reason %q does not name the condition", rec.Reason)
				}
			},
		},
		{
			scenario: "output-globs", code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"produce": "succeeded", "consume": "succeeded"},
			out:   []string{"consume | ./model/model.pkl ./tables/a.csv ./tables/b.csv"},
		},
		{
			scenario: "time-limit", args: []string{"--step", "sleepy"}, code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"sleepy": "failed"},
			out:   []string{"sleepy | start", "time limit of 2s"},
		},
		{
			scenario: "no-output-timeout", args: []string{"--step", "quiet"}, code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"quiet": "failed"},
			out:   []string{"quiet | one", "printing nothing for 2s"},
		},
		{
			scenario: "shell-metacharacters", args: []string{"--step", "echo"}, code: 0, run: store.StatusSucceeded,
			nodes:  map[string]store.Status{"echo": "succeeded"},
			out:    []string{"echo | args.txt"},
			notOut: []string{"pwned"},
		},
		{
			scenario: "output-escape", args: []string{"--step", "sneaky"}, code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"sneaky": "succeeded"},
			out:   []string{"warning:"},
			check: func(t *testing.T, rec *store.Run) {
				n := rec.Node("sneaky")
				if n.Output("passwd") != nil || n.Output("ok.txt") == nil {
					t.Errorf("outputs %v: the link to /etc/passwd must be refused, ok.txt kept", n.Outputs)
				}
			},
		},
		{
			scenario: "metadata-edge-cases", args: []string{"--step", "noisy"}, code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"noisy": "succeeded"},
			out:   []string{`noisy | {"loss": broken`, `noisy ! {"stderr": 1}`},
			check: func(t *testing.T, rec *store.Run) {
				n := rec.Node("noisy")
				if n.Metadata["loss"] != 0.25 || n.Metadata["epoch"] != float64(3) {
					t.Errorf("metadata %v, want loss 0.25 and epoch 3", n.Metadata)
				}
				if _, ok := n.Metadata["huge"]; ok {
					t.Errorf("a 10 MB line was taken as metadata")
				}
				if _, ok := n.Metadata["stderr"]; ok {
					t.Errorf("stderr was taken as metadata")
				}
				if got := n.Series["loss"]; len(got) != 2 || got[0] != 0.9 || got[1] != 0.25 {
					t.Errorf("loss series %v, want [0.9 0.25]", got)
				}
			},
		},
		{
			scenario: "task-grid", code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"sweep": "succeeded", "collect": "succeeded"},
			out:   []string{"collect | model-1-3.txt model-1-4.txt model-2-3.txt model-2-4.txt\n", "sweep | sluice: task: 4 executions"},
			check: func(t *testing.T, rec *store.Run) {
				var got []string
				for _, e := range rec.Node("sweep").Executions {
					got = append(got, fmt.Sprintf("%s:%v", e.Variant, e.Metadata["score"]))
					if e.Log.IsZero() || e.Status != store.StatusSucceeded {
						t.Errorf("execution %s: %s, log %v", e.Variant, e.Status, e.Log)
					}
				}
				want := "a=1 b=3:13 a=1 b=4:14 a=2 b=3:23 a=2 b=4:24"
				if strings.Join(got, " ") != want {
					t.Errorf("executions %q, want %q", strings.Join(got, " "), want)
				}
			},
		},
		{
			scenario: "metadata-to-parameter", code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"tune": "succeeded", "train": "succeeded"},
			out:   []string{"train | training --lr=1.0 --layers=3 --note=from-pipeline\n"},
		},
		{
			scenario: "valohai-cli-spellings", code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"train": "succeeded", "sweep": "succeeded"},
			out:   []string{"train | training --epochs=50 --verbose --note=from-pipeline\n", "train |   \"epochs\": 50,\n", "sweep | training --epochs=1 --note=from-pipeline\n"},
			check: func(t *testing.T, rec *store.Run) {
				if p := rec.Node("train").Parameters; p["epochs"] != float64(50) || p["verbose"] != true || p["note"] != "from-pipeline" {
					t.Errorf("parameters %v: want epochs 50, verbose true, note from-pipeline", p)
				}
				for _, e := range append([]*store.NodeRun{rec.Node("sweep")}, rec.Node("sweep").Executions...) {
					if _, ok := e.Parameters["batch-size"]; ok {
						t.Errorf("sweep %s: parameters %v: batch-size is not a parameter of step train", e.Variant, e.Parameters)
					}
				}
			},
		},
		{
			scenario: "output-properties", args: []string{"--step", "produce"}, code: 0, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"produce": "succeeded"},
			check: func(t *testing.T, rec *store.Run) {
				n := rec.Node("produce")
				m, d := n.Output("model.pkl"), n.Output("data.csv")
				if m == nil || d == nil || len(n.Outputs) != 2 {
					t.Fatalf("outputs %+v: want model.pkl and data.csv, sidecars left out", n.Outputs)
				}
				if m.Properties["valohai.alias"] != "best-model" || m.Properties["accuracy"] != 0.97 {
					t.Errorf("model.pkl properties %v", m.Properties)
				}
				if tags, _ := d.Properties["valohai.tags"].([]any); len(tags) != 1 || tags[0] != "raw" {
					t.Errorf("data.csv properties %v", d.Properties)
				}
			},
		},
		{
			scenario: "command-not-found", args: []string{"--step", "typo"}, code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"typo": "failed"},
			out:   []string{"typo ! /bin/sh: pyhton: not found", "exited with code 127"},
		},
		{
			scenario: "gate-fails", code: 2, run: store.StatusSucceeded,
			nodes: map[string]store.Status{"evaluate": "succeeded"},
			check: func(t *testing.T, rec *store.Run) {
				if rec.Node("evaluate").Metadata["accuracy"] != 0.5 {
					t.Errorf("metadata %v", rec.Node("evaluate").Metadata)
				}
			},
		},
		{
			scenario: "missing-image", code: 1, run: store.StatusFailed,
			nodes: map[string]store.Status{"a": "failed", "b": "succeeded"},
			check: func(t *testing.T, rec *store.Run) {
				if r := rec.Node("a").Reason; !strings.Contains(r, "sluice-test/does-not-exist:1") {
					t.Errorf("reason %q does not name the image", r)
				}
				if rec.Node("b").Output("b.txt") == nil {
					t.Errorf("b's output lost")
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"run", "--pull", "never", "--concurrency", "4"}, c.args...)
			res := runBinary(t, c.scenario, args...)
			if res.code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, c.code, res.stdout, res.stderr)
			}
			rec := res.lastRun(t)
			if rec.Status != c.run {
				t.Errorf("run status %s (%s), want %s", rec.Status, rec.Reason, c.run)
			}
			for name, want := range c.nodes {
				n := rec.Node(name)
				if n == nil {
					t.Errorf("node %s missing from the record", name)
					continue
				}
				if n.Status != want {
					t.Errorf("node %s: %s (%s), want %s", name, n.Status, n.Reason, want)
				}
				if n.Status == store.StatusSucceeded || n.Status == store.StatusFailed && n.ExitCode != nil {
					if n.Log.IsZero() && len(n.Executions) == 0 {
						t.Errorf("node %s: no log stored", name)
					}
				}
			}
			for _, s := range c.out {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			for _, s := range c.notOut {
				if strings.Contains(res.stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, res.stdout)
				}
			}
			if c.check != nil {
				c.check(t, rec)
			}
		})
	}
}
