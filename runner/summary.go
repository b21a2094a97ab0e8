package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/store"
)

// WriteSummary prints a run's final table: each node's status, duration,
// exit code and key metrics, then the verdict.
func WriteSummary(w io.Writer, rec *store.Run) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tDURATION\tEXIT\tMETRICS")
	for _, n := range rec.Nodes {
		exit := "-"
		if n.ExitCode != nil {
			exit = fmt.Sprint(*n.ExitCode)
		}
		dur := "-"
		if d := n.Duration(); d > 0 {
			dur = d.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable.Name(n.Name), statusText(n), dur, exit, metricsText(n.Metadata, 4))
		for _, e := range n.Executions {
			exit, dur := "-", "-"
			if e.ExitCode != nil {
				exit = fmt.Sprint(*e.ExitCode)
			}
			if d := e.Duration(); d > 0 {
				dur = d.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", printable.Name(e.Variant), statusText(e), dur, exit, metricsText(e.Metadata, 4))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writePlacements(w, rec)
	verdict := fmt.Sprintf("run %s %s", rec.ID, rec.Status)
	if rec.Reason != "" {
		verdict += ": " + printable.Escape(rec.Reason)
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

// statusText is a node's status, "reused" for a result taken from an earlier run.
func statusText(n *store.NodeRun) string {
	if n.ReusedFrom != "" {
		return "reused"
	}
	return string(n.Status)
}

// metricsText prints up to max metadata values as key=value, numbers first.
func metricsText(md map[string]any, max int) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	isNum := func(v any) bool {
		switch v.(type) {
		case float64, json.Number:
			return true
		}
		return false
	}
	sort.Slice(keys, func(i, j int) bool {
		ni, nj := isNum(md[keys[i]]), isNum(md[keys[j]])
		if ni != nj {
			return ni
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for i, k := range keys {
		if i == max {
			parts = append(parts, fmt.Sprintf("(+%d)", len(keys)-max))
			break
		}
		parts = append(parts, printable.Name(k)+"="+printable.Escape(fmt.Sprint(md[k])))
	}
	return strings.Join(parts, " ")
}

// writePlacements prints a line per node that ran on a remote backend:
// where, on what, its tries and estimated cost; then the run's total.
func writePlacements(w io.Writer, rec *store.Run) {
	var total float64
	var priced int
	line := func(name string, n *store.NodeRun) {
		pl := n.Placement
		if pl == nil {
			return
		}
		where := pl.Backend
		if pl.Location != "" {
			where += ", " + pl.Location
		}
		var what []string
		if pl.Machine != "" {
			what = append(what, pl.Machine)
		}
		if pl.Accelerator != "" {
			what = append(what, fmt.Sprintf("%d x %s", max(pl.AcceleratorCount, 1), pl.Accelerator))
		}
		if pl.Provisioning != "" {
			what = append(what, pl.Provisioning)
		}
		var outcomes []string
		for _, t := range pl.Tries {
			outcomes = append(outcomes, t.Outcome)
		}
		fmt.Fprintf(w, "%s ran on %s (%s)", printable.Name(name), printable.Name(pl.Environment), where)
		if len(what) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(what, ", "))
		}
		if len(pl.Tries) > 1 {
			fmt.Fprintf(w, "; %d tries (%s)", len(pl.Tries), strings.Join(outcomes, ", "))
		}
		if pl.CostKnown {
			fmt.Fprintf(w, "; est. $%.4f", pl.Cost)
			total += pl.Cost
			priced++
		}
		fmt.Fprintln(w)
	}
	for _, n := range rec.Nodes {
		line(n.Name, n)
		for _, e := range n.Executions {
			line(n.Name+" "+e.Variant, e)
		}
	}
	if priced > 0 {
		fmt.Fprintf(w, "estimated cost of the run: $%.4f\n", total)
	}
}
