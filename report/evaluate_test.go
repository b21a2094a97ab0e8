package report

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func f(x float64) *float64 { return &x }

// node builds a node record; meta alternates keys and values.
func node(name string, status store.Status, meta ...any) *store.NodeRun {
	n := &store.NodeRun{Name: name, Step: name, Status: status}
	if len(meta) > 0 {
		n.Metadata = map[string]any{}
		for i := 0; i+1 < len(meta); i += 2 {
			n.Metadata[meta[i].(string)] = meta[i+1]
		}
	}
	return n
}

func run(id string, status store.Status, nodes ...*store.NodeRun) *store.Run {
	return &store.Run{ID: id, Pipeline: "train", Status: status, Nodes: nodes}
}

func ok(nodes ...*store.NodeRun) *store.Run { return run("r2", store.StatusSucceeded, nodes...) }

func gate(metric string, dir spec.Direction, set func(*spec.Gate)) spec.Gate {
	g := spec.Gate{Metric: metric, Direction: dir}
	g.Node, g.Key, _ = strings.Cut(metric, ".")
	if set != nil {
		set(&g)
	}
	return g
}

func accuracy(vals ...any) *store.NodeRun {
	return node("evaluate", store.StatusSucceeded, append([]any{"accuracy"}, vals...)...)
}

func TestEvaluate(t *testing.T) {
	maxReg := func(x float64) func(*spec.Gate) { return func(g *spec.Gate) { g.MaxRegression = &x } }
	taskNode := &store.NodeRun{Name: "sweep", Status: store.StatusSucceeded, Executions: []*store.NodeRun{
		node("sweep", store.StatusSucceeded, "loss", 0.4), node("sweep", store.StatusSucceeded, "loss", 0.2), node("sweep", store.StatusSucceeded, "loss", "NaN"),
	}}
	cases := []struct {
		name       string
		run, base  *store.Run
		gate       spec.Gate
		status     Status
		trend      Trend
		reason     string // a substring of the metric's reason
		exit       int
		failureSub string // a substring of the first failure, when the run fails
	}{
		// No baseline: only min/max are checked; the metric is "new".
		{name: "first run, within bounds", run: ok(accuracy(0.95)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Min = f(0.9); g.MaxRegression = f(0.01) }),
			status: StatusNew, reason: "no baseline: the change was not checked; at least 0.9"},
		{name: "first run, below min", run: ok(accuracy(0.85)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Min = f(0.9) }),
			status: StatusFail, reason: "0.85 is below the minimum 0.9", exit: 2},
		{name: "above max", run: ok(accuracy(1.5)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Max = f(1) }),
			status: StatusFail, reason: "1.5 is above the maximum 1", exit: 2},
		// higher is better:   base 0.90 ──▶ 0.95   ↑ better
		{name: "improvement", run: ok(accuracy(0.95)), base: ok(accuracy(0.90)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0.01)),
			status: StatusPass, trend: TrendBetter, reason: "improved (rose) by 0.05"},
		// higher is better:   base 0.95 ──▶ 0.92   ↓ worse by 0.03 > 0.02
		{name: "regression beyond max-regression", run: ok(accuracy(0.92)), base: ok(accuracy(0.95)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0.02)),
			status: StatusFail, trend: TrendWorse, reason: "regressed (dropped) by 0.03 (from 0.95 to 0.92); at most 0.02 is allowed", exit: 2},
		// exactly at the limit: 0.93 - 0.92 is 0.010000000000000009 in floats, still allowed
		{name: "regression at the limit", run: ok(accuracy(0.92)), base: ok(accuracy(0.93)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0.01)),
			status: StatusPass, trend: TrendWorse, reason: "regressed (dropped) by 0.01, within the allowed 0.01"},
		{name: "regression beyond max-regression-percent", run: ok(accuracy(0.80)), base: ok(accuracy(0.90)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.MaxRegressionPercent = f(5) }),
			status: StatusFail, trend: TrendWorse, reason: "by 11.11%", exit: 2},
		// noise floor:   |0.9495 - 0.95| = 0.0005 <= 0.001  → not a regression, even with max-regression 0
		{name: "inside the noise floor", run: ok(accuracy(0.9495)), base: ok(accuracy(0.95)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Noise = 0.001; g.MaxRegression = f(0) }),
			status: StatusPass, trend: TrendNoise, reason: "within the noise floor of 0.001"},
		{name: "just outside the noise floor", run: ok(accuracy(0.948)), base: ok(accuracy(0.95)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Noise = 0.001; g.MaxRegression = f(0) }),
			status: StatusFail, trend: TrendWorse, exit: 2},
		// lower is better:   base 0.30 ──▶ 0.40   ↑ worse
		{name: "loss rose", run: ok(node("train", store.StatusSucceeded, "loss", 0.4)), base: ok(node("train", store.StatusSucceeded, "loss", 0.3)),
			gate:   gate("train.loss", spec.DirectionLower, maxReg(0.05)),
			status: StatusFail, trend: TrendWorse, reason: "regressed (rose) by 0.1", exit: 2},
		{name: "loss fell", run: ok(node("train", store.StatusSucceeded, "loss", 0.2)), base: ok(node("train", store.StatusSucceeded, "loss", 0.3)),
			gate:   gate("train.loss", spec.DirectionLower, maxReg(0.05)),
			status: StatusPass, trend: TrendBetter, reason: "improved (fell) by 0.1"},
		{name: "unchanged", run: ok(accuracy(0.9)), base: ok(accuracy(0.9)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0)),
			status: StatusPass, trend: TrendSame, reason: "unchanged"},
		{name: "no direction: tracked only", run: ok(accuracy(0.5)), base: ok(accuracy(0.9)),
			gate:   gate("evaluate.accuracy", spec.DirectionNone, nil),
			status: StatusPass, trend: TrendDown, reason: "fell by 0.4"},
		// Missing: the node names what it did print.
		{name: "missing key", run: ok(node("evaluate", store.StatusSucceeded, "acc", 0.9, "loss", 0.1)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusMissing, reason: `node evaluate printed no "accuracy" (it printed: acc, loss)`, exit: 2,
			failureSub: `evaluate.accuracy: node evaluate printed no "accuracy"`},
		{name: "missing, no metadata at all", run: ok(node("evaluate", store.StatusSucceeded)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusMissing, reason: `node evaluate printed no "accuracy" (it printed no metadata)`, exit: 2},
		{name: "missing node", run: ok(node("train", store.StatusSucceeded), node("eval", store.StatusSucceeded)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusMissing, reason: `the run has no node "evaluate" (its nodes: train, eval)`, exit: 2},
		{name: "skipped node", run: run("r2", store.StatusFailed, node("evaluate", store.StatusSkipped)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusMissing, reason: `node evaluate did not run (it is skipped), so there is no "accuracy"`, exit: 1,
			failureSub: "the pipeline failed"},
		// NaN and other non-numbers fail.
		{name: "NaN as printed by Python's str()", run: ok(accuracy("NaN")), base: ok(accuracy(0.9)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusFail, reason: "the value is NaN, not a finite number", exit: 2},
		{name: "NaN float", run: ok(accuracy(math.NaN())),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusFail, reason: "the value is NaN", exit: 2},
		{name: "infinite", run: ok(accuracy("-Infinity")),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusFail, reason: "the value is -Inf", exit: 2},
		{name: "not a number", run: ok(accuracy("high")),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusFail, reason: `the value "high" is not a number`, exit: 2},
		// The baseline's gaps make the metric new, not failed.
		{name: "baseline lacks the metric", run: ok(accuracy(0.9)), base: ok(node("evaluate", store.StatusSucceeded)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0.01)),
			status: StatusNew, reason: "the baseline has no evaluate.accuracy"},
		{name: "baseline NaN", run: ok(accuracy(0.9)), base: ok(accuracy("nan")),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0.01)),
			status: StatusNew, reason: "the baseline's value \"nan\" is not a finite number"},
		{name: "baseline 0 and a limit in percent", run: ok(node("train", store.StatusSucceeded, "errors", 3.0)), base: ok(node("train", store.StatusSucceeded, "errors", 0.0)),
			gate:   gate("train.errors", spec.DirectionLower, func(g *spec.Gate) { g.MaxRegressionPercent = f(10) }),
			status: StatusFail, trend: TrendWorse, reason: "any change from 0 exceeds a limit in percent", exit: 2},
		// Failed nodes and stopped pipelines fail whatever the metrics say.
		{name: "failed node", run: run("r2", store.StatusFailed, func() *store.NodeRun {
			n := node("evaluate", store.StatusFailed, "rows", 10.0)
			n.Reason, n.ExitCode = "the command failed", new(int)
			*n.ExitCode = 2
			return n
		}()),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusMissing, reason: `node evaluate failed before printing "accuracy" (it printed: rows)`, exit: 1,
			failureSub: "the pipeline failed"},
		{name: "stopped pipeline", run: func() *store.Run {
			r := run("r2", store.StatusStopped, accuracy(0.5))
			r.Reason = "node evaluate: stop-pipeline because metadata.accuracy < 0.9"
			return r
		}(),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusNew, exit: 2,
			failureSub: "the pipeline was stopped: node evaluate: stop-pipeline because metadata.accuracy < 0.9"},
		{name: "unfinished run", run: run("r2", store.StatusRunning, accuracy(0.9)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, nil),
			status: StatusNew, exit: 1, failureSub: "the pipeline has not finished (it is running)"},
		// A task node gives its best execution by the direction; NaN executions are skipped.
		{name: "task node, best execution", run: ok(taskNode), base: ok(&store.NodeRun{Name: "sweep", Status: store.StatusSucceeded,
			Executions: []*store.NodeRun{node("sweep", store.StatusSucceeded, "loss", 0.25)}}),
			gate:   gate("sweep.loss", spec.DirectionLower, maxReg(0)),
			status: StatusPass, trend: TrendBetter, reason: "improved (fell) by 0.05"},
		{name: "task node without direction", run: ok(taskNode),
			gate:   gate("sweep.loss", spec.DirectionNone, nil),
			status: StatusMissing, reason: "node sweep is a task with 3 executions", exit: 2},
		// Node names may contain dots: the longest node name that prefixes the metric wins.
		{name: "dotted node name", run: ok(node("eval.v2", store.StatusSucceeded, "top.1", 0.7)),
			gate:   gate("eval.v2.top.1", spec.DirectionHigher, func(g *spec.Gate) { g.Min = f(0.5) }),
			status: StatusNew},
		{name: "reused node", run: ok(func() *store.NodeRun { n := accuracy(0.9); n.ReusedFrom = "r0"; return n }()), base: ok(accuracy(0.9)),
			gate:   gate("evaluate.accuracy", spec.DirectionHigher, maxReg(0)),
			status: StatusPass, trend: TrendSame},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.run, c.base, []spec.Gate{c.gate})
			m := v.Metrics[0]
			if m.Status != c.status || m.Trend != c.trend || !strings.Contains(m.Reason, c.reason) {
				t.Errorf("metric: status %q trend %q reason %q\nwant status %q trend %q reason containing %q", m.Status, m.Trend, m.Reason, c.status, c.trend, c.reason)
			}
			if got := v.ExitCode(); got != c.exit {
				t.Errorf("exit code %d, want %d (failures %+v)", got, c.exit, v.Failures)
			}
			if v.Passed != (c.exit == 0) || v.Passed != (len(v.Failures) == 0) {
				t.Errorf("passed %v with failures %+v", v.Passed, v.Failures)
			}
			if c.failureSub != "" && (len(v.Failures) == 0 || !strings.Contains(v.Failures[0].Reason, c.failureSub)) {
				t.Errorf("failures %+v, want the first to contain %q", v.Failures, c.failureSub)
			}
		})
	}
}

func TestEvaluateChange(t *testing.T) {
	v := Evaluate(ok(accuracy(0.92), node("train", store.StatusSucceeded, "loss", 0.5, "note", "text")),
		ok(accuracy(0.95), node("train", store.StatusSucceeded, "loss", 0.4, "epochs", 3.0)),
		[]spec.Gate{gate("evaluate.accuracy", spec.DirectionHigher, nil)})
	m := v.Metrics[0]
	if *m.Baseline != 0.95 || *m.Value != 0.92 || math.Abs(*m.Change+0.03) > 1e-12 || math.Abs(*m.ChangePercent+3.157894736842) > 1e-9 {
		t.Errorf("change: %+v", m)
	}
	// The other numbers are listed, sorted, never judged; strings are left out.
	var names []string
	for _, m := range v.Metrics[1:] {
		names = append(names, m.Name+":"+string(m.Status)+":"+m.Reason)
	}
	if got := strings.Join(names, " "); got != "train.epochs:info:not in this run train.loss:info:not gated" {
		t.Errorf("info metrics: %s", got)
	}
	if l := v.Metrics[2]; l.Trend != TrendUp || math.Abs(*l.Change-0.1) > 1e-12 {
		t.Errorf("loss: %+v", l)
	}
	if !v.Passed || v.Summary() != "passed" {
		t.Errorf("verdict %+v", v)
	}
}

func TestEvaluateFailures(t *testing.T) {
	code := 137
	r := run("r2", store.StatusFailed,
		&store.NodeRun{Name: "validate", Status: store.StatusFailed, ExitCode: &code, Reason: "killed (out of memory)"},
		&store.NodeRun{Name: "sweep", Status: store.StatusSucceeded, Executions: []*store.NodeRun{
			{Name: "sweep", Variant: "lr=0.1", Status: store.StatusFailed, Reason: "exit code 1"},
			{Name: "sweep", Variant: "lr=0.01", Status: store.StatusSucceeded},
		}},
		node("evaluate", store.StatusSkipped))
	v := Evaluate(r, nil, []spec.Gate{gate("evaluate.accuracy", spec.DirectionHigher, nil)})
	var got []string
	for _, f := range v.Failures {
		got = append(got, string(f.Kind)+"|"+f.Node+"|"+f.Reason)
	}
	want := []string{
		"pipeline||the pipeline failed",
		"node|validate|node validate failed: killed (out of memory), exit code 137",
		"node|sweep|node sweep [lr=0.1] failed: exit code 1",
		`metric|evaluate|evaluate.accuracy: node evaluate did not run (it is skipped), so there is no "accuracy"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v.Summary() != "failed: the pipeline failed (and 3 more)" || v.ExitCode() != 1 {
		t.Errorf("summary %q, exit %d", v.Summary(), v.ExitCode())
	}
	if v := Evaluate(nil, nil, nil); v.Passed || v.ExitCode() != 1 {
		t.Errorf("no run: %+v", v)
	}
}

// A missing metric is most often a typo in sluice.yaml: the failure says
// where the gate is.
func TestEvaluateMissingNamesTheGate(t *testing.T) {
	g := gate("evaluate.acc", spec.DirectionHigher, func(g *spec.Gate) {
		g.File, g.Pos = "examples/digits/sluice.yaml", spec.Pos{Line: 7, Col: 13}
	})
	v := Evaluate(ok(accuracy(0.9)), nil, []spec.Gate{g})
	if v.Passed || len(v.Failures) != 1 {
		t.Fatalf("verdict %+v", v)
	}
	want := `evaluate.acc: node evaluate printed no "acc" (it printed: accuracy) (the gate is at examples/digits/sluice.yaml:7:13)`
	if got := v.Failures[0].Reason; got != want {
		t.Errorf("reason\n got %s\nwant %s", got, want)
	}
}
