// Package report compares a run's metrics with a baseline run, decides
// whether the run passes its gates, and renders the result as Markdown.
// Everything here is a pure function of run records and settings: no store,
// no network, no clock.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// Verdict is the outcome of a run's gates.
//
// The rules, in the order they are checked:
//
//   - The pipeline: a run that did not succeed fails. Failed or cancelled
//     runs fail as FailPipeline, a run a node action stopped as FailStopped
//     (with the run's reason), a run that has not finished as FailPipeline.
//   - Nodes: every node (or task execution) that failed is a FailNode, with
//     its reason and exit code, even when on-error: continue let the
//     pipeline go on.
//   - Metric gates (spec.Gate), each giving one Metric with a Status:
//   - missing: the run has no value for node.key: the node is not in the
//     run, did not run, or did not print the key. Fails; the reason names
//     the node, the key, the node's status when it did not succeed, and
//     the keys it did print.
//   - fail: the value is not a number, is NaN or infinite, is outside
//     min/max, or is worse than the baseline by more than max-regression
//     or max-regression-percent (and by more than noise).
//   - new: there is no baseline value (no baseline run, or the baseline
//     lacks the metric, or its value is not a finite number). Only min
//     and max are checked; limits against the baseline pass as "no
//     baseline".
//   - pass: every limit holds. A change no bigger than noise is reported
//     as noise, whichever way it goes.
//   - Metrics no gate names (the other numbers the nodes printed) are listed
//     with Status info and never fail.
//
// A task node's value is its best execution's (by the gate's direction);
// without a direction a task node's metric is missing.
type Verdict struct {
	// Passed is true when there are no failures.
	Passed bool
	// Failures lists why the run fails: the pipeline, then nodes, then
	// metric gates in the order of the gates.
	Failures []Failure
	// Metrics holds the gated metrics in gate order, then the other
	// numeric metadata of the run and the baseline, sorted by name.
	Metrics []Metric
}

// Failure is one reason a run fails.
type Failure struct {
	Kind FailureKind
	// Node names the node at fault (FailNode, and FailMetric's node).
	Node string
	// Metric is node.key (FailMetric only).
	Metric string
	// Reason is a sentence saying what went wrong.
	Reason string
}

// FailureKind classifies a failure.
type FailureKind string

// Kinds of failure.
const (
	// FailPipeline: the run failed, was cancelled or has not finished.
	FailPipeline FailureKind = "pipeline"
	// FailStopped: a node action stopped the pipeline.
	FailStopped FailureKind = "stopped"
	// FailNode: a node failed.
	FailNode FailureKind = "node"
	// FailMetric: a metric gate failed (fail or missing).
	FailMetric FailureKind = "metric"
)

// Status is the verdict on one metric.
type Status string

// Metric statuses; see Verdict for the rules.
const (
	StatusPass    Status = "pass"
	StatusFail    Status = "fail"
	StatusNew     Status = "new"
	StatusMissing Status = "missing"
	// StatusInfo marks a metric no gate names: shown, never judged.
	StatusInfo Status = "info"
)

// Failed reports whether the status fails the run.
func (s Status) Failed() bool { return s == StatusFail || s == StatusMissing }

// Metric is one row of the comparison.
type Metric struct {
	// Name is node.key.
	Name string
	// Gate is the gate that judged the metric, nil for StatusInfo.
	Gate *spec.Gate
	// Baseline and Value are nil when absent or not a number; NaN is kept.
	Baseline, Value *float64
	// Change is Value - Baseline; ChangePercent is Change in percent of
	// |Baseline|. Nil when either value is missing or not finite, or, for
	// ChangePercent, when Baseline is 0.
	Change, ChangePercent *float64
	// Trend is how the change reads against the gate's direction.
	Trend  Trend
	Status Status
	// Reason says why, in a sentence ("dropped by 0.03; at most 0.02 allowed").
	Reason string
}

// Trend is how a change reads given the direction.
type Trend string

// Trends. TrendUp and TrendDown are used when the direction is unknown.
const (
	TrendNone   Trend = ""       // no change to speak of (no baseline)
	TrendSame   Trend = "same"   // exactly the same value
	TrendNoise  Trend = "noise"  // changed, but within the noise floor
	TrendBetter Trend = "better" // changed the good way
	TrendWorse  Trend = "worse"  // changed the bad way
	TrendUp     Trend = "up"     // rose, direction unknown
	TrendDown   Trend = "down"   // fell, direction unknown
)

// ExitCode is the exit code of `sluice run` for this verdict: 0 passed, 1
// the pipeline failed (a failed, cancelled or unfinished run, or a failed
// node), 2 a gate failed (a metric gate, or a node action that stopped the
// pipeline). A failed pipeline wins over a failed gate.
func (v Verdict) ExitCode() int {
	code := 0
	for _, f := range v.Failures {
		switch f.Kind {
		case FailPipeline, FailNode:
			return 1
		default:
			code = 2
		}
	}
	return code
}

// Summary is the verdict in one line: "passed", or "failed: " and the
// first failure, with how many more there are.
func (v Verdict) Summary() string {
	if v.Passed {
		return "passed"
	}
	if len(v.Failures) == 0 {
		return "failed"
	}
	s := "failed: " + v.Failures[0].Reason
	if n := len(v.Failures) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// Evaluate judges a run against its gates and a baseline run (nil when there
// is none). See Verdict for the rules.
func Evaluate(run *store.Run, baseline *store.Run, gates []spec.Gate) Verdict {
	var v Verdict
	if run == nil {
		v.Failures = append(v.Failures, Failure{Kind: FailPipeline, Reason: "there is no run to report on"})
		return v
	}
	v.Failures = append(v.Failures, pipelineFailures(run)...)
	for _, n := range run.Nodes {
		v.Failures = append(v.Failures, nodeFailures(n, "")...)
	}
	gated := map[string]bool{}
	for i := range gates {
		g := &gates[i]
		gated[g.Metric] = true
		m := evalGate(run, baseline, g)
		v.Metrics = append(v.Metrics, m)
		if m.Status.Failed() {
			reason := g.Metric + ": " + m.Reason
			if m.Status == StatusMissing && g.File != "" {
				// Most often a typo in sluice.yaml: say where the gate is.
				reason += fmt.Sprintf(" (the gate is at %s:%d:%d)", g.File, g.Pos.Line, g.Pos.Col)
			}
			v.Failures = append(v.Failures, Failure{Kind: FailMetric, Node: g.Node, Metric: g.Metric, Reason: reason})
		}
	}
	v.Metrics = append(v.Metrics, infoMetrics(run, baseline, gated)...)
	v.Passed = len(v.Failures) == 0
	return v
}

func pipelineFailures(run *store.Run) []Failure {
	why := func(s string) string {
		if run.Reason != "" {
			return s + ": " + run.Reason
		}
		return s
	}
	switch run.Status {
	case store.StatusSucceeded:
		return nil
	case store.StatusStopped:
		return []Failure{{Kind: FailStopped, Reason: why("the pipeline was stopped")}}
	case store.StatusFailed:
		return []Failure{{Kind: FailPipeline, Reason: why("the pipeline failed")}}
	case store.StatusCancelled:
		return []Failure{{Kind: FailPipeline, Reason: why("the pipeline was cancelled")}}
	case store.StatusInterrupted:
		return []Failure{{Kind: FailPipeline, Reason: why("the pipeline was interrupted")}}
	}
	return []Failure{{Kind: FailPipeline, Reason: why(fmt.Sprintf("the pipeline has not finished (it is %s)", orUnknown(string(run.Status))))}}
}

// nodeFailures reports a failed node, or its failed executions.
func nodeFailures(n *store.NodeRun, parent string) []Failure {
	name := n.Name
	if parent != "" {
		name = parent + " [" + n.Variant + "]"
	}
	var out []Failure
	for _, e := range n.Executions {
		out = append(out, nodeFailures(e, n.Name)...)
	}
	if n.Status != store.StatusFailed || len(out) > 0 {
		return out
	}
	r := "node " + name + " failed"
	var details []string
	if n.Reason != "" {
		details = append(details, n.Reason)
	}
	if n.ExitCode != nil && !strings.Contains(n.Reason, fmt.Sprintf("code %d", *n.ExitCode)) {
		details = append(details, fmt.Sprintf("exit code %d", *n.ExitCode))
	}
	if len(details) > 0 {
		r += ": " + strings.Join(details, ", ")
	}
	node := n.Name
	if parent != "" {
		node = parent
	}
	return []Failure{{Kind: FailNode, Node: node, Reason: r}}
}

// lookup finds the value of a gate's metric in a run: the value, and when
// there is none, why.
func lookup(run *store.Run, g *spec.Gate) (val any, ok bool, why string) {
	if run == nil {
		return nil, false, "no run"
	}
	node, key := splitMetric(run, g)
	n := run.Node(node)
	if n == nil {
		names := make([]string, len(run.Nodes))
		for i, x := range run.Nodes {
			names[i] = x.Name
		}
		return nil, false, fmt.Sprintf("the run has no node %q (its nodes: %s)", node, listOrNone(names))
	}
	if x, ok := n.Metadata[key]; ok {
		return x, true, ""
	}
	if len(n.Executions) > 0 {
		if g.Direction == spec.DirectionNone {
			return nil, false, fmt.Sprintf("node %s is a task with %d executions: give the gate a direction to compare their best %q", node, len(n.Executions), key)
		}
		var best *float64
		var bestRaw any
		for _, e := range n.Executions {
			x, ok := e.Metadata[key]
			if !ok {
				continue
			}
			f, isNum := number(x)
			if !isNum || math.IsNaN(f) {
				continue
			}
			if best == nil || (g.Direction == spec.DirectionHigher && f > *best) || (g.Direction == spec.DirectionLower && f < *best) {
				best, bestRaw = &f, x
			}
		}
		if best != nil {
			return bestRaw, true, ""
		}
		return nil, false, fmt.Sprintf("no execution of task node %s printed a number for %q", node, key)
	}
	var printed string
	switch {
	case n.ReusedFrom != "":
		printed = fmt.Sprintf("node %s (reused from run %s) printed no %q", node, n.ReusedFrom, key)
	case n.Status == store.StatusSucceeded:
		printed = fmt.Sprintf("node %s printed no %q", node, key)
	case n.Status == store.StatusFailed || n.Status == store.StatusStopped:
		printed = fmt.Sprintf("node %s %s before printing %q", node, n.Status, key)
	default:
		return nil, false, fmt.Sprintf("node %s did not run (it is %s), so there is no %q", node, orUnknown(string(n.Status)), key)
	}
	keys := make([]string, 0, len(n.Metadata))
	for k := range n.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return nil, false, printed + " (it printed no metadata)"
	}
	return nil, false, printed + " (it printed: " + strings.Join(keys, ", ") + ")"
}

// splitMetric splits node.key, preferring the longest node name of the run
// that prefixes the metric (node names may contain dots).
func splitMetric(run *store.Run, g *spec.Gate) (node, key string) {
	node, key = g.Node, g.Key
	if node == "" && key == "" {
		node, key, _ = strings.Cut(g.Metric, ".")
	}
	for _, n := range run.Nodes {
		if len(n.Name) > len(node) && strings.HasPrefix(g.Metric, n.Name+".") && len(g.Metric) > len(n.Name)+1 {
			node, key = n.Name, g.Metric[len(n.Name)+1:]
		}
	}
	return node, key
}

// number reads a metadata value as a float: JSON numbers, and the strings
// "NaN", "Infinity" and the like that Python prints.
func number(x any) (float64, bool) {
	switch v := x.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "nan", "-nan":
			return math.NaN(), true
		case "inf", "+inf", "infinity", "+infinity":
			return math.Inf(1), true
		case "-inf", "-infinity":
			return math.Inf(-1), true
		}
	}
	return 0, false
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// leq is a <= b with a slack for comparing derived numbers: 0.93 - 0.92 is
// 0.010000000000000009, which must not exceed a limit of 0.01.
func leq(a, b float64) bool {
	return a <= b+1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func evalGate(run, baseline *store.Run, g *spec.Gate) Metric {
	m := Metric{Name: g.Metric, Gate: g}
	raw, ok, why := lookup(run, g)
	if !ok {
		m.Status, m.Reason = StatusMissing, why
		return m
	}
	val, isNum := number(raw)
	if !isNum {
		m.Status, m.Reason = StatusFail, fmt.Sprintf("the value %s is not a number", short(raw))
		return m
	}
	m.Value = &val
	// The baseline's value, when it has a finite one.
	var noBaseline string
	if baseline == nil {
		noBaseline = "no baseline"
	} else if braw, ok, _ := lookup(baseline, g); !ok {
		noBaseline = "the baseline has no " + g.Metric
	} else if b, isNum := number(braw); !isNum || !finite(b) {
		noBaseline = fmt.Sprintf("the baseline's value %s is not a finite number", short(braw))
		if isNum {
			m.Baseline = &b
		}
	} else {
		m.Baseline = &b
	}
	if !finite(val) {
		m.Status, m.Reason = StatusFail, fmt.Sprintf("the value is %s, not a finite number", fmtNum(val))
		return m
	}
	if noBaseline == "" {
		change := val - *m.Baseline
		m.Change = &change
		if *m.Baseline != 0 {
			pct := change / math.Abs(*m.Baseline) * 100
			m.ChangePercent = &pct
		}
		m.Trend = trend(change, g)
	}
	if g.Min != nil && val < *g.Min {
		m.Status, m.Reason = StatusFail, fmt.Sprintf("%s is below the minimum %s", fmtNum(val), fmtNum(*g.Min))
		return m
	}
	if g.Max != nil && val > *g.Max {
		m.Status, m.Reason = StatusFail, fmt.Sprintf("%s is above the maximum %s", fmtNum(val), fmtNum(*g.Max))
		return m
	}
	if noBaseline != "" {
		m.Status, m.Reason = StatusNew, noBaseline
		if g.MaxRegression != nil || g.MaxRegressionPercent != nil {
			m.Reason += ": the change was not checked"
		}
		if b := bounds(g); b != "" {
			m.Reason += "; " + b
		}
		return m
	}
	m.Status = StatusPass
	change := *m.Change
	verb := changeVerb(change, g)
	switch m.Trend {
	case TrendSame:
		m.Reason = "unchanged"
	case TrendNoise:
		m.Reason = fmt.Sprintf("%s by %s, within the noise floor of %s", verb, fmtNum(math.Abs(change)), fmtNum(g.Noise))
	case TrendBetter:
		m.Reason = fmt.Sprintf("%s by %s", verb, fmtNum(math.Abs(change)))
	case TrendUp, TrendDown:
		m.Reason = fmt.Sprintf("%s by %s", verb, fmtNum(math.Abs(change)))
	case TrendWorse:
		worse := math.Abs(change)
		from := fmt.Sprintf(" (from %s to %s)", fmtNum(*m.Baseline), fmtNum(val))
		if g.MaxRegression != nil && !leq(worse, *g.MaxRegression) {
			m.Status = StatusFail
			m.Reason = fmt.Sprintf("%s by %s%s; at most %s is allowed", verb, fmtNum(worse), from, fmtNum(*g.MaxRegression))
			break
		}
		if g.MaxRegressionPercent != nil {
			if m.ChangePercent == nil {
				m.Status = StatusFail
				m.Reason = fmt.Sprintf("%s by %s from a baseline of 0%s; any change from 0 exceeds a limit in percent", verb, fmtNum(worse), from)
				break
			}
			if p := math.Abs(*m.ChangePercent); !leq(p, *g.MaxRegressionPercent) {
				m.Status = StatusFail
				m.Reason = fmt.Sprintf("%s by %s%%%s; at most %s%% is allowed", verb, fmtPct(p), from, fmtNum(*g.MaxRegressionPercent))
				break
			}
		}
		m.Reason = fmt.Sprintf("%s by %s", verb, fmtNum(worse))
		if lim := limits(g); lim != "" {
			m.Reason += ", within " + lim
		}
	}
	return m
}

// trend classifies a change against the gate.
func trend(change float64, g *spec.Gate) Trend {
	switch {
	case change == 0:
		return TrendSame
	case g != nil && leq(math.Abs(change), g.Noise) && g.Noise > 0:
		return TrendNoise
	case g == nil || g.Direction == spec.DirectionNone:
		if change > 0 {
			return TrendUp
		}
		return TrendDown
	case (change > 0) == (g.Direction == spec.DirectionHigher):
		return TrendBetter
	}
	return TrendWorse
}

func changeVerb(change float64, g *spec.Gate) string {
	up := change > 0
	switch {
	case g == nil || g.Direction == spec.DirectionNone:
		if up {
			return "rose"
		}
		return "fell"
	case up && g.Direction == spec.DirectionHigher:
		return "improved (rose)"
	case !up && g.Direction == spec.DirectionLower:
		return "improved (fell)"
	case up:
		return "regressed (rose)"
	}
	return "regressed (dropped)"
}

func bounds(g *spec.Gate) string {
	switch {
	case g.Min != nil && g.Max != nil:
		return fmt.Sprintf("within [%s, %s]", fmtNum(*g.Min), fmtNum(*g.Max))
	case g.Min != nil:
		return "at least " + fmtNum(*g.Min)
	case g.Max != nil:
		return "at most " + fmtNum(*g.Max)
	}
	return ""
}

func limits(g *spec.Gate) string {
	var parts []string
	if g.MaxRegression != nil {
		parts = append(parts, "the allowed "+fmtNum(*g.MaxRegression))
	}
	if g.MaxRegressionPercent != nil {
		parts = append(parts, "the allowed "+fmtNum(*g.MaxRegressionPercent)+"%")
	}
	return strings.Join(parts, " and ")
}

// infoMetrics lists the numeric metadata of the run's and the baseline's
// nodes that no gate names, sorted by name.
func infoMetrics(run, baseline *store.Run, gated map[string]bool) []Metric {
	byName := map[string]*Metric{}
	add := func(r *store.Run, isBase bool) {
		if r == nil {
			return
		}
		for _, n := range r.Nodes {
			for k, x := range n.Metadata {
				name := n.Name + "." + k
				f, ok := number(x)
				if gated[name] || !ok {
					continue
				}
				m := byName[name]
				if m == nil {
					m = &Metric{Name: name, Status: StatusInfo}
					byName[name] = m
				}
				if isBase {
					m.Baseline = &f
				} else {
					m.Value = &f
				}
			}
		}
	}
	add(run, false)
	add(baseline, true)
	out := make([]Metric, 0, len(byName))
	for _, m := range byName {
		switch {
		case m.Value == nil:
			m.Reason = "not in this run"
		case m.Baseline == nil:
			m.Reason = "not gated"
		case finite(*m.Value) && finite(*m.Baseline):
			c := *m.Value - *m.Baseline
			m.Change, m.Trend = &c, trend(c, nil)
			if *m.Baseline != 0 {
				p := c / math.Abs(*m.Baseline) * 100
				m.ChangePercent = &p
			}
			m.Reason = "not gated"
		default:
			m.Reason = "not gated"
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// fmtNum prints a number with up to 6 significant digits, so that float
// noise (0.010000000000000009) does not show.
func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

func fmtPct(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

func short(x any) string {
	b, err := json.Marshal(x)
	s := string(b)
	if err != nil {
		s = fmt.Sprint(x)
	}
	if r := []rune(s); len(r) > 40 {
		s = string(r[:37]) + "..."
	}
	return s
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "in no known state"
	}
	return s
}
