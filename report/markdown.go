package report

import (
	"cmp"
	"fmt"
	"html"
	"math"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// DefaultLimit is the most characters (runes) Markdown renders by default:
// GitHub refuses comments over 65,536 characters, and counts some
// characters (emoji) twice, so this leaves a margin.
const DefaultLimit = 65_000

// LogTailLines is how many lines of a failed node's log the report shows.
const LogTailLines = 50

// maxLogLine caps one log line, in runes.
const maxLogLine = 1000

// Report is everything the Markdown shows. Only Run and Verdict are needed.
type Report struct {
	Run *store.Run
	// Baseline is the run compared with, nil when there is none;
	// BaselineNote says how it was chosen ("the latest successful run on
	// main at the merge base"), or why there is none.
	Baseline     *store.Run
	BaselineNote string
	// Verdict is Evaluate's result for Run and Baseline.
	Verdict Verdict
	// Pipeline, when set, draws the diagram with its edges; without it the
	// diagram shows the run's nodes only.
	Pipeline *spec.Pipeline
	// Logs holds the tail of each failed node's log by node name (the
	// caller reads them from the store); the last LogTailLines are shown.
	Logs map[string][]string
	// Reproduce is the command that reproduces the run locally; empty
	// means one built from the run record.
	Reproduce string
	// FullReport says where the full report is (a URL or a path), for when
	// the Markdown has to be shortened.
	FullReport string
	// Limit is the most runes the Markdown may have; 0 means DefaultLimit.
	Limit int
	// Series names the metric series (node.key) drawn as charts.
	Series []string
	// Links, when set, gives the URL of a node's output (a console link or
	// a signed URL), or "" for none.
	Links func(node string, f store.File) string
}

// Marker is the hidden comment that starts a pipeline's report, by which
// the sticky comment is found again.
func Marker(pipeline string) string {
	return "<!-- sluice:report pipeline=" + url.PathEscape(pipeline) + " -->"
}

// render options: what a shortened report leaves out.
type cut struct {
	noLogs    bool
	noExtras  bool // series charts, changed parameters, artifacts
	rows      int  // metric rows kept, -1: all
	noDiagram bool
}

// Markdown renders the report as GitHub-flavoured Markdown: the marker, the
// verdict and why, the failed gates, the metrics table, the pipeline as a
// Mermaid flowchart, the tails of failed nodes' logs, and how to reproduce
// the run. A report over the limit is shortened (log tails go first, then
// metric rows, passing ones before failing ones, then the diagram) and says
// where the full report is.
func Markdown(r Report) string {
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	c := cut{rows: -1}
	out := render(r, c, false)
	if utf8.RuneCountInString(out) <= limit {
		return out
	}
	c.noLogs = true
	if out = render(r, c, true); utf8.RuneCountInString(out) <= limit {
		return out
	}
	c.noExtras = true
	if out = render(r, c, true); utf8.RuneCountInString(out) <= limit {
		return out
	}
	// The most rows that fit, by bisection.
	lo, hi := 0, len(r.Verdict.Metrics)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		c.rows = mid
		if utf8.RuneCountInString(render(r, c, true)) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	c.rows = lo
	if out = render(r, c, true); utf8.RuneCountInString(out) <= limit {
		return out
	}
	c.noDiagram = true
	if out = render(r, c, true); utf8.RuneCountInString(out) <= limit {
		return out
	}
	return hardCut(out, limit, fullReportHint(r))
}

func render(r Report, c cut, shortened bool) string {
	var b strings.Builder
	run := r.Run
	if run == nil {
		run = &store.Run{}
	}
	v := r.Verdict
	b.WriteString(Marker(run.Pipeline) + "\n")
	if v.Passed {
		fmt.Fprintf(&b, "## ✅ sluice: %s passed\n\n", code(run.Pipeline))
	} else {
		fmt.Fprintf(&b, "## ❌ sluice: %s failed\n\n", code(run.Pipeline))
		fmt.Fprintf(&b, "**%s.**\n\n", failureCounts(v))
	}
	if shortened {
		fmt.Fprintf(&b, "> [!NOTE]\n> This report was shortened to fit a comment: %s. %s\n\n", leftOut(r, c), fullReportHint(r))
	}
	b.WriteString(runLine(r) + "\n\n")

	if len(v.Failures) > 0 {
		b.WriteString("### What failed\n\n")
		for _, f := range v.Failures {
			b.WriteString("- " + failureLine(f) + "\n")
		}
		b.WriteString("\n")
	}

	if len(v.Metrics) > 0 {
		b.WriteString("### Metrics\n\n")
		writeTable(&b, r, c.rows)
	}

	if !c.noExtras {
		writeSeries(&b, r)
		writeParameters(&b, run, r.Baseline)
	}

	writePlacements(&b, r)

	if !c.noDiagram {
		b.WriteString("### Pipeline\n\n```mermaid\n")
		b.WriteString(diagram(r))
		b.WriteString("```\n\n")
	}

	if failed := failedNodes(run); len(failed) > 0 && !c.noLogs {
		var header bool
		for _, n := range failed {
			lines, ok := r.Logs[n]
			if !ok {
				continue
			}
			if !header {
				b.WriteString("### Logs of failed nodes\n\n")
				header = true
			}
			writeLog(&b, n, lines)
		}
	}

	if !c.noExtras {
		writeArtifacts(&b, r)
	}

	b.WriteString("### Reproduce\n\n")
	repro := r.Reproduce
	if repro == "" {
		repro = reproduce(run)
	}
	fence := fenceFor(repro)
	fmt.Fprintf(&b, "%ssh\n%s\n%s\n", fence, repro, fence)
	return b.String()
}

func failureCounts(v Verdict) string {
	var nodes, gates int
	for _, f := range v.Failures {
		switch f.Kind {
		case FailNode:
			nodes++
		case FailMetric:
			gates++
		}
	}
	var parts []string
	for _, f := range v.Failures {
		if f.Kind == FailPipeline || f.Kind == FailStopped {
			reason := f.Reason
			if f.Kind == FailPipeline && nodes > 0 {
				reason, _, _ = strings.Cut(reason, ": ") // the nodes say why
			}
			parts = append(parts, upperFirst(reason))
			break
		}
	}
	if nodes > 0 {
		parts = append(parts, plural(nodes, "node", "nodes")+" failed")
	}
	if gates > 0 {
		parts = append(parts, plural(gates, "metric gate", "metric gates")+" failed")
	}
	if len(parts) == 0 {
		return "The run failed"
	}
	return escapeText(strings.Join(parts, "; "))
}

func failureLine(f Failure) string {
	switch f.Kind {
	case FailMetric:
		reason := strings.TrimPrefix(f.Reason, f.Metric+": ")
		return "❌ " + code(f.Metric) + ": " + escapeText(reason)
	case FailNode:
		return "❌ " + escapeText(f.Reason)
	case FailStopped:
		return "⏹️ " + escapeText(f.Reason)
	}
	return "❌ " + escapeText(f.Reason)
}

func runLine(r Report) string {
	run := r.Run
	if run == nil {
		run = &store.Run{}
	}
	s := "Run " + code(run.ID) + commitOf(run)
	if r.Baseline != nil {
		s += " · baseline: run " + code(r.Baseline.ID) + commitOf(r.Baseline)
		if r.BaselineNote != "" {
			s += ", " + escapeText(r.BaselineNote)
		}
		return s + "."
	}
	note := r.BaselineNote
	if note == "" {
		note = "there is no earlier run to compare with"
	}
	return s + " · **no baseline**: " + escapeText(note) + "; only absolute bounds were checked."
}

func commitOf(run *store.Run) string {
	var parts []string
	if run.Commit != "" {
		parts = append(parts, "commit "+code(shortSHA(run.Commit)))
	}
	if run.Branch != "" {
		parts = append(parts, "on "+code(run.Branch))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// writeTable writes the metrics table, the rows that matter first (see
// orderMetrics); rows >= 0 keeps that many of them. The ungated rows whose
// value did not change are folded into a <details> block below the table.
func writeTable(b *strings.Builder, r Report, rows int) {
	metrics := orderMetrics(r.Verdict.Metrics)
	if rows >= 0 && rows < len(metrics) {
		metrics = metrics[:rows]
	}
	shown, folded := metrics, []Metric(nil)
	for i, m := range metrics {
		if unchangedInfo(m) {
			shown, folded = metrics[:i], metrics[i:]
			break
		}
	}
	base := "Baseline"
	if r.Baseline != nil && r.Baseline.Commit != "" {
		base += " (" + code(shortSHA(r.Baseline.Commit)) + ")"
	}
	table := func(ms []Metric) {
		fmt.Fprintf(b, "| Metric | %s | This run | Change | Change %% | Verdict |\n", base)
		b.WriteString("|:--|--:|--:|--:|--:|:--|\n")
		for _, m := range ms {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", code(m.Name), numCell(m.Baseline), numCell(m.Value),
				signed(m.Change, false), signed(m.ChangePercent, true), verdictCell(m))
		}
		b.WriteString("\n")
	}
	if len(shown) > 0 {
		table(shown)
	}
	if len(folded) > 0 {
		// GitHub and GitLab render Markdown inside <details> when blank
		// lines set it apart from the tags.
		fmt.Fprintf(b, "<details><summary>%s, unchanged</summary>\n\n", plural(len(folded), "more metric", "more metrics"))
		table(folded)
		b.WriteString("</details>\n\n")
	}
	if n := len(r.Verdict.Metrics) - len(metrics); n > 0 {
		fmt.Fprintf(b, "_%s not shown; see the full report._\n\n", plural(n, "more metric is", "more metrics are"))
	}
}

// orderMetrics sorts the rows of the table: the gated metrics first, the
// failed before the passed; then the ungated ones that changed, the largest
// change first (in percent of the baseline when there is one); then those
// with nothing to compare; last the ungated ones whose value is exactly the
// baseline's. Rows that rank alike keep their order (node, then key).
func orderMetrics(ms []Metric) []Metric {
	out := slices.Clone(ms)
	rank := func(m Metric) int {
		switch {
		case m.Status.Failed():
			return 0
		case m.Status != StatusInfo:
			return 1
		case unchangedInfo(m):
			return 4
		case m.Change != nil:
			return 2
		}
		return 3
	}
	size := func(m Metric) float64 {
		switch {
		case m.ChangePercent != nil && !math.IsNaN(*m.ChangePercent):
			return math.Abs(*m.ChangePercent)
		case m.Change != nil && !math.IsNaN(*m.Change):
			// No percent (a zero baseline): an absolute change counts as
			// larger than any relative one.
			return math.Inf(1)
		}
		return 0
	}
	slices.SortStableFunc(out, func(a, b Metric) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 || rank(a) != 2 {
			return c
		}
		return cmp.Compare(size(b), size(a))
	})
	return out
}

// unchangedInfo reports whether m is an ungated metric whose value is
// exactly its baseline's.
func unchangedInfo(m Metric) bool {
	return m.Status == StatusInfo && m.Trend == TrendSame
}

func numCell(f *float64) string {
	if f == nil {
		return "—"
	}
	return fmtNum(*f)
}

func signed(f *float64, pct bool) string {
	if f == nil {
		return "—"
	}
	var s string
	if pct {
		s = fmtPct(*f) + "%"
	} else {
		s = fmtNum(*f)
	}
	if *f > 0 && !math.IsInf(*f, 0) {
		s = "+" + s
	}
	return s
}

// verdictCell is the status and an arrow: the arrow shows which way the
// value moved, the word after it whether that is better or worse given the
// gate's direction.
func verdictCell(m Metric) string {
	var s string
	switch m.Status {
	case StatusPass:
		s = "✅ pass"
	case StatusFail:
		s = "❌ fail"
	case StatusNew:
		s = "🆕 new"
	case StatusMissing:
		s = "❌ missing"
	case StatusInfo:
		s = "not gated"
	}
	arrow := ""
	if m.Change != nil {
		switch {
		case *m.Change > 0:
			arrow = "↑"
		case *m.Change < 0:
			arrow = "↓"
		default:
			arrow = "="
		}
	}
	switch m.Trend {
	case TrendBetter:
		s += " " + arrow + " better"
	case TrendWorse:
		s += " " + arrow + " worse"
	case TrendNoise:
		s += " " + arrow + " noise"
	case TrendSame:
		s += " = same"
	case TrendUp, TrendDown:
		s += " " + arrow
	}
	return s
}

// diagram is the pipeline as a Mermaid flowchart, each node labelled with
// its status, duration and whether it was reused.
func diagram(r Report) string {
	run := r.Run
	if run == nil {
		run = &store.Run{}
	}
	if r.Pipeline != nil {
		return r.Pipeline.Mermaid(func(n *spec.Node) string { return nodeLabel(run.Node(n.Name)) })
	}
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for i, n := range run.Nodes {
		text := mermaidEscape(n.Name)
		if l := nodeLabel(n); l != "" {
			text += "<br/>" + mermaidEscape(l)
		}
		fmt.Fprintf(&b, "  n%d[\"%s\"]\n", i, text)
	}
	return b.String()
}

func nodeLabel(n *store.NodeRun) string {
	if n == nil {
		return "not run"
	}
	if n.ReusedFrom != "" {
		return "♻️ reused from " + n.ReusedFrom
	}
	var s string
	switch n.Status {
	case store.StatusSucceeded:
		s = "✅ succeeded"
	case store.StatusFailed:
		s = "❌ failed"
	case store.StatusStopped:
		s = "⏹️ stopped"
	case store.StatusSkipped:
		s = "⏭️ skipped"
	case store.StatusCancelled:
		s = "🚫 cancelled"
	case store.StatusInterrupted:
		s = "💥 interrupted"
	default:
		s = string(n.Status)
	}
	if d := n.Duration(); d > 0 {
		s += " · " + fmtDuration(d)
	}
	if len(n.Executions) > 0 {
		s += " · " + plural(len(n.Executions), "execution", "executions")
	}
	return s
}

func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// mermaidEscape makes text safe inside a quoted Mermaid label (as spec does).
func mermaidEscape(s string) string {
	s = printable.Name(s)
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ", "|", "#124;", "`", "#96;").Replace(s)
}

func failedNodes(run *store.Run) []string {
	var out []string
	for _, n := range run.Nodes {
		if n.Status == store.StatusFailed {
			out = append(out, n.Name)
		}
	}
	return out
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)")

func writeLog(b *strings.Builder, node string, lines []string) {
	if len(lines) > LogTailLines {
		lines = lines[len(lines)-LogTailLines:]
	}
	clean := make([]string, len(lines))
	for i, l := range lines {
		l = ansi.ReplaceAllString(l, "")
		l = strings.Map(func(r rune) rune {
			if r == '\t' || r >= ' ' && r != 0x7f {
				return r
			}
			return -1
		}, l)
		if rs := []rune(l); len(rs) > maxLogLine {
			l = string(rs[:maxLogLine]) + " …"
		}
		clean[i] = l
	}
	text := strings.Join(clean, "\n")
	fence := fenceFor(text)
	fmt.Fprintf(b, "<details><summary>%s: the last %s of its log</summary>\n\n%stext\n%s\n%s\n\n</details>\n\n",
		html.EscapeString(node), plural(len(lines), "line", "lines"), fence, text, fence)
}

// fenceFor returns a backtick fence longer than any run of backticks in text.
func fenceFor(text string) string {
	longest, cur := 0, 0
	for _, r := range text {
		if r == '`' {
			cur++
			longest = max(longest, cur)
		} else {
			cur = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// reproduce builds the command line that runs the same pipeline locally.
func reproduce(run *store.Run) string {
	var lines []string
	if run.Commit != "" {
		lines = append(lines, "git checkout "+shellQuote(run.Commit))
	}
	args := []string{"sluice", "run"}
	if run.File != "" {
		args = append(args, shellQuote(run.File))
	}
	if run.Pipeline != "" {
		args = append(args, "--pipeline", shellQuote(run.Pipeline))
	}
	keys := make([]string, 0, len(run.Parameters))
	for k := range run.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-p", shellQuote(k+"="+paramString(run.Parameters[k])))
	}
	return strings.Join(append(lines, strings.Join(args, " ")), "\n")
}

func paramString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func leftOut(r Report, c cut) string {
	var parts []string
	if c.noLogs && len(r.Logs) > 0 {
		parts = append(parts, "the log tails")
	}
	if c.noExtras && hasExtras(r) {
		parts = append(parts, "the series charts, changed parameters and artifact links")
	}
	if c.rows >= 0 && c.rows < len(r.Verdict.Metrics) {
		parts = append(parts, plural(len(r.Verdict.Metrics)-c.rows, "metric row", "metric rows"))
	}
	if c.noDiagram {
		parts = append(parts, "the pipeline diagram")
	}
	switch len(parts) {
	case 0:
		return "parts were left out"
	case 1:
		return parts[0] + " left out"
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1] + " left out"
}

func fullReportHint(r Report) string {
	if r.FullReport != "" {
		return "The full report: " + escapeText(strings.TrimSuffix(r.FullReport, ".")) + "."
	}
	id := ""
	if r.Run != nil {
		id = r.Run.ID
	}
	return "For the full report, run " + code("sluice report --run "+id) + "."
}

// hardCut is the last resort: it cuts the Markdown at a line boundary so
// that it fits, closes an open code fence, and says so.
func hardCut(s string, limit int, hint string) string {
	note := "\n\n> [!NOTE]\n> This report was cut short to fit a comment. " + hint + "\n"
	budget := limit - utf8.RuneCountInString(note) - 8
	if budget < 0 {
		budget = 0
	}
	rs := []rune(s)
	if len(rs) > budget {
		rs = rs[:budget]
	}
	cut := string(rs)
	if i := strings.LastIndexByte(cut, '\n'); i > 0 {
		cut = cut[:i]
	}
	var open string
	for _, line := range strings.Split(cut, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "```") {
			continue
		}
		fence := t[:len(t)-len(strings.TrimLeft(t, "`"))]
		switch {
		case open == "":
			open = fence
		case t == open || (strings.Trim(t, "`") == "" && len(fence) >= len(open)):
			open = ""
		}
	}
	if open != "" {
		cut += "\n" + open
	}
	return cut + note
}

// code writes a name as inline code, quoted when it holds a control
// character (printable.Name).
func code(s string) string {
	if s == "" {
		return "—"
	}
	s = printable.Name(s)
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "\\|") // GFM tables split cells at | even in code spans
	if !strings.Contains(s, "`") {
		return "`" + s + "`"
	}
	return "`` " + s + " ``"
}

var mdSpecial = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", "&lt;", ">", "&gt;", "|", `\|`, "~", `\~`, "\n", " ")

// escapeText makes text safe as inline Markdown: a newline is a space, other
// control characters show as escapes (printable.Escape).
func escapeText(s string) string { return printable.Escape(mdSpecial.Replace(s)) }

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return strings.ToUpper(string(r)) + s[n:]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
