package report

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	extast "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const pipelineYAML = `
- step: {name: validate, image: python:3.12, command: python validate.py}
- step: {name: train, image: python:3.12, command: python train.py}
- step: {name: evaluate, image: python:3.12, command: python evaluate.py}
- pipeline:
    name: train
    nodes:
      - {name: validate, type: execution, step: validate}
      - {name: train, type: execution, step: train}
      - {name: evaluate, type: execution, step: evaluate}
    edges:
      - [validate.output.clean.csv, train.input.data]
      - [train.output.model.pkl, evaluate.input.model]
`

// timed sets a node's start and duration.
func timed(n *store.NodeRun, start time.Duration, d time.Duration) *store.NodeRun {
	n.Started, n.Finished = t0.Add(start), t0.Add(start+d)
	return n
}

func pipelineRun(id, commit, branch string, status store.Status, acc, loss any) *store.Run {
	r := &store.Run{ID: id, Pipeline: "train", File: "valohai.yaml", Commit: commit, Branch: branch, Status: status,
		Started: t0, Finished: t0.Add(5 * time.Minute), Parameters: map[string]any{"epochs": 3.0}}
	r.Nodes = []*store.NodeRun{
		timed(node("validate", store.StatusSucceeded, "rows", 1797.0), 0, 12*time.Second),
		timed(node("train", store.StatusSucceeded, "loss", loss, "epochs", 3.0), 12*time.Second, 3*time.Minute+4*time.Second),
		timed(node("evaluate", store.StatusSucceeded, "accuracy", acc), 200*time.Second, 9*time.Second),
	}
	return r
}

var stdGates = []spec.Gate{
	gate("evaluate.accuracy", spec.DirectionHigher, func(g *spec.Gate) { g.Min = f(0.9); g.MaxRegression = f(0.01); g.Noise = 0.002 }),
	gate("train.loss", spec.DirectionLower, func(g *spec.Gate) { g.MaxRegressionPercent = f(10) }),
}

func goldenCases(t *testing.T) map[string]Report {
	cfg, diags := spec.Parse("valohai.yaml", []byte(pipelineYAML))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p := cfg.Pipeline("train")
	base := pipelineRun("20260228-090000-aaaa", "1111111deadbeef", "main", store.StatusSucceeded, 0.95, 0.30)
	mk := func(r *store.Run, baseline *store.Run, note string) Report {
		return Report{Run: r, Baseline: baseline, BaselineNote: note, Verdict: Evaluate(r, baseline, stdGates), Pipeline: p}
	}
	out := map[string]Report{}

	first := pipelineRun("20260301-120000-bbbb", "2222222cafef00d", "feature/x", store.StatusSucceeded, 0.95, 0.30)
	out["first-run"] = mk(first, nil, "main has no successful run of this pipeline yet")

	out["improvement"] = mk(pipelineRun("20260301-120000-cccc", "3333333", "feature/better", store.StatusSucceeded, 0.97, 0.21),
		base, "the latest successful run on main at the merge base")

	// The regression came from changed parameters; train's loss series is
	// charted against the baseline's, and the outputs are linked.
	worse := pipelineRun("20260301-120000-dddd", "4444444", "feature/worse", store.StatusSucceeded, 0.92, 0.36)
	worse.Parameters = map[string]any{"epochs": 2.0}
	worse.Nodes[1].Parameters = map[string]any{"hidden-size": 8.0, "lr": 0.1}
	worseBase := pipelineRun(base.ID, base.Commit, base.Branch, store.StatusSucceeded, 0.95, 0.30)
	worseBase.Nodes[1].Parameters = map[string]any{"hidden-size": 64.0, "lr": 0.1}
	worseBase.Nodes[1].Series = map[string][]any{"loss": {1.2, 0.8, 0.5, 0.3}}
	worse.Nodes[1].Series = map[string][]any{"loss": {1.3, 0.9, 0.6, "NaN", 0.36}}
	worse.Nodes[1].Outputs = []store.File{{Path: "model.pkl", Size: 1 << 20}, {Path: "plots/loss (log).png", Size: 2345}}
	rr := mk(worse, worseBase, "the latest successful run on main at the merge base")
	rr.Series = []string{"train.loss", "evaluate.f1"}
	rr.Links = func(node string, f store.File) string {
		return "https://console.cloud.google.com/storage/browser/_details/bucket/runs/" + worse.ID + "/" + node + "/" + f.Path
	}
	out["regression"] = rr

	out["noise"] = mk(pipelineRun("20260301-120000-eeee", "5555555", "feature/same", store.StatusSucceeded, 0.9485, 0.305),
		base, "the newest run on main")

	// validate fails: train and evaluate are skipped, the pipeline fails,
	// and the metrics are missing.
	failed := pipelineRun("20260301-120000-ffff", "6666666", "feature/bad-data", store.StatusFailed, nil, nil)
	failed.Reason = "node validate failed"
	code := 1
	failed.Nodes[0].Status, failed.Nodes[0].ExitCode, failed.Nodes[0].Reason = store.StatusFailed, &code, "the command exited with code 1"
	failed.Nodes[0].Metadata = map[string]any{"rows": 1797.0, "null_rows": 12.0}
	for _, n := range failed.Nodes[1:] {
		n.Status, n.Metadata, n.Started, n.Finished = store.StatusSkipped, nil, time.Time{}, time.Time{}
	}
	var logLines []string
	for i := 1; i <= 80; i++ {
		logLines = append(logLines, fmt.Sprintf("checking batch %d", i))
	}
	logLines = append(logLines, "\x1b[31mERROR\x1b[0m 12 rows have nulls in column `pixels`:", "```", "row 17: <null>", "```",
		"Traceback (most recent call last):", `  File "validate.py", line 40, in <module>`, "AssertionError: 12 rows with nulls")
	r := mk(failed, base, "the latest successful run on main at the merge base")
	r.Logs = map[string][]string{"validate": logLines}
	out["failed-validation"] = r

	// Everything reused but evaluate, which ran again.
	reused := pipelineRun("20260301-120000-gggg", "7777777", "feature/docs", store.StatusSucceeded, 0.95, 0.30)
	for _, n := range reused.Nodes[:2] {
		n.ReusedFrom, n.Started, n.Finished = base.ID, time.Time{}, time.Time{}
	}
	out["reused"] = mk(reused, base, "the latest successful run on main at the merge base")

	// train ran on a Cloud Batch GPU VM: preempted once, then finished on
	// a second spot VM; evaluate ran on a cluster with no price set.
	remote := pipelineRun("20260301-120000-jjjj", "aaaaaaa", "feature/gpu", store.StatusSucceeded, 0.95, 0.30)
	remote.Nodes[1].Placement = &store.Placement{Backend: "batch", Environment: "gpu-l4", Location: "us-central1",
		Machine: "g2-standard-8", Accelerator: "nvidia-l4", AcceleratorCount: 1, Provisioning: "spot",
		Tries: []store.Try{{Outcome: "preempted", Cost: 0.02}, {Outcome: "completed", Cost: 0.0712}}, Cost: 0.0912, CostKnown: true}
	remote.Nodes[2].Placement = &store.Placement{Backend: "kubernetes", Environment: "cluster", Location: "gke-ml/pool-a-1",
		Accelerator: "nvidia.com/gpu", AcceleratorCount: 1, Tries: []store.Try{{Outcome: "completed"}}}
	out["remote"] = mk(remote, base, "the latest successful run on main at the merge base")

	// Thousands of metrics and a failed node with enormous log lines; no
	// pipeline (the diagram comes from the record).
	huge := pipelineRun("20260301-120000-hhhh", "8888888", "feature/huge", store.StatusFailed, 0.5, 0.9)
	hugeBase := pipelineRun("20260228-090000-iiii", "9999999", "main", store.StatusSucceeded, 0.95, 0.3)
	for i := range 3000 {
		huge.Nodes[1].Metadata[fmt.Sprintf("layer_%04d_grad_norm", i)] = float64(i) / 7
		hugeBase.Nodes[1].Metadata[fmt.Sprintf("layer_%04d_grad_norm", i)] = float64(i) / 8
	}
	huge.Nodes = append(huge.Nodes, timed(&store.NodeRun{Name: "report", Status: store.StatusFailed, Reason: "the command exited with code 2"}, 0, time.Second))
	var long []string
	for i := range 60 {
		long = append(long, fmt.Sprintf("%d ", i)+strings.Repeat("é", 3000))
	}
	// Fifteen metrics: two gated, three ungated that changed by different
	// amounts, ten that did not change at all.
	many := pipelineRun("20260301-120000-kkkk", "bbbbbbb", "feature/many", store.StatusSucceeded, 0.93, 0.31)
	manyBase := pipelineRun(base.ID, base.Commit, base.Branch, store.StatusSucceeded, 0.95, 0.30)
	for i := range 10 {
		many.Nodes[1].Metadata[fmt.Sprintf("same_%02d", i)] = float64(i)
		manyBase.Nodes[1].Metadata[fmt.Sprintf("same_%02d", i)] = float64(i)
	}
	many.Nodes[2].Metadata["a_small"], manyBase.Nodes[2].Metadata["a_small"] = 101.0, 100.0 // +1%
	many.Nodes[2].Metadata["b_large"], manyBase.Nodes[2].Metadata["b_large"] = 50.0, 100.0  // -50%
	many.Nodes[2].Metadata["c_zero"], manyBase.Nodes[2].Metadata["c_zero"] = 0.5, 0.0       // no percent
	delete(many.Nodes[1].Metadata, "epochs")
	delete(manyBase.Nodes[1].Metadata, "epochs")
	delete(many.Nodes[0].Metadata, "rows")
	delete(manyBase.Nodes[0].Metadata, "rows")
	out["many-metrics"] = mk(many, manyBase, "the latest successful run on main at the merge base")

	hr := Report{Run: huge, Baseline: hugeBase, Verdict: Evaluate(huge, hugeBase, stdGates),
		Logs: map[string][]string{"report": long}, FullReport: "the job summary of this workflow run"}
	out["huge"] = hr
	return out
}

func TestMarkdownGolden(t *testing.T) {
	for name, r := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			got := Markdown(r)
			file := filepath.Join("testdata", name+".md")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./report -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file; run go test ./report -update and review the diff:\n%s", file, got)
			}
			checkRenders(t, want, r)
		})
	}
}

// checkRenders parses the golden Markdown as GitHub does (GFM) and checks
// its structure: one marker, one table with a row per shown metric, a
// fenced mermaid block, details blocks for the logs.
func checkRenders(t *testing.T, md []byte, r Report) {
	t.Helper()
	if n := utf8.RuneCount(md); n > DefaultLimit {
		t.Errorf("%d runes, more than %d", n, DefaultLimit)
	}
	marker := Marker(r.Run.Pipeline)
	if !bytes.HasPrefix(md, []byte(marker+"\n")) || bytes.Count(md, []byte("sluice:report")) != 1 {
		t.Errorf("the report does not start with the marker %s", marker)
	}
	gm := goldmark.New(goldmark.WithExtensions(extension.GFM))
	doc := gm.Parser().Parse(text.NewReader(md))
	var tables, rows, mermaid, charts, sections int
	var headings []string
	err := ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch x := n.(type) {
		case *extast.Table:
			tables++
		case *extast.TableRow:
			rows++
			// Metrics have 6 columns, changed parameters 4, where nodes ran 7.
			if c := x.ChildCount(); c != 6 && c != 4 && c != 7 {
				t.Errorf("a row with %d cells in table %d", c, tables)
			}
		case *ast.FencedCodeBlock:
			if string(x.Language(md)) == "mermaid" {
				mermaid++
				var body strings.Builder
				for i := 0; i < x.Lines().Len(); i++ {
					seg := x.Lines().At(i)
					body.Write(seg.Value(md))
				}
				switch {
				case strings.HasPrefix(body.String(), "flowchart LR\n"):
				case strings.HasPrefix(body.String(), seriesInit+"\nxychart-beta\n") && strings.Contains(body.String(), "\n  line ["):
					charts++
				default:
					t.Errorf("a mermaid block that is neither the flowchart nor a chart:\n%s", body.String())
				}
			}
		case *ast.Heading:
			var h strings.Builder
			for c := x.FirstChild(); c != nil; c = c.NextSibling() {
				if tx, ok := c.(*ast.Text); ok {
					h.Write(tx.Segment.Value(md))
				}
			}
			headings = append(headings, h.String())
		case *ast.HTMLBlock:
			if v := x.Lines().Value(md); bytes.Contains(v, []byte("<details>")) && !bytes.Contains(v, []byte(", unchanged</summary>")) {
				sections++
			}
		}
		return ast.WalkContinue, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantTables := 1
	if r.Baseline != nil && bytes.Contains(md, []byte("### Changed parameters")) {
		wantTables = 2
	}
	if bytes.Contains(md, []byte("### Where nodes ran")) {
		wantTables++
	}
	if bytes.Contains(md, []byte(", unchanged</summary>")) {
		wantTables++ // the folded rows
	}
	if tables != wantTables {
		t.Errorf("%d tables, want %d", tables, wantTables)
	}
	if mermaid-charts != 1 {
		t.Errorf("%d mermaid flowcharts, want 1", mermaid-charts)
	}
	if want := bytes.Count(md, []byte(": this run: blue")); charts != want {
		t.Errorf("%d charts, want %d (one per captioned series)", charts, want)
	}
	if len(headings) == 0 || !strings.Contains(headings[0], "sluice:") {
		t.Errorf("headings %q: the verdict does not come first", headings)
	}
	if rows < 1 {
		t.Errorf("no table rows")
	}
	// And the HTML has what GitHub would show.
	var html bytes.Buffer
	if err := gm.Convert(md, &html); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<table>", `<code class="language-mermaid">`} {
		if !bytes.Contains(html.Bytes(), []byte(want)) {
			t.Errorf("the HTML has no %s", want)
		}
	}
	if _, ok := r.Logs["validate"]; ok && sections != 1 {
		t.Errorf("%d <details> blocks, want 1", sections)
	}
}

// TestMetricsOrder checks that the rows that matter come first: failed
// gates, passed gates, ungated changes by size, and the ungated rows that did
// not change folded away, while the verdict (and so --format json) keeps
// every row.
func TestMetricsOrder(t *testing.T) {
	r := goldenCases(t)["many-metrics"]
	if n := len(r.Verdict.Metrics); n != 15 {
		t.Fatalf("%d metrics, want 15", n)
	}
	md := Markdown(r)
	order := []string{"`evaluate.accuracy`", "`train.loss`", "`evaluate.c_zero`", "`evaluate.b_large`", "`evaluate.a_small`",
		"<details><summary>10 more metrics, unchanged</summary>", "`train.same_00`", "`train.same_09`", "</details>"}
	at := -1
	for _, w := range order {
		i := strings.Index(md, w)
		if i < 0 {
			t.Fatalf("no %s in\n%s", w, md)
		}
		if i <= at {
			t.Errorf("%s comes before the row it should follow:\n%s", w, md)
		}
		at = i
	}
	if !strings.Contains(md, "| `evaluate.accuracy` | 0.95 | 0.93 | -0.02 | -2.11% | ❌ fail ↓ worse |") {
		t.Errorf("the failed gate's row is not as expected:\n%s", md)
	}
	// Kept rows under a limit are the first ones of that order.
	var b strings.Builder
	writeTable(&b, r, 3)
	if got := b.String(); !strings.Contains(got, "`evaluate.c_zero`") || strings.Contains(got, "`evaluate.b_large`") ||
		!strings.Contains(got, "12 more metrics are not shown") {
		t.Errorf("three rows kept:\n%s", got)
	}
}

func TestMarkdownContent(t *testing.T) {
	cases := goldenCases(t)
	for name, wants := range map[string][]string{
		"first-run": {"## ✅ sluice: `train` passed", "**no baseline**: main has no successful run", "| `evaluate.accuracy` | — | 0.95 | — | — | 🆕 new |",
			"git checkout 2222222cafef00d\nsluice run valohai.yaml --pipeline train -p epochs=3"},
		"improvement": {"✅ pass ↑ better", "| `train.loss` | 0.3 | 0.21 | -0.09 | -30.00% | ✅ pass ↓ better |", "Baseline (`1111111`)"},
		"regression": {"## ❌ sluice: `train` failed", "**2 metric gates failed.**",
			"- ❌ `evaluate.accuracy`: regressed (dropped) by 0.03 (from 0.95 to 0.92); at most 0.01 is allowed",
			"❌ fail ↓ worse", "❌ fail ↑ worse", "regressed (rose) by 20.00% (from 0.3 to 0.36); at most 10% is allowed"},
		"regression-extras": {"### Series", seriesInit + "\nxychart-beta\n  title \"train.loss\"\n  x-axis \"point\" 1 --> 4\n  y-axis \"loss\" 0.3 --> 1.3\n  line [1.3, 0.9, 0.6, 0.36]\n  line [1.2, 0.8, 0.5, 0.3]\n",
			"`train.loss`, 4 points: this run: blue, baseline (`main`, `1111111`): grey.", "- `evaluate.f1`: node `evaluate` printed no numbers for `f1`.",
			"### Changed parameters", "| pipeline | `epochs` | `3` | `2` |", "| train | `hidden-size` | `64` | `8` |",
			"### Artifacts", "[model.pkl](https://console.cloud.google.com/storage/browser/_details/bucket/runs/20260301-120000-dddd/train/model.pkl) (1.0 MiB)",
			"[plots/loss (log).png](https://console.cloud.google.com/storage/browser/_details/bucket/runs/20260301-120000-dddd/train/plots/loss%20%28log%29.png) (2.3 KiB)"},
		"noise":             {"✅ pass ↓ noise", "✅ sluice: `train` passed"},
		"failed-validation": {"**The pipeline failed; 1 node failed; 2 metric gates failed.**", "node validate failed: the command exited with code 1\n", "the last 50 lines of its log", "\n````text\n", "\nchecking batch 38\n", "\nERROR 12 rows", "❌ missing", "⏭️ skipped"},
		"reused":            {"♻️ reused from 20260228-090000-aaaa", "= same"},
		"huge":              {"> This report was shortened to fit a comment: the log tails and 2267 metric rows left out.", "The full report: the job summary of this workflow run", "more metrics are not shown", "❌ `evaluate.accuracy`"},
	} {
		got := Markdown(cases[strings.TrimSuffix(name, "-extras")])
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s: no %q in\n%s", name, w, got)
			}
		}
	}
	if got := Markdown(cases["failed-validation"]); strings.Contains(got, "checking batch 37\n") || strings.Contains(got, "\x1b") {
		t.Errorf("the log tail holds more than 50 lines or escape codes")
	}
	if got := Markdown(cases["huge"]); strings.Contains(got, "éééé") {
		t.Errorf("the huge report kept its log tails")
	}
}

func TestMarkdownShortening(t *testing.T) {
	r := goldenCases(t)["huge"]
	full := Markdown(Report{Run: r.Run, Baseline: r.Baseline, Verdict: r.Verdict, Logs: r.Logs, Limit: 1 << 30})
	if n := utf8.RuneCountInString(full); n <= DefaultLimit {
		t.Fatalf("the unshortened huge report has only %d runes", n)
	}
	// Tighter limits go further: rows, then the diagram, then a hard cut
	// that still closes its code fence.
	for _, limit := range []int{20000, 3000, 1500, 600} {
		r.Limit = limit
		got := Markdown(r)
		if n := utf8.RuneCountInString(got); n > limit {
			t.Errorf("limit %d: %d runes", limit, n)
		}
		if !strings.HasPrefix(got, Marker("train")) || !strings.Contains(got, "full report") {
			t.Errorf("limit %d: no marker or no pointer to the full report:\n%s", limit, got)
		}
		if strings.Count(got, "```")%2 != 0 {
			t.Errorf("limit %d: an unclosed code fence:\n%s", limit, got)
		}
	}
}

func TestMarker(t *testing.T) {
	if got := Marker("train --> x"); got != "<!-- sluice:report pipeline=train%20--%3E%20x -->" {
		t.Errorf("marker %s", got)
	}
}

func TestPlacements(t *testing.T) {
	run := pipelineRun("20260301-120000-kkkk", "bbbbbbb", "feature/sweep", store.StatusSucceeded, 0.95, 0.30)
	price := func(pl *store.Placement, usd float64) *store.Placement { pl.Cost, pl.CostKnown = usd, true; return pl }
	run.Nodes[1].Executions = []*store.NodeRun{
		timed(&store.NodeRun{Name: "train", Variant: "lr=0.1", Placement: price(&store.Placement{Backend: "batch", Environment: "gpu",
			Machine: "a2-highgpu-1g", Accelerator: "nvidia-tesla-a100", AcceleratorCount: 1, Provisioning: "standard",
			Tries: []store.Try{{Outcome: "no-capacity"}, {Outcome: "preempted"}, {Outcome: "completed"}}}, 0.004)}, 0, 90*time.Second),
		{Name: "train", Variant: "lr=0.2", Placement: &store.Placement{Backend: "batch", Environment: "gpu-free", Machine: "g2-standard-4"}},
	}
	var b strings.Builder
	writePlacements(&b, Report{Run: run})
	got := b.String()
	for _, want := range []string{
		"| `train lr=0.1` | `gpu` (batch) | a2-highgpu-1g, 1 × nvidia-tesla-a100 | standard | 3: no-capacity, preempted, then completed | 1m30s | $0.0040 |\n",
		"| `train lr=0.2` | `gpu-free` (batch) | g2-standard-4 | — | — | — | — |\n",
		"| **Total** | | | | | | **$0.0040** |\n",
		"The Batch environment of 1 node has no `hourly-price` in sluice.yaml",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	b.Reset()
	writePlacements(&b, Report{Run: pipelineRun("x", "c", "b", store.StatusSucceeded, 0.9, 0.3)})
	if b.Len() != 0 {
		t.Errorf("a run with only local nodes has a placements section:\n%s", b.String())
	}
}
