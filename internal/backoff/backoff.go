// Package backoff is sluice's one retry loop: how long to wait before each
// retry, when to give up, and the waiting itself. The store's retry
// decorator (store/retry) and the GitHub and GitLab report clients use it;
// each decides for itself which failures are worth another attempt, with a
// classify function, and this package does the rest.
//
//	a := backoff.Policy{Initial: time.Second, Max: 30 * time.Second, MaxAttempts: 5}.Start()
//	err := a.Do(ctx, send, func(err error) backoff.Verdict {
//		if d, ok := retryAfter(err); ok {
//			return backoff.RetryAfter(d) // what the server asked for
//		}
//		if transient(err) {
//			return backoff.Retry()
//		}
//		return backoff.Stop(err)
//	}, nil)
//
// The delay before retry n (from 1) is Initial·2^(n-1), at most Max,
// jittered when the policy has a source of jitter. An operation gives up
// when the next attempt would be past MaxAttempts, or its wait would end
// past MaxElapsed since the start, or the time waited in all would pass
// MaxWait. The clock and the sleep are fields, so tests run without waiting.
package backoff

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy says how long to wait between attempts and when to give up. The
// zero Policy retries at once and forever; set at least one bound.
type Policy struct {
	// Initial is the delay before the first retry; it doubles for each
	// further one, up to Max (when Max < Initial, Initial is the cap).
	Initial, Max time.Duration
	// Jitter, when not nil, returns numbers in [0, 1): each delay d is then
	// drawn between d/2 and d. nil means no jitter.
	Jitter func() float64
	// MaxAttempts bounds the attempts of an operation, the first included
	// (0: no bound; 1: no retries).
	MaxAttempts int
	// MaxElapsed bounds the time from the start of an operation (or its last
	// Reset) to the end of a wait: no wait is begun that would end later
	// (0: no bound).
	MaxElapsed time.Duration
	// MaxWait bounds the time an operation spends waiting in all, across
	// Reset (0: no bound; negative: no waiting, so no retries).
	MaxWait time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Sleep waits for d, and returns ctx.Err() early once ctx is done
	// (nil: Sleep).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Delay is the delay before retry n (from 1), before jitter.
func (p *Policy) Delay(n int) time.Duration {
	d, top := max(p.Initial, 0), max(p.Max, p.Initial, 0)
	for i := 1; i < n && d < top; i++ {
		d *= 2
	}
	return min(d, top)
}

// Start begins an operation under p. p is copied.
func (p Policy) Start() *Attempts {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Sleep == nil {
		p.Sleep = Sleep
	}
	return &Attempts{p: p, start: p.Now(), waited: new(time.Duration)}
}

// Attempts is one operation under a Policy: the attempts that failed in a
// row, and the time waited. It is not safe for concurrent use.
type Attempts struct {
	p      Policy
	n      int            // failed attempts in a row
	start  time.Time      // of the operation, or of its last Reset
	waited *time.Duration // shared with the Attempts made by Again
}

// Again begins another request of the same operation (a call that makes
// several): its failures are counted from none, and its waits count
// against the same MaxWait as a's.
func (a *Attempts) Again() *Attempts {
	return &Attempts{p: a.p, start: a.p.Now(), waited: a.waited}
}

// Reset starts the count of failures in a row again, and the elapsed time
// (after progress: a byte read, an item listed, or a new request of the
// same call). The time waited is kept: MaxWait bounds the whole operation.
// (For several requests of one operation, see Again.)
func (a *Attempts) Reset() { a.n, a.start = 0, a.p.Now() }

// Failures is the number of attempts that failed in a row.
func (a *Attempts) Failures() int { return a.n }

// Waited is the time waited so far.
func (a *Attempts) Waited() time.Duration { return *a.waited }

// Next counts an attempt that failed with err and returns the wait before
// the next one: hint when it is > 0 (what the server asked for, not
// jittered), else the policy's delay. When the policy allows no further
// attempt it returns an *Exhausted error that wraps err.
func (a *Attempts) Next(err error, hint time.Duration) (time.Duration, error) {
	a.n++
	elapsed := a.p.Now().Sub(a.start)
	d := hint
	if d <= 0 {
		d = a.p.Delay(a.n)
		if a.p.Jitter != nil {
			d = d/2 + time.Duration(a.p.Jitter()*float64(d-d/2))
		}
	}
	ex := &Exhausted{Err: err, Attempts: a.n, Elapsed: elapsed, Waited: *a.waited, Next: d}
	switch {
	case a.p.MaxAttempts > 0 && a.n >= a.p.MaxAttempts:
		ex.Limit = LimitAttempts
	case a.p.MaxElapsed > 0 && elapsed+d > a.p.MaxElapsed:
		ex.Limit = LimitElapsed
	case a.p.MaxWait < 0 || a.p.MaxWait > 0 && *a.waited+d > a.p.MaxWait:
		ex.Limit, ex.MaxWait = LimitWait, max(a.p.MaxWait, 0)
	default:
		return d, nil
	}
	return 0, ex
}

// Sleep waits d, which Next returned, and counts it as waited. If ctx is
// done first, it returns an *Interrupted error that wraps ctx.Err() and
// cause (the failure that was to be retried).
func (a *Attempts) Sleep(ctx context.Context, d time.Duration, cause error) error {
	if err := a.p.Sleep(ctx, d); err != nil {
		return &Interrupted{Cause: err, Err: cause, Wait: d}
	}
	*a.waited += d
	return nil
}

// Wait is Next and then Sleep.
func (a *Attempts) Wait(ctx context.Context, err error, hint time.Duration) error {
	d, xerr := a.Next(err, hint)
	if xerr != nil {
		return xerr
	}
	return a.Sleep(ctx, d, err)
}

// Verdict is what a classify function says of a failed attempt.
type Verdict struct {
	retry bool
	hint  time.Duration
	err   error
}

// Stop says not to retry: Do returns err (which may be the attempt's error,
// or another that explains it).
func Stop(err error) Verdict { return Verdict{err: err} }

// Retry says to retry after the policy's delay.
func Retry() Verdict { return Verdict{retry: true} }

// RetryAfter says to retry after d, which the server asked for (Retry-After,
// a rate limit's reset); d <= 0 means the policy's delay.
func RetryAfter(d time.Duration) Verdict { return Verdict{retry: true, hint: d} }

// Do runs op until it returns nil, or classify says to stop, or the policy
// gives up (*Exhausted), or ctx is done while waiting (*Interrupted).
// classify sees every error of op; before each wait, onRetry (when not nil)
// is told the error and the wait.
func (a *Attempts) Do(ctx context.Context, op func() error, classify func(error) Verdict, onRetry func(err error, wait time.Duration)) error {
	for {
		err := op()
		if err == nil {
			return nil
		}
		v := classify(err)
		if !v.retry {
			return v.err
		}
		d, xerr := a.Next(err, v.hint)
		if xerr != nil {
			return xerr
		}
		if onRetry != nil {
			onRetry(err, d)
		}
		if serr := a.Sleep(ctx, d, err); serr != nil {
			return serr
		}
	}
}

// Limit names the bound of a Policy that an operation reached.
type Limit string

// The bounds.
const (
	LimitAttempts Limit = "attempts"
	LimitElapsed  Limit = "elapsed"
	LimitWait     Limit = "wait"
)

// Exhausted is the error of an operation that the policy gave up on. It
// wraps the last attempt's error.
type Exhausted struct {
	Err      error         // the last attempt's error
	Limit    Limit         // the bound reached
	Attempts int           // the attempts that failed in a row
	Elapsed  time.Duration // since the start, or the last Reset
	Waited   time.Duration // in all
	Next     time.Duration // the wait that was not made
	MaxWait  time.Duration // the policy's, when Limit is LimitWait
}

// Error is the last error and how often it was tried: "... (gave up after
// 3 attempts in 1.5s)"; with LimitWait, "... (gave up: waiting 4s more would
// exceed the 5s allowed)".
func (e *Exhausted) Error() string {
	switch {
	case e.Limit == LimitWait:
		return fmt.Sprintf("%v (gave up: waiting %s more would exceed the %s allowed)", e.Err, e.Next, e.MaxWait)
	case e.Attempts == 1:
		return fmt.Sprintf("%v (gave up after 1 attempt)", e.Err)
	}
	return fmt.Sprintf("%v (gave up after %d attempts in %s)", e.Err, e.Attempts, e.Elapsed.Round(time.Millisecond))
}

func (e *Exhausted) Unwrap() error { return e.Err }

// Interrupted is the error of an operation whose context was done while it
// waited to retry. errors.Is sees both the context's error and the
// attempt's.
type Interrupted struct {
	Cause error         // the context's error
	Err   error         // the failure that was to be retried
	Wait  time.Duration // the wait that was cut short
}

// Error is "context canceled while waiting to retry: ...".
func (e *Interrupted) Error() string {
	return fmt.Sprintf("%v while waiting to retry: %v", e.Cause, e.Err)
}

func (e *Interrupted) Unwrap() []error { return []error{e.Cause, e.Err} }

// Sleep waits for d or until ctx is done, and then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParseRetryAfter parses the Retry-After header of h (seconds, or an HTTP date
// measured from now) and returns the wait it asks for, at least a second.
// ok is false when h has no Retry-After that parses.
func ParseRetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return AtLeastSecond(time.Duration(s) * time.Second), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return AtLeastSecond(t.Sub(now)), true
	}
	return 0, false
}

// ParseReset parses a rate limit's reset time, a Unix time in seconds, and
// returns the wait until it from now, at least a second. ok is false when v
// is not a positive integer.
func ParseReset(v string, now time.Time) (d time.Duration, ok bool) {
	s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || s <= 0 {
		return 0, false
	}
	return AtLeastSecond(time.Unix(s, 0).Sub(now)), true
}

// AtLeastSecond rounds a wait a server asked for up to at least a second,
// so that a reset that has just passed (or a clock a little ahead) does not
// become a busy loop.
func AtLeastSecond(d time.Duration) time.Duration { return max(d, time.Second) }
