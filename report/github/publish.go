package github

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	gh "github.com/google/go-github/v84/github"

	"github.com/sluice-ci/sluice/report"
)

const (
	// maxCommentRunes is the longest comment GitHub takes (65,536
	// characters); a longer body is cut, with truncatedNote at its end.
	maxCommentRunes = 65_536
	// maxOutputRunes caps a check run's output.summary and output.text.
	maxOutputRunes = 65_535
	// maxDescriptionRunes caps a commit status's description.
	maxDescriptionRunes = 140
	truncatedNote       = "\n\n… (cut: GitHub takes no more)"

	// Posted.Check values.
	checkRun     = "check run"
	commitStatus = "commit status"

	defaultCheckName = "sluice"
)

// Publish posts pub: on pull request pub.Number (when > 0) the sticky
// comment, found again by pub.Marker among the token identity's own
// comments, created, edited or left as it is; on commit pub.HeadSHA (when
// set) the check run named pub.CheckName, updated when the identity already
// set one there, or a commit status when the token may not write check runs.
//
// It tries both, and returns what it did with the errors of what failed.
// When GitHub refused every write it tried with 403 (the read-only token of
// a pull request from a fork), the error wraps report.ErrReadOnly.
func (p *Publisher) Publish(ctx context.Context, pub *report.Publication) (report.Posted, error) {
	var posted report.Posted
	if err := p.validate(pub); err != nil {
		return posted, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.newCall()

	var errs []error
	var refused []string
	wrote := false
	if pub.Number > 0 {
		res, err := p.sticky(ctx, c, pub)
		if err != nil {
			if isRateLimited(err) || ctx.Err() != nil {
				return posted, err
			}
			errs = append(errs, err)
			if denied(err) {
				refused = append(refused, fmt.Sprintf("the comment on pull request #%d", pub.Number))
			}
		} else {
			posted.Comment, posted.CommentURL = res.state, res.url
			wrote = wrote || res.state != "unchanged"
		}
	}
	if pub.HeadSHA != "" {
		kind, err := p.setCheck(ctx, c, pub)
		if err != nil {
			errs = append(errs, err)
			if denied(err) {
				refused = append(refused, fmt.Sprintf("the check on commit %s (neither a check run nor a commit status)", shortSHA(pub.HeadSHA)))
			}
		} else {
			posted.Check = kind
			wrote = true
		}
	} else {
		p.log.Debug("no head commit: no check set", "pr", pub.Number)
	}

	switch {
	case len(errs) == 0:
		p.log.Info("report posted", "pr", pub.Number, "comment", posted.Comment, "url", posted.CommentURL, "check", posted.Check)
		return posted, nil
	case !wrote && len(refused) == len(errs):
		return posted, fmt.Errorf("github: %w: %s refused %s; a pull_request workflow's token is read-only when the pull request comes from a fork: %w",
			report.ErrReadOnly, p.repo, strings.Join(refused, " and "), errs[0])
	default:
		return posted, errors.Join(errs...)
	}
}

// validate checks a publication before anything is sent: it may come from
// a file written by an untrusted run.
func (p *Publisher) validate(pub *report.Publication) error {
	switch {
	case pub == nil:
		return fmt.Errorf("github: no publication to post to %s", p.repo)
	case pub.Repository != "" && !strings.EqualFold(pub.Repository, p.repo):
		return fmt.Errorf("github: the publication is for repository %q, not %s", pub.Repository, p.repo)
	case pub.Number < 0:
		return fmt.Errorf("github: %d is not a pull request number (repository %s)", pub.Number, p.repo)
	case pub.HeadSHA != "" && !isSHA(pub.HeadSHA):
		return fmt.Errorf("github: head commit %q of %s is not a full commit sha", pub.HeadSHA, p.repo)
	case pub.Number > 0 && strings.TrimSpace(pub.Marker) == "":
		return fmt.Errorf("github: the report for %s#%d has no marker to find its comment again by", p.repo, pub.Number)
	case pub.Number > 0 && !strings.HasPrefix(pub.Body, pub.Marker):
		return fmt.Errorf("github: the report for %s#%d does not start with its marker %q", p.repo, pub.Number, pub.Marker)
	}
	return nil
}

// commentResult is what the sticky comment step did.
type commentResult struct {
	state, url string
}

// sticky creates or edits the report's comment on the pull request.
func (p *Publisher) sticky(ctx context.Context, c *call, pub *report.Publication) (commentResult, error) {
	var res commentResult
	tried := ""
	err := c.retryTransient(ctx, "the report comment", func() error {
		r, err := p.stickyOnce(ctx, c, pub)
		if err != nil {
			tried = r.state
			return err
		}
		if tried == "created" && r.state == "unchanged" {
			// The first POST went through though its answer was lost.
			r.state = "created"
		}
		res = r
		return nil
	})
	return res, err
}

// stickyOnce finds the comment and writes it if needed. On error, the
// result's state says what it was doing.
func (p *Publisher) stickyOnce(ctx context.Context, c *call, pub *report.Publication) (commentResult, error) {
	var res commentResult
	me, err := p.me(ctx, c)
	if err != nil {
		return res, err
	}
	ours, err := p.findComments(ctx, c, pub.Number, pub.Marker, me)
	if err != nil {
		return res, err
	}
	body := capRunes(pub.Body, maxCommentRunes, truncatedNote)
	what := fmt.Sprintf("post the report comment on %s#%d", p.repo, pub.Number)
	hint := "the workflow needs `pull-requests: write`"

	if len(ours) == 0 {
		res.state = "created"
		ep := p.endpoint("POST", "issues/%d/comments", pub.Number)
		var made *gh.IssueComment
		resp, err := c.do(ctx, ep, true, func() (*gh.Response, error) {
			var resp *gh.Response
			var err error
			made, resp, err = p.client.Issues.CreateComment(ctx, p.owner, p.name, pub.Number, &gh.IssueComment{Body: gh.Ptr(body)})
			return resp, err
		})
		if err != nil {
			return res, p.failWrite(what, ep, resp, err, hint)
		}
		res.url = made.GetHTMLURL()
		p.log.Info("report comment created", "pr", pub.Number, "url", res.url)
		return res, nil
	}

	target := ours[len(ours)-1]
	if len(ours) > 1 {
		others := make([]int64, 0, len(ours)-1)
		for _, o := range ours[:len(ours)-1] {
			others = append(others, o.GetID())
		}
		p.log.Warn("several comments of ours carry the report's marker; editing the newest and leaving the others",
			"pr", pub.Number, "edited", target.GetID(), "others", others)
	}
	res.url = target.GetHTMLURL()
	if normalize(target.GetBody()) == normalize(body) {
		res.state = "unchanged"
		p.log.Info("report comment unchanged", "pr", pub.Number, "url", res.url)
		return res, nil
	}
	res.state = "updated"
	ep := p.endpoint("PATCH", "issues/comments/%d", target.GetID())
	var edited *gh.IssueComment
	resp, err := c.do(ctx, ep, true, func() (*gh.Response, error) {
		var resp *gh.Response
		var err error
		edited, resp, err = p.client.Issues.EditComment(ctx, p.owner, p.name, target.GetID(), &gh.IssueComment{Body: gh.Ptr(body)})
		return resp, err
	})
	if err != nil {
		return res, p.failWrite(what, ep, resp, err, hint)
	}
	if u := edited.GetHTMLURL(); u != "" {
		res.url = u
	}
	p.log.Info("report comment updated", "pr", pub.Number, "url", res.url)
	return res, nil
}

// findComments returns the comments on pull request number that login wrote
// and that start with marker, oldest first, reading every page.
func (p *Publisher) findComments(ctx context.Context, c *call, number int, marker, login string) ([]*gh.IssueComment, error) {
	if number <= 0 {
		// ListComments with 0 lists every comment of the repository.
		return nil, fmt.Errorf("github: %d is not a pull request number (repository %s)", number, p.repo)
	}
	ep := p.endpoint("GET", "issues/%d/comments", number)
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	var ours []*gh.IssueComment
	for {
		var page []*gh.IssueComment
		resp, err := c.do(ctx, ep, false, func() (*gh.Response, error) {
			var resp *gh.Response
			var err error
			page, resp, err = p.client.Issues.ListComments(ctx, p.owner, p.name, number, opts)
			return resp, err
		})
		if err != nil {
			if statusOf(resp, err) == http.StatusNotFound {
				return nil, fmt.Errorf("github: pull request #%d not found in %s, or the token may not read it (%s): %w", number, p.repo, ep, err)
			}
			return nil, p.fail(fmt.Sprintf("list the comments of %s#%d", p.repo, number), ep, resp, err)
		}
		for _, cm := range page {
			if strings.EqualFold(cm.GetUser().GetLogin(), login) &&
				strings.HasPrefix(strings.TrimLeft(cm.GetBody(), " \t\r\n\ufeff"), marker) {
				ours = append(ours, cm)
			}
		}
		current := max(opts.Page, 1)
		if resp.NextPage == 0 {
			break
		}
		if resp.NextPage <= current {
			return nil, fmt.Errorf("github: list the comments of %s#%d (%s): page %d links back to page %d", p.repo, number, ep, current, resp.NextPage)
		}
		opts.Page = resp.NextPage
	}
	slices.SortStableFunc(ours, func(a, b *gh.IssueComment) int {
		if c := a.GetCreatedAt().Compare(b.GetCreatedAt().Time); c != 0 {
			return c
		}
		return cmp.Compare(a.GetID(), b.GetID())
	})
	return ours, nil
}

// setCheck sets the check on pub.HeadSHA: a check run, or a commit status
// when the token may not write check runs.
func (p *Publisher) setCheck(ctx context.Context, c *call, pub *report.Publication) (string, error) {
	err := c.retryTransient(ctx, "the check run", func() error { return p.checkRun(ctx, c, pub) })
	if err == nil {
		return checkRun, nil
	}
	if !denied(err) {
		return "", err
	}
	p.log.Info("the token may not write check runs; setting a commit status instead", "sha", pub.HeadSHA, "error", err)
	serr := c.retryTransient(ctx, "the commit status", func() error { return p.status(ctx, c, pub) })
	if serr == nil {
		return commitStatus, nil
	}
	if denied(serr) {
		return "", fmt.Errorf("github: set the check %q on commit %s of %s: the token may write neither check runs (`checks: write`, GitHub App tokens only) nor commit statuses (`statuses: write`): %w",
			checkName(pub), shortSHA(pub.HeadSHA), p.repo, errors.Join(err, serr))
	}
	return "", serr
}

// checkRun creates the check run, or updates the one the identity already
// set on the commit under the same name.
func (p *Publisher) checkRun(ctx context.Context, c *call, pub *report.Publication) error {
	me, err := p.me(ctx, c)
	if err != nil {
		return err
	}
	name := checkName(pub)
	existing, err := p.findCheckRun(ctx, c, pub.HeadSHA, name, appSlug(me))
	if err != nil {
		return err
	}
	conclusion, title := "failure", "sluice: failed"
	if pub.Passed {
		conclusion, title = "success", "sluice: passed"
	}
	if pub.Title != "" {
		title = pub.Title
	}
	summary := pub.Summary
	if summary == "" {
		summary = title
	}
	output := &gh.CheckRunOutput{
		Title:   gh.Ptr(title),
		Summary: gh.Ptr(capRunes(summary, maxOutputRunes, "…")),
	}
	if pub.Body != "" {
		output.Text = gh.Ptr(capRunes(pub.Body, maxOutputRunes, truncatedNote))
	}
	var details *string
	if pub.DetailsURL != "" {
		details = gh.Ptr(pub.DetailsURL)
	}
	completed := &gh.Timestamp{Time: p.now().UTC()}
	hint := "check runs need `checks: write` and a GitHub App token"
	what := fmt.Sprintf("set the check run %q on commit %s of %s", name, shortSHA(pub.HeadSHA), p.repo)

	if existing == nil {
		ep := p.endpoint("POST", "check-runs")
		var run *gh.CheckRun
		resp, err := c.do(ctx, ep, true, func() (*gh.Response, error) {
			var resp *gh.Response
			var err error
			run, resp, err = p.client.Checks.CreateCheckRun(ctx, p.owner, p.name, gh.CreateCheckRunOptions{
				Name:        name,
				HeadSHA:     pub.HeadSHA,
				DetailsURL:  details,
				Status:      gh.Ptr("completed"),
				Conclusion:  gh.Ptr(conclusion),
				CompletedAt: completed,
				Output:      output,
			})
			return resp, err
		})
		if err != nil {
			return p.failWrite(what, ep, resp, err, hint)
		}
		p.log.Info("check run created", "name", name, "sha", pub.HeadSHA, "conclusion", conclusion, "url", run.GetHTMLURL())
		return nil
	}
	ep := p.endpoint("PATCH", "check-runs/%d", existing.GetID())
	resp, err := c.do(ctx, ep, true, func() (*gh.Response, error) {
		_, resp, err := p.client.Checks.UpdateCheckRun(ctx, p.owner, p.name, existing.GetID(), gh.UpdateCheckRunOptions{
			Name:        name, // no omitempty: an unset name would blank it
			DetailsURL:  details,
			Status:      gh.Ptr("completed"),
			Conclusion:  gh.Ptr(conclusion),
			CompletedAt: completed,
			Output:      output,
		})
		return resp, err
	})
	if err != nil {
		return p.failWrite(what, ep, resp, err, hint)
	}
	p.log.Info("check run updated", "name", name, "sha", pub.HeadSHA, "conclusion", conclusion, "id", existing.GetID())
	return nil
}

// findCheckRun returns the newest check run named name on sha that the app
// slug set, nil when there is none.
func (p *Publisher) findCheckRun(ctx context.Context, c *call, sha, name, slug string) (*gh.CheckRun, error) {
	ep := p.endpoint("GET", "commits/%s/check-runs", sha)
	opts := &gh.ListCheckRunsOptions{CheckName: gh.Ptr(name), ListOptions: gh.ListOptions{PerPage: 100}}
	var found *gh.CheckRun
	for {
		var res *gh.ListCheckRunsResults
		resp, err := c.do(ctx, ep, false, func() (*gh.Response, error) {
			var resp *gh.Response
			var err error
			res, resp, err = p.client.Checks.ListCheckRunsForRef(ctx, p.owner, p.name, sha, opts)
			return resp, err
		})
		if err != nil {
			return nil, p.fail(fmt.Sprintf("list the check runs on commit %s of %s", shortSHA(sha), p.repo), ep, resp, err)
		}
		for _, r := range res.CheckRuns {
			if r.GetName() != name || slug == "" || !strings.EqualFold(r.GetApp().GetSlug(), slug) {
				continue
			}
			if found == nil || r.GetID() > found.GetID() {
				found = r
			}
		}
		current := max(opts.Page, 1)
		if resp.NextPage == 0 || resp.NextPage <= current {
			break
		}
		opts.Page = resp.NextPage
	}
	return found, nil
}

// status sets the commit status named after the check.
func (p *Publisher) status(ctx context.Context, c *call, pub *report.Publication) error {
	state := "failure"
	if pub.Passed {
		state = "success"
	}
	st := gh.RepoStatus{
		State:       gh.Ptr(state),
		Context:     gh.Ptr(checkName(pub)),
		Description: gh.Ptr(capRunes(oneLine(pub.Summary), maxDescriptionRunes, "…")),
	}
	if pub.DetailsURL != "" {
		st.TargetURL = gh.Ptr(pub.DetailsURL)
	}
	ep := p.endpoint("POST", "statuses/%s", pub.HeadSHA)
	resp, err := c.do(ctx, ep, true, func() (*gh.Response, error) {
		_, resp, err := p.client.Repositories.CreateStatus(ctx, p.owner, p.name, pub.HeadSHA, st)
		return resp, err
	})
	if err != nil {
		return p.failWrite(fmt.Sprintf("set the commit status %q on commit %s of %s", checkName(pub), shortSHA(pub.HeadSHA), p.repo),
			ep, resp, err, "commit statuses need `statuses: write`")
	}
	p.log.Info("commit status set", "context", checkName(pub), "sha", pub.HeadSHA, "state", state)
	return nil
}

// failWrite is fail for a write, with a hint on the permission a 403 lacks.
func (p *Publisher) failWrite(what, ep string, resp *gh.Response, err error, hint string) error {
	if denied(err) {
		return fmt.Errorf("github: %s (%s): the token may not write this (%s): %w", what, ep, hint, err)
	}
	return p.fail(what, ep, resp, err)
}

func checkName(pub *report.Publication) string {
	if n := strings.TrimSpace(pub.CheckName); n != "" {
		return n
	}
	return defaultCheckName
}

// appSlug is the GitHub App behind a bot login: "github-actions" for
// "github-actions[bot]"; "" for a user, who cannot own check runs.
func appSlug(login string) string {
	s, ok := strings.CutSuffix(strings.ToLower(login), "[bot]")
	if !ok {
		return ""
	}
	return s
}

// capRunes returns s when it has at most limit runes, else its start
// followed by note, limit runes in all.
func capRunes(s string, limit int, note string) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	keep := max(limit-utf8.RuneCountInString(note), 0)
	i, n := 0, 0
	for i = range s {
		if n == keep {
			break
		}
		n++
	}
	return s[:i] + note
}

// normalize makes bodies comparable: GitHub may hand back CRLF line ends.
func normalize(s string) string {
	return strings.ReplaceAll(s, "\r\n", "\n")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') && (r < 'A' || r > 'F') {
			return false
		}
	}
	return true
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
