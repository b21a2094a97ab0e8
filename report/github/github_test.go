package github

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/report"
)

const (
	repoPath  = "/repos/" + testOwner + "/" + testRepo
	testCheck = "sluice / train"
)

var marker = report.Marker("train")

func publication(body string, passed bool) *report.Publication {
	summary := "1 gate failed: accuracy fell 0.031 below main"
	if passed {
		summary = "all 3 gates passed"
	}
	return &report.Publication{
		Version:    report.PublicationVersion,
		Pipeline:   "train",
		RunID:      "r-20300601-1",
		Marker:     marker,
		Body:       marker + "\n" + body,
		Passed:     passed,
		Summary:    summary,
		CheckName:  testCheck,
		Title:      map[bool]string{true: "sluice: passed", false: "sluice: failed"}[passed],
		Repository: testOwner + "/" + testRepo,
		Number:     12,
		HeadSHA:    testSHA,
		DetailsURL: "https://github.com/sluice-ci/demo/actions/runs/42",
	}
}

func newPublisher(t *testing.T, cfg Config) *Publisher {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func keys(reqs []request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.key()
		if q := r.Query.Encode(); q != "" {
			out[i] += "?" + q
		}
	}
	return out
}

func wantKeys(t *testing.T, reqs []request, want ...string) {
	t.Helper()
	if got := keys(reqs); !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n got %q\nwant %q", got, want)
	}
}

func count(reqs []request, key string) int {
	n := 0
	for _, r := range reqs {
		if r.key() == key {
			n++
		}
	}
	return n
}

func find(t *testing.T, reqs []request, key string) request {
	t.Helper()
	for _, r := range reqs {
		if r.key() == key {
			return r
		}
	}
	t.Fatalf("no request %s among %q", key, keys(reqs))
	return request{}
}

// checkHeaders asserts what every request to GitHub carries.
func checkHeaders(t *testing.T, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		h := r.Header
		if got := h.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("%s: Authorization %q", r.key(), got)
		}
		if got, want := h.Get("Accept"), acceptFor(r); got != want {
			t.Errorf("%s: Accept %q, want %q", r.key(), got, want)
		}
		if got := h.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
			t.Errorf("%s: X-GitHub-Api-Version %q", r.key(), got)
		}
		if got := h.Get("User-Agent"); !strings.HasPrefix(got, "sluice") {
			t.Errorf("%s: User-Agent %q", r.key(), got)
		}
		if r.Method != http.MethodGet {
			if got := h.Get("Content-Type"); got != "application/json" {
				t.Errorf("%s: Content-Type %q", r.key(), got)
			}
		}
	}
}

// acceptFor is the media type go-github asks for: its own preview types
// for check runs and for comments (with reactions), v3 JSON elsewhere.
func acceptFor(r request) string {
	switch {
	case strings.Contains(r.Path, "/check-runs"):
		return "application/vnd.github.antiope-preview+json"
	case r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/comments"):
		return "application/vnd.github.squirrel-girl-preview"
	}
	return "application/vnd.github.v3+json"
}

func wantBody(t *testing.T, r request, want map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(r.Body, want) {
		t.Errorf("%s body:\n got %#v\nwant %#v", r.key(), r.Body, want)
	}
}

func TestPublishCreatesThenEditsThenLeavesAlone(t *testing.T) {
	f := newFake(t, "")
	clk := newClock()
	p := newPublisher(t, f.config(clk))
	ctx := context.Background()
	listRuns := "GET " + repoPath + "/commits/" + testSHA + "/check-runs?check_name=sluice+%2F+train&per_page=100"
	listComments := "GET " + repoPath + "/issues/12/comments?per_page=100"

	// First run: one comment and one check run are created.
	pub := publication("accuracy 0.91 (main 0.94)", false)
	posted, err := p.Publish(ctx, pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := f.requests()
	checkHeaders(t, reqs)
	wantKeys(t, reqs,
		"GET /user",
		listComments,
		"POST "+repoPath+"/issues/12/comments",
		listRuns,
		"POST "+repoPath+"/check-runs",
	)
	wantBody(t, reqs[2], map[string]any{"body": pub.Body})
	wantBody(t, reqs[4], map[string]any{
		"name":         testCheck,
		"head_sha":     testSHA,
		"status":       "completed",
		"conclusion":   "failure",
		"details_url":  pub.DetailsURL,
		"completed_at": "2030-06-01T12:00:00Z",
		"output": map[string]any{
			"title":   "sluice: failed",
			"summary": pub.Summary,
			"text":    pub.Body,
		},
	})
	comments := f.comments[12]
	if len(comments) != 1 || len(f.runs) != 1 {
		t.Fatalf("after the first run: %d comments, %d check runs; want 1 and 1", len(comments), len(f.runs))
	}
	id := comments[0].ID
	want := report.Posted{
		Comment:    "created",
		CommentURL: fmt.Sprintf("https://github.com/sluice-ci/demo/pull/12#issuecomment-%d", id),
		Check:      "check run",
	}
	if posted != want {
		t.Errorf("Posted = %+v, want %+v", posted, want)
	}
	// The two writes are a second apart; reads are not spaced.
	if got := clk.Waits(); !reflect.DeepEqual(got, []time.Duration{time.Second}) {
		t.Errorf("waits %v, want [1s] between the two writes", got)
	}

	// Second run, new body: the same comment and check run are edited.
	pub2 := publication("accuracy 0.95 (main 0.94)", true)
	posted, err = p.Publish(ctx, pub2)
	if err != nil {
		t.Fatalf("second Publish: %v", err)
	}
	reqs = f.requests()
	checkHeaders(t, reqs)
	runID := f.runs[0].ID
	wantKeys(t, reqs,
		listComments,
		"PATCH "+repoPath+"/issues/comments/"+strconv.FormatInt(id, 10),
		listRuns,
		"PATCH "+repoPath+"/check-runs/"+strconv.FormatInt(runID, 10),
	)
	wantBody(t, reqs[1], map[string]any{"body": pub2.Body})
	if got := reqs[3].Body["name"]; got != testCheck {
		t.Errorf("check run update sends name %v, want %q", got, testCheck)
	}
	if got := reqs[3].Body["conclusion"]; got != "success" {
		t.Errorf("check run update sends conclusion %v, want success", got)
	}
	if len(f.comments[12]) != 1 || f.comments[12][0].Body != pub2.Body {
		t.Errorf("comments after the edit: %+v", f.comments[12])
	}
	if len(f.runs) != 1 || f.runs[0].Conclusion != "success" || f.runs[0].Name != testCheck || f.runs[0].Text != pub2.Body {
		t.Errorf("check runs after the update: %+v", f.runs)
	}
	if posted.Comment != "updated" || posted.Check != "check run" || !strings.HasSuffix(posted.CommentURL, strconv.FormatInt(id, 10)) {
		t.Errorf("Posted = %+v", posted)
	}

	// Third run, same body: no comment is written; the check still is.
	posted, err = p.Publish(ctx, pub2)
	if err != nil {
		t.Fatalf("third Publish: %v", err)
	}
	reqs = f.requests()
	wantKeys(t, reqs, listComments, listRuns, "PATCH "+repoPath+"/check-runs/"+strconv.FormatInt(runID, 10))
	if posted.Comment != "unchanged" || posted.CommentURL == "" {
		t.Errorf("Posted = %+v, want an unchanged comment with its URL", posted)
	}
}

func TestPublishFindsStickyCommentOnPageThree(t *testing.T) {
	f := newFake(t, "")
	clk := newClock()
	base := time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC)
	var sticky *fakeComment
	for i := range 250 {
		at := base.Add(time.Duration(i) * time.Minute)
		if i == 230 {
			sticky = f.addComment(12, botLogin, "Bot", marker+"\nold report", at)
			continue
		}
		f.addComment(12, fmt.Sprintf("user%d", i%7), "User", fmt.Sprintf("comment %d", i), at)
	}
	p := newPublisher(t, f.config(clk))
	pub := publication("new report", true)
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := f.requests()
	checkHeaders(t, reqs)
	list := "GET " + repoPath + "/issues/12/comments"
	if n := count(reqs, list); n != 3 {
		t.Errorf("%d comment pages read, want 3", n)
	}
	var pages []string
	for _, r := range reqs {
		if r.key() == list {
			pages = append(pages, r.Query.Encode())
		}
	}
	if want := []string{"per_page=100", "page=2&per_page=100", "page=3&per_page=100"}; !reflect.DeepEqual(pages, want) {
		t.Errorf("pages read %q, want %q", pages, want)
	}
	if n := count(reqs, "POST "+repoPath+"/issues/12/comments"); n != 0 {
		t.Errorf("%d comments created, want none", n)
	}
	patch := find(t, reqs, "PATCH "+repoPath+"/issues/comments/"+strconv.FormatInt(sticky.ID, 10))
	wantBody(t, patch, map[string]any{"body": pub.Body})
	if posted.Comment != "updated" || sticky.Body != pub.Body {
		t.Errorf("Posted %+v; sticky body %q", posted, sticky.Body)
	}
}

func TestPublishLeavesOtherCommentsAlone(t *testing.T) {
	f := newFake(t, "")
	clk := newClock()
	at := time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC)
	// Someone pasted the marker; our own comment quotes it but does not
	// start with it; another pipeline's report has another marker.
	foreign := f.addComment(12, "mallory", "User", marker+"\nfake report", at)
	quoted := f.addComment(12, botLogin, "Bot", "see "+marker, at.Add(time.Minute))
	other := f.addComment(12, botLogin, "Bot", report.Marker("eval")+"\neval report", at.Add(2*time.Minute))
	p := newPublisher(t, f.config(clk))
	pub := publication("report", false)
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := f.requests()
	if n := count(reqs, "POST "+repoPath+"/issues/12/comments"); n != 1 {
		t.Errorf("%d comments created, want 1", n)
	}
	for _, r := range reqs {
		if r.Method == http.MethodPatch && strings.Contains(r.Path, "/issues/comments/") {
			t.Errorf("edited a comment that is not ours: %s", r.Path)
		}
	}
	if foreign.Body != marker+"\nfake report" || quoted.Body != "see "+marker || other.Body != report.Marker("eval")+"\neval report" {
		t.Errorf("other comments changed: %q %q %q", foreign.Body, quoted.Body, other.Body)
	}
	if posted.Comment != "created" || len(f.comments[12]) != 4 {
		t.Errorf("Posted %+v, %d comments", posted, len(f.comments[12]))
	}
}

func TestPublishEditsNewestOfSeveral(t *testing.T) {
	f := newFake(t, "")
	clk := newClock()
	at := time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC)
	older := f.addComment(12, botLogin, "Bot", marker+"\nfirst", at)
	newer := f.addComment(12, botLogin, "Bot", marker+"\nsecond", at.Add(time.Hour))
	var logs bytes.Buffer
	cfg := f.config(clk)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p := newPublisher(t, cfg)
	pub := publication("third", true)
	if _, err := p.Publish(context.Background(), pub); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if older.Body != marker+"\nfirst" || newer.Body != pub.Body {
		t.Errorf("older %q newer %q; want only the newer edited", older.Body, newer.Body)
	}
	if !strings.Contains(logs.String(), "several comments") || !strings.Contains(logs.String(), strconv.FormatInt(older.ID, 10)) {
		t.Errorf("no log line about the other comment:\n%s", logs.String())
	}
}

func TestIdentity(t *testing.T) {
	at := time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC)
	t.Run("personal token: GET /user", func(t *testing.T) {
		f := newFake(t, "")
		f.user, f.writer = "octocat", "octocat"
		bot := f.addComment(12, botLogin, "Bot", marker+"\nby the bot", at)
		mine := f.addComment(12, "octocat", "User", marker+"\nby octocat", at)
		p := newPublisher(t, f.config(newClock()))
		pub := publication("new", true)
		pub.HeadSHA = ""
		posted, err := p.Publish(context.Background(), pub)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if posted.Comment != "updated" || mine.Body != pub.Body || bot.Body != marker+"\nby the bot" {
			t.Errorf("Posted %+v; octocat's %q; bot's %q", posted, mine.Body, bot.Body)
		}
		if posted.Check != "" || count(f.requests(), "GET /user") != 1 {
			t.Errorf("want no check and one GET /user; Posted %+v", posted)
		}
	})
	t.Run("installation token: github-actions[bot]", func(t *testing.T) {
		f := newFake(t, "")
		f.user = "" // GET /user: 403 Resource not accessible by integration
		ours := f.addComment(12, botLogin, "Bot", marker+"\nold", at)
		p := newPublisher(t, f.config(newClock()))
		pub := publication("new", true)
		if _, err := p.Publish(context.Background(), pub); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if ours.Body != pub.Body {
			t.Errorf("the bot's comment was not edited: %q", ours.Body)
		}
		if p.identity != BotIdentity {
			t.Errorf("identity %q, want %q", p.identity, BotIdentity)
		}
	})
	t.Run("configured app identity", func(t *testing.T) {
		f := newFake(t, "")
		f.writer, f.app = "sluice-app[bot]", "sluice-app"
		theirs := f.addCheckRun(testCheck, testSHA, "github-actions")
		ours := f.addCheckRun(testCheck, testSHA, "sluice-app")
		cfg := f.config(newClock())
		cfg.Identity = "sluice-app[bot]"
		p := newPublisher(t, cfg)
		pub := publication("new", false)
		pub.Number = 0
		if _, err := p.Publish(context.Background(), pub); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		reqs := f.requests()
		if count(reqs, "GET /user") != 0 {
			t.Errorf("asked GET /user although the identity is configured")
		}
		if ours.Updates != 1 || theirs.Updates != 0 || len(f.runs) != 2 || ours.Conclusion != "failure" {
			t.Errorf("our run updated %d times, theirs %d; %d runs", ours.Updates, theirs.Updates, len(f.runs))
		}
	})
}

func TestPublishWithoutPullRequestOrCommit(t *testing.T) {
	f := newFake(t, "")
	p := newPublisher(t, f.config(newClock()))
	pub := publication("report", true)
	pub.Number = 0
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for _, r := range f.requests() {
		if strings.Contains(r.Path, "/issues") {
			t.Errorf("request %s for a run without a pull request", r.key())
		}
	}
	if posted.Comment != "" || posted.Check != "check run" {
		t.Errorf("Posted %+v", posted)
	}

	pub = publication("report", true)
	pub.HeadSHA = ""
	posted, err = p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for _, r := range f.requests() {
		if strings.Contains(r.Path, "check-runs") || strings.Contains(r.Path, "statuses") {
			t.Errorf("request %s without a head commit", r.key())
		}
	}
	if posted.Comment != "created" || posted.Check != "" {
		t.Errorf("Posted %+v", posted)
	}
}

func TestPublishReadOnlyToken(t *testing.T) {
	deny := func(f *fakeGitHub) {
		f.fail("POST "+repoPath+"/issues/12/comments", -1, reply{status: 403, body: integrationDenied})
		f.fail("PATCH "+repoPath+"/issues/comments/1001", -1, reply{status: 403, body: integrationDenied})
		f.fail("POST "+repoPath+"/check-runs", -1, reply{status: 403, body: integrationDenied})
		f.fail("POST "+repoPath+"/statuses/"+testSHA, -1, reply{status: 403, body: integrationDenied})
	}
	t.Run("every write refused", func(t *testing.T) {
		f := newFake(t, "")
		deny(f)
		p := newPublisher(t, f.config(newClock()))
		posted, err := p.Publish(context.Background(), publication("report", false))
		if !errors.Is(err, report.ErrReadOnly) {
			t.Fatalf("err = %v, want report.ErrReadOnly", err)
		}
		msg := err.Error()
		for _, want := range []string{"sluice-ci/demo", "pull request #12", "fork", "read-only", "6dcb09b5b578", "Resource not accessible by integration"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		if strings.Contains(msg, testToken) {
			t.Errorf("error prints the token: %q", msg)
		}
		if posted != (report.Posted{}) {
			t.Errorf("Posted %+v, want nothing", posted)
		}
		reqs := f.requests()
		for _, k := range []string{"POST " + repoPath + "/issues/12/comments", "POST " + repoPath + "/check-runs", "POST " + repoPath + "/statuses/" + testSHA} {
			if n := count(reqs, k); n != 1 {
				t.Errorf("%s sent %d times, want once", k, n)
			}
		}
	})
	t.Run("comment unchanged, check refused", func(t *testing.T) {
		f := newFake(t, "")
		pub := publication("report", false)
		f.addComment(12, botLogin, "Bot", pub.Body, time.Now())
		deny(f)
		p := newPublisher(t, f.config(newClock()))
		_, err := p.Publish(context.Background(), pub)
		if !errors.Is(err, report.ErrReadOnly) {
			t.Fatalf("err = %v, want report.ErrReadOnly", err)
		}
	})
	t.Run("only the comment refused", func(t *testing.T) {
		f := newFake(t, "")
		f.fail("POST "+repoPath+"/issues/12/comments", -1, reply{status: 403, body: integrationDenied})
		p := newPublisher(t, f.config(newClock()))
		posted, err := p.Publish(context.Background(), publication("report", false))
		if err == nil || errors.Is(err, report.ErrReadOnly) {
			t.Fatalf("err = %v, want an error that is not ErrReadOnly", err)
		}
		if !strings.Contains(err.Error(), "pull-requests: write") {
			t.Errorf("error %q does not name the permission", err)
		}
		if posted.Check != "check run" || posted.Comment != "" {
			t.Errorf("Posted %+v", posted)
		}
	})
}

func TestPublishFallsBackToCommitStatus(t *testing.T) {
	f := newFake(t, "")
	f.user, f.writer = "octocat", "octocat"
	f.fail("POST "+repoPath+"/check-runs", -1, reply{status: 403, body: patDenied})
	p := newPublisher(t, f.config(newClock()))
	pub := publication("report", false)
	pub.Number = 0
	pub.Summary = strings.Repeat("é", 150) + " tail"
	posted, err := p.Publish(context.Background(), pub)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if posted.Check != "commit status" {
		t.Errorf("Posted %+v, want a commit status", posted)
	}
	reqs := f.requests()
	checkHeaders(t, reqs)
	st := find(t, reqs, "POST "+repoPath+"/statuses/"+testSHA)
	desc := strings.Repeat("é", 139) + "…"
	wantBody(t, st, map[string]any{
		"state":       "failure",
		"context":     testCheck,
		"description": desc,
		"target_url":  pub.DetailsURL,
	})
	if n := utf8.RuneCountInString(desc); n != 140 {
		t.Fatalf("test: description has %d runes", n)
	}
	if len(f.statuses) != 1 || len(f.runs) != 0 {
		t.Errorf("%d statuses, %d check runs", len(f.statuses), len(f.runs))
	}
}

func TestPublishCapsLongOutput(t *testing.T) {
	f := newFake(t, "")
	clk := newClock()
	p := newPublisher(t, f.config(clk))
	pub := publication(strings.Repeat("ü", 70_000), false)
	pub.Summary = strings.Repeat("ß", 70_000)
	if _, err := p.Publish(context.Background(), pub); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := f.requests()
	out, _ := find(t, reqs, "POST "+repoPath+"/check-runs").Body["output"].(map[string]any)
	for _, field := range []string{"summary", "text"} {
		s, _ := out[field].(string)
		if n := utf8.RuneCountInString(s); n != 65_535 || !utf8.ValidString(s) {
			t.Errorf("output.%s: %d runes (valid UTF-8: %v), want 65535", field, n, utf8.ValidString(s))
		}
	}
	body, _ := find(t, reqs, "POST "+repoPath+"/issues/12/comments").Body["body"].(string)
	if n := utf8.RuneCountInString(body); n != 65_536 || !strings.HasPrefix(body, marker) {
		t.Errorf("comment body: %d runes, want 65536 starting with the marker", n)
	}
	// The cut body is what is compared next time: nothing is rewritten.
	posted, err := p.Publish(context.Background(), pub)
	if err != nil || posted.Comment != "unchanged" {
		t.Errorf("second Publish: %+v, %v; want the comment unchanged", posted, err)
	}
}

func TestRateLimits(t *testing.T) {
	comments := "POST " + repoPath + "/issues/12/comments"
	runs := "POST " + repoPath + "/check-runs"
	cases := []struct {
		name    string
		key     string
		replies []reply
		want    []time.Duration
	}{{
		name:    "secondary limit with Retry-After",
		key:     comments,
		replies: []reply{{status: 403, header: map[string]string{"Retry-After": "7"}, body: secondaryLimit}},
		want:    []time.Duration{7 * time.Second},
	}, {
		name:    "429 with Retry-After",
		key:     runs,
		replies: []reply{{status: 429, header: map[string]string{"Retry-After": "5"}, body: `{"message":"Too Many Requests"}`}},
		want:    []time.Duration{5 * time.Second},
	}, {
		name: "429 without a hint backs off",
		key:  runs,
		replies: []reply{
			{status: 429, body: `{"message":"Too Many Requests"}`},
			{status: 429, body: `{"message":"Too Many Requests"}`},
		},
		want: []time.Duration{time.Minute, 2 * time.Minute},
	}, {
		name:    "secondary limit without Retry-After",
		key:     comments,
		replies: []reply{{status: 403, body: secondaryLimit}},
		want:    []time.Duration{time.Minute},
	}, {
		name: "primary limit waits until the reset",
		key:  "GET " + repoPath + "/issues/12/comments",
		replies: []reply{{status: 403, body: primaryLimit, header: map[string]string{
			"X-RateLimit-Limit":     "1000",
			"X-RateLimit-Remaining": "0",
			"X-RateLimit-Used":      "1000",
			"X-RateLimit-Resource":  "core",
			"X-RateLimit-Reset":     strconv.FormatInt(newClock().Now().Add(42*time.Second).Unix(), 10),
		}}},
		want: []time.Duration{42 * time.Second},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "")
			for _, r := range tc.replies {
				f.fail(tc.key, 1, r)
			}
			clk := newClock()
			cfg := f.config(clk)
			cfg.WriteSpacing = -1 // only rate-limit waits
			p := newPublisher(t, cfg)
			posted, err := p.Publish(context.Background(), publication("report", true))
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if got := clk.Waits(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("waits %v, want %v", got, tc.want)
			}
			reqs := f.requests()
			k := strings.SplitN(tc.key, "?", 2)[0]
			if n := count(reqs, k); n != len(tc.replies)+1 {
				t.Errorf("%s sent %d times, want %d", k, n, len(tc.replies)+1)
			}
			if len(f.comments[12]) != 1 || len(f.runs) != 1 || posted.Comment != "created" || posted.Check != "check run" {
				t.Errorf("%d comments, %d check runs, Posted %+v; want one of each", len(f.comments[12]), len(f.runs), posted)
			}
		})
	}
}

func TestRateLimitGivesUp(t *testing.T) {
	t.Run("MaxWait exceeded", func(t *testing.T) {
		f := newFake(t, "")
		f.fail("POST "+repoPath+"/issues/12/comments", -1, reply{status: 403, header: map[string]string{"Retry-After": "600"}, body: secondaryLimit})
		clk := newClock()
		cfg := f.config(clk)
		cfg.WriteSpacing = -1
		p := newPublisher(t, cfg)
		_, err := p.Publish(context.Background(), publication("report", true))
		if err == nil {
			t.Fatal("Publish succeeded under a rate limit that never ends")
		}
		msg := err.Error()
		for _, want := range []string{"rate limit", "POST /repos/sluice-ci/demo/issues/12/comments", "15m0s", "sluice-ci/demo#12"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		if errors.Is(err, report.ErrReadOnly) {
			t.Errorf("a rate limit is not a read-only token: %v", err)
		}
		if got := clk.Waits(); !reflect.DeepEqual(got, []time.Duration{10 * time.Minute}) {
			t.Errorf("waits %v, want one of 10m (a second would pass 15m)", got)
		}
		if n := count(f.requests(), "POST "+repoPath+"/check-runs"); n != 0 {
			t.Errorf("went on to the check run after giving up (%d requests)", n)
		}
	})
	t.Run("waiting disabled", func(t *testing.T) {
		f := newFake(t, "")
		f.fail("GET /user", -1, reply{status: 429, header: map[string]string{"Retry-After": "1"}, body: `{"message":"Too Many Requests"}`})
		clk := newClock()
		cfg := f.config(clk)
		cfg.MaxWait = -1
		p := newPublisher(t, cfg)
		_, err := p.Publish(context.Background(), publication("report", true))
		if err == nil || !strings.Contains(err.Error(), "waiting is disabled") {
			t.Errorf("err = %v, want a rate limit error", err)
		}
		if len(clk.Waits()) != 0 {
			t.Errorf("waited %v", clk.Waits())
		}
	})
}

func TestPublishDoesNotRepostAfterLostAnswer(t *testing.T) {
	f := newFake(t, "")
	// The comment is created but the answer is a 502.
	f.fail("POST "+repoPath+"/issues/12/comments", 1, reply{status: 502, body: `{"message":"Server Error"}`, apply: true})
	clk := newClock()
	p := newPublisher(t, f.config(clk))
	posted, err := p.Publish(context.Background(), publication("report", true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := f.requests()
	if n := count(reqs, "POST "+repoPath+"/issues/12/comments"); n != 1 {
		t.Errorf("comment POST sent %d times, want once", n)
	}
	if n := count(reqs, "GET "+repoPath+"/issues/12/comments"); n != 2 {
		t.Errorf("comments listed %d times, want twice (again after the 502)", n)
	}
	if len(f.comments[12]) != 1 || posted.Comment != "created" {
		t.Errorf("%d comments, Posted %+v", len(f.comments[12]), posted)
	}
}

func TestEnterpriseServer(t *testing.T) {
	for _, suffix := range []string{"", "/"} {
		f := newFake(t, "/api/v3")
		f.pulls[7] = fakePull{HeadSHA: testSHA}
		cfg := f.config(newClock())
		cfg.APIURL += suffix
		p := newPublisher(t, cfg)
		pub := publication("report", true)
		pub.Number = 7
		posted, err := p.Publish(context.Background(), pub)
		if err != nil {
			t.Fatalf("Publish to %s: %v", cfg.APIURL, err)
		}
		sha, err := p.HeadSHA(context.Background(), 7)
		if err != nil || sha != testSHA {
			t.Errorf("HeadSHA = %q, %v", sha, err)
		}
		reqs := f.requests()
		checkHeaders(t, reqs)
		for _, r := range reqs {
			if !strings.HasPrefix(r.Raw, "/api/v3/") {
				t.Errorf("request to %s, outside /api/v3", r.Raw)
			}
		}
		if len(reqs) < 5 || posted.Comment != "created" || posted.Check != "check run" {
			t.Errorf("%d requests, Posted %+v", len(reqs), posted)
		}
	}
}

func TestPullRequest(t *testing.T) {
	f := newFake(t, "")
	f.pulls[12] = fakePull{HeadSHA: testSHA, Labels: []string{"sluice:approved", "ml"}}
	p := newPublisher(t, f.config(newClock()))
	ctx := context.Background()

	sha, err := p.HeadSHA(ctx, 12)
	if err != nil || sha != testSHA {
		t.Errorf("HeadSHA = %q, %v", sha, err)
	}
	labels, err := p.Labels(ctx, 12)
	if err != nil || !reflect.DeepEqual(labels, []string{"sluice:approved", "ml"}) {
		t.Errorf("Labels = %q, %v", labels, err)
	}
	wantKeys(t, f.requests(), "GET "+repoPath+"/pulls/12", "GET "+repoPath+"/pulls/12")

	_, err = p.HeadSHA(ctx, 99)
	if err == nil {
		t.Fatal("HeadSHA of a missing pull request succeeded")
	}
	for _, want := range []string{"#99", "sluice-ci/demo", "not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := p.Labels(ctx, 0); err == nil {
		t.Error("Labels(0) succeeded")
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests, want only the one for #99", n)
	}
}

func TestInvalidToken(t *testing.T) {
	f := newFake(t, "")
	cfg := f.config(newClock())
	cfg.Token = "ghp_wrongTokenValue"
	p := newPublisher(t, cfg)
	_, err := p.Publish(context.Background(), publication("report", true))
	if err == nil || !strings.Contains(err.Error(), "token is invalid") {
		t.Fatalf("err = %v, want the token called invalid", err)
	}
	if strings.Contains(err.Error(), "ghp_wrongTokenValue") {
		t.Errorf("error prints the token: %v", err)
	}
	if _, err := p.HeadSHA(context.Background(), 12); err == nil || !strings.Contains(err.Error(), "token is invalid") {
		t.Errorf("HeadSHA err = %v, want the token called invalid", err)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{Token: "t", Repository: "o/r"}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no slash", func(c *Config) { c.Repository = "demo" }, "owner/name"},
		{"empty owner", func(c *Config) { c.Repository = "/demo" }, "owner/name"},
		{"three parts", func(c *Config) { c.Repository = "a/b/c" }, "owner/name"},
		{"empty", func(c *Config) { c.Repository = "" }, "owner/name"},
		{"no token", func(c *Config) { c.Token = " \n" }, "no token"},
		{"bad url", func(c *Config) { c.APIURL = "https://user:pa ss@ghes/api/v3" }, "API URL"},
		{"not http", func(c *Config) { c.APIURL = "ftp://ghes.example.com/api/v3" }, "not an http(s) URL"},
		{"no host", func(c *Config) { c.APIURL = "/api/v3" }, "not an http(s) URL"},
	}
	for _, tc := range cases {
		cfg := ok
		tc.edit(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pa ss") {
			t.Errorf("%s: error prints the URL's password: %v", tc.name, err)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New(%v): %v", ok, err)
	}
	cfg := Config{Token: testToken, Repository: "o/r"}
	if s := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(s, testToken) {
		t.Errorf("Config prints the token: %s", s)
	}
}

func TestPublishRefusesBadPublications(t *testing.T) {
	f := newFake(t, "")
	p := newPublisher(t, f.config(newClock()))
	cases := map[string]func(*report.Publication){
		"other repository": func(p *report.Publication) { p.Repository = "someone/else" },
		"no marker":        func(p *report.Publication) { p.Marker = "" },
		"body without it":  func(p *report.Publication) { p.Body = "hello " + marker },
		"path in sha":      func(p *report.Publication) { p.HeadSHA = "../../../user" },
		"negative number":  func(p *report.Publication) { p.Number = -3 },
	}
	for name, edit := range cases {
		pub := publication("report", true)
		edit(pub)
		if _, err := p.Publish(context.Background(), pub); err == nil {
			t.Errorf("%s: Publish succeeded", name)
		}
	}
	if _, err := p.Publish(context.Background(), nil); err == nil {
		t.Error("Publish(nil) succeeded")
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("sent %q for refused publications", keys(reqs))
	}
}

func TestContextCancelledWhileWaiting(t *testing.T) {
	f := newFake(t, "")
	f.fail("GET /user", -1, reply{status: 403, header: map[string]string{"Retry-After": "30"}, body: secondaryLimit})
	ctx, cancel := context.WithCancel(context.Background())
	cfg := f.config(newClock())
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}
	p := newPublisher(t, cfg)
	_, err := p.Publish(ctx, publication("report", true))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepCtx on a cancelled context = %v, want context.Canceled", err)
	}
	if err := sleepCtx(context.Background(), 0); err != nil {
		t.Errorf("sleepCtx(0) = %v", err)
	}
}
