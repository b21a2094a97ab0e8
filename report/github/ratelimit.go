package github

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v84/github"
)

const (
	// minSecondaryWait is the first wait on a secondary rate limit that
	// says neither Retry-After nor a reset time; it doubles on each next one.
	minSecondaryWait = time.Minute
	// transientPause is the pause before a request that failed with a
	// server or connection error is tried again, after looking again.
	transientPause = 2 * time.Second
)

// call is the state of one public method call: how long it has waited on
// rate limits so far.
type call struct {
	p        *Publisher
	waited   time.Duration
	backoffs int
}

func (p *Publisher) newCall() *call { return &call{p: p} }

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
	for {
		if write {
			if err := c.p.space(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := f()
		if write {
			c.p.lastWrite = c.p.now()
		}
		if err == nil || !isRateLimited(err) {
			return resp, err
		}
		wait, why := c.limitWait(err)
		if c.waited+wait > c.p.maxWait {
			return resp, &rateLimitedError{next: wait, waited: c.waited, max: c.p.maxWait, err: err}
		}
		c.p.log.Warn("rate limited by GitHub; waiting", "endpoint", ep, "wait", wait, "reason", why)
		if serr := c.p.sleep(ctx, wait); serr != nil {
			return resp, fmt.Errorf("waiting %s for a rate limit: %w", wait, serr)
		}
		c.waited += wait
	}
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
// until X-RateLimit-Reset; else at least a minute, doubling each time.
func (c *call) limitWait(err error) (time.Duration, string) {
	resp := limitedResponse(err)
	now := c.p.now()
	if resp != nil {
		if v := strings.TrimSpace(resp.Header.Get("Retry-After")); v != "" {
			if s, perr := strconv.ParseInt(v, 10, 64); perr == nil && s >= 0 {
				return atLeastSecond(time.Duration(s) * time.Second), "retry-after"
			}
			if t, perr := http.ParseTime(v); perr == nil {
				return atLeastSecond(t.Sub(now)), "retry-after"
			}
		}
		if resp.Header.Get(gh.HeaderRateRemaining) == "0" {
			if s, perr := strconv.ParseInt(resp.Header.Get(gh.HeaderRateReset), 10, 64); perr == nil && s > 0 {
				return atLeastSecond(time.Unix(s, 0).Sub(now)), "rate limit reset"
			}
		}
	}
	var rle *gh.RateLimitError
	if errors.As(err, &rle) && !rle.Rate.Reset.IsZero() {
		return atLeastSecond(rle.Rate.Reset.Sub(now)), "rate limit reset"
	}
	d := minSecondaryWait << min(c.backoffs, 10)
	c.backoffs++
	return d, "backoff"
}

func atLeastSecond(d time.Duration) time.Duration {
	return max(d, time.Second)
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
	err := f()
	if err == nil || !transient(ctx, err) {
		return err
	}
	c.p.log.Warn("request failed; looking again before trying once more", "what", what, "error", err)
	if serr := c.p.sleep(ctx, transientPause); serr != nil {
		return err
	}
	return f()
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
