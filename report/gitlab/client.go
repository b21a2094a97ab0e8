package gitlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// userAgent is the User-Agent header of every request.
const userAgent = "sluice (+https://github.com/sluice-ci/sluice)"

// Limits on what is read of an answer: a page of 100 notes fits in
// maxAnswer many times over; an error body is only shown, cut short.
const (
	maxAnswer      = 64 << 20
	maxErrorAnswer = 64 << 10
	maxMessage     = 500 // runes of an error message that is not JSON
)

// APIError is an answer of GitLab's REST API with a status other than 2xx.
// errors.Is(err, &APIError{StatusCode: code}) reports whether err wraps an
// APIError with that status code.
type APIError struct {
	// Method and URL are the request's; the URL has no credentials.
	Method, URL string
	// StatusCode is the HTTP status GitLab answered.
	StatusCode int
	// Message is what the answer's body says: its "message" (flattened
	// when it lists errors per field), "error" and "error_description",
	// or the start of the body when it is not JSON.
	Message string

	header http.Header // the answer's, for Retry-After and RateLimit-Reset
}

// Error is "METHOD URL: CODE MESSAGE".
func (e *APIError) Error() string {
	msg := e.Message
	switch code := strconv.Itoa(e.StatusCode); {
	case msg == "":
		msg = strings.TrimSpace(code + " " + http.StatusText(e.StatusCode))
	case msg != code && !strings.HasPrefix(msg, code+" "):
		msg = code + " " + msg
	}
	return fmt.Sprintf("%s %s: %s", e.Method, e.URL, msg)
}

// Is matches an *APIError target with the same non-zero StatusCode.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t != nil && t.StatusCode != 0 && t.StatusCode == e.StatusCode
}

// newAPI returns a client of GitLab's REST API at base (already checked to
// be an http(s) URL), made with GitLab's client library. A base path that
// does not end in /api/v4 gets it appended, so that the instance URL works
// too. The library's own retries and rate limiter are off: the publisher
// retries through internal/backoff, as it decides. The answers pass
// through inspect, which keeps for the publisher's errors what the library
// leaves out (the body of a 404, the answer's header).
func newAPI(base *url.URL, hc *http.Client, token string, jobToken bool) (*gl.Client, error) {
	b := *base
	b.RawQuery, b.Fragment, b.RawFragment = "", "", ""
	opts := []gl.ClientOptionFunc{
		gl.WithBaseURL(b.String()),
		gl.WithHTTPClient(safeRedirects(hc)),
		gl.WithInterceptor(inspect),
		gl.WithoutRetries(),
		gl.WithCustomLimiter(unlimited{}),
		gl.WithUserAgent(userAgent),
		gl.WithURLWarningLogger(slog.New(slog.DiscardHandler)),
	}
	if jobToken {
		return gl.NewJobClient(token, opts...)
	}
	return gl.NewClient(token, opts...)
}

// unlimited is a rate limiter that does not limit: GitLab's answers say
// when to wait (429, Retry-After), and the publisher waits then.
type unlimited struct{}

func (unlimited) Wait(ctx context.Context) error { return ctx.Err() }

// safeRedirects returns a copy of hc that does not follow a redirect to
// another scheme or host, where the token header would go along: the
// redirect is then the answer, an error.
func safeRedirects(hc *http.Client) *http.Client {
	c := *hc
	next := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && (req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host) {
			return http.ErrUseLastResponse
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// exchange is what inspect saw of one request and its answer.
type exchange struct {
	method, url string      // the request's; the URL without credentials
	status      int         // 0 until a whole answer was read
	header      http.Header // the answer's
	body        []byte      // of an answer that is not 2xx, cut to maxErrorAnswer
	tooLarge    bool        // a 2xx answer longer than maxAnswer
}

type exchangeKey struct{}

// inspect is the transport under the library: it reads each answer whole
// (a body cut short is a transport error, as good as no answer), within the
// limits, notes it in the request's exchange, and hands the library the
// bytes it read. It sends no token header when there is no token.
func inspect(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		for _, h := range []string{gl.AccessTokenHeaderName, gl.JobTokenHeaderName} {
			if v, ok := req.Header[http.CanonicalHeaderKey(h)]; ok && len(v) == 1 && v[0] == "" {
				req = req.Clone(req.Context())
				req.Header.Del(h)
			}
		}
		ex, _ := req.Context().Value(exchangeKey{}).(*exchange)
		if ex != nil && ex.method == "" {
			ex.method, ex.url = req.Method, req.URL.Redacted()
		}
		resp, err := next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		limit := int64(maxAnswer)
		if !ok {
			limit = maxErrorAnswer
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read the answer: %w", err)
		}
		large := int64(len(data)) > limit
		switch {
		case large && ok:
			data = []byte("null")
		case large:
			data = data[:limit]
		}
		resp.Body = io.NopCloser(bytes.NewReader(data))
		if ex != nil {
			ex.status, ex.header, ex.tooLarge, ex.body = resp.StatusCode, resp.Header, large && ok, nil
			if !ok {
				ex.body = data
			}
		}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// send runs one request of the library: f with a request option that
// carries ctx. It returns the answer's header. An answer with a status
// other than 2xx is an *APIError; a request that got no full answer fails
// with a *url.Error (or the context's error).
func send(ctx context.Context, f func(gl.RequestOptionFunc) (*gl.Response, error)) (http.Header, error) {
	ex := &exchange{}
	_, err := f(gl.WithContext(context.WithValue(ctx, exchangeKey{}, ex)))
	switch {
	case ex.status == 0:
		if err == nil {
			err = errors.New("no answer")
		}
		return nil, err
	case ex.status < 200 || ex.status >= 300:
		return nil, &APIError{Method: ex.method, URL: ex.url, StatusCode: ex.status,
			Message: answerMessage(ex.status, ex.header, ex.body), header: ex.header}
	case ex.tooLarge:
		return nil, fmt.Errorf("%s %s: the answer is larger than %d MiB", ex.method, ex.url, maxAnswer>>20)
	case err != nil:
		return nil, fmt.Errorf("%s %s: decode the answer (%d %s): %w", ex.method, ex.url, ex.status, contentType(ex.header), err)
	}
	return ex.header, nil
}

func contentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return ct
	}
	return "no Content-Type"
}

// answerMessage is what an error answer says: GitLab's JSON error
// ({"message": ...}, {"error": ..., "error_description": ...}) flattened
// to one line, else the start of the body, else where a redirect that was
// not followed points.
func answerMessage(status int, header http.Header, body []byte) string {
	var e struct {
		Message     any    `json:"message"`
		Error       any    `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) == nil {
		var parts []string
		for _, s := range []string{flatten(e.Message), flatten(e.Error), e.Description} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, ": ")
		}
	}
	if loc := header.Get("Location"); status >= 300 && status < 400 && loc != "" {
		return fmt.Sprintf("%s: redirect to %s not followed", http.StatusText(status), loc)
	}
	text := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "\uFFFD")), " ")
	if utf8.RuneCountInString(text) > maxMessage {
		text = cutRunes(text, maxMessage) + "..."
	}
	return text
}

// flatten writes a decoded JSON error value on one line: strings as they
// are, lists joined by ", ", objects as "key: value" sorted by key and
// joined by "; " (GitLab's validation errors, {"body": ["is too long"]}).
func flatten(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		parts := make([]string, 0, len(x))
		for _, item := range x {
			if s := flatten(item); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			if s := flatten(x[k]); s != "" {
				parts = append(parts, k+": "+s)
			} else {
				parts = append(parts, k)
			}
		}
		return strings.Join(parts, "; ")
	}
	return fmt.Sprint(v)
}
