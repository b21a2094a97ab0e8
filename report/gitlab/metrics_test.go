package gitlab

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ptr(f float64) *float64 { return &f }

func TestOpenMetricsGolden(t *testing.T) {
	run := &store.Run{
		ID:       "20260102-030405-abcd",
		Pipeline: "train",
		Nodes: []*store.NodeRun{
			{Name: "train", Metadata: map[string]any{
				"loss":        0.25,
				"epochs":      3,
				"lr-schedule": "cosine", // not a number
				"diverged":    math.NaN(),
				"grad_norm":   math.Inf(1),
			}},
			{Name: "evaluate", Metadata: map[string]any{
				"accuracy":  0.93,
				"f1-macro":  0.9,
				"f1.macro":  0.8, // the same name once sanitized
				"big":       1e22,
				"tiny":      1e-7,
				"negative":  -0.0,
				"flag":      true, // not a number
				"count":     json.Number("12"),
				"latency:s": float32(0.5),
			}},
			{Name: "2nd stage", Metadata: map[string]any{"x": 1.5}},
			{Name: "sluice", Metadata: map[string]any{"passed": 7}},
			{Name: "empty"},
		},
	}
	v := report.Verdict{
		Passed: false,
		Metrics: []report.Metric{
			{Name: "evaluate.accuracy", Value: ptr(0.93), Baseline: ptr(0.95)},
			{Name: "evaluate.auc", Value: ptr(math.NaN())},
			{Name: "baseline.only", Baseline: ptr(1)},
			{Name: "train.loss", Value: ptr(0.25)},
		},
	}
	got := OpenMetrics(run, v)
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./report/gitlab -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("OpenMetrics differs from %s; run go test ./report/gitlab -update and review the diff:\n%s", golden, got)
	}
	checkOpenMetrics(t, got)
	if again := OpenMetrics(run, v); string(again) != string(got) {
		t.Errorf("a second call wrote\n%s", again)
	}
}

func TestOpenMetricsEmpty(t *testing.T) {
	got := string(OpenMetrics(nil, report.Verdict{Passed: true}))
	want := "# TYPE sluice_passed gauge\nsluice_passed 1\n# EOF\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// checkOpenMetrics checks the rules of the OpenMetrics text format that
// OpenMetrics relies on, and that GitLab's parser (name, space, value per
// line; "#" starts a comment) reads every sample.
func checkOpenMetrics(t *testing.T, data []byte) {
	t.Helper()
	text := string(data)
	if !strings.HasSuffix(text, "\n# EOF\n") {
		t.Errorf("does not end with # EOF")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	seen := map[string]bool{}
	prev := ""
	for i, line := range lines[:len(lines)-1] {
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) != 4 || f[1] != "TYPE" || f[3] != "gauge" {
				t.Errorf("line %d %q: not a TYPE line", i+1, line)
				continue
			}
			if next := lines[i+1]; !strings.HasPrefix(next, f[2]+" ") {
				t.Errorf("line %d: TYPE %s is not followed by its sample", i+1, f[2])
			}
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(value, " ") {
			t.Errorf("line %d %q: not name value", i+1, line)
			continue
		}
		if name == "" || name[0] == '_' || strings.ContainsAny(name, ":.-") || !(name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z') {
			t.Errorf("line %d: bad name %q", i+1, name)
		}
		if seen[name] {
			t.Errorf("line %d: %s written twice", i+1, name)
		}
		seen[name] = true
		if name <= prev {
			t.Errorf("line %d: %s is not sorted after %s", i+1, name, prev)
		}
		prev = name
		if l := strings.ToLower(value); strings.Contains(l, "nan") || strings.Contains(l, "inf") {
			t.Errorf("line %d: %q is not finite", i+1, value)
		}
	}
}

func TestMetricName(t *testing.T) {
	for in, want := range map[string]string{
		"evaluate.accuracy": "evaluate_accuracy",
		"a:b":               "a_b",
		"_x":                "sluice__x",
		"9lives":            "sluice_9lives",
		"naïve.score":       "na_ve_score",
		"ok_Name9":          "ok_Name9",
	} {
		if got := metricName(in); got != want {
			t.Errorf("metricName(%q) = %q, want %q", in, got, want)
		}
	}
}
