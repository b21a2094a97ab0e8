package backoff_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/backoff"
)

// clock is a fake clock whose sleeps pass at once and are recorded.
type clock struct {
	now   time.Time
	waits []time.Duration
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time { return c.now }

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *clock) policy(p backoff.Policy) backoff.Policy {
	p.Now, p.Sleep = c.Now, c.Sleep
	return p
}

var errFlaky = errors.New("flaky")

// failing returns an op that fails n times with err, then succeeds.
func failing(n int, err error) (func() error, *int) {
	calls := 0
	return func() error {
		calls++
		if calls <= n {
			return err
		}
		return nil
	}, &calls
}

func retryAll(error) backoff.Verdict { return backoff.Retry() }

func TestDelaysDoubleUpToMax(t *testing.T) {
	p := backoff.Policy{Initial: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, p.Delay(n))
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	if d := (&backoff.Policy{Initial: time.Second}).Delay(3); d != time.Second {
		t.Errorf("Max below Initial: delay %v, want Initial", d)
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	c := newClock()
	op, calls := failing(3, errFlaky)
	var told []time.Duration
	err := c.policy(backoff.Policy{Initial: time.Second, Max: time.Minute, MaxAttempts: 5}).Start().
		Do(context.Background(), op, retryAll, func(err error, d time.Duration) {
			if err != errFlaky {
				t.Errorf("onRetry got %v", err)
			}
			told = append(told, d)
		})
	if err != nil || *calls != 4 {
		t.Fatalf("err %v after %d calls, want nil after 4", err, *calls)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	if !slices.Equal(c.waits, want) || !slices.Equal(told, want) {
		t.Errorf("waits %v, told %v; want %v", c.waits, told, want)
	}
}

func TestDoStopsAtOnceWhenClassifySays(t *testing.T) {
	c := newClock()
	op, calls := failing(3, errFlaky)
	other := errors.New("explained")
	err := c.policy(backoff.Policy{Initial: time.Second}).Start().
		Do(context.Background(), op, func(error) backoff.Verdict { return backoff.Stop(other) }, nil)
	if err != other || *calls != 1 || len(c.waits) != 0 {
		t.Errorf("err %v after %d calls and waits %v; want the classifier's error at once", err, *calls, c.waits)
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		p         backoff.Policy
		hint      time.Duration
		limit     backoff.Limit
		waits     []time.Duration
		attempts  int
		errSuffix string
	}{
		{"attempts", backoff.Policy{Initial: time.Second, Max: time.Minute, MaxAttempts: 3}, 0, backoff.LimitAttempts,
			[]time.Duration{time.Second, 2 * time.Second}, 3, "(gave up after 3 attempts in 3s)"},
		{"one attempt", backoff.Policy{Initial: time.Second, MaxAttempts: 1}, 0, backoff.LimitAttempts,
			nil, 1, "(gave up after 1 attempt)"},
		// 1 + 2 + 4 = 7 s; the next wait, 8 s, would end at 15 s > 10 s.
		{"elapsed", backoff.Policy{Initial: time.Second, Max: time.Minute, MaxElapsed: 10 * time.Second}, 0, backoff.LimitElapsed,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, 4, "(gave up after 4 attempts in 7s)"},
		// 1 + 2 = 3 s waited; 4 s more would exceed 5 s.
		{"wait", backoff.Policy{Initial: time.Second, Max: time.Minute, MaxWait: 5 * time.Second}, 0, backoff.LimitWait,
			[]time.Duration{time.Second, 2 * time.Second}, 3, "(gave up: waiting 4s more would exceed the 5s allowed)"},
		{"no waiting", backoff.Policy{Initial: time.Second, MaxWait: -1}, 0, backoff.LimitWait,
			nil, 1, "(gave up: waiting 1s more would exceed the 0s allowed)"},
		// The server's hints are waited as they are, and count.
		{"hints", backoff.Policy{Initial: time.Second, MaxWait: time.Minute}, 25 * time.Second, backoff.LimitWait,
			[]time.Duration{25 * time.Second, 25 * time.Second}, 3, "(gave up: waiting 25s more would exceed the 1m0s allowed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			op, _ := failing(100, errFlaky)
			err := c.policy(tc.p).Start().Do(context.Background(), op,
				func(error) backoff.Verdict { return backoff.RetryAfter(tc.hint) }, nil)
			var ex *backoff.Exhausted
			if !errors.As(err, &ex) || !errors.Is(err, errFlaky) {
				t.Fatalf("err %v, want an *Exhausted wrapping the attempt's error", err)
			}
			if ex.Limit != tc.limit || ex.Attempts != tc.attempts || !slices.Equal(c.waits, tc.waits) {
				t.Errorf("limit %s after %d attempts and waits %v; want %s, %d, %v", ex.Limit, ex.Attempts, c.waits, tc.limit, tc.attempts, tc.waits)
			}
			if !strings.HasSuffix(err.Error(), tc.errSuffix) || !strings.HasPrefix(err.Error(), "flaky ") {
				t.Errorf("error %q, want flaky ... %s", err, tc.errSuffix)
			}
		})
	}
}

func TestJitterDrawsBetweenHalfAndAll(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, 500 * time.Millisecond}, {0.5, 750 * time.Millisecond}, {0.75, 875 * time.Millisecond}} {
		c := newClock()
		a := c.policy(backoff.Policy{Initial: time.Second, Jitter: func() float64 { return tc.r }}).Start()
		d, err := a.Next(errFlaky, 0)
		if err != nil || d != tc.want {
			t.Errorf("jitter %v: wait %v, %v; want %v", tc.r, d, err, tc.want)
		}
		// A hint from the server is not jittered.
		if d, _ := a.Next(errFlaky, 3*time.Second); d != 3*time.Second {
			t.Errorf("jitter %v: hinted wait %v, want 3s", tc.r, d)
		}
	}
}

func TestResetStartsTheCountAgainButKeepsTheWaiting(t *testing.T) {
	c := newClock()
	a := c.policy(backoff.Policy{Initial: time.Second, Max: time.Minute, MaxAttempts: 3, MaxWait: 10 * time.Second}).Start()
	ctx := context.Background()
	for i := range 2 {
		if err := a.Wait(ctx, errFlaky, 0); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	if a.Failures() != 2 || a.Waited() != 3*time.Second {
		t.Fatalf("failures %d, waited %v", a.Failures(), a.Waited())
	}
	a.Reset()
	if err := a.Wait(ctx, errFlaky, 0); err != nil || a.Failures() != 1 {
		t.Fatalf("after Reset: %v, %d failures", err, a.Failures())
	}
	// 1 + 2 + 1 = 4 s waited; then 2 s, 4 s would pass 10 s.
	if err := a.Wait(ctx, errFlaky, 0); err != nil {
		t.Fatal(err)
	}
	err := a.Wait(ctx, errFlaky, 4*time.Second+time.Millisecond)
	var ex *backoff.Exhausted
	if !errors.As(err, &ex) || ex.Limit != backoff.LimitAttempts {
		t.Errorf("err %v, want the attempts' limit", err)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second}; !slices.Equal(c.waits, want) {
		t.Errorf("waits %v, want %v", c.waits, want)
	}
}

func TestCanceledWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	op := func() error { cancel(); return errFlaky }
	err := backoff.Policy{Initial: time.Hour}.Start().Do(ctx, op, retryAll, nil)
	var in *backoff.Interrupted
	if !errors.As(err, &in) || !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) || in.Wait != time.Hour {
		t.Fatalf("err %v, want an *Interrupted with both errors", err)
	}
	if want := "context canceled while waiting to retry: flaky"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestParseRetryAfterAndReset(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", time.Second, true}, // at least a second
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), time.Second, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-3", 0, false},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if d, ok := backoff.ParseRetryAfter(h, now); d != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: %v, %v; want %v, %v", tc.header, d, ok, tc.want, tc.ok)
		}
	}
	if d, ok := backoff.ParseReset("1767323057", now); !ok || d != 12*time.Second {
		t.Errorf("reset: %v, %v", d, ok)
	}
	for _, v := range []string{"", "0", "x"} {
		if _, ok := backoff.ParseReset(v, now); ok {
			t.Errorf("reset %q parsed", v)
		}
	}
}

func TestAgainCountsItsOwnFailuresAgainstTheSameMaxWait(t *testing.T) {
	c := newClock()
	call := c.policy(backoff.Policy{Initial: time.Second, Max: time.Minute, MaxWait: 6 * time.Second}).Start()
	ctx := context.Background()
	first := call.Again()
	for range 2 {
		if err := first.Wait(ctx, errFlaky, 0); err != nil {
			t.Fatal(err)
		}
	}
	second := call.Again()
	if err := second.Wait(ctx, errFlaky, 0); err != nil || second.Failures() != 1 {
		t.Fatalf("second request: %v, %d failures", err, second.Failures())
	}
	// 1 + 2 + 1 = 4 s waited by the call; 2 s more is 6 s, allowed; then
	// 4 s more is not.
	if err := second.Wait(ctx, errFlaky, 0); err != nil {
		t.Fatal(err)
	}
	var ex *backoff.Exhausted
	if err := second.Wait(ctx, errFlaky, 0); !errors.As(err, &ex) || ex.Limit != backoff.LimitWait || ex.Waited != 6*time.Second {
		t.Errorf("err %v, want the call's MaxWait after 6s", err)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second}; !slices.Equal(c.waits, want) || call.Waited() != 6*time.Second {
		t.Errorf("waits %v (call waited %v), want %v", c.waits, call.Waited(), want)
	}
}
