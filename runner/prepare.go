package runner

import (
	"context"
	"sync"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// maxPrepared bounds the containers made ahead for nodes not started yet
// (a node that started holds its own until it runs in it): each is
// daemon work (a create, the repository copy) done while other nodes run,
// so a few are enough to keep the next nodes' set-up off the critical path.
const maxPrepared = 2

// preparation is a node's container being made, or made, ahead by a
// Preparer (see prepareAhead).
type preparation struct {
	cancel context.CancelFunc // ends the Prepare call
	done   chan struct{}      // closed when Prepare returned
	p      Prepared           // nil when Prepare failed
}

// prepared waits for Prepare and returns what it made, or nil.
func (p *preparation) prepared() Prepared {
	if p == nil {
		return nil
	}
	<-p.done
	return p.p
}

// discard stops the preparation and removes what it made, if it was not
// used (Prepared.Discard after Run does nothing).
func (p *preparation) discard() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	if p.p != nil {
		p.p.Discard()
	}
}

// preparations are the run's preparations, by node.
type preparations struct {
	mu    sync.Mutex
	live  map[string]*preparation // made or being made, not yet taken
	tried map[string]bool         // prepared once already (used or not)
	wg    sync.WaitGroup          // discards in the background
}

// take hands the node's preparation, if any, to the node that runs.
func (ps *preparations) take(node string) *preparation {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.live[node]
	delete(ps.live, node)
	return p
}

// drop discards the node's preparation in the background (a node that will
// not run: skipped, its upstream failed).
func (ps *preparations) drop(node string) {
	if p := ps.take(node); p != nil {
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			p.discard()
		}()
	}
}

// dropAll discards every preparation left and waits for the discards: the
// run is over, and its executors' Wait then waits for the removals.
func (ps *preparations) dropAll() {
	ps.mu.Lock()
	live := ps.live
	ps.live = map[string]*preparation{}
	ps.mu.Unlock()
	for _, p := range live {
		p.discard()
	}
	ps.wg.Wait()
}

// poke tells the scheduler that the set of nodes running containers
// changed, so it may prepare more; it never blocks.
func (r *pipelineRun) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// prepareAhead starts making the containers of up to maxPrepared nodes that
// will run next: nodes not started whose dependencies have all started (run
// now, or succeeded), while some node runs a container. A node whose
// command or environment depends on upstream values (a parameter or
// environment edge into it), a task, or a node whose executor is not a
// Preparer, is not prepared. It is called from the scheduler's goroutine.
func (r *pipelineRun) prepareAhead(ctx context.Context, done, started map[string]bool) {
	if r.opts.DryRun || r.executing.Load() == 0 || ctx.Err() != nil {
		return
	}
	ps := &r.preps
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, n := range r.opts.Pipeline.Nodes {
		if len(ps.live) >= maxPrepared {
			return
		}
		if started[n.Name] || done[n.Name] || ps.tried[n.Name] || !r.upstreamGoing(n, done, started) {
			continue
		}
		exec, job, ok := r.preparableJob(n)
		if !ok {
			continue
		}
		pr, ok := exec.(Preparer)
		if !ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &preparation{cancel: cancel, done: make(chan struct{})}
		ps.live[n.Name], ps.tried[n.Name] = p, true
		go func() {
			defer close(p.done)
			prep, err := pr.Prepare(pctx, job)
			if err != nil {
				r.log.Debug("cannot prepare ahead", "node", job.Node, "err", err)
				return
			}
			p.p = prep
		}()
	}
}

// upstreamGoing reports whether every node n waits for has started and,
// when it ended, succeeded: n will run once they end.
func (r *pipelineRun) upstreamGoing(n *spec.Node, done, started map[string]bool) bool {
	for _, dep := range r.graph.Deps(n.Name) {
		if !started[dep.Name] {
			return false
		}
		if done[dep.Name] {
			r.mu.Lock()
			status := r.rec.Node(dep.Name).Status
			r.mu.Unlock()
			if status != store.StatusSucceeded {
				return false
			}
		}
	}
	return true
}

// preparableJob returns the executor and the job of an execution node as it
// will run, but for its inputs, when everything the container is made with
// is known before its upstream nodes end.
func (r *pipelineRun) preparableJob(n *spec.Node) (Executor, Job, bool) {
	np := r.plans[n.Name]
	if n.Type != spec.NodeExecution || np == nil || np.Step == nil {
		return nil, Job{}, false
	}
	for _, e := range r.opts.Pipeline.Edges {
		if e.Target.Node == n.Name && (e.Target.Type == spec.SocketParameter || e.Target.Type == spec.SocketEnvVar) {
			return nil, Job{}, false
		}
	}
	vals := baseValues(np)
	stepEnvDefaults(np, vals)
	job, _, exec, err := r.jobOf(newExecution(n, np, vals.params, vals, nil, ""), &store.NodeRun{})
	if err != nil {
		return nil, Job{}, false
	}
	return exec, job, true
}

// baseValues are a node's values before its edges: its plan's parameters and
// its step's environment defaults.
func baseValues(np *spec.NodePlan) *nodeValues {
	vals := &nodeValues{params: map[string]*spec.Value{}, metadata: map[string]any{}, env: map[string]string{}}
	for k, v := range np.Params {
		vals.params[k] = v
	}
	return vals
}

// stepEnvDefaults fills in the step's environment variables that have a
// default and no value yet.
func stepEnvDefaults(np *spec.NodePlan, vals *nodeValues) {
	for _, e := range np.Step.EnvVars {
		if _, ok := vals.env[e.Name]; !ok && e.HasDefault {
			vals.env[e.Name] = e.Default
		}
	}
}
