package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A fake GitLab REST API: the endpoints the publisher uses, answering with
// the payload shapes of GitLab's public docs (notes, merge requests, commit
// statuses, offset pagination headers).

const (
	testToken   = "glpat-s3cr3t-t0k3n"
	testProject = "group/project"
	testIID     = 7
	testSHA     = "0123456789abcdef0123456789abcdef01234567"
	meID        = 42
	otherID     = 9
)

// request is one request the fake received.
type request struct {
	Method string
	Path   string // escaped, as sent
	Query  string // raw query
	Header http.Header
	Body   []byte
}

// String is "METHOD /path?query".
func (r request) String() string {
	if r.Query == "" {
		return r.Method + " " + r.Path
	}
	return r.Method + " " + r.Path + "?" + r.Query
}

type fakeNote struct {
	ID       int64  `json:"id"`
	Body     string `json:"body"`
	System   bool   `json:"system"`
	AuthorID int64  `json:"-"`
}

// injected handles a request instead of the fake; it reports whether it
// did.
type injected func(f *fakeGitLab, w http.ResponseWriter, r *http.Request) bool

type fakeGitLab struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	project  string // escaped project id in paths
	notes    []*fakeNote
	nextID   int64
	labels   []string
	statuses []map[string]any
	reqs     []request
	inject   map[string][]injected // "METHOD /path" -> handlers, used once each
}

func newFake(t *testing.T) *fakeGitLab {
	t.Helper()
	f := &fakeGitLab{
		t:       t,
		project: "group%2Fproject",
		nextID:  1000,
		labels:  []string{"ml", "sluice:baseline"},
		inject:  map[string][]injected{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// on makes the next request "METHOD /path" go to h.
func (f *fakeGitLab) on(method, path string, h injected) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := method + " " + path
	f.inject[key] = append(f.inject[key], h)
}

func (f *fakeGitLab) addNote(author int64, system bool, body string) *fakeNote {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addNoteLocked(author, system, body)
}

func (f *fakeGitLab) addNoteLocked(author int64, system bool, body string) *fakeNote {
	f.nextID++
	n := &fakeNote{ID: f.nextID, Body: body, System: system, AuthorID: author}
	f.notes = append(f.notes, n)
	return n
}

func (f *fakeGitLab) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// requestLines is requests() as "METHOD /path?query" lines.
func (f *fakeGitLab) requestLines() []string {
	var lines []string
	for _, r := range f.requests() {
		lines = append(lines, r.String())
	}
	return lines
}

func (f *fakeGitLab) statusCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.statuses)
}

func (f *fakeGitLab) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

func (f *fakeGitLab) noteBodies() map[int64]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[int64]string{}
	for _, n := range f.notes {
		m[n.ID] = n.Body
	}
	return m
}

func (f *fakeGitLab) noteJSON(n *fakeNote) map[string]any {
	author := map[string]any{"id": n.AuthorID, "username": "user" + strconv.FormatInt(n.AuthorID, 10),
		"name": "User", "state": "active", "web_url": "https://gitlab.example.com/user"}
	if n.AuthorID == meID {
		author["username"] = "project_123_bot_abc"
	}
	return map[string]any{
		"id": n.ID, "type": nil, "body": n.Body, "attachment": nil, "author": author,
		"created_at": "2026-01-02T03:04:05.000Z", "updated_at": "2026-01-02T03:04:05.000Z",
		"system": n.System, "noteable_id": 555, "noteable_type": "MergeRequest", "project_id": 123,
		"noteable_iid": testIID, "resolvable": false, "confidential": false, "internal": false,
	}
}

func (f *fakeGitLab) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path := r.URL.EscapedPath()
	f.mu.Lock()
	f.reqs = append(f.reqs, request{Method: r.Method, Path: path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	key := r.Method + " " + path
	var h injected
	if hs := f.inject[key]; len(hs) > 0 {
		h, f.inject[key] = hs[0], hs[1:]
	}
	f.mu.Unlock()
	if h != nil && h(f, w, r) {
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	proj := "/api/v4/projects/" + f.project
	mr := proj + "/merge_requests/" + strconv.Itoa(testIID)
	switch {
	case r.Method == http.MethodGet && path == "/api/v4/user":
		writeJSON(w, http.StatusOK, map[string]any{"id": meID, "username": "project_123_bot_abc",
			"name": "sluice bot", "state": "active", "bot": true})
	case r.Method == http.MethodGet && path == mr:
		writeJSON(w, http.StatusOK, map[string]any{
			"id": 555, "iid": testIID, "project_id": 123, "title": "Tune the learning rate",
			"state": "opened", "source_branch": "lr", "target_branch": "main",
			"labels": f.labels, "sha": testSHA,
			"web_url": "https://gitlab.example.com/group/project/-/merge_requests/7",
		})
	case r.Method == http.MethodGet && path == mr+"/notes":
		q := r.URL.Query()
		page, _ := strconv.Atoi(q.Get("page"))
		per, _ := strconv.Atoi(q.Get("per_page"))
		if page < 1 {
			page = 1
		}
		if per < 1 {
			per = 20
		}
		total := len(f.notes)
		pages := max((total+per-1)/per, 1)
		lo, hi := min((page-1)*per, total), min(page*per, total)
		items := []map[string]any{}
		for _, n := range f.notes[lo:hi] {
			items = append(items, f.noteJSON(n))
		}
		w.Header().Set("X-Page", strconv.Itoa(page))
		w.Header().Set("X-Per-Page", strconv.Itoa(per))
		w.Header().Set("X-Total", strconv.Itoa(total))
		w.Header().Set("X-Total-Pages", strconv.Itoa(pages))
		next := ""
		if page < pages {
			next = strconv.Itoa(page + 1)
		}
		w.Header().Set("X-Next-Page", next)
		if page > 1 {
			w.Header().Set("X-Prev-Page", strconv.Itoa(page-1))
		} else {
			w.Header().Set("X-Prev-Page", "")
		}
		writeJSON(w, http.StatusOK, items)
	case r.Method == http.MethodPost && path == mr+"/notes":
		var in struct{ Body string }
		if err := json.Unmarshal(body, &in); err != nil || in.Body == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body is missing"})
			return
		}
		n := f.addNoteLocked(meID, false, in.Body)
		writeJSON(w, http.StatusCreated, f.noteJSON(n))
	case r.Method == http.MethodPut && strings.HasPrefix(path, mr+"/notes/"):
		id, _ := strconv.ParseInt(strings.TrimPrefix(path, mr+"/notes/"), 10, 64)
		var in struct{ Body string }
		_ = json.Unmarshal(body, &in)
		for _, n := range f.notes {
			if n.ID == id {
				if n.AuthorID != meID {
					writeJSON(w, http.StatusForbidden, map[string]any{"message": "403 Forbidden"})
					return
				}
				n.Body = in.Body
				writeJSON(w, http.StatusOK, f.noteJSON(n))
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
	case r.Method == http.MethodPost && strings.HasPrefix(path, proj+"/statuses/"):
		var in map[string]any
		_ = json.Unmarshal(body, &in)
		for i := len(f.statuses) - 1; i >= 0; i-- {
			if f.statuses[i]["name"] == in["name"] {
				if f.statuses[i]["state"] == in["state"] {
					writeJSON(w, http.StatusBadRequest, map[string]any{"message": fmt.Sprintf(
						"Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\".)",
						in["state"], in["state"], in["state"])})
					return
				}
				break
			}
		}
		f.statuses = append(f.statuses, in)
		writeJSON(w, http.StatusCreated, map[string]any{
			"id": 93, "sha": strings.TrimPrefix(path, proj+"/statuses/"), "ref": "lr", "status": in["state"],
			"name": in["name"], "target_url": in["target_url"], "description": in["description"],
			"created_at": "2026-01-02T03:04:05.000Z", "allow_failure": false, "pipeline_id": in["pipeline_id"],
			"author": map[string]any{"id": meID, "username": "project_123_bot_abc"},
		})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// answer is an injected handler that only answers code with a JSON body
// and headers.
func answer(code int, body string, header ...string) injected {
	return func(_ *fakeGitLab, w http.ResponseWriter, _ *http.Request) bool {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
		return true
	}
}

// sleeper records the waits of Config.Sleep without waiting.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return nil
}

func (s *sleeper) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// publisher returns a publisher for the fake with a personal token.
func (f *fakeGitLab) publisher(t *testing.T, mod ...func(*Config)) (*Publisher, *sleeper) {
	t.Helper()
	s := &sleeper{}
	cfg := Config{
		APIURL:     f.srv.URL + "/api/v4",
		Token:      testToken,
		Project:    testProject,
		PipelineID: 99,
		HTTPClient: f.srv.Client(),
		Sleep:      s.sleep,
	}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}
