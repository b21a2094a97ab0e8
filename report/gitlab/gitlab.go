// Package gitlab publishes sluice reports on GitLab: one sticky note on the
// merge request, edited in place on every run, and a commit status on the
// merge request's source commit. It also writes the metrics file that
// GitLab's metrics report reads (OpenMetrics).
//
// GitLab's CI_JOB_TOKEN cannot write notes or commit statuses: posting needs
// a project (or group) access token, or a personal access token, with the
// api scope and at least the Developer role, stored as a masked CI/CD
// variable. A merge request pipeline that runs in a fork has no such token;
// Publish then returns an error wrapping report.ErrReadOnly, and the caller
// leaves the publication in a file for a pipeline of the parent project.
//
// Requests go through GitLab's client library (gitlab.com/gitlab-org/api/
// client-go) with its own retries and rate limiter off: the publisher
// retries through internal/backoff, looking for its note again before it
// writes a second time, and explains GitLab's answers in *APIError.
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/sluice-ci/sluice/internal/backoff"
	"github.com/sluice-ci/sluice/report"
)

// DefaultAPIURL is the API of gitlab.com, used when Config.APIURL is empty.
const DefaultAPIURL = "https://gitlab.com/api/v4"

// DefaultMaxWait caps the time one Publish or Labels call waits between
// retries when Config.MaxWait is zero.
const DefaultMaxWait = 2 * time.Minute

// Config configures a Publisher. Only Token and a project (here or in the
// publication) are needed; everything else has a default.
type Config struct {
	// APIURL is GitLab's REST API, CI_API_V4_URL in a job
	// ("https://gitlab.example.com/api/v4"); "" means DefaultAPIURL.
	APIURL string
	// Token is a project or group access token, or a personal access token,
	// with the api scope. It is sent as the PRIVATE-TOKEN header and never
	// printed. "" means there is no token (a fork's merge request pipeline):
	// Publish then fails with report.ErrReadOnly without asking GitLab.
	Token string
	// JobToken is true when Token is CI_JOB_TOKEN: it is sent as the
	// JOB-TOKEN header, which can read (Labels) but not write notes or
	// statuses, so Publish fails at once with an error wrapping
	// report.ErrReadOnly that says which token to use instead.
	JobToken bool
	// Project is the project id or path ("group/sub/project"); a
	// publication's Repository overrides it when set.
	Project string
	// PipelineID is CI_PIPELINE_ID; when > 0 it is set on the commit
	// status, so that GitLab attaches the status to that pipeline when
	// several pipelines share the commit.
	PipelineID int64
	// HTTPClient sends the requests; nil means a client with a 60 s timeout.
	// A copy is used that does not follow redirects to another scheme or
	// host, where the token would go along.
	HTTPClient *http.Client
	// Logger receives what the publisher does; nil discards it.
	Logger *slog.Logger
	// Sleep waits between retries; nil means a timer that stops when ctx is
	// done. Tests pass a fake that records the waits.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxWait caps the total time one Publish or Labels call spends waiting
	// between retries; 0 means DefaultMaxWait, a negative value disables
	// retries.
	MaxWait time.Duration
}

// Publisher posts publications on GitLab merge requests and commits.
type Publisher struct {
	cfg   Config
	api   *gl.Client
	log   *slog.Logger
	sleep func(ctx context.Context, d time.Duration) error
}

var _ report.Publisher = (*Publisher)(nil)

// New returns a Publisher for cfg. It checks the API URL but does not
// contact GitLab.
func New(cfg Config) (*Publisher, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	u, err := url.Parse(cfg.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := cfg.APIURL
		if err == nil {
			shown = u.Redacted()
		}
		return nil, fmt.Errorf("gitlab: API URL %q is not an http(s) URL like %s", shown, DefaultAPIURL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Sleep == nil {
		cfg.Sleep = backoff.Sleep
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	api, err := newAPI(u, cfg.HTTPClient, cfg.Token, cfg.JobToken)
	if err != nil {
		return nil, fmt.Errorf("gitlab: API URL %s: %w", u.Redacted(), err)
	}
	return &Publisher{cfg: cfg, api: api, log: cfg.Logger, sleep: cfg.Sleep}, nil
}

// Publish posts pub: when pub.Number > 0, the sticky note on merge request
// !Number (created, or updated in place when its body changed, or left as
// it is); when pub.HeadSHA is set, a commit status named pub.CheckName on
// that commit (success or failed). It returns what it did; after a failure
// it still returns what was done before it. An error wraps
// report.ErrReadOnly when the token may not write (CI_JOB_TOKEN, no token,
// or GitLab answered 401 or 403 to a write).
func (p *Publisher) Publish(ctx context.Context, pub *report.Publication) (report.Posted, error) {
	var posted report.Posted
	if pub == nil {
		return posted, errors.New("gitlab: no publication to post")
	}
	project := p.cfg.Project
	if pub.Repository != "" {
		project = pub.Repository
	}
	if pub.Number == 0 && pub.HeadSHA == "" {
		p.log.Info("gitlab: no merge request and no commit: nothing to post")
		return posted, nil
	}
	switch {
	case project == "":
		return posted, errors.New("gitlab: no project to post to: set the project (CI_PROJECT_ID or CI_PROJECT_PATH)")
	case pub.Number < 0:
		return posted, fmt.Errorf("gitlab: %d is not a merge request iid", pub.Number)
	case pub.HeadSHA != "" && !shaRE.MatchString(pub.HeadSHA):
		return posted, fmt.Errorf("gitlab: %q is not a commit SHA", pub.HeadSHA)
	case p.cfg.Token == "":
		return posted, fmt.Errorf("gitlab: post the report on project %s: %w: there is no GitLab token; %s", project, report.ErrReadOnly, tokenHint)
	case p.cfg.JobToken:
		return posted, fmt.Errorf("gitlab: post the report on project %s: %w: CI_JOB_TOKEN cannot write merge request notes or commit statuses; %s", project, report.ErrReadOnly, tokenHint)
	}
	c := p.newCall()
	if pub.Number > 0 {
		comment, link, err := c.stickyNote(ctx, project, int64(pub.Number), pub)
		if err != nil {
			return posted, p.redact(err)
		}
		posted.Comment, posted.CommentURL = comment, link
	}
	if pub.HeadSHA != "" {
		if err := c.commitStatus(ctx, project, pub); err != nil {
			return posted, p.redact(err)
		}
		posted.Check = "commit status"
	}
	return posted, nil
}

// Labels returns the labels of merge request !iid of Config.Project.
func (p *Publisher) Labels(ctx context.Context, iid int) ([]string, error) {
	if p.cfg.Project == "" {
		return nil, errors.New("gitlab: no project to read merge request labels from")
	}
	if iid <= 0 {
		return nil, fmt.Errorf("gitlab: %d is not a merge request iid", iid)
	}
	mr, err := p.newCall().mergeRequest(ctx, p.cfg.Project, int64(iid))
	if err != nil {
		return nil, p.redact(err)
	}
	return append([]string{}, mr.Labels...), nil
}

// tokenHint says how to give sluice a token that may write.
const tokenHint = "store a project access token (or group access token) with the api scope and the Developer role " +
	"as a masked CI/CD variable and pass it to sluice; a merge request pipeline that runs in a fork " +
	"has no such token: leave the report for a pipeline of the parent project to post"

// shaRE matches a commit SHA (SHA-1 or SHA-256, abbreviated or not).
var shaRE = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

// stickyNote creates or updates the note of pub on merge request !iid and
// returns what it did and the note's URL.
func (c *call) stickyNote(ctx context.Context, project string, iid int64, pub *report.Publication) (string, string, error) {
	mr, err := c.mergeRequest(ctx, project, iid)
	if err != nil {
		return "", "", err
	}
	var me gl.User
	if _, err := c.read(ctx, "read the token's user (GET /user)", func(opt gl.RequestOptionFunc) (*gl.Response, error) {
		u, resp, err := c.p.api.Users.CurrentUser(opt)
		if u != nil {
			me = *u
		}
		return resp, err
	}); err != nil {
		return "", "", fmt.Errorf("gitlab: %w", err)
	}
	if me.ID == 0 {
		return "", "", errors.New("gitlab: GET /user did not say which user the token belongs to")
	}
	body := &pub.Body
	action := ""
	a := c.a.Again()
	for {
		found, err := c.findNote(ctx, project, iid, me.ID, pub.Marker)
		if err != nil {
			return "", "", err
		}
		what := "create the note on"
		var id int64
		switch {
		case found != nil && sameBody(found.Body, pub.Body):
			if action == "" {
				action = "unchanged"
			}
			c.p.log.Info("gitlab: merge request note "+action, "project", project, "mr", iid, "note", found.ID)
			return action, noteURL(mr.WebURL, found.ID), nil
		case found != nil:
			if action == "" {
				action = "updated"
			}
			what, id = "update the note on", found.ID
			_, err = send(ctx, func(opt gl.RequestOptionFunc) (*gl.Response, error) {
				_, resp, err := c.p.api.Notes.UpdateMergeRequestNote(project, iid, found.ID, &gl.UpdateMergeRequestNoteOptions{Body: body}, opt)
				return resp, err
			})
		default:
			if action == "" {
				action = "created"
			}
			_, err = send(ctx, func(opt gl.RequestOptionFunc) (*gl.Response, error) {
				created, resp, err := c.p.api.Notes.CreateMergeRequestNote(project, iid, &gl.CreateMergeRequestNoteOptions{Body: body}, opt)
				if created != nil {
					id = created.ID
				}
				return resp, err
			})
		}
		if err == nil {
			c.p.log.Info("gitlab: merge request note "+action, "project", project, "mr", iid, "note", id)
			return action, noteURL(mr.WebURL, id), nil
		}
		what = fmt.Sprintf("%s merge request !%d of project %s", what, iid, project)
		if !transient(err) {
			return "", "", writeError(what, err)
		}
		// The write may have happened: look for the note again before
		// writing, so that a retry never posts a second note.
		c.p.log.Warn("gitlab: writing the note failed; looking for it again before retrying",
			"project", project, "mr", iid, "error", c.p.redactString(err.Error()))
		if err := c.wait(ctx, a, err, fmt.Errorf("gitlab: %s: %w", what, err)); err != nil {
			return "", "", err
		}
	}
}

// mergeRequest reads merge request !iid; not found is an error naming it.
func (c *call) mergeRequest(ctx context.Context, project string, iid int64) (*gl.MergeRequest, error) {
	var mr *gl.MergeRequest
	what := fmt.Sprintf("read merge request !%d of project %s", iid, project)
	if _, err := c.read(ctx, what, func(opt gl.RequestOptionFunc) (resp *gl.Response, err error) {
		mr, resp, err = c.p.api.MergeRequests.GetMergeRequest(project, iid, nil, opt)
		return resp, err
	}); err != nil {
		return nil, notFound(project, iid, err)
	}
	if mr == nil {
		mr = &gl.MergeRequest{}
	}
	return mr, nil
}

// notFound is err of a read about merge request !iid, saying which merge
// request when GitLab answered 404.
func notFound(project string, iid int64, err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
		return fmt.Errorf("gitlab: merge request !%d of project %s not found, or the token cannot see it: %w", iid, project, ae)
	}
	return fmt.Errorf("gitlab: %w", err)
}

// findNote lists every note of merge request !iid, oldest first, and
// returns the first that is not a system note, was written by user me and
// contains marker; nil when there is none.
func (c *call) findNote(ctx context.Context, project string, iid, me int64, marker string) (*gl.Note, error) {
	for page, pages := int64(1), 0; ; pages++ {
		if pages >= 1000 {
			return nil, fmt.Errorf("gitlab: merge request !%d of project %s: more than 1000 pages of notes", iid, project)
		}
		opts := &gl.ListMergeRequestNotesOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100},
			OrderBy: gl.Ptr("created_at"), Sort: gl.Ptr("asc")}
		var notes []*gl.Note
		what := fmt.Sprintf("list the notes of merge request !%d of project %s (page %d)", iid, project, page)
		header, err := c.read(ctx, what, func(opt gl.RequestOptionFunc) (resp *gl.Response, err error) {
			notes, resp, err = c.p.api.Notes.ListMergeRequestNotes(project, iid, opts, opt)
			return resp, err
		})
		if err != nil {
			return nil, notFound(project, iid, err)
		}
		for _, n := range notes {
			if n != nil && !n.System && n.Author.ID == me && strings.Contains(n.Body, marker) {
				return n, nil
			}
		}
		// X-Next-Page is empty on the last page.
		next, err := strconv.ParseInt(strings.TrimSpace(header.Get("X-Next-Page")), 10, 64)
		if err != nil || next <= page {
			return nil, nil
		}
		page = next
	}
}

// commitStatus sets the commit status of pub on pub.HeadSHA.
func (c *call) commitStatus(ctx context.Context, project string, pub *report.Publication) error {
	st := gl.SetCommitStatusOptions{State: gl.Failed, Name: gl.Ptr(pub.CheckName), Description: gl.Ptr(cutRunes(pub.Summary, 255))}
	if pub.Passed {
		st.State = gl.Success
	}
	if pub.CheckName == "" {
		st.Name = gl.Ptr("sluice")
	}
	switch {
	case pub.DetailsURL == "":
	case utf8.RuneCountInString(pub.DetailsURL) > 255:
		c.p.log.Warn("gitlab: the details URL is longer than GitLab's 255 characters; the status has no link", "url", pub.DetailsURL)
	default:
		st.TargetURL = gl.Ptr(pub.DetailsURL)
	}
	if c.p.cfg.PipelineID > 0 {
		st.PipelineID = gl.Ptr(c.p.cfg.PipelineID)
	}
	what := fmt.Sprintf("set the commit status %q on %s in project %s", *st.Name, pub.HeadSHA, project)
	a := c.a.Again()
	for {
		_, err := send(ctx, func(opt gl.RequestOptionFunc) (*gl.Response, error) {
			_, resp, err := c.p.api.Commits.SetCommitStatus(project, pub.HeadSHA, &st, opt)
			return resp, err
		})
		switch {
		case err == nil:
			c.p.log.Info("gitlab: commit status set", "project", project, "sha", pub.HeadSHA, "state", st.State)
			return nil
		case sameState(err):
			// GitLab refuses to set the state the status already has.
			c.p.log.Info("gitlab: commit status already set", "project", project, "sha", pub.HeadSHA, "state", st.State)
			return nil
		case !transient(err):
			return writeError(what, err)
		}
		// Sending a status again is safe: if the first one arrived, GitLab
		// answers "Cannot transition status", which counts as done.
		if err := c.wait(ctx, a, err, fmt.Errorf("gitlab: %s: %w", what, err)); err != nil {
			return err
		}
	}
}

// sameState reports whether err is GitLab's 400 "Cannot transition status",
// its answer to a status that is already in the state sent.
func sameState(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(ae.Message), "cannot transition status")
}

// writeError explains a failed write; 401 and 403 wrap report.ErrReadOnly.
func writeError(what string, err error) error {
	switch code := statusCode(err); code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("gitlab: %s: %w (GitLab answered %d: %w); CI_JOB_TOKEN cannot write merge request notes or commit statuses; %s",
			what, report.ErrReadOnly, code, err, tokenHint)
	case http.StatusNotFound:
		return fmt.Errorf("gitlab: %s: not found, or the token cannot see it: %w", what, err)
	}
	return fmt.Errorf("gitlab: %s: %w", what, err)
}

// sameBody reports whether a note's body is the report's, ignoring line
// endings and surrounding white space (which GitLab may normalise).
func sameBody(a, b string) bool {
	norm := func(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) }
	return norm(a) == norm(b)
}

// noteURL links to a note of a merge request.
func noteURL(mrURL string, id int64) string {
	if mrURL == "" || id == 0 {
		return mrURL
	}
	return mrURL + "#note_" + strconv.FormatInt(id, 10)
}

// cutRunes cuts s to at most n runes.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// redact removes the token from an error's message; errors.Is and
// errors.As still see the wrapped error.
func (p *Publisher) redact(err error) error {
	if err == nil || p.cfg.Token == "" || !strings.Contains(err.Error(), p.cfg.Token) {
		return err
	}
	return &redacted{msg: p.redactString(err.Error()), err: err}
}

func (p *Publisher) redactString(s string) string {
	if p.cfg.Token == "" {
		return s
	}
	return strings.ReplaceAll(s, p.cfg.Token, "[REDACTED]")
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
