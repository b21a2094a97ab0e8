package github

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fake below answers like GitHub's REST API, with the payload shapes of
// its public documentation, for the endpoints the publisher uses.

const (
	testToken = "ghs_s3cr3tT0kenValue"
	testOwner = "sluice-ci"
	testRepo  = "demo"
	testSHA   = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
	botLogin  = "github-actions[bot]"

	integrationDenied = `{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest/issues/comments#create-an-issue-comment","status":"403"}`
	patDenied         = `{"message":"Resource not accessible by personal access token","documentation_url":"https://docs.github.com/rest/checks/runs#create-a-check-run","status":"403"}`
	secondaryLimit    = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 8C3A:1B2C:3D4E.","documentation_url":"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`
	primaryLimit      = `{"message":"API rate limit exceeded for installation ID 4242.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"}`
)

type request struct {
	Method string
	Path   string // without the API prefix
	Query  url.Values
	Header http.Header
	Body   map[string]any
	Raw    string // the path as received, prefix included
}

func (r request) key() string { return r.Method + " " + r.Path }

// reply is an answer injected in place of the fake's own.
type reply struct {
	status int
	header map[string]string
	body   string
	// apply runs the fake's handler first (the request went through) and
	// answers with this reply anyway (the answer was lost).
	apply bool
}

type fakeComment struct {
	ID        int64
	Body      string
	Login     string
	Type      string
	CreatedAt time.Time
}

type fakeCheckRun struct {
	ID                   int64
	Name, HeadSHA, App   string
	Status, Conclusion   string
	DetailsURL           string
	Title, Summary, Text string
	HasText              bool
	CompletedAt          string
	Updates              int
}

type fakePull struct {
	HeadSHA string
	Labels  []string
}

type fakeGitHub struct {
	t      *testing.T
	srv    *httptest.Server
	prefix string // "/api/v3" for GitHub Enterprise Server
	mux    *http.ServeMux

	mu sync.Mutex
	// user is what GET /user names; "" answers as for an installation
	// token (403). Writes are made by writer, check runs by app.
	user     string
	writer   string
	app      string
	nextID   int64
	comments map[int][]*fakeComment
	runs     []*fakeCheckRun
	statuses []map[string]any
	pulls    map[int]fakePull
	reqs     []request
	// inject holds answers by "METHOD /path"; a negative count repeats the
	// last one for ever.
	inject map[string][]reply
	sticky map[string]reply
}

func newFake(t *testing.T, prefix string) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{
		t:        t,
		prefix:   prefix,
		writer:   botLogin,
		app:      "github-actions",
		nextID:   1000,
		comments: map[int][]*fakeComment{},
		pulls:    map[int]fakePull{},
		inject:   map[string][]reply{},
		sticky:   map[string]reply{},
	}
	f.routes()
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// config is a publisher configuration for the fake, on a fake clock.
func (f *fakeGitHub) config(clk *fakeClock) Config {
	return Config{
		APIURL:     f.srv.URL + f.prefix,
		Token:      testToken,
		Repository: testOwner + "/" + testRepo,
		HTTPClient: f.srv.Client(),
		Sleep:      clk.Sleep,
		Now:        clk.Now,
	}
}

// fail answers the next n requests to key with r; n < 0: all of them.
func (f *fakeGitHub) fail(key string, n int, r reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 0 {
		f.sticky[key] = r
		return
	}
	for range n {
		f.inject[key] = append(f.inject[key], r)
	}
}

func (f *fakeGitHub) addComment(number int, login, typ, body string, at time.Time) *fakeComment {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	c := &fakeComment{ID: f.nextID, Body: body, Login: login, Type: typ, CreatedAt: at}
	f.comments[number] = append(f.comments[number], c)
	return c
}

func (f *fakeGitHub) addCheckRun(name, sha, app string) *fakeCheckRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	r := &fakeCheckRun{ID: f.nextID, Name: name, HeadSHA: sha, App: app, Status: "completed", Conclusion: "success", Title: "old", Summary: "old"}
	f.runs = append(f.runs, r)
	return r
}

// requests returns the requests so far and forgets them.
func (f *fakeGitHub) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	path := r.URL.Path
	if !strings.HasPrefix(path, f.prefix+"/") {
		f.t.Errorf("request %s %s outside the API prefix %q", r.Method, path, f.prefix)
		http.NotFound(w, r)
		return
	}
	rec := request{Method: r.Method, Path: strings.TrimPrefix(path, f.prefix), Query: r.URL.Query(), Header: r.Header.Clone(), Raw: path}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rec.Body); err != nil {
			f.t.Errorf("%s %s: body is not a JSON object: %v: %s", r.Method, path, err, raw)
		}
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	inj, ok := f.sticky[rec.key()]
	if q := f.inject[rec.key()]; len(q) > 0 {
		inj, ok = q[0], true
		f.inject[rec.key()] = q[1:]
	}
	f.mu.Unlock()

	if r.Header.Get("Authorization") != "Bearer "+testToken {
		writeJSON(w, http.StatusUnauthorized, nil, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	if ok && !inj.apply {
		writeJSON(w, inj.status, inj.header, inj.body)
		return
	}
	inner := r.Clone(r.Context())
	inner.URL.Path = rec.Path
	inner.URL.RawPath = ""
	inner.Body = io.NopCloser(strings.NewReader(string(raw)))
	if ok {
		f.mux.ServeHTTP(httptest.NewRecorder(), inner)
		writeJSON(w, inj.status, inj.header, inj.body)
		return
	}
	f.mux.ServeHTTP(w, inner)
}

func writeJSON(w http.ResponseWriter, status int, header map[string]string, body string) {
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeGitHub) send(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		f.t.Errorf("marshal: %v", err)
	}
	writeJSON(w, status, nil, string(data))
}

func (f *fakeGitHub) notFound(w http.ResponseWriter, doc string) {
	writeJSON(w, http.StatusNotFound, nil, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/`+doc+`","status":"404"}`)
}

func (f *fakeGitHub) routes() {
	m := http.NewServeMux()
	f.mux = m
	repo := "/repos/" + testOwner + "/" + testRepo
	m.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		user := f.user
		f.mu.Unlock()
		if user == "" {
			writeJSON(w, http.StatusForbidden, nil, `{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest/users/users#get-the-authenticated-user","status":"403"}`)
			return
		}
		f.send(w, 200, map[string]any{"login": user, "id": 583231, "type": "User", "site_admin": false})
	})
	m.HandleFunc("GET "+repo+"/issues/{number}/comments", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("number"))
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		if per <= 0 {
			per = 30
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page <= 0 {
			page = 1
		}
		f.mu.Lock()
		all := f.comments[n]
		out := []map[string]any{}
		for i := (page - 1) * per; i < len(all) && i < page*per; i++ {
			out = append(out, f.commentJSON(n, all[i]))
		}
		last := max((len(all)+per-1)/per, 1)
		f.mu.Unlock()
		if page < last {
			link := func(p int) string {
				return fmt.Sprintf("<%s%s%s/issues/%d/comments?per_page=%d&page=%d>", f.srv.URL, f.prefix, repo, n, per, p)
			}
			w.Header().Set("Link", link(page+1)+`; rel="next", `+link(last)+`; rel="last"`)
		}
		f.send(w, 200, out)
	})
	m.HandleFunc("POST "+repo+"/issues/{number}/comments", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("number"))
		var in struct{ Body string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		f.nextID++
		c := &fakeComment{ID: f.nextID, Body: in.Body, Login: f.writer, Type: "Bot", CreatedAt: time.Date(2030, 1, 1, 0, 0, int(f.nextID%60), 0, time.UTC)}
		f.comments[n] = append(f.comments[n], c)
		out := f.commentJSON(n, c)
		f.mu.Unlock()
		f.send(w, http.StatusCreated, out)
	})
	m.HandleFunc("PATCH "+repo+"/issues/comments/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var in struct{ Body string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		defer f.mu.Unlock()
		for n, cs := range f.comments {
			for _, c := range cs {
				if c.ID == id {
					if c.Login != f.writer {
						writeJSON(w, http.StatusForbidden, nil, `{"message":"Must have admin rights to Repository.","status":"403"}`)
						return
					}
					c.Body = in.Body
					f.send(w, 200, f.commentJSON(n, c))
					return
				}
			}
		}
		f.notFound(w, "issues/comments#update-an-issue-comment")
	})
	m.HandleFunc("GET "+repo+"/commits/{sha}/check-runs", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("check_name")
		f.mu.Lock()
		out := []map[string]any{}
		for _, c := range f.runs {
			if c.HeadSHA == r.PathValue("sha") && (name == "" || c.Name == name) {
				out = append(out, f.runJSON(c))
			}
		}
		f.mu.Unlock()
		f.send(w, 200, map[string]any{"total_count": len(out), "check_runs": out})
	})
	m.HandleFunc("POST "+repo+"/check-runs", func(w http.ResponseWriter, r *http.Request) {
		var in runInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in.Name == "" || in.HeadSHA == "" {
			writeJSON(w, http.StatusUnprocessableEntity, nil, `{"message":"Invalid request.\n\n\"name\", \"head_sha\" weren't supplied.","status":"422"}`)
			return
		}
		f.mu.Lock()
		f.nextID++
		c := &fakeCheckRun{ID: f.nextID, HeadSHA: in.HeadSHA, App: f.app}
		in.apply(c)
		f.runs = append(f.runs, c)
		out := f.runJSON(c)
		f.mu.Unlock()
		f.send(w, http.StatusCreated, out)
	})
	m.HandleFunc("PATCH "+repo+"/check-runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var in runInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.runs {
			if c.ID == id {
				in.apply(c)
				c.Updates++
				f.send(w, 200, f.runJSON(c))
				return
			}
		}
		f.notFound(w, "checks/runs#update-a-check-run")
	})
	m.HandleFunc("POST "+repo+"/statuses/{sha}", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		f.nextID++
		f.statuses = append(f.statuses, in)
		out := map[string]any{"id": f.nextID, "state": in["state"], "context": in["context"], "description": in["description"], "target_url": in["target_url"],
			"creator": map[string]any{"login": f.writer, "type": "User"}, "created_at": "2030-01-01T00:00:00Z"}
		f.mu.Unlock()
		f.send(w, http.StatusCreated, out)
	})
	m.HandleFunc("GET "+repo+"/pulls/{number}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("number"))
		f.mu.Lock()
		pr, ok := f.pulls[n]
		f.mu.Unlock()
		if !ok {
			f.notFound(w, "pulls/pulls#get-a-pull-request")
			return
		}
		labels := []map[string]any{}
		for i, l := range pr.Labels {
			labels = append(labels, map[string]any{"id": 208045946 + i, "name": l, "color": "f29513", "default": false})
		}
		f.send(w, 200, map[string]any{
			"number": n, "state": "open", "title": "Train a better model",
			"head":   map[string]any{"ref": "feature", "sha": pr.HeadSHA, "label": "fork:feature"},
			"base":   map[string]any{"ref": "main", "sha": "553c2077f0edc3d5dc5d17262f6aa498e69d6f8e"},
			"labels": labels,
		})
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		f.notFound(w, "")
	})
}

type runInput struct {
	Name        string `json:"name"`
	HeadSHA     string `json:"head_sha"`
	Status      string `json:"status"`
	Conclusion  string `json:"conclusion"`
	DetailsURL  string `json:"details_url"`
	CompletedAt string `json:"completed_at"`
	Output      *struct {
		Title   string  `json:"title"`
		Summary string  `json:"summary"`
		Text    *string `json:"text"`
	} `json:"output"`
}

func (in runInput) apply(c *fakeCheckRun) {
	c.Name, c.Status, c.Conclusion, c.DetailsURL, c.CompletedAt = in.Name, in.Status, in.Conclusion, in.DetailsURL, in.CompletedAt
	if in.Output != nil {
		c.Title, c.Summary = in.Output.Title, in.Output.Summary
		if in.Output.Text != nil {
			c.Text, c.HasText = *in.Output.Text, true
		}
	}
}

func (f *fakeGitHub) commentJSON(number int, c *fakeComment) map[string]any {
	return map[string]any{
		"id":                 c.ID,
		"node_id":            "IC_kwDOA" + strconv.FormatInt(c.ID, 10),
		"url":                fmt.Sprintf("https://api.github.com/repos/%s/%s/issues/comments/%d", testOwner, testRepo, c.ID),
		"html_url":           fmt.Sprintf("https://github.com/%s/%s/pull/%d#issuecomment-%d", testOwner, testRepo, number, c.ID),
		"issue_url":          fmt.Sprintf("https://api.github.com/repos/%s/%s/issues/%d", testOwner, testRepo, number),
		"body":               c.Body,
		"user":               map[string]any{"login": c.Login, "id": 41898282, "type": c.Type},
		"created_at":         c.CreatedAt.Format(time.RFC3339),
		"updated_at":         c.CreatedAt.Format(time.RFC3339),
		"author_association": "NONE",
	}
}

func (f *fakeGitHub) runJSON(c *fakeCheckRun) map[string]any {
	out := map[string]any{
		"id":          c.ID,
		"head_sha":    c.HeadSHA,
		"name":        c.Name,
		"status":      c.Status,
		"conclusion":  c.Conclusion,
		"html_url":    fmt.Sprintf("https://github.com/%s/%s/runs/%d", testOwner, testRepo, c.ID),
		"details_url": c.DetailsURL,
		"output":      map[string]any{"title": c.Title, "summary": c.Summary, "text": c.Text, "annotations_count": 0},
		"app":         map[string]any{"id": 15368, "slug": c.App, "name": c.App, "owner": map[string]any{"login": "github", "type": "Organization"}},
		"check_suite": map[string]any{"id": 5},
	}
	return out
}

// fakeClock is Now and Sleep: a sleep records its wait and moves the clock.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}
