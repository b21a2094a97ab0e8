package github

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	gh "github.com/google/go-github/v84/github"

	"github.com/sluice-ci/sluice/internal/backoff"
)

const (
	// minSecondaryWait is the first wait on a secondary rate limit that
	// says neither Retry-After nor a reset time; it doubles on each next one.
	minSecondaryWait = time.Minute
	// transientPause is the pause before a request that failed with a
	// server or connection error is tried again, after looking again.
	transientPause = 2 * time.Second
)

// call is the state of one public method call: the rate-limit waits it
// has made, which MaxWait bounds.
type call struct {
	p      *Publisher
	limits *backoff.Attempts
}

// newCall starts a call. Without a hint from GitHub, a rate limit is waited
// out for a minute, doubling each time.
func (p *Publisher) newCall() *call {
	maxWait := p.maxWait
	if maxWait == 0 {
		maxWait = -1 // waiting is disabled
	}
	return &call{p: p, limits: backoff.Policy{Initial: minSecondaryWait, Max: minSecondaryWait << 10,
		MaxWait: maxWait, Now: p.now, Sleep: p.sleep}.Start()}
}

// rateLimitedError is a rate limit that the call gave up waiting for.
type rateLimitedError struct {
	next, waited, max time.Duration
	err               error
}

func (e *rateLimitedError) Error() string {
	if e.max == 0 {
		return fmt.Sprintf("rate limited, GitHub asks to wait %s and waiting is disabled: %v", e.next, e.err)
	}
	return fmt.Sprintf("rate limited: GitHub asks to wait %s more, which would pass the %s allowed for rate-limit waits (%s waited already): %v",
		e.next, e.max, e.waited, e.err)
}

func (e *rateLimitedError) Unwrap() error { return e.err }

// do sends one request through f, waiting out rate limits: it repeats f
// only when GitHub said the request was limited (so it was not carried
// out). Writes are spaced by the publisher's WriteSpacing.
func (c *call) do(ctx context.Context, ep string, write bool, f func() (*gh.Response, error)) (*gh.Response, error) {
	var resp *gh.Response
	why := ""
	err := c.limits.Do(ctx, func() error {
		resp = nil
		if write {
			if err := c.p.space(ctx); err != nil {
				return err
			}
		}
		var err error
		resp, err = f()
		if write {
			c.p.lastWrite = c.p.now()
		}
		return err
	}, func(err error) backoff.Verdict {
		if !isRateLimited(err) {
			return backoff.Stop(err)
		}
		var hint time.Duration
		hint, why = c.limitWait(err)
		return backoff.RetryAfter(hint)
	}, func(_ error, wait time.Duration) {
		c.p.log.Warn("rate limited by GitHub; waiting", "endpoint", ep, "wait", wait, "reason", why)
	})
	var ex *backoff.Exhausted
	var in *backoff.Interrupted
	switch {
	case errors.As(err, &ex):
		return resp, &rateLimitedError{next: ex.Next, waited: ex.Waited, max: ex.MaxWait, err: ex.Err}
	case errors.As(err, &in):
		return resp, fmt.Errorf("waiting %s for a rate limit: %w", in.Wait, in.Cause)
	}
	return resp, err
}

// space waits until WriteSpacing has passed since the last write.
func (p *Publisher) space(ctx context.Context) error {
	if p.writeSpacing <= 0 || p.lastWrite.IsZero() {
		return nil
	}
	if d := p.writeSpacing - p.now().Sub(p.lastWrite); d > 0 {
		if err := p.sleep(ctx, d); err != nil {
			return fmt.Errorf("waiting %s between writes: %w", d, err)
		}
	}
	return nil
}

// limitWait is how long to wait on a rate-limited response, following
// GitHub's guidance: Retry-After if given; else, when no requests remain,
// until X-RateLimit-Reset; else 0, for the call's backoff: at least a
// minute, doubling each time.
func (c *call) limitWait(err error) (time.Duration, string) {
	resp := limitedResponse(err)
	now := c.p.now()
	if resp != nil {
		if d, ok := backoff.ParseRetryAfter(resp.Header, now); ok {
			return d, "retry-after"
		}
		if resp.Header.Get(gh.HeaderRateRemaining) == "0" {
			if d, ok := backoff.ParseReset(resp.Header.Get(gh.HeaderRateReset), now); ok {
				return d, "rate limit reset"
			}
		}
	}
	var rle *gh.RateLimitError
	if errors.As(err, &rle) && !rle.Rate.Reset.IsZero() {
		return backoff.AtLeastSecond(rle.Rate.Reset.Sub(now)), "rate limit reset"
	}
	return 0, "backoff"
}

// isRateLimited says whether err is GitHub limiting the request: go-github's
// rate-limit errors, any 429, or a 403 that says so.
func isRateLimited(err error) bool {
	var given *rateLimitedError
	if errors.As(err, &given) {
		return true
	}
	return limitedResponse(err) != nil
}

// limitedResponse returns the response of a rate-limited request, nil when
// err is not a rate limit.
func limitedResponse(err error) *http.Response {
	var rle *gh.RateLimitError
	if errors.As(err, &rle) {
		return orEmpty(rle.Response)
	}
	var are *gh.AbuseRateLimitError
	if errors.As(err, &are) {
		return orEmpty(are.Response)
	}
	var er *gh.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return nil
	}
	r := er.Response
	switch r.StatusCode {
	case http.StatusTooManyRequests:
		return r
	case http.StatusForbidden:
		if r.Header.Get("Retry-After") != "" || r.Header.Get(gh.HeaderRateRemaining) == "0" ||
			strings.Contains(strings.ToLower(er.Message), "rate limit") {
			return r
		}
	}
	return nil
}

func orEmpty(r *http.Response) *http.Response {
	if r == nil {
		return &http.Response{Header: http.Header{}}
	}
	return r
}

// retryTransient runs f, and once more after a pause when it failed with a
// server error (5xx) or a connection error. f must look before it writes
// (find, then update or create), so a write that went through the first
// time is not made twice.
func (c *call) retryTransient(ctx context.Context, what string, f func() error) error {
	a := backoff.Policy{Initial: transientPause, MaxAttempts: 2, Now: c.p.now, Sleep: c.p.sleep}.Start()
	err := a.Do(ctx, f, func(err error) backoff.Verdict {
		if transient(ctx, err) {
			return backoff.Retry()
		}
		return backoff.Stop(err)
	}, func(err error, _ time.Duration) {
		c.p.log.Warn("request failed; looking again before trying once more", "what", what, "error", err)
	})
	var ex *backoff.Exhausted
	var in *backoff.Interrupted
	switch {
	case errors.As(err, &ex):
		return ex.Err // the second attempt's
	case errors.As(err, &in):
		return in.Err
	}
	return err
}

// transient says whether err may pass by itself: a 5xx, or no response.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil || isRateLimited(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var er *gh.ErrorResponse
	if errors.As(err, &er) {
		return er.Response != nil && er.Response.StatusCode >= 500
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}
