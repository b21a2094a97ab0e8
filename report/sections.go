package report

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/store"
)

// MaxChartPoints is the most points a chart draws of one series; longer
// series are thinned evenly, keeping the first and the last point.
const MaxChartPoints = 100

// maxArtifactsPerNode caps the artifact links of one node.
const maxArtifactsPerNode = 20

// writeParameters writes the parameters whose value differs from the
// baseline's: pipeline parameters, then each node's. Nothing when there is no
// baseline or nothing changed.
func writeParameters(b *strings.Builder, run, base *store.Run) {
	if base == nil {
		return
	}
	type row struct{ where, name, before, after string }
	var rows []row
	diff := func(where string, before, after map[string]any) {
		keys := map[string]bool{}
		for k := range before {
			keys[k] = true
		}
		for k := range after {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			bv, inB := before[k]
			av, inA := after[k]
			if inB && inA && sameValue(bv, av) {
				continue
			}
			r := row{where: where, name: k, before: "*unset*", after: "*unset*"}
			if inB {
				r.before = code(paramString(bv))
			}
			if inA {
				r.after = code(paramString(av))
			}
			rows = append(rows, r)
		}
	}
	diff("pipeline", base.Parameters, run.Parameters)
	for _, n := range run.Nodes {
		if bn := base.Node(n.Name); bn != nil {
			diff(n.Name, bn.Parameters, n.Parameters)
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("### Changed parameters\n\n| Node | Parameter | Baseline | This run |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", escapeText(r.where), code(r.name), r.before, r.after)
	}
	b.WriteString("\n")
}

// sameValue compares two parameter values as read from JSON records: 1 and
// 1.0 are the same number.
func sameValue(a, b any) bool {
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			_, aStr := a.(string)
			_, bStr := b.(string)
			if !aStr && !bStr {
				return x == y || (math.IsNaN(x) && math.IsNaN(y))
			}
		}
	}
	return reflect.DeepEqual(a, b)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// writeSeries draws each asked-for metric series (node.key) as a Mermaid
// xychart: this run's line first, the baseline's second.
func writeSeries(b *strings.Builder, r Report) {
	if len(r.Series) == 0 || r.Run == nil {
		return
	}
	b.WriteString("### Series\n\n")
	for _, name := range r.Series {
		node, key, _ := strings.Cut(name, ".")
		cur, why := seriesOf(r.Run, node, key)
		if len(cur) == 0 {
			fmt.Fprintf(b, "- %s: %s.\n\n", code(name), why)
			continue
		}
		var base []float64
		if r.Baseline != nil {
			base, _ = seriesOf(r.Baseline, node, key)
		}
		cur, base = thin(cur), thin(base)
		n := max(len(cur), len(base))
		lo, hi := bounds2(cur, base)
		fmt.Fprintf(b, "```mermaid\nxychart-beta\n  title \"%s\"\n  x-axis \"point\" 1 --> %d\n  y-axis \"%s\" %s --> %s\n",
			mermaidEscape(name), n, mermaidEscape(key), chartNum(lo), chartNum(hi))
		fmt.Fprintf(b, "  line [%s]\n", chartList(cur))
		if len(base) > 0 {
			fmt.Fprintf(b, "  line [%s]\n", chartList(base))
		}
		b.WriteString("```\n")
		caption := fmt.Sprintf("%s: %s in this run", code(name), plural(len(cur), "point", "points"))
		if len(base) > 0 {
			caption += fmt.Sprintf("; the second line is the baseline (%s)", plural(len(base), "point", "points"))
		} else if r.Baseline != nil {
			caption += "; the baseline has no such series"
		}
		b.WriteString(caption + ".\n\n")
	}
}

// seriesOf reads the finite numbers a node printed for key, in order: its
// series, else its single value; and why there are none.
func seriesOf(run *store.Run, node, key string) ([]float64, string) {
	n := run.Node(node)
	if n == nil {
		return nil, fmt.Sprintf("the run has no node %s", code(node))
	}
	raw, ok := n.Series[key]
	if !ok {
		if v, ok := n.Metadata[key]; ok {
			raw = []any{v}
		}
	}
	var out []float64
	for _, x := range raw {
		if f, ok := number(x); ok && finite(f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("node %s printed no numbers for %s", code(node), code(key))
	}
	return out, ""
}

// thin keeps at most MaxChartPoints evenly spaced points, the last included.
func thin(xs []float64) []float64 {
	if len(xs) <= MaxChartPoints {
		return xs
	}
	out := make([]float64, MaxChartPoints)
	for i := range out {
		out[i] = xs[i*(len(xs)-1)/(MaxChartPoints-1)]
	}
	return out
}

func bounds2(a, b []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, xs := range [][]float64{a, b} {
		for _, x := range xs {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	if lo == hi {
		lo, hi = lo-1, hi+1
	}
	return lo, hi
}

func chartNum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func chartList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = chartNum(x)
	}
	return strings.Join(parts, ", ")
}

// writeArtifacts lists each node's outputs, linked when the report has a
// Links function that knows a URL for them.
func writeArtifacts(b *strings.Builder, r Report) {
	if r.Run == nil {
		return
	}
	var header bool
	for _, n := range r.Run.Nodes {
		if len(n.Outputs) == 0 || n.ReusedFrom != "" && r.Links == nil {
			continue
		}
		if !header {
			b.WriteString("### Artifacts\n\n")
			header = true
		}
		var items []string
		for i, f := range n.Outputs {
			if i == maxArtifactsPerNode {
				items = append(items, fmt.Sprintf("and %d more", len(n.Outputs)-i))
				break
			}
			name := code(f.Path)
			if r.Links != nil {
				if u := r.Links(n.Name, f); u != "" {
					name = "[" + escapeText(f.Path) + "](" + linkTarget(u) + ")"
				}
			}
			items = append(items, name+" ("+fmtSize(f.Size)+")")
		}
		fmt.Fprintf(b, "- %s: %s\n", code(n.Name), strings.Join(items, ", "))
	}
	if header {
		id := r.Run.ID
		fmt.Fprintf(b, "\nFetch one with %s.\n\n", code("sluice artifacts get "+id+" NODE PATH"))
	}
}

// linkTarget makes a URL safe as a Markdown link target.
func linkTarget(u string) string {
	return strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E").Replace(u)
}

func fmtSize(n int64) string {
	const unit = 1024
	if n < unit {
		return plural(int(n), "byte", "bytes")
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// hasExtras reports whether the report has any of the sections a shortened
// report leaves out first.
func hasExtras(r Report) bool {
	var b strings.Builder
	writeSeries(&b, r)
	if r.Run != nil {
		writeParameters(&b, r.Run, r.Baseline)
	}
	writeArtifacts(&b, r)
	return b.Len() > 0
}
