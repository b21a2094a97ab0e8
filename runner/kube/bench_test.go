package kube

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	watchapi "k8s.io/apimachinery/pkg/watch"

	"github.com/sluice-ci/sluice/internal/kubetest"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
)

// BenchmarkCluster measures what sluice adds to a node on Kubernetes,
// against kubetest's control plane, with the executor's default log poll
// (1 s). Per node it reports the medians of:
//   - overhead-ms: on a kwok node, the node's wall time in Run minus the
//     cluster's own time for its Job, from the Job's creation to its
//     Complete condition as a watch of the API server sees them (the spec
//     upload, the watches' catching up, reading the exit record and log);
//   - cancel-kwok-ms: from cancelling a running node on a kwok node to
//     Run's return, the Job and its pod gone (foreground deletion);
//   - cancel-docker-ms: the same on the Docker node stand-in, where the
//     agent really runs and is stopped.
//
// On kwok nothing runs the agent: the benchmark plays it (playAgent), as
// the tests do. Run it with bench/kube.sh.
func BenchmarkCluster(b *testing.B) {
	x := startCluster(b)
	kw := x.options(kwok(poolGPU, spec.KubeEnvironment{GPUs: 1, Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}}))
	kw.LogPoll = 0
	ekw, err := New(kw)
	if err != nil {
		b.Fatal(err)
	}
	dk := x.options(spec.KubeEnvironment{NodeSelector: map[string]string{kubetest.NodeTypeLabel: "docker"}})
	dk.LogPoll = 0
	edk, err := New(dk)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var overhead, cancelKwok, cancelDocker []float64
	for i := 0; i < b.N; i++ {
		var out, progress lines
		job := x.kwokJob(&out, &progress)
		x.playAgent(b, job, func(n int, p *corev1.Pod) { x.finishPod(b, job, p, 0, "trained") })
		own := x.jobTime(b, job.RunID)
		start := time.Now()
		res, err := ekw.Run(ctx, job)
		wall := time.Since(start)
		if err != nil || res.Reason != runner.ReasonCompleted {
			b.Fatalf("run: %v %s\n%s", err, res.Reason, progress.text())
		}
		overhead = append(overhead, ms(wall-own()))

		cancelKwok = append(cancelKwok, x.cancelTime(b, ekw, x.kwokJob(&out, &progress)))
		dj := x.kwokJob(&out, &progress)
		dj.Command = "echo started; sleep 120"
		cancelDocker = append(cancelDocker, x.cancelTime(b, edk, dj))
	}
	b.ReportMetric(median(overhead), "overhead-ms")
	b.ReportMetric(median(cancelKwok), "cancel-kwok-ms")
	b.ReportMetric(median(cancelDocker), "cancel-docker-ms")
}

// jobTime watches the run's Job from before its creation; the function it
// returns waits for the Job's Complete condition and says how long it
// took from the Job's ADDED event.
func (x *cluster) jobTime(b *testing.B, runID string) func() time.Duration {
	w, err := x.cs.BatchV1().Jobs("default").Watch(context.Background(), metav1.ListOptions{LabelSelector: LabelRun + "=" + labelValue(runID)})
	if err != nil {
		b.Fatal(err)
	}
	var added, complete time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok {
				continue
			}
			if ev.Type == watchapi.Added && added.IsZero() {
				added = time.Now()
			}
			if c := finished(j); c != nil && c.Type == batchv1.JobComplete {
				complete = time.Now()
				return
			}
		}
	}()
	return func() time.Duration {
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatal("the Job's completion was not seen within a minute")
		}
		w.Stop()
		return complete.Sub(added)
	}
}

// cancelTime runs job, cancels it once its pod runs (on kwok) or its step
// printed (on the Docker node), and says how long Run took to return from
// the cancel; the Job and its pods must be gone by then.
func (x *cluster) cancelTime(b *testing.B, e *Executor, job runner.Job) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var at time.Time
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		if at.IsZero() {
			at = time.Now()
			cancel()
		}
	}
	if e.cfg.NodeSelector["pool"] != "" {
		x.playAgent(b, job, func(int, *corev1.Pod) { stop() })
	} else {
		job.Stdout = runner.NewLineWriter(func(string) { stop() })
	}
	res, _ := e.Run(ctx, job)
	returned := time.Now()
	if res.Reason != runner.ReasonCancelled {
		b.Fatalf("reason %s, want cancelled", res.Reason)
	}
	x.gone(b, job.RunID)
	mu.Lock()
	defer mu.Unlock()
	return ms(returned.Sub(at))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
