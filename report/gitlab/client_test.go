package gitlab

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRequestHeaders(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t)
	if _, err := p.Publish(context.Background(), publication("report", true)); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		if got := r.Header.Get("User-Agent"); !strings.HasPrefix(got, "sluice") {
			t.Errorf("%s: User-Agent %q", r, got)
		}
		if got := r.Header.Get("Accept"); got != "application/json" {
			t.Errorf("%s: Accept %q", r, got)
		}
		if ct := r.Header.Get("Content-Type"); (r.Method == http.MethodGet) != (ct == "") {
			t.Errorf("%s: Content-Type %q", r, ct)
		}
	}
}

func TestAPIURLWithoutAPIPath(t *testing.T) {
	for _, suffix := range []string{"", "/", "/api/v4/"} {
		f := newFake(t)
		p, _ := f.publisher(t, func(c *Config) { c.APIURL = f.srv.URL + suffix })
		labels, err := p.Labels(context.Background(), testIID)
		if err != nil {
			t.Fatalf("API URL %q: %v", suffix, err)
		}
		if !slices.Equal(labels, []string{"ml", "sluice:baseline"}) {
			t.Errorf("API URL %q: labels %q", suffix, labels)
		}
		checkLines(t, "labels with API URL "+suffix, f.requestLines(), []string{reqMR})
	}
}

func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code       int
		want       string // the APIError's Message
	}{
		{"message", `{"message":"403 Forbidden"}`, http.StatusForbidden, "403 Forbidden"},
		{"error", `{"error":"insufficient_scope","error_description":"The request requires higher privileges."}`,
			http.StatusForbidden, "insufficient_scope: The request requires higher privileges."},
		{"validation", `{"message":{"note":["is too long (maximum is 1000000 characters)"],"base":["x","y"]}}`,
			http.StatusBadRequest, "base: x, y; note: is too long (maximum is 1000000 characters)"},
		{"html", "<html>\n<body>  bad\tgateway </body></html>", http.StatusBadRequest, "<html> <body> bad gateway </body></html>"},
		{"empty", "", http.StatusConflict, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on(http.MethodPost, pathNotes, answer(tc.code, tc.body))
			p, _ := f.publisher(t)
			_, err := p.Publish(context.Background(), publication("report", true))
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want an *APIError", err)
			}
			if ae.StatusCode != tc.code || ae.Message != tc.want || ae.Method != http.MethodPost ||
				!strings.HasSuffix(ae.URL, pathNotes) {
				t.Errorf("error %+v, want %d %q on POST %s", ae, tc.code, tc.want, pathNotes)
			}
			if !errors.Is(err, &APIError{StatusCode: tc.code}) || errors.Is(err, &APIError{StatusCode: 500}) {
				t.Errorf("errors.Is does not match %v by status code", err)
			}
			if !strings.Contains(err.Error(), "group/project") || !strings.Contains(err.Error(), ae.Error()) {
				t.Errorf("error %q does not name the project and the answer", err)
			}
		})
	}
	if got := (&APIError{Method: "GET", URL: "https://x/api/v4/user", StatusCode: 502}).Error(); got != "GET https://x/api/v4/user: 502 Bad Gateway" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&APIError{Method: "PUT", URL: "u", StatusCode: 400, Message: "Cannot transition"}).Error(); got != "PUT u: 400 Cannot transition" {
		t.Errorf("Error() = %q", got)
	}
}

func TestDroppedConnectionOnPostIsRetriedAfterListing(t *testing.T) {
	f := newFake(t)
	f.on(http.MethodPost, pathNotes, func(_ *fakeGitLab, w http.ResponseWriter, _ *http.Request) bool {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return false
		}
		_ = conn.Close()
		return true
	})
	p, sl := f.publisher(t)
	posted, err := p.Publish(context.Background(), publication("report", true))
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqList(1), reqPostNote, reqPostState})
	if n := len(f.noteBodies()); n != 1 || posted.Comment != "created" {
		t.Errorf("%d notes, comment %q; want 1 created", n, posted.Comment)
	}
	if got := sl.got(); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Errorf("waits %v", got)
	}
}

func TestCanceledContextIsNotRetried(t *testing.T) {
	f := newFake(t)
	p, sl := f.publisher(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Publish(ctx, publication("report", true))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if len(sl.got()) != 0 || len(f.requests()) != 0 {
		t.Errorf("waits %v, requests %v after cancel", sl.got(), f.requestLines())
	}
}

func TestRedirectToAnotherHostIsNotFollowed(t *testing.T) {
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = append(leaked, r.Header.Get("PRIVATE-TOKEN"))
		writeJSON(w, http.StatusOK, map[string]any{"id": meID})
	}))
	t.Cleanup(other.Close)
	f := newFake(t)
	f.on(http.MethodGet, pathMR, func(_ *fakeGitLab, w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, other.URL+"/api/v4/elsewhere", http.StatusFound)
		return true
	})
	p, sl := f.publisher(t)
	_, err := p.Labels(context.Background(), testIID)
	if err == nil || !strings.Contains(err.Error(), "302") || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("error %v, want the 302 not followed", err)
	}
	if len(leaked) != 0 || len(sl.got()) != 0 {
		t.Errorf("followed the redirect (tokens %q) or retried (%v)", leaked, sl.got())
	}
}

func TestUndecodableAnswerIsAnError(t *testing.T) {
	f := newFake(t)
	f.on(http.MethodGet, "/api/v4/user", answer(http.StatusOK, `<html>sign in</html>`))
	p, sl := f.publisher(t)
	_, err := p.Publish(context.Background(), publication("report", true))
	if err == nil || !strings.Contains(err.Error(), "decode the answer") {
		t.Errorf("error %v, want the answer not decoded", err)
	}
	if len(sl.got()) != 0 {
		t.Errorf("retried: %v", sl.got())
	}
}

func TestNoTokenSendsNoTokenHeader(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t, func(c *Config) { c.Token = "" })
	if _, err := p.Labels(context.Background(), testIID); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		for _, h := range []string{"PRIVATE-TOKEN", "JOB-TOKEN"} {
			if _, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
				t.Errorf("%s: %s header sent without a token", r, h)
			}
		}
	}
}
