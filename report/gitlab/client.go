package gitlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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

// client sends requests to GitLab's REST API and decodes the answers.
type client struct {
	base        *url.URL // the API, its escaped path without a trailing slash
	http        *http.Client
	tokenHeader string // "PRIVATE-TOKEN", "JOB-TOKEN", or "" for no token
	token       string
}

// newClient returns a client of the API at base (already checked to be an
// http(s) URL). A base path that does not end in /api/v4 gets it appended,
// so that the instance URL works too.
func newClient(base *url.URL, hc *http.Client, token string, jobToken bool) *client {
	b := *base
	b.RawQuery, b.Fragment, b.RawFragment = "", "", ""
	escaped := strings.TrimRight(b.EscapedPath(), "/")
	if !strings.HasSuffix(escaped, "/api/v4") {
		escaped += "/api/v4"
	}
	b.Path, b.RawPath = unescapedPath(escaped), escaped
	c := &client{base: &b, http: safeRedirects(hc), token: token}
	switch {
	case token == "":
	case jobToken:
		c.tokenHeader = "JOB-TOKEN"
	default:
		c.tokenHeader = "PRIVATE-TOKEN"
	}
	return c
}

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

// unescapedPath is an escaped path unescaped; it is only used as
// url.URL.Path next to RawPath, which is what is sent.
func unescapedPath(escaped string) string {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return escaped
	}
	return p
}

// segment escapes s as one path segment, the way GitLab's docs write a
// project path: "group/my.project" is group%2Fmy%2Eproject ("." escaped
// too, or GitLab would read a trailing ".project" as a format suffix).
func segment(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ".", "%2E")
}

// projectPath is the escaped path of project (an id or a path) in the API.
func projectPath(project string) string { return "/projects/" + segment(project) }

// do sends method on path (escaped, from the API's root, e.g. "/user") with
// query, and in as a JSON body unless nil; a 2xx answer's JSON body is
// decoded into out unless out is nil. It returns the answer's header. An
// answer with another status is an *APIError; a request that got no full
// answer fails with a *url.Error.
func (c *client) do(ctx context.Context, method, path string, query url.Values, in, out any) (http.Header, error) {
	u := *c.base
	u.RawPath = c.base.RawPath + path
	u.Path = unescapedPath(u.RawPath)
	u.RawQuery = query.Encode()
	shown := u.Redacted()

	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode the body of %s %s: %w", method, shown, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("make the request %s %s: %w", method, shown, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.tokenHeader != "" {
		req.Header.Set(c.tokenHeader, c.token)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err // a *url.Error, without the URL's password
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	limit := int64(maxAnswer)
	if !ok {
		limit = maxErrorAnswer
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		// The answer was cut short: as good as no answer.
		return nil, &url.Error{Op: opName(method), URL: shown, Err: fmt.Errorf("read the answer: %w", err)}
	}
	if !ok {
		return nil, &APIError{Method: method, URL: shown, StatusCode: resp.StatusCode,
			Message: answerMessage(resp, data), header: resp.Header}
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s %s: the answer is larger than %d MiB", method, shown, maxAnswer>>20)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode the answer (%d %s): %w", method, shown, resp.StatusCode, contentType(resp), err)
		}
	}
	return resp.Header, nil
}

// opName is a method as net/http names it in a *url.Error ("Get").
func opName(method string) string {
	if method == "" {
		return ""
	}
	return method[:1] + strings.ToLower(method[1:])
}

func contentType(resp *http.Response) string {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "no Content-Type"
}

// answerMessage is what an error answer says: GitLab's JSON error
// ({"message": ...}, {"error": ..., "error_description": ...}) flattened
// to one line, else the start of the body, else where a redirect that was
// not followed points.
func answerMessage(resp *http.Response, body []byte) string {
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
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		return fmt.Sprintf("%s: redirect to %s not followed", http.StatusText(resp.StatusCode), loc)
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
