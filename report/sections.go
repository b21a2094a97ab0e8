package report

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/spec"
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

// Series colours: Mermaid's xychart has no legend, so the block sets its
// palette (this run's line first, the baseline's second) and the caption
// names the colours in words.
const (
	seriesRunColour  = "#0969da" // blue
	seriesBaseColour = "#8c959f" // grey
	seriesInit       = `%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "` + seriesRunColour + ", " + seriesBaseColour + `"}}}}%%`
)

// writeSeries draws each asked-for metric series (node.key) as a Mermaid
// xychart: this run's line in blue, the baseline's in grey.
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
		fmt.Fprintf(b, "```mermaid\n%s\nxychart-beta\n  title \"%s\"\n  x-axis \"point\" 1 --> %d\n  y-axis \"%s\" %s --> %s\n",
			seriesInit, mermaidEscape(name), n, mermaidEscape(key), chartNum(lo), chartNum(hi))
		fmt.Fprintf(b, "  line [%s]\n", chartList(cur))
		if len(base) > 0 {
			fmt.Fprintf(b, "  line [%s]\n", chartList(base))
		}
		b.WriteString("```\n")
		caption := fmt.Sprintf("%s, %s: this run: blue", code(name), plural(len(cur), "point", "points"))
		if len(base) > 0 {
			caption += fmt.Sprintf(", baseline (%s): grey", baselineName(r.Baseline))
		} else if r.Baseline != nil {
			caption += "; the baseline has no such series"
		}
		b.WriteString(caption + ".\n\n")
	}
}

// baselineName names the baseline run by its branch and short commit
// ("main, 1992f3a"), else by its id.
func baselineName(run *store.Run) string {
	var parts []string
	if run.Branch != "" {
		parts = append(parts, code(run.Branch))
	}
	if run.Commit != "" {
		parts = append(parts, code(shortSHA(run.Commit)))
	}
	if len(parts) == 0 {
		return "run " + code(run.ID)
	}
	return strings.Join(parts, ", ")
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

// placed is a node execution that ran on a remote backend.
type placed struct {
	name string
	n    *store.NodeRun
}

// placedNodes lists the node executions of run that ran elsewhere than the
// local Docker host, in the run's order (a task's variants by their own
// names).
func placedNodes(run *store.Run) []placed {
	var out []placed
	for _, n := range run.Nodes {
		if n.Placement != nil {
			out = append(out, placed{n.Name, n})
		}
		for _, x := range n.Executions {
			if x.Placement != nil {
				name := x.Name
				if name == "" || name == n.Name {
					name = n.Name + " " + x.Variant
				}
				out = append(out, placed{strings.TrimSpace(name), x})
			}
		}
	}
	return out
}

// writePlacements writes where the nodes that left the CI host ran: the
// environment and machine, how it was bought, its tries and why, its wall
// time and estimated cost, and the run's total.
func writePlacements(b *strings.Builder, r Report) {
	if r.Run == nil {
		return
	}
	nodes := placedNodes(r.Run)
	if len(nodes) == 0 {
		return
	}
	b.WriteString("### Where nodes ran\n\n")
	b.WriteString("| Node | Environment | Machine | Provisioning | Tries | Wall time | Est. cost |\n")
	b.WriteString("|---|---|---|---|---|---:|---:|\n")
	var total float64
	priced, unpriced := 0, 0
	for _, p := range nodes {
		pl := p.n.Placement
		where := code(pl.Environment) + " (" + escapeText(pl.Backend)
		if pl.Location != "" {
			where += ", " + escapeText(pl.Location)
		}
		where += ")"
		var machine []string
		if pl.Machine != "" {
			machine = append(machine, escapeText(pl.Machine))
		}
		if pl.Accelerator != "" {
			machine = append(machine, fmt.Sprintf("%d × %s", max(pl.AcceleratorCount, 1), escapeText(pl.Accelerator)))
		}
		if len(machine) == 0 {
			machine = []string{"—"}
		}
		prov := escapeText(pl.Provisioning)
		if prov == "" {
			prov = "—"
		}
		wall := "—"
		if d := p.n.Duration(); d > 0 {
			wall = fmtDuration(d)
		}
		cost := "—"
		if pl.CostKnown {
			cost = fmtUSD(pl.Cost)
			total += pl.Cost
			priced++
		} else if pl.Backend == spec.BackendBatch {
			unpriced++
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", code(p.name), where, strings.Join(machine, ", "), prov, triesCell(pl.Tries), wall, cost)
	}
	if len(nodes) > 1 {
		tot := "**" + fmtUSD(total) + "**"
		if priced == 0 {
			tot = "—"
		}
		fmt.Fprintf(b, "| **Total** | | | | | | %s |\n", tot)
	}
	b.WriteString("\n")
	if unpriced > 0 {
		fmt.Fprintf(b, "The Batch environment of %s has no `hourly-price` in sluice.yaml: not counted in the cost.\n\n",
			plural(unpriced, "node", "nodes"))
	}
}

// triesCell says how many tries a node took and how those before the last
// ended ("3: preempted, no-capacity, then completed").
func triesCell(tries []store.Try) string {
	switch len(tries) {
	case 0:
		return "—"
	case 1:
		return "1"
	}
	var why []string
	for _, t := range tries[:len(tries)-1] {
		why = append(why, escapeText(t.Outcome))
	}
	return fmt.Sprintf("%d: %s, then %s", len(tries), strings.Join(why, ", "), escapeText(tries[len(tries)-1].Outcome))
}

// fmtUSD writes an estimated cost in US dollars: cents, or more digits
// below a cent so that a short run does not read as free.
func fmtUSD(usd float64) string {
	if usd > 0 && usd < 0.01 {
		return fmt.Sprintf("$%.4f", usd)
	}
	return fmt.Sprintf("$%.2f", usd)
}
