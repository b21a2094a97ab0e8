package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/report"
)

const (
	pathMR       = "/api/v4/projects/group%2Fproject/merge_requests/7"
	pathNotes    = pathMR + "/notes"
	pathStatus   = "/api/v4/projects/group%2Fproject/statuses/" + testSHA
	listQuery    = "order_by=created_at&page=%d&per_page=100&sort=asc"
	reqMR        = "GET " + pathMR
	reqUser      = "GET /api/v4/user"
	reqPostNote  = "POST " + pathNotes
	reqPostState = "POST " + pathStatus
)

func reqList(page int) string {
	return "GET " + pathNotes + "?" + strings.Replace(listQuery, "%d", strconv.Itoa(page), 1)
}

func publication(body string, passed bool) *report.Publication {
	marker := report.Marker("train")
	summary := "2 metrics within bounds"
	if !passed {
		summary = "accuracy dropped by 0.03; at most 0.02 allowed"
	}
	return &report.Publication{
		Version:    report.PublicationVersion,
		Pipeline:   "train",
		RunID:      "20260102-030405-abcd",
		Marker:     marker,
		Body:       marker + "\n" + body,
		Passed:     passed,
		Summary:    summary,
		CheckName:  "sluice / train",
		Number:     testIID,
		HeadSHA:    testSHA,
		DetailsURL: "https://gitlab.example.com/group/project/-/jobs/31",
	}
}

func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: requests\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func jsonBody(t *testing.T, r request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", r, r.Body, err)
	}
	return m
}

// find returns the requests "METHOD /path" (query ignored).
func find(reqs []request, methodPath string) []request {
	var out []request
	for _, r := range reqs {
		if r.Method+" "+r.Path == methodPath {
			out = append(out, r)
		}
	}
	return out
}

func TestPublishCreatesUpdatesThenLeavesNoteUnchanged(t *testing.T) {
	f := newFake(t)
	p, sl := f.publisher(t)
	ctx := context.Background()

	// 1. First publish: one note created, one status.
	posted, err := p.Publish(ctx, publication("first report", true))
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, "first publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqPostState})
	notes := f.noteBodies()
	if len(notes) != 1 {
		t.Fatalf("notes after the first publish: %v, want one", notes)
	}
	var id int64
	for k := range notes {
		id = k
	}
	wantURL := "https://gitlab.example.com/group/project/-/merge_requests/7#note_" + strconv.FormatInt(id, 10)
	if want := (report.Posted{Comment: "created", CommentURL: wantURL, Check: "commit status"}); posted != want {
		t.Errorf("posted %+v, want %+v", posted, want)
	}
	reqs := f.requests()
	for _, r := range reqs {
		if got := r.Header.Get("PRIVATE-TOKEN"); got != testToken {
			t.Errorf("%s: PRIVATE-TOKEN %q, want the token", r, got)
		}
		if r.Header.Get("JOB-TOKEN") != "" {
			t.Errorf("%s: unexpected JOB-TOKEN header", r)
		}
	}
	if b := jsonBody(t, reqs[3]); b["body"] != report.Marker("train")+"\nfirst report" {
		t.Errorf("note body %v", b)
	}
	if ct := reqs[3].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("note POST Content-Type %q", ct)
	}
	status := jsonBody(t, reqs[4])
	wantStatus := map[string]any{
		"state": "success", "name": "sluice / train", "description": "2 metrics within bounds",
		"target_url": "https://gitlab.example.com/group/project/-/jobs/31", "pipeline_id": float64(99),
	}
	if len(status) != len(wantStatus) {
		t.Errorf("status body %v, want %v", status, wantStatus)
	}
	for k, v := range wantStatus {
		if status[k] != v {
			t.Errorf("status %s = %v, want %v", k, status[k], v)
		}
	}

	// 2. A new body (and a failed verdict): the same note is updated.
	f.reset()
	posted, err = p.Publish(ctx, publication("second report", false))
	if err != nil {
		t.Fatal(err)
	}
	reqPut := "PUT " + pathNotes + "/" + strconv.FormatInt(id, 10)
	checkLines(t, "second publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPut, reqPostState})
	if posted.Comment != "updated" || posted.CommentURL != wantURL {
		t.Errorf("posted %+v, want the note updated", posted)
	}
	if notes := f.noteBodies(); len(notes) != 1 || notes[id] != report.Marker("train")+"\nsecond report" {
		t.Errorf("notes after the update: %v", notes)
	}
	if b := jsonBody(t, f.requests()[3]); b["body"] != report.Marker("train")+"\nsecond report" {
		t.Errorf("PUT body %v", b)
	}
	if st := jsonBody(t, f.requests()[4]); st["state"] != "failed" {
		t.Errorf("status state %v, want failed", st["state"])
	}

	// 3. The same body again: no note is written; GitLab refuses the same
	// state with 400 "Cannot transition status", which counts as done.
	f.reset()
	posted, err = p.Publish(ctx, publication("second report", false))
	if err != nil {
		t.Fatalf("publish with an unchanged status: %v", err)
	}
	checkLines(t, "third publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostState})
	if want := (report.Posted{Comment: "unchanged", CommentURL: wantURL, Check: "commit status"}); posted != want {
		t.Errorf("posted %+v, want %+v", posted, want)
	}
	if n := f.statusCount(); n != 2 {
		t.Errorf("%d statuses, want two", n)
	}
	if w := sl.got(); len(w) != 0 {
		t.Errorf("waited %v without any failure", w)
	}
}

func TestStickyNoteFoundOnPageThree(t *testing.T) {
	f := newFake(t)
	for i := range 230 {
		f.addNote(otherID, i%3 == 0, "comment "+strconv.Itoa(i))
	}
	ours := f.addNote(meID, false, report.Marker("train")+"\nold report")
	for i := range 10 {
		f.addNote(otherID, false, "later comment "+strconv.Itoa(i))
	}
	p, _ := f.publisher(t)
	posted, err := p.Publish(context.Background(), publication("new report", true))
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqList(2), reqList(3),
		"PUT " + pathNotes + "/" + strconv.FormatInt(ours.ID, 10), reqPostState})
	if posted.Comment != "updated" {
		t.Errorf("comment %q, want updated", posted.Comment)
	}
	if n := len(f.noteBodies()); n != 241 {
		t.Errorf("%d notes, want 241 (none added)", n)
	}
}

func TestNotesOfOthersAndSystemNotesLeftAlone(t *testing.T) {
	f := newFake(t)
	marker := report.Marker("train")
	theirs := f.addNote(otherID, false, marker+"\nquoted by a reviewer")
	system := f.addNote(meID, true, "changed the description "+marker)
	otherPipeline := f.addNote(meID, false, report.Marker("train2")+"\nanother pipeline's report")
	p, _ := f.publisher(t)
	posted, err := p.Publish(context.Background(), publication("report", true))
	if err != nil {
		t.Fatal(err)
	}
	if posted.Comment != "created" {
		t.Errorf("comment %q, want created", posted.Comment)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqPostState})
	notes := f.noteBodies()
	if len(notes) != 4 {
		t.Errorf("notes %v, want the three old ones and a new one", notes)
	}
	for _, n := range []*fakeNote{theirs, system, otherPipeline} {
		if notes[n.ID] != n.Body {
			t.Errorf("note %d changed to %q", n.ID, notes[n.ID])
		}
	}
}

func TestJobTokenCannotWrite(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t, func(c *Config) { c.Token, c.JobToken = "job-token-value", true })
	_, err := p.Publish(context.Background(), publication("report", true))
	if !errors.Is(err, report.ErrReadOnly) {
		t.Fatalf("error %v, want one wrapping report.ErrReadOnly", err)
	}
	for _, want := range []string{"CI_JOB_TOKEN", "project access token", "api scope", "Developer", "masked CI/CD variable", "fork"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "job-token-value") {
		t.Errorf("error %q prints the token", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent with a job token, want none: %v", n, f.requestLines())
	}

	// Reading works: the job token goes in the JOB-TOKEN header.
	labels, err := p.Labels(context.Background(), testIID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(labels, []string{"ml", "sluice:baseline"}) {
		t.Errorf("labels %q", labels)
	}
	reqs := f.requests()
	checkLines(t, "labels", f.requestLines(), []string{reqMR})
	if got := reqs[0].Header.Get("JOB-TOKEN"); got != "job-token-value" {
		t.Errorf("JOB-TOKEN %q", got)
	}
	if got := reqs[0].Header.Get("PRIVATE-TOKEN"); got != "" {
		t.Errorf("PRIVATE-TOKEN %q sent with a job token", got)
	}
}

func TestNoTokenIsReadOnly(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t, func(c *Config) { c.Token = "" })
	_, err := p.Publish(context.Background(), publication("report", true))
	if !errors.Is(err, report.ErrReadOnly) || !strings.Contains(err.Error(), "fork") {
		t.Fatalf("error %v, want report.ErrReadOnly explaining forks", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}

func TestForbiddenWriteIsReadOnly(t *testing.T) {
	forbidden := answer(http.StatusForbidden, `{"message":"403 Forbidden"}`)
	unauthorized := answer(http.StatusUnauthorized, `{"message":"401 Unauthorized"}`)
	for _, tc := range []struct {
		name, method, path string
		h                  injected
		wantReqs           []string
		wantPosted         report.Posted
	}{
		{"403 on the note", http.MethodPost, pathNotes, forbidden,
			[]string{reqMR, reqUser, reqList(1), reqPostNote}, report.Posted{}},
		{"401 on the status", http.MethodPost, pathStatus, unauthorized,
			[]string{reqMR, reqUser, reqList(1), reqPostNote, reqPostState}, report.Posted{Comment: "created"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on(tc.method, tc.path, tc.h)
			p, sl := f.publisher(t)
			posted, err := p.Publish(context.Background(), publication("report", true))
			if !errors.Is(err, report.ErrReadOnly) {
				t.Fatalf("error %v, want one wrapping report.ErrReadOnly", err)
			}
			for _, want := range []string{"project access token", "CI_JOB_TOKEN", "group/project"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q prints the token", err)
			}
			checkLines(t, tc.name, f.requestLines(), tc.wantReqs)
			posted.CommentURL = ""
			if posted != tc.wantPosted {
				t.Errorf("posted %+v, want %+v", posted, tc.wantPosted)
			}
			if w := sl.got(); len(w) != 0 {
				t.Errorf("retried a refused write after %v", w)
			}
		})
	}
}

func TestRetriesReadsAsGitLabAsks(t *testing.T) {
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := newFake(t)
	f.on(http.MethodGet, "/api/v4/user", answer(http.StatusTooManyRequests, `{"message":"Retry later"}`, "Retry-After", "7"))
	f.on(http.MethodGet, "/api/v4/user", answer(http.StatusTooManyRequests, `{"message":"Retry later"}`,
		"Date", date.Format(http.TimeFormat), "RateLimit-Reset", strconv.FormatInt(date.Add(12*time.Second).Unix(), 10)))
	f.on(http.MethodGet, pathNotes, answer(http.StatusBadGateway, `{"message":"502 Bad Gateway"}`))
	f.on(http.MethodGet, pathNotes, answer(http.StatusServiceUnavailable, `{"message":"503"}`))
	p, sl := f.publisher(t)
	posted, err := p.Publish(context.Background(), publication("report", true))
	if err != nil {
		t.Fatal(err)
	}
	if posted.Comment != "created" {
		t.Errorf("comment %q", posted.Comment)
	}
	want := []time.Duration{7 * time.Second, 12 * time.Second, 1 * time.Second, 2 * time.Second}
	if got := sl.got(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqUser, reqUser,
		reqList(1), reqList(1), reqList(1), reqPostNote, reqPostState})
}

func TestRetriesStopAtMaxWait(t *testing.T) {
	f := newFake(t)
	for range 5 {
		f.on(http.MethodGet, pathMR, answer(http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`))
	}
	p, sl := f.publisher(t, func(c *Config) { c.MaxWait = 5 * time.Second })
	_, err := p.Publish(context.Background(), publication("report", true))
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("error %v, want the 500 and that it gave up", err)
	}
	// 1 s + 2 s = 3 s waited; 4 s more would exceed 5 s.
	if got, want := sl.got(), []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqMR, reqMR})
}

func TestFailedPostIsNotRepeatedBlindly(t *testing.T) {
	t.Run("the note was created", func(t *testing.T) {
		f := newFake(t)
		// GitLab stores the note, then the proxy answers 500.
		f.on(http.MethodPost, pathNotes, func(f *fakeGitLab, w http.ResponseWriter, r *http.Request) bool {
			reqs := f.requests() // this request is the last one
			var in struct{ Body string }
			if err := json.Unmarshal(reqs[len(reqs)-1].Body, &in); err != nil || in.Body == "" {
				t.Errorf("POST body %q: %v", reqs[len(reqs)-1].Body, err)
			}
			f.addNote(meID, false, in.Body)
			return answer(http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`)(f, w, r)
		})
		p, sl := f.publisher(t)
		posted, err := p.Publish(context.Background(), publication("report", true))
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqList(1), reqPostState})
		if n := len(f.noteBodies()); n != 1 {
			t.Errorf("%d notes, want 1", n)
		}
		if posted.Comment != "created" {
			t.Errorf("comment %q, want created", posted.Comment)
		}
		if got := sl.got(); !slices.Equal(got, []time.Duration{time.Second}) {
			t.Errorf("waits %v", got)
		}
	})
	t.Run("the note was not created", func(t *testing.T) {
		f := newFake(t)
		f.on(http.MethodPost, pathNotes, answer(http.StatusBadGateway, `{"message":"502 Bad Gateway"}`))
		p, _ := f.publisher(t)
		posted, err := p.Publish(context.Background(), publication("report", true))
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqList(1), reqPostNote, reqPostState})
		if n := len(f.noteBodies()); n != 1 || posted.Comment != "created" {
			t.Errorf("%d notes, comment %q; want 1 created", n, posted.Comment)
		}
	})
	t.Run("a status 500 then Cannot transition", func(t *testing.T) {
		f := newFake(t)
		f.on(http.MethodPost, pathStatus, func(f *fakeGitLab, w http.ResponseWriter, r *http.Request) bool {
			f.mu.Lock()
			f.statuses = append(f.statuses, map[string]any{"name": "sluice / train", "state": "success"})
			f.mu.Unlock()
			return answer(http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`)(f, w, r)
		})
		p, _ := f.publisher(t)
		posted, err := p.Publish(context.Background(), publication("report", true))
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote, reqPostState, reqPostState})
		if n := f.statusCount(); posted.Check != "commit status" || n != 1 {
			t.Errorf("posted %+v, %d statuses; want one commit status", posted, n)
		}
	})
}

func TestMergeRequestNotFound(t *testing.T) {
	f := newFake(t)
	f.on(http.MethodGet, pathMR, answer(http.StatusNotFound, `{"message":"404 Not found"}`))
	p, sl := f.publisher(t)
	_, err := p.Publish(context.Background(), publication("report", true))
	if err == nil {
		t.Fatal("no error for a missing merge request")
	}
	for _, want := range []string{"!7", "group/project", "not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if errors.Is(err, report.ErrReadOnly) {
		t.Errorf("error %v wraps ErrReadOnly", err)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR})
	if len(sl.got()) != 0 {
		t.Errorf("retried a 404")
	}
}

func TestProjectPathIsEscaped(t *testing.T) {
	f := newFake(t)
	f.mu.Lock()
	f.project = "group%2Fsub%2Fmy%2Eproject" // as GitLab's docs escape it
	f.mu.Unlock()
	p, _ := f.publisher(t, func(c *Config) { c.Project = "other/project" })
	pub := publication("report", true)
	pub.Repository = "group/sub/my.project" // overrides Config.Project
	if _, err := p.Publish(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	base := "/api/v4/projects/group%2Fsub%2Fmy%2Eproject"
	checkLines(t, "publish", f.requestLines(), []string{
		"GET " + base + "/merge_requests/7", reqUser,
		"GET " + base + "/merge_requests/7/notes?" + strings.Replace(listQuery, "%d", "1", 1),
		"POST " + base + "/merge_requests/7/notes", "POST " + base + "/statuses/" + testSHA,
	})
}

func TestStatusOnly(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t, func(c *Config) { c.PipelineID = 0 })
	pub := publication("report", false)
	pub.Number = 0
	pub.DetailsURL = ""
	pub.Summary = strings.Repeat("é", 300)
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if posted != (report.Posted{Check: "commit status"}) {
		t.Errorf("posted %+v", posted)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqPostState})
	st := jsonBody(t, f.requests()[0])
	desc, _ := st["description"].(string)
	if utf8.RuneCountInString(desc) != 255 || !utf8.ValidString(desc) || desc != strings.Repeat("é", 255) {
		t.Errorf("description has %d runes, want the first 255", utf8.RuneCountInString(desc))
	}
	if _, ok := st["pipeline_id"]; ok {
		t.Errorf("pipeline_id sent when unknown: %v", st)
	}
	if _, ok := st["target_url"]; ok {
		t.Errorf("target_url sent when unknown: %v", st)
	}
	if st["state"] != "failed" {
		t.Errorf("state %v", st["state"])
	}
}

func TestNoteOnlyWithoutSHA(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t)
	pub := publication("report", true)
	pub.HeadSHA = ""
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if posted.Check != "" || posted.Comment != "created" {
		t.Errorf("posted %+v", posted)
	}
	checkLines(t, "publish", f.requestLines(), []string{reqMR, reqUser, reqList(1), reqPostNote})
}

func TestBadInput(t *testing.T) {
	f := newFake(t)
	p, _ := f.publisher(t)
	pub := publication("report", true)
	pub.HeadSHA = "main; rm -rf /"
	if _, err := p.Publish(context.Background(), pub); err == nil || !strings.Contains(err.Error(), "not a commit SHA") {
		t.Errorf("error %v for a bad SHA", err)
	}
	if _, err := New(Config{APIURL: "gitlab.example.com/api/v4", Token: testToken}); err == nil {
		t.Error("no error for an API URL without a scheme")
	}
	if _, err := New(Config{APIURL: "ftp://user:hunter2@gitlab.example.com/api/v4"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v for an ftp URL with a password", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for bad input", n)
	}
}

func TestRejectedTokenAndRedaction(t *testing.T) {
	f := newFake(t)
	f.on(http.MethodGet, "/api/v4/user", answer(http.StatusUnauthorized, `{"message":"401 Unauthorized"}`))
	p, sl := f.publisher(t)
	_, err := p.Publish(context.Background(), publication("report", true))
	if err == nil || !strings.Contains(err.Error(), "invalid, expired or revoked") || errors.Is(err, report.ErrReadOnly) {
		t.Errorf("error %v, want a rejected token that is not ErrReadOnly", err)
	}
	if len(sl.got()) != 0 {
		t.Errorf("retried a 401")
	}

	// A server that echoes the token: the error does not print it.
	f.on(http.MethodPost, pathNotes, answer(http.StatusBadRequest, `{"message":"bad header `+testToken+`"}`))
	_, err = p.Publish(context.Background(), publication("report", true))
	if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("error %v, want the token redacted", err)
	}
	if !errors.Is(err, &APIError{StatusCode: http.StatusBadRequest}) {
		t.Errorf("error %v does not wrap the 400", err)
	}
}
