package batch

import (
	"context"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
)

// BenchmarkStandIn measures what sluice adds to a node on Batch, against
// the Batch stand-in (internal/fakebatch) and fake-gcs-server, with the
// executor's default polling (the job every 5 s, its log every 1 s) unless
// SLUICE_BATCH_BENCH_POLL says otherwise. Per node it reports the medians of:
//   - first-log-ms: from Run to the step's first log line on this host;
//   - overhead-ms: the node's wall time minus the stand-in's own time for
//     the job (from its creation to its last status event: the three
//     containers and their start-up);
//   - cancel-ms: from cancelling a running node to Run's return, with the
//     job deleted.
//
// Run it with bench/batch.sh.
func BenchmarkStandIn(b *testing.B) {
	s := newStandIn(b, spec.BatchEnvironment{Zones: []string{"us-central1-a"}})
	if d, err := time.ParseDuration(benchPoll()); err == nil {
		s.exec.opts.Poll = d
	} else {
		s.exec.opts.Poll, s.exec.opts.LogPoll = 5*time.Second, time.Second
	}
	ctx := context.Background()
	var first, overhead, cancel []float64
	for i := 0; i < b.N; i++ {
		var once sync.Once
		var firstAt time.Time
		var out, progress lines
		job := s.job(b, "echo first line; sleep 1; echo done", "", &out, &progress)
		job.Stdout = runner.NewLineWriter(func(l string) { once.Do(func() { firstAt = time.Now() }); out.add(l) })
		start := time.Now()
		res, err := s.exec.Run(ctx, job)
		wall := time.Since(start)
		if err != nil || res.Reason != runner.ReasonCompleted {
			b.Fatalf("run: %v %s\n%s\n%s", err, res.Reason, out.text(), progress.text())
		}
		jobs := s.srv.Jobs()
		j := jobs[len(jobs)-1]
		evs := j.GetStatus().GetStatusEvents()
		own := evs[len(evs)-1].GetEventTime().AsTime().Sub(j.GetCreateTime().AsTime())
		first = append(first, ms(firstAt.Sub(start)))
		overhead = append(overhead, ms(wall-own))

		// Cancel a node once its step is running.
		cctx, stop := context.WithCancel(ctx)
		var c sync.Once
		job = s.job(b, "echo started; sleep 120", "", &out, &progress)
		var cancelled time.Time
		job.Stdout = runner.NewLineWriter(func(string) { c.Do(func() { cancelled = time.Now(); stop() }) })
		_, _ = s.exec.Run(cctx, job)
		cancel = append(cancel, ms(time.Since(cancelled)))
		stop()
		if n := len(s.srv.Jobs()); n != len(jobs) {
			b.Fatalf("%d jobs after the cancel, want %d: the cancelled one deleted", n, len(jobs))
		}
	}
	b.ReportMetric(median(first), "first-log-ms")
	b.ReportMetric(median(overhead), "overhead-ms")
	b.ReportMetric(median(cancel), "cancel-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func benchPoll() string { return getenv("SLUICE_BATCH_BENCH_POLL") }

var getenv = os.Getenv
