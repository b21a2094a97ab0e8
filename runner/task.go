package runner

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// taskVariants returns the parameter sets a task node runs: its task
// blueprint's variants, or else one per value of each list that edges or
// pipeline parameters gave a single-valued parameter (every combination when
// there are several); a node with no such list runs once.
func (r *pipelineRun) taskVariants(n *spec.Node, np *spec.NodePlan, vals *nodeValues) ([]spec.Variant, error) {
	if n.Task != "" {
		t := r.opts.Config.Task(n.Task)
		if t == nil {
			return nil, fmt.Errorf("task %q does not exist", n.Task)
		}
		return t.Variants()
	}
	var names []string
	for name, v := range vals.params {
		if p := np.Step.Parameter(name); p != nil && p.Multiple == spec.MultipleNone && v.Kind == spec.KindList {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := []spec.Variant{{}}
	for _, name := range names {
		var next []spec.Variant
		for _, base := range out {
			for _, item := range vals.params[name].Items {
				v := spec.Variant{name: item}
				for k, x := range base {
					v[k] = x
				}
				next = append(next, v)
			}
		}
		out = next
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("a list parameter is empty: nothing to run")
	}
	return out, nil
}

// runVariants runs a task node's executions, as many at once as the run's
// concurrency allows, and sums them up as the node's record: it succeeds when
// every execution did (or, with on-child-error continue-and-complete, when
// they all ended), its outputs are all of theirs, and each metadata key passes
// along edges as the list of the executions' last values.
func (r *pipelineRun) runVariants(ctx context.Context, n *spec.Node, np *spec.NodePlan, vals *nodeValues, inputs []Input, variants []spec.Variant) *store.NodeRun {
	onChildError := "continue-and-error"
	if t := r.opts.Config.Task(n.Task); n.Task != "" && t != nil && t.OnChildError != "" {
		onChildError = t.OnChildError
	}
	r.printf(n.Name, "task: %d executions", len(variants))
	childCtx, stop := context.WithCancel(ctx)
	defer stop()
	execs := make([]*store.NodeRun, len(variants))
	raws := make([]map[string]any, len(variants))
	var wg sync.WaitGroup
	for i, v := range variants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, raw := r.execute(childCtx, newExecution(n, np, withVariant(vals.params, v), vals, inputs, v.Label()))
			execs[i], raws[i] = e, raw
			if e.Status != store.StatusSucceeded && onChildError == "stop-all-and-error" {
				stop()
			}
		}()
	}
	wg.Wait()

	nr := &store.NodeRun{Status: store.StatusSucceeded, Executions: execs}
	failed, wouldRun := 0, 0
	vals.metadata = map[string]any{}
	for i, e := range execs {
		if nr.Started.IsZero() || !e.Started.IsZero() && e.Started.Before(nr.Started) {
			nr.Started = e.Started
		}
		if e.Finished.After(nr.Finished) {
			nr.Finished = e.Finished
		}
		nr.Outputs = append(nr.Outputs, e.Outputs...)
		for k, x := range raws[i] {
			list, _ := vals.metadata[k].([]any)
			if list == nil {
				list = make([]any, len(execs))
			}
			list[i] = x
			vals.metadata[k] = list
		}
		switch e.Status {
		case store.StatusSucceeded:
		case store.StatusWouldRun:
			wouldRun++
		default:
			failed++
		}
	}
	vals.outputs = nr.Outputs
	switch {
	case wouldRun > 0:
		nr.Status, nr.Reason = store.StatusWouldRun, fmt.Sprintf("%d of %d executions would run", wouldRun, len(execs))
	case ctx.Err() != nil:
		nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
	case failed > 0 && onChildError != "continue-and-complete":
		nr.Status, nr.Reason = store.StatusFailed, fmt.Sprintf("%d of %d executions failed (on-child-error: %s)", failed, len(execs), onChildError)
	case failed > 0:
		nr.Warnings = append(nr.Warnings, fmt.Sprintf("%d of %d executions failed; on-child-error continue-and-complete lets the node succeed", failed, len(execs)))
	}
	return nr
}
