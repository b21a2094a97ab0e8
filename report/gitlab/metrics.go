package gitlab

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/store"
)

// PassedMetric is the metric OpenMetrics adds for the verdict: 1 passed, 0
// failed.
const PassedMetric = "sluice_passed"

// OpenMetrics returns the metrics file of GitLab's metrics report
// (artifacts:reports:metrics, metrics.txt): one gauge per metric of the
// verdict (its Name and this run's value) and per numeric metadata key of
// each node of the run (node.key), plus PassedMetric. GitLab compares the
// values with the target branch's as strings, so they are written the same
// way every time.
//
// Names are made valid OpenMetrics names: every character other than
// [a-zA-Z0-9_] becomes "_" (colons are reserved for aggregations), and a
// name that does not start with a letter gets the prefix "sluice_"
// (leading underscores are reserved), so "evaluate.accuracy" is written
// evaluate_accuracy. When two names become the same, the one whose
// original name sorts first keeps it and the others get "_2", "_3", ...
// Values that are missing, NaN or infinite are left out. Lines are sorted
// by name, each after its "# TYPE name gauge" line, and the file ends with
// "# EOF".
func OpenMetrics(run *store.Run, v report.Verdict) []byte {
	values := map[string]float64{} // original name -> value
	seen := map[string]bool{}      // original names already decided
	for _, m := range v.Metrics {
		if seen[m.Name] || m.Name == "" {
			continue
		}
		seen[m.Name] = true
		if m.Value != nil && finite(*m.Value) {
			values[m.Name] = *m.Value
		}
	}
	if run != nil {
		for _, n := range run.Nodes {
			if n == nil {
				continue
			}
			for key, raw := range n.Metadata {
				name := n.Name + "." + key
				if seen[name] {
					continue
				}
				if f, ok := number(raw); ok && finite(f) {
					values[name] = f
				}
			}
		}
	}

	originals := make([]string, 0, len(values))
	for name := range values {
		originals = append(originals, name)
	}
	sort.Strings(originals)
	used := map[string]bool{PassedMetric: true}
	lines := map[string]string{} // metric name -> value
	for _, orig := range originals {
		name := metricName(orig)
		if used[name] {
			for i := 2; ; i++ {
				alt := name + "_" + strconv.Itoa(i)
				if !used[alt] {
					name = alt
					break
				}
			}
		}
		used[name] = true
		lines[name] = formatValue(values[orig])
	}
	lines[PassedMetric] = "0"
	if v.Passed {
		lines[PassedMetric] = "1"
	}

	names := make([]string, 0, len(lines))
	for name := range lines {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString("# TYPE " + name + " gauge\n")
		b.WriteString(name + " " + lines[name] + "\n")
	}
	b.WriteString("# EOF\n")
	return []byte(b.String())
}

// metricName makes s a valid OpenMetrics metric name that uses neither
// colons nor a leading underscore.
func metricName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || !(name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z') {
		name = "sluice_" + name
	}
	return name
}

// number returns a metadata value as a float when it is a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// formatValue writes a number the way JSON does: plain decimals, exponents
// only for very large or very small magnitudes.
func formatValue(f float64) string {
	if f == 0 {
		return "0" // also for -0
	}
	if a := math.Abs(f); a < 1e21 && a >= 1e-6 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'e', -1, 64)
}
