package kube

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	watchapi "k8s.io/apimachinery/pkg/watch"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/store"
)

// watch follows one node's Job and its pods to the end.
type watch struct {
	e        *Executor
	job      runner.Job
	created  *batchv1.Job
	prefix   string // the attempt's; each pod's files are below TryPrefix(prefix, pod)
	progress func(string, ...any)
	pl       *store.Placement
	gpus     int

	jobObj      *batchv1.Job
	pods        map[string]*podState
	order       []string // pod names, in the order they were seen
	follow      *agent.Follower
	following   string // the pod whose log is followed
	disruptions int
	nodes       map[string]string // node name -> instance type
}

// podState is what the watch knows of one pod: one try of the node.
type podState struct {
	pod       *corev1.Pod
	try       int // index in Placement.Tries
	scheduled bool
	started   bool // a container of it started: it is no longer queued
	ended     bool
	disrupted bool
	gone      bool // deleted
	waitMsg   string
	pulling   string
	seen      time.Time // when this watch first saw it, by this host's clock
	billFrom  time.Time
	charged   time.Time
}

func (w *watch) ns() string   { return w.created.Namespace }
func (w *watch) name() string { return w.created.Name }

func (w *watch) selector() string {
	return "batch.kubernetes.io/controller-uid=" + string(w.created.UID)
}

// run watches until the node is decided, and returns its result.
func (w *watch) run(ctx context.Context) (runner.Result, error) {
	e := w.e
	jobs := e.opts.Client.BatchV1().Jobs(w.ns())
	pods := e.opts.Client.CoreV1().Pods(w.ns())
	w.jobObj = w.created
	tick := time.NewTicker(e.opts.LogPoll)
	defer tick.Stop()
	var podW, jobW watchapi.Interface
	stop := func(wi *watchapi.Interface) {
		if *wi != nil {
			(*wi).Stop()
			*wi = nil
		}
	}
	defer stop(&podW)
	defer stop(&jobW)
	var podC, jobC <-chan watchapi.Event
	// A watch that ends within a second of its start is not started again
	// before the next tick: no busy loop against a server that ends them.
	var jobSince, podSince, jobRetry, podRetry time.Time
	ended := func(since time.Time, retry *time.Time) {
		if time.Since(since) < time.Second {
			*retry = time.Now().Add(time.Second)
		}
	}
	for {
		if ctx.Err() != nil {
			return w.cancelled(ctx)
		}
		// (Re-)list and watch: a watch ends now and then (the server's
		// timeout, a compaction); a list from scratch catches up.
		if jobW == nil && !time.Now().Before(jobRetry) {
			jobSince = time.Now()
			// Get, not List: the credentials need no more than Preflight
			// checks (create, get, watch, delete Jobs).
			j, err := jobs.Get(ctx, w.name(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) || err == nil && j.UID != w.created.UID {
				return w.fail(ctx, fmt.Errorf("node %s: the Job %s/%s is gone (deleted by someone else?)", w.job.Node, w.ns(), w.name()))
			}
			if err == nil {
				w.jobObj = j
				jobW, err = jobs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", w.name()).String(),
					ResourceVersion: j.ResourceVersion})
			}
			if err != nil {
				jobW = nil
				if ctx.Err() == nil {
					e.log.Warn("watch the Job", "job", w.name(), "err", err)
				}
			} else {
				jobC = jobW.ResultChan()
			}
		}
		if podW == nil && !time.Now().Before(podRetry) {
			podSince = time.Now()
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: w.selector()})
			if err == nil {
				byAge(list.Items)
				seen := map[string]bool{}
				for i := range list.Items {
					seen[list.Items[i].Name] = true
					w.see(ctx, &list.Items[i])
				}
				for name, ps := range w.pods {
					if !seen[name] && !ps.gone {
						w.gone(ps)
					}
				}
				podW, err = pods.Watch(ctx, metav1.ListOptions{LabelSelector: w.selector(), ResourceVersion: list.ResourceVersion})
			}
			if err != nil {
				podW = nil
				if ctx.Err() == nil {
					e.log.Warn("watch the Job's pods", "job", w.name(), "err", err)
				}
			} else {
				podC = podW.ResultChan()
			}
		}
		if res, err, done := w.decide(ctx); done {
			return res, err
		}
		var jc, pc <-chan watchapi.Event
		if jobW != nil {
			jc = jobC
		}
		if podW != nil {
			pc = podC
		}
		select {
		case <-ctx.Done():
			return w.cancelled(ctx)
		case ev, ok := <-jc:
			switch {
			case !ok || ev.Type == watchapi.Error:
				stop(&jobW)
				ended(jobSince, &jobRetry)
			case ev.Type == watchapi.Deleted:
				return w.fail(ctx, fmt.Errorf("node %s: the Job %s/%s was deleted (by someone else?)", w.job.Node, w.ns(), w.name()))
			default:
				if j, ok := ev.Object.(*batchv1.Job); ok {
					w.jobObj = j
				}
			}
		case ev, ok := <-pc:
			switch {
			case !ok || ev.Type == watchapi.Error:
				stop(&podW)
				ended(podSince, &podRetry)
			default:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					break
				}
				if ev.Type == watchapi.Deleted {
					w.see(ctx, p)
					if ps := w.pods[p.Name]; ps != nil && !ps.gone {
						w.gone(ps)
					}
					break
				}
				w.see(ctx, p)
			}
		case <-tick.C:
			if w.follow != nil {
				if _, err := w.follow.Poll(ctx); err != nil && ctx.Err() == nil {
					e.log.Warn("follow the log", "job", w.name(), "err", err)
				}
			}
		}
	}
}

// see takes in a pod's latest state: a new try, its scheduling, its
// containers' start, its end; progress lines for each change.
func (w *watch) see(ctx context.Context, p *corev1.Pod) {
	ps := w.pods[p.Name]
	if ps == nil {
		ps = &podState{try: len(w.pl.Tries), seen: w.e.opts.Now()}
		w.pods[p.Name] = ps
		w.order = append(w.order, p.Name)
		w.pl.Tries = append(w.pl.Tries, store.Try{Job: w.ns() + "/" + p.Name, Started: p.CreationTimestamp.Time})
		if len(w.order) > 1 {
			w.progress("kube: pod %s created (try %d)", p.Name, len(w.order))
		}
		// The newest pod is the one whose log is followed; what the one
		// before left is shown first.
		if w.follow != nil {
			if _, err := w.follow.Poll(ctx); err != nil && ctx.Err() == nil {
				w.e.log.Warn("follow the log", "job", w.name(), "err", err)
			}
		}
		w.following = p.Name
		w.follow = &agent.Follower{Store: w.e.opts.Store, Prefix: agent.TryPrefix(w.prefix, p.Name),
			Stdout: w.job.Stdout, Stderr: w.job.Stderr}
	}
	ps.pod = p
	rec := &w.pl.Tries[ps.try]
	if !ps.scheduled && p.Spec.NodeName != "" {
		ps.scheduled = true
		node := p.Spec.NodeName
		machine := w.instanceType(ctx, node)
		rec.Machine = machine
		if p.Name == w.following {
			w.pl.Location = strings.TrimPrefix(w.e.opts.Cluster+"/"+node, "/")
			w.pl.Machine = machine
		}
		if machine != "" {
			w.progress("kube: pod %s scheduled on node %s (%s)", p.Name, node, machine)
		} else {
			w.progress("kube: pod %s scheduled on node %s", p.Name, node)
		}
	}
	if !ps.scheduled {
		if c := podCondition(p, corev1.PodScheduled); c.Status == corev1.ConditionFalse && c.Message != "" && c.Message != ps.waitMsg {
			ps.waitMsg = c.Message
			w.progress("kube: pod %s is waiting for a node: %s", p.Name, c.Message)
		}
	}
	if ps.billFrom.IsZero() && p.Status.StartTime != nil {
		ps.billFrom, ps.charged = p.Status.StartTime.Time, p.Status.StartTime.Time
	}
	if !ps.started && containerStarted(p) {
		ps.started = true
	}
	for _, cs := range allStatuses(p) {
		if wt := cs.State.Waiting; wt != nil && wt.Reason == "ErrImagePull" && ps.pulling != cs.Image {
			ps.pulling = cs.Image
			w.progress("kube: pod %s: pulling %s failed, the kubelet tries again: %s", p.Name, cs.Image, wt.Message)
		}
	}
	if !ps.ended && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
		ps.ended = true
		rec.Finished = endedAt(p, w.e.opts.Now())
		w.charge(ps, rec.Finished)
		if c := podCondition(p, corev1.DisruptionTarget); p.Status.Phase == corev1.PodFailed && c.Status == corev1.ConditionTrue {
			w.disrupted(ps, c)
		} else if p.Status.Phase == corev1.PodFailed {
			rec.Outcome = string(runner.ReasonFailed)
			if why := podFailure(p); why != "" {
				rec.Why = why
			}
		}
	}
}

// gone is a pod deleted before it was seen to end: its node went away
// with it, or someone deleted it; the Job controller makes another.
func (w *watch) gone(ps *podState) {
	ps.gone = true
	if ps.ended {
		return
	}
	ps.ended = true
	rec := &w.pl.Tries[ps.try]
	rec.Finished = w.e.opts.Now()
	w.charge(ps, rec.Finished)
	w.disrupted(ps, corev1.PodCondition{Reason: "Deleted", Message: "the pod was deleted before it ended"})
}

// disrupted records an eviction, a preemption or a lost node: the try ends
// without counting as the step's failure.
func (w *watch) disrupted(ps *podState, c corev1.PodCondition) {
	if ps.disrupted {
		return
	}
	ps.disrupted = true
	w.disruptions++
	rec := &w.pl.Tries[ps.try]
	rec.Outcome = "preempted"
	what := "was evicted or preempted"
	if c.Reason == "DeletionByTaintManager" || c.Reason == "DeletionByPodGC" || c.Reason == "Deleted" ||
		strings.Contains(c.Message, "unreachable") || strings.Contains(c.Message, "not ready") {
		rec.Outcome = "lost"
		what = "was lost with its node"
	}
	rec.Why = strings.TrimSpace(c.Reason + ": " + c.Message)
	if w.disruptions <= w.e.cfg.RetriesOr() {
		w.progress("kube: pod %s %s (%s); the Job makes a new pod (try %d; disruptions do not count as the step's failure)",
			ps.pod.Name, what, rec.Why, len(w.order)+1)
	}
}

// decide says whether the node is decided: the Job ended, or a pod cannot
// go on (its image, no node for it, too many disruptions).
func (w *watch) decide(ctx context.Context) (runner.Result, error, bool) {
	// A cancelled run is cancelled, whatever the pods did meanwhile: a pod
	// stopped by the Job's deletion fails too, and is no failure of the step.
	if ctx.Err() != nil {
		res, err := w.cancelled(ctx)
		return res, err, true
	}
	now := w.e.opts.Now()
	for _, name := range w.order {
		ps := w.pods[name]
		if !ps.ended {
			w.charge(ps, now)
		}
	}
	if retries := w.e.cfg.RetriesOr(); w.disruptions > retries {
		res, err := w.fail(ctx, fmt.Errorf("node %s: its pods were evicted, preempted or lost %d times, more than retries: %d (last: %s)",
			w.job.Node, w.disruptions, retries, w.lastWhy()))
		return res, err, true
	}
	if c := finished(w.jobObj); c != nil {
		res, err := w.finish(ctx, c)
		return res, err, true
	}
	for _, name := range w.order {
		ps := w.pods[name]
		if ps.ended || ps.pod == nil {
			continue
		}
		p := ps.pod
		for _, cs := range allStatuses(p) {
			wt := cs.State.Waiting
			if wt == nil {
				continue
			}
			switch wt.Reason {
			case "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				res, err := w.fail(ctx, fmt.Errorf("node %s: the image %s of container %s cannot be pulled (%s): %s",
					w.job.Node, cs.Image, cs.Name, wt.Reason, wt.Message))
				return res, err, true
			}
		}
		// queue-timeout counts from when the pod was first seen, by this
		// host's clock: the API's creationTimestamp has whole seconds,
		// and the cluster's clock may differ from ours.
		if !ps.started && now.Sub(ps.seen) > w.e.cfg.QueueTimeout {
			why := "it did not start"
			if c := podCondition(p, corev1.PodScheduled); !ps.scheduled && c.Message != "" {
				why = "no node took it: " + c.Message
			} else if reasons := waitingReasons(p); reasons != "" {
				why = "its containers are waiting: " + reasons
			}
			res, err := w.fail(ctx, fmt.Errorf("node %s: pod %s waited longer than queue-timeout %s: %s",
				w.job.Node, p.Name, w.e.cfg.QueueTimeout, why))
			w.pl.Tries[ps.try].Outcome = "no-capacity"
			return res, err, true
		}
	}
	return runner.Result{}, nil, false
}

func (w *watch) lastWhy() string {
	for i := len(w.pl.Tries) - 1; i >= 0; i-- {
		if w.pl.Tries[i].Why != "" {
			return w.pl.Tries[i].Why
		}
	}
	return "no reason given"
}

// finish reads the result of an ended Job: the agent's exit record of its
// last pod decides, when it is there.
func (w *watch) finish(ctx context.Context, cond *batchv1.JobCondition) (runner.Result, error) {
	res := runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	// The pods' watch may lag behind the Job's: read them as they are now.
	if list, err := w.e.opts.Client.CoreV1().Pods(w.ns()).List(ctx, metav1.ListOptions{LabelSelector: w.selector()}); err == nil {
		byAge(list.Items)
		for i := range list.Items {
			w.see(ctx, &list.Items[i])
		}
	}
	ps := w.lastPod()
	if ps == nil {
		return res, fmt.Errorf("node %s: the Job %s/%s ended (%s: %s) without a pod", w.job.Node, w.ns(), w.name(), cond.Reason, cond.Message)
	}
	p := ps.pod
	rec := &w.pl.Tries[ps.try]
	if rec.Finished.IsZero() {
		rec.Finished = w.e.opts.Now()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	prefix := agent.TryPrefix(w.prefix, p.Name)
	follow := w.follow
	if w.following != p.Name {
		follow = &agent.Follower{Store: w.e.opts.Store, Prefix: prefix, Stdout: w.job.Stdout, Stderr: w.job.Stderr}
	}
	oom := w.oomKilled(p)
	exit, exitErr := agent.ReadExit(dctx, w.e.opts.Store, prefix)
	if exitErr == nil {
		out, err := exit.Result()
		if derr := follow.Drain(dctx, exit.LogChunks); derr != nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("log: %v", derr))
		}
		if oom != "" {
			out.Warnings = append(out.Warnings, oom)
		}
		rec.Outcome = string(out.Reason)
		if err != nil {
			rec.Why = exit.Error
			return out, fmt.Errorf("node %s: %w", w.job.Node, err)
		}
		return out, nil
	}
	// An agent that does not know TryEnv writes below the attempt's prefix.
	if _, err := w.e.opts.Store.Stat(dctx, agent.ExitKey(w.prefix)); err == nil {
		rec.Outcome, rec.Why = "error", "the agent's exit record is not below the pod's prefix"
		return res, fmt.Errorf("node %s: the agent left its exit record below %s, not below its pod's own prefix: the sluice image %s is older than this sluice (its agent does not know %s); give the image of this sluice's version",
			w.job.Node, w.prefix, w.e.opts.AgentImage, agent.TryEnv)
	}
	// No exit record: what the pod says is all there is.
	if _, err := follow.Poll(dctx); err != nil {
		w.e.log.Warn("follow the log", "job", w.name(), "err", err)
	}
	w.podLog(dctx, p)
	rec.Outcome = "error"
	step := containerStatus(p, StepContainer)
	switch {
	case cond.Reason == batchv1.JobReasonDeadlineExceeded:
		res.Reason = runner.ReasonTimeLimit
		return res, fmt.Errorf("node %s: the Job %s/%s ran past its activeDeadlineSeconds (%ds): %s", w.job.Node, w.ns(), w.name(),
			derefInt64(w.jobObj.Spec.ActiveDeadlineSeconds), cond.Message)
	case oom != "":
		res.ExitCode, res.Reason = 137, runner.ReasonFailed
		rec.Outcome, rec.Why = string(runner.ReasonFailed), oom
		return res, fmt.Errorf("node %s: %s", w.job.Node, oom)
	case step != nil && step.State.Terminated != nil && step.State.Terminated.ExitCode != 0:
		t := step.State.Terminated
		res.ExitCode, res.Reason = int(t.ExitCode), runner.ReasonFailed
		rec.Outcome, rec.Why = string(runner.ReasonFailed), strings.TrimSpace(t.Reason+" "+t.Message)
		return res, fmt.Errorf("node %s: the step's container exited %d (%s) without the agent's exit record", w.job.Node, t.ExitCode, t.Reason)
	}
	why := strings.TrimSpace(cond.Reason + ": " + cond.Message)
	if f := podFailure(p); f != "" {
		why += "; pod " + p.Name + ": " + f
	}
	rec.Why = why
	return res, fmt.Errorf("node %s: the Job %s/%s ended %s without the agent's exit record (%s)", w.job.Node, w.ns(), w.name(),
		strings.ToLower(string(cond.Type)), why)
}

// lastPod is the pod that ended the Job: the newest one not disrupted.
func (w *watch) lastPod() *podState {
	for i := len(w.order) - 1; i >= 0; i-- {
		if ps := w.pods[w.order[i]]; !ps.disrupted {
			return ps
		}
	}
	if len(w.order) > 0 {
		return w.pods[w.order[len(w.order)-1]]
	}
	return nil
}

// oomKilled says, when the step's container was OOM-killed, so with its
// memory limit; else "".
func (w *watch) oomKilled(p *corev1.Pod) string {
	cs := containerStatus(p, StepContainer)
	if cs == nil || cs.State.Terminated == nil || cs.State.Terminated.Reason != "OOMKilled" {
		return ""
	}
	limit := "none set"
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && c.Name == StepContainer {
			limit = q.String()
		}
	}
	return fmt.Sprintf("the step was killed for want of memory (OOMKilled, exit code %d) at its memory limit of %s (memory.max of the step's resources)",
		cs.State.Terminated.ExitCode, limit)
}

// podLog shows the end of the step's container log from the API server,
// when the agent's log is not in the store (the pod's log goes with its
// node, the store's does not).
func (w *watch) podLog(ctx context.Context, p *corev1.Pod) {
	if w.job.Stderr == nil {
		return
	}
	container := StepContainer
	if cs := containerStatus(p, FetchContainer); cs != nil && cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 {
		container = FetchContainer
	}
	tail := int64(200)
	data, err := w.e.opts.Client.CoreV1().Pods(w.ns()).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, TailLines: &tail}).DoRaw(ctx)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return
	}
	w.progress("kube: the agent's log is not in the store; the last lines of container %s of pod %s follow", container, p.Name)
	_, _ = w.job.Stderr.Write(data)
}

// fail ends the node for a reason of sluice's own: the Job is deleted, so
// that nothing it started lingers.
func (w *watch) fail(ctx context.Context, err error) (runner.Result, error) {
	res := runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	now := w.e.opts.Now()
	for _, name := range w.order {
		ps := w.pods[name]
		rec := &w.pl.Tries[ps.try]
		if !ps.ended {
			rec.Finished = now
			w.charge(ps, now)
			rec.Outcome, rec.Why = "error", err.Error()
		}
	}
	w.e.deleteJob(ctx, w.created, w.progress)
	if ctx.Err() != nil {
		res.Reason = runner.ReasonCancelled
		return res, fmt.Errorf("node %s: %w", w.job.Node, ctx.Err())
	}
	return res, err
}

// cancelled deletes the Job of a cancelled run and waits until it and its
// pods are gone.
func (w *watch) cancelled(ctx context.Context) (runner.Result, error) {
	res := runner.Result{ExitCode: -1, Reason: runner.ReasonCancelled}
	now := w.e.opts.Now()
	for _, name := range w.order {
		ps := w.pods[name]
		if !ps.ended {
			rec := &w.pl.Tries[ps.try]
			rec.Finished, rec.Outcome = now, "cancelled"
			w.charge(ps, now)
		}
	}
	w.e.deleteJob(ctx, w.created, w.progress)
	res.Finished = w.e.opts.Now()
	return res, fmt.Errorf("node %s: %w", w.job.Node, ctx.Err())
}

// deleteJob deletes a Job with foreground propagation and waits, at most
// DeleteTimeout, until the Job and its pods are gone.
func (e *Executor) deleteJob(ctx context.Context, job *batchv1.Job, progress func(string, ...any)) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.DeleteTimeout)
	defer cancel()
	jobs := e.opts.Client.BatchV1().Jobs(job.Namespace)
	pods := e.opts.Client.CoreV1().Pods(job.Namespace)
	fg := metav1.DeletePropagationForeground
	err := jobs.Delete(dctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &fg,
		Preconditions: &metav1.Preconditions{UID: &job.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		e.log.Warn("delete the Job", "job", job.Name, "err", err)
		progress("kube: deleting job %s/%s: %v (sluice gc --cloud deletes it)", job.Namespace, job.Name, err)
		return
	}
	sel := "batch.kubernetes.io/controller-uid=" + string(job.UID)
	for {
		_, jerr := jobs.Get(dctx, job.Name, metav1.GetOptions{})
		list, perr := pods.List(dctx, metav1.ListOptions{LabelSelector: sel})
		if apierrors.IsNotFound(jerr) && perr == nil && len(list.Items) == 0 {
			progress("kube: job %s/%s deleted", job.Namespace, job.Name)
			return
		}
		select {
		case <-dctx.Done():
			left := "the Job"
			if perr == nil && len(list.Items) > 0 {
				left = fmt.Sprintf("the Job and %d pods", len(list.Items))
			}
			e.log.Warn("the deleted Job is still there", "job", job.Name)
			progress("kube: job %s/%s: %s still there after %s (being deleted; sluice gc --cloud deletes what is left)",
				job.Namespace, job.Name, left, e.opts.DeleteTimeout)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// charge counts a pod's time on its node since the last charge into the
// node's cost and the run's spend.
func (w *watch) charge(ps *podState, upto time.Time) {
	price := w.e.cfg.HourlyPrice
	if price == nil || ps.billFrom.IsZero() || !upto.After(ps.charged) {
		return
	}
	usd := upto.Sub(ps.charged).Hours() * *price
	ps.charged = upto
	w.pl.Tries[ps.try].Cost += usd
	w.pl.Cost += usd
	if w.job.Spend != nil {
		w.job.Spend(usd)
	}
}

// instanceType is the node's machine type label, "" when it has none or
// cannot be read (namespaced credentials may not read nodes).
func (w *watch) instanceType(ctx context.Context, node string) string {
	if t, ok := w.nodes[node]; ok {
		return t
	}
	if w.nodes == nil {
		w.nodes = map[string]string{}
	}
	n, err := w.e.opts.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		w.e.log.Debug("read the node", "node", node, "err", err)
		w.nodes[node] = ""
		return ""
	}
	w.nodes[node] = n.Labels[instanceTypeLabel]
	return w.nodes[node]
}

// finished is the Job's Complete or Failed condition, nil while it runs.
func finished(j *batchv1.Job) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func allStatuses(p *corev1.Pod) []corev1.ContainerStatus {
	return slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, cs := range allStatuses(p) {
		if cs.Name == name {
			return &cs
		}
	}
	return nil
}

// containerStarted reports whether any container of the pod has started
// (its image pulled, its process begun): the pod is no longer queued.
func containerStarted(p *corev1.Pod) bool {
	for _, cs := range allStatuses(p) {
		if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
			return true
		}
	}
	return false
}

func waitingReasons(p *corev1.Pod) string {
	var out []string
	for _, cs := range allStatuses(p) {
		if wt := cs.State.Waiting; wt != nil && wt.Reason != "" {
			s := cs.Name + " " + wt.Reason
			if wt.Message != "" {
				s += ": " + wt.Message
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}

// podFailure is what a failed pod says of its failure.
func podFailure(p *corev1.Pod) string {
	var out []string
	if p.Status.Reason != "" || p.Status.Message != "" {
		out = append(out, strings.TrimSpace(p.Status.Reason+" "+p.Status.Message))
	}
	for _, cs := range allStatuses(p) {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			out = append(out, fmt.Sprintf("container %s exited %d (%s)", cs.Name, t.ExitCode, t.Reason))
		}
	}
	return strings.Join(out, "; ")
}

// endedAt is when the pod's last container ended, else fallback.
func endedAt(p *corev1.Pod, fallback time.Time) time.Time {
	var last time.Time
	for _, cs := range allStatuses(p) {
		if t := cs.State.Terminated; t != nil && t.FinishedAt.After(last) {
			last = t.FinishedAt.Time
		}
	}
	if last.IsZero() {
		return fallback
	}
	return last
}

func derefInt64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// byAge sorts pods oldest first, so that tries are numbered in order.
func byAge(pods []corev1.Pod) {
	slices.SortStableFunc(pods, func(a, b corev1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}
