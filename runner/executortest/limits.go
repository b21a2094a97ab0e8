package executortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// limitBound is how long a run that a limit (or a cancel) ends may take,
// where the command alone would sleep 30 seconds: a generous bound that
// proves the limit fired, not a measure of speed.
const limitBound = 20 * time.Second

// A command's exit status is the result's, and only 0 is completed. A
// command killed by a signal reports 128 + the signal. (The command kills
// its own shell, which is ignored where the shell is the container's init,
// and then a child shell, whose status the shell exits with: 137 either way.
// The explicit exit keeps the shell from exec'ing its last command, which
// would make the child the init.)
func testExitCodes(t *testing.T, s *suite) {
	for _, tc := range []struct {
		name    string
		command string
		code    int
		reason  runner.Reason
		stderr  []string
	}{
		{"zero", "echo fine", 0, runner.ReasonCompleted, nil},
		{"three", "echo something went wrong >&2; exit 3", 3, runner.ReasonFailed, []string{"something went wrong"}},
		{"killed", `echo dying >&2; kill -9 $$; sh -c 'kill -9 $$'; exit $?`, 137, runner.ReasonFailed, []string{"dying"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := s.newExecutor(t)
			j := s.job(t, tc.command)
			r := s.ctxRun(t, e, j)
			if r.err != nil {
				t.Fatalf("Run: %v (a command's exit status is not an error)", r.err)
			}
			if r.res.ExitCode != tc.code || r.res.Reason != tc.reason {
				t.Errorf("ExitCode %d, Reason %s, want %d, %s", r.res.ExitCode, r.res.Reason, tc.code, tc.reason)
			}
			checkRan(t, r.res)
			// A shell may say what killed its child; the rest is the command's.
			if got := r.stderr.get(); !slices.Equal(got[:min(len(got), len(tc.stderr))], tc.stderr) ||
				(tc.code != 137 && len(got) != len(tc.stderr)) {
				t.Errorf("stderr %q, want %q", got, tc.stderr)
			}
		})
	}
}

// A command that runs past the time limit is killed; what it printed and
// the outputs it wrote before arrive.
func testTimeLimit(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, "echo partial > /valohai/outputs/before.txt; echo started; sleep 30")
	j.TimeLimit = 2 * time.Second
	start := time.Now()
	r := s.ctxRun(t, e, j)
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("Run: %v (a limit is not an error)", r.err)
	}
	if took > limitBound {
		t.Errorf("Run took %s with a %s time limit", took, j.TimeLimit)
	}
	if r.res.Reason != runner.ReasonTimeLimit || r.res.ExitCode != 137 {
		t.Errorf("Reason %s, ExitCode %d, want time-limit, 137", r.res.Reason, r.res.ExitCode)
	}
	checkRan(t, r.res)
	if got := r.stdout.get(); !slices.Equal(got, []string{"started"}) {
		t.Errorf("stdout %q, want [started]", got)
	}
	wantOutputs(t, s.outputs(t, j, r.res), map[string]output{"before.txt": {content: "partial\n"}})
	s.noLeftovers(t, j.RunID)
}

// A command silent for the no-output timeout is killed; one that prints
// more often than that runs to its end, however long.
func testNoOutputTimeout(t *testing.T, s *suite) {
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		e := s.newExecutor(t)
		j := s.job(t, "echo partial > /valohai/outputs/before.txt; echo started; sleep 30")
		j.NoOutputTimeout = time.Second
		start := time.Now()
		r := s.ctxRun(t, e, j)
		took := time.Since(start)
		if r.err != nil {
			t.Fatalf("Run: %v (a limit is not an error)", r.err)
		}
		if took > limitBound {
			t.Errorf("Run took %s with a %s no-output timeout", took, j.NoOutputTimeout)
		}
		if r.res.Reason != runner.ReasonNoOutputTimeout || r.res.ExitCode != 137 {
			t.Errorf("Reason %s, ExitCode %d, want no-output-timeout, 137", r.res.Reason, r.res.ExitCode)
		}
		if got := r.stdout.get(); !slices.Equal(got, []string{"started"}) {
			t.Errorf("stdout %q, want [started]", got)
		}
		wantOutputs(t, s.outputs(t, j, r.res), map[string]output{"before.txt": {content: "partial\n"}})
		s.noLeftovers(t, j.RunID)
	})

	// Output every 0.25s keeps a 1.5s no-output timeout away, over 2s in
	// all; stderr counts as output too.
	t.Run("chatty", func(t *testing.T) {
		t.Parallel()
		e := s.newExecutor(t)
		j := s.job(t, "for i in 1 2 3 4; do echo $i; sleep 0.25; echo $i >&2; sleep 0.25; done")
		j.NoOutputTimeout = 1500 * time.Millisecond
		r := s.ctxRun(t, e, j)
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
		if r.res.Reason != runner.ReasonCompleted {
			t.Errorf("Reason %s, ExitCode %d, want completed; stderr %q, warnings %q", r.res.Reason, r.res.ExitCode, r.stderr.get(), r.res.Warnings)
		}
		want := []string{"1", "2", "3", "4"}
		if got := r.stdout.get(); !slices.Equal(got, want) {
			t.Errorf("stdout %q, want %q", got, want)
		}
	})
}

// A run whose context is cancelled ends soon, with an error that wraps the
// context's, and leaves nothing behind.
func testCancel(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, "echo started; sleep 30")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var cancelled time.Time
	j.Stdout = newSink(func(string) {
		mu.Lock()
		cancelled = time.Now()
		mu.Unlock()
		cancel() // the command runs: it printed
	})
	r := s.run(t, ctx, e, j)
	returned := time.Now()
	t.Cleanup(func() { r.checkLate(t) })
	if !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, ctx.Err()) {
		t.Fatalf("Run error %v, want one that wraps context.Canceled", r.err)
	}
	mu.Lock()
	took := returned.Sub(cancelled)
	mu.Unlock()
	if took > limitBound {
		t.Errorf("Run returned %s after the cancel", took)
	}
	if r.res.Reason != runner.ReasonCancelled {
		t.Errorf("Reason %s, want cancelled", r.res.Reason)
	}
	if got := r.stdout.get(); !slices.Equal(got, []string{"started"}) {
		t.Errorf("stdout %q, want [started]", got)
	}
	s.noLeftovers(t, j.RunID)
}

// Each stream's lines arrive in order, a last line without a newline too,
// and each sink is flushed once, after its last write.
func testLogOrder(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, `i=1; while [ $i -le 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf 'err tail' >&2; printf 'no newline'`)
	r := s.mustRun(t, e, j)
	var wantOut, wantErr []string
	for i := 1; i <= 200; i++ {
		wantOut = append(wantOut, "out "+strconv.Itoa(i))
		wantErr = append(wantErr, "err "+strconv.Itoa(i))
	}
	wantOut = append(wantOut, "no newline")
	wantErr = append(wantErr, "err tail")
	if got := r.stdout.get(); !slices.Equal(got, wantOut) {
		t.Errorf("stdout: %d lines, want %d in order; first %q, last %q", len(got), len(wantOut), got[:min(3, len(got))], got[max(0, len(got)-3):])
	}
	if got := r.stderr.get(); !slices.Equal(got, wantErr) {
		t.Errorf("stderr: %d lines, want %d in order; first %q, last %q", len(got), len(wantErr), got[:min(3, len(got))], got[max(0, len(got)-3):])
	}
	for name, sk := range map[string]*sink{"stdout": r.stdout, "stderr": r.stderr} {
		sk.mu.Lock()
		if sk.flushes != 1 {
			t.Errorf("%s flushed %d times, want once", name, sk.flushes)
		}
		sk.mu.Unlock()
	}
}

// concurrentJobs is how many jobs testConcurrent runs at once.
const concurrentJobs = 4

// Jobs run at once through one executor, as the nodes of a run do, each
// with its own inputs, parameters, outputs and log.
func testConcurrent(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	runID := newRunID()
	t.Cleanup(func() { s.noLeftovers(t, runID) })
	jobs := make([]runner.Job, concurrentJobs)
	for i := range jobs {
		j := s.job(t, `set -e
n=$(sed -n 's/.*"n": *\([0-9]*\).*/\1/p' /valohai/config/parameters.json)
echo "job $n"
sleep 0.5
{ echo "$n $VH_PIPELINE_NODE_ID"; cat /valohai/inputs/in/own.txt; } > /valohai/outputs/own.txt
echo "job $n done" >&2`)
		j.RunID = runID
		j.Node = fmt.Sprintf("node-%d", i)
		j.Parameters = map[string]any{"n": i}
		j.Inputs = []runner.Input{{Name: "in", Files: []runner.InputFile{s.blobInput(t, "own.txt", fmt.Sprintf("input %d\n", i))}}}
		jobs[i] = j
	}
	results := make([]ran, len(jobs))
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.run(t, context.Background(), e, jobs[i])
		}()
	}
	wg.Wait()
	for i, r := range results {
		r.checkLate(t)
		if r.err != nil || r.res.Reason != runner.ReasonCompleted {
			t.Errorf("job %d: %v, %s, warnings %q", i, r.err, r.res.Reason, r.res.Warnings)
			continue
		}
		if got, want := r.stdout.get(), []string{fmt.Sprintf("job %d", i)}; !slices.Equal(got, want) {
			t.Errorf("job %d stdout %q, want %q", i, got, want)
		}
		if got, want := r.stderr.get(), []string{fmt.Sprintf("job %d done", i)}; !slices.Equal(got, want) {
			t.Errorf("job %d stderr %q, want %q", i, got, want)
		}
		wantOutputs(t, s.outputs(t, jobs[i], r.res), map[string]output{
			"own.txt": {content: fmt.Sprintf("%d node-%d\ninput %d\n", i, i, i)},
		})
	}
}

// A job no executor can run is refused with the errors Validate gives,
// before anything starts.
func testBadJob(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	for _, tc := range []struct {
		name   string
		change func(j *runner.Job)
		want   string
	}{
		{"no image", func(j *runner.Job) { j.Image = "" }, "no image"},
		{"no command", func(j *runner.Job) { j.Command = " " }, "no command"},
		{"negative time limit", func(j *runner.Job) { j.TimeLimit = -time.Second }, "negative time limit"},
		{"bad input name", func(j *runner.Job) {
			j.Inputs = []runner.Input{{Name: "../up", Files: []runner.InputFile{openInput("x", "x")}}}
		}, `bad input name "../up"`},
		{"input file climbs out", func(j *runner.Job) {
			j.Inputs = []runner.Input{{Name: "in", Files: []runner.InputFile{openInput("../x", "x")}}}
		}, `bad file name "../x"`},
		{"input file without content", func(j *runner.Job) {
			j.Inputs = []runner.Input{{Name: "in", Files: []runner.InputFile{{Name: "x"}}}}
		}, "needs exactly one of Path and Open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := s.job(t, "echo ran > /valohai/outputs/ran.txt; echo ran")
			tc.change(&j)
			verr := j.Validate()
			if verr == nil {
				t.Fatalf("Validate passed the job")
			}
			stdout := newSink(nil)
			j.Stdout = stdout
			res, err := e.Run(context.Background(), j)
			stdout.finish(t, "stdout", false)
			if err == nil {
				t.Fatalf("Run passed a job Validate refuses (%v)", verr)
			}
			for _, want := range []string{j.Node, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if res.Reason != runner.ReasonError || res.ExitCode != -1 || !res.Started.IsZero() || len(res.Outputs) != 0 {
				t.Errorf("result %+v, want Reason error, ExitCode -1, never started, no outputs", res)
			}
			if got := stdout.get(); len(got) != 0 {
				t.Errorf("the command ran: stdout %q", got)
			}
		})
	}
}
