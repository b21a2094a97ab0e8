package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Backoff without a hint from GitLab: 1 s, 2 s, 4 s, ... up to maxBackoff.
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
)

// call is one Publish or Labels call: its retries share one budget of
// waiting, Config.MaxWait.
type call struct {
	p      *Publisher
	waited time.Duration
}

func (p *Publisher) newCall() *call { return &call{p: p} }

// read runs GET path?query, decoding the answer into out, and returns the
// answer's header. It retries on 429, 5xx and transport errors. what
// describes the request for errors ("list the notes of ...").
func (c *call) read(ctx context.Context, what, path string, query url.Values, out any) (http.Header, error) {
	for attempt := 0; ; attempt++ {
		header, err := c.p.api.do(ctx, http.MethodGet, path, query, nil, out)
		if err == nil {
			return header, nil
		}
		if !transient(err) {
			if statusCode(err) == http.StatusUnauthorized {
				return nil, fmt.Errorf("%s: GitLab rejected the token as invalid, expired or revoked: %w", what, err)
			}
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		c.p.log.Warn("gitlab: request failed; retrying", "request", what, "error", c.p.redactString(err.Error()))
		if err := c.wait(ctx, attempt, err, fmt.Errorf("%s: %w", what, err)); err != nil {
			return nil, err
		}
	}
}

// wait sleeps before retry number attempt+1 of a request that failed with
// cause; failed is the error returned when the budget is spent. It
// honours Retry-After and RateLimit-Reset, else backs off exponentially.
func (c *call) wait(ctx context.Context, attempt int, cause, failed error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w (%w)", failed, err)
	}
	d := backoff(attempt, cause)
	if c.p.cfg.MaxWait < 0 || c.waited+d > c.p.cfg.MaxWait {
		return fmt.Errorf("%w (gave up: waiting %s more would exceed the %s allowed)", failed, d, max(c.p.cfg.MaxWait, 0))
	}
	c.p.log.Info("gitlab: waiting before retrying", "wait", d)
	if err := c.sleep(ctx, d); err != nil {
		return fmt.Errorf("%w (while waiting to retry: %w)", failed, err)
	}
	c.waited += d
	return nil
}

func (c *call) sleep(ctx context.Context, d time.Duration) error { return c.p.sleep(ctx, d) }

// backoff is the wait before retry number attempt+1: what GitLab asked for
// (Retry-After in seconds or as a date, else RateLimit-Reset as a Unix time,
// both measured from the answer's Date), else 1 s doubling up to 30 s.
func backoff(attempt int, err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.header != nil {
		h := ae.header
		now := time.Now()
		if t, err := http.ParseTime(h.Get("Date")); err == nil {
			now = t
		}
		if v := h.Get("Retry-After"); v != "" {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
				return atLeastOne(time.Duration(s) * time.Second)
			}
			if t, err := http.ParseTime(v); err == nil {
				return atLeastOne(t.Sub(now))
			}
		}
		if v := h.Get("RateLimit-Reset"); v != "" && ae.StatusCode == http.StatusTooManyRequests {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
				return atLeastOne(time.Unix(s, 0).Sub(now))
			}
		}
	}
	d := firstBackoff
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// atLeastOne rounds a wait GitLab asked for up to at least a second.
func atLeastOne(d time.Duration) time.Duration { return max(d, time.Second) }

// transient reports whether a request may succeed when sent again: GitLab
// answered 429 or 5xx (501 excepted), or the request did not get an answer.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	code := statusCode(err)
	switch {
	case code == http.StatusTooManyRequests:
		return true
	case code >= 500 && code != http.StatusNotImplemented:
		return true
	case code == 0:
		var ue *url.Error
		return errors.As(err, &ue)
	}
	return false
}

// statusCode is the HTTP status of a failed request, 0 when there was no
// answer (or it was a 2xx that could not be decoded).
func statusCode(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
