package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/sluice-ci/sluice/internal/backoff"
)

// Backoff without a hint from GitLab: 1 s, 2 s, 4 s, ... up to maxBackoff.
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
)

// call is one Publish or Labels call: each of its requests counts its own
// failures (Again), and all share one budget of waiting, Config.MaxWait.
type call struct {
	p *Publisher
	a *backoff.Attempts
}

func (p *Publisher) newCall() *call {
	return &call{p: p, a: backoff.Policy{Initial: firstBackoff, Max: maxBackoff, MaxWait: p.cfg.MaxWait, Sleep: p.sleep}.Start()}
}

// read sends a GET request of the library, f (see send), and returns the
// answer's header. It retries on 429, 5xx and transport errors. what
// describes the request for errors ("list the notes of ...").
func (c *call) read(ctx context.Context, what string, f func(gl.RequestOptionFunc) (*gl.Response, error)) (http.Header, error) {
	a := c.a.Again()
	for {
		header, err := send(ctx, f)
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
		if err := c.wait(ctx, a, err, fmt.Errorf("%s: %w", what, err)); err != nil {
			return nil, err
		}
	}
}

// wait sleeps before the next attempt a of a request that failed with cause;
// failed is the error returned when the budget is spent. It honours
// Retry-After and RateLimit-Reset, else backs off exponentially: 1 s, 2 s,
// 4 s, ... up to maxBackoff, counted from the request's first failure.
func (c *call) wait(ctx context.Context, a *backoff.Attempts, cause, failed error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w (%w)", failed, err)
	}
	d, err := a.Next(cause, hint(cause))
	var ex *backoff.Exhausted
	if errors.As(err, &ex) {
		return fmt.Errorf("%w (gave up: waiting %s more would exceed the %s allowed)", failed, ex.Next, ex.MaxWait)
	}
	c.p.log.Info("gitlab: waiting before retrying", "wait", d)
	var in *backoff.Interrupted
	if err := a.Sleep(ctx, d, cause); errors.As(err, &in) {
		return fmt.Errorf("%w (while waiting to retry: %w)", failed, in.Cause)
	}
	return nil
}

// hint is the wait GitLab asked for: Retry-After in seconds or as a date,
// else on a 429 RateLimit-Reset as a Unix time, both measured from the
// answer's Date; 0 when it did not ask.
func hint(err error) time.Duration {
	var ae *APIError
	if !errors.As(err, &ae) || ae.header == nil {
		return 0
	}
	h := ae.header
	now := time.Now()
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		now = t
	}
	if d, ok := backoff.ParseRetryAfter(h, now); ok {
		return d
	}
	if ae.StatusCode == http.StatusTooManyRequests {
		if d, ok := backoff.ParseReset(h.Get("RateLimit-Reset"), now); ok {
			return d
		}
	}
	return 0
}

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
