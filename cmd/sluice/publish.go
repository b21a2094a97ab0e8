package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sluice-ci/sluice/ci"
	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/report/github"
	"github.com/sluice-ci/sluice/report/gitlab"
)

// publisherFor makes the publisher of the CI platform sluice runs on.
// GITHUB_API_URL and CI_API_V4_URL are honoured (GitHub Enterprise Server,
// self-managed GitLab).
func publisherFor(c *ci.Context, logger *slog.Logger) (interface {
	report.Publisher
	Labels(ctx context.Context, number int) ([]string, error)
}, error) {
	switch c.Platform {
	case ci.GitHub:
		return github.New(github.Config{APIURL: c.APIURL, Token: c.Token, Repository: c.Repository, Logger: logger})
	case ci.GitLab:
		project := c.ProjectID
		if project == "" {
			project = c.Repository
		}
		return gitlab.New(gitlab.Config{APIURL: c.APIURL, Token: c.Token, JobToken: c.JobToken, Project: project,
			PipelineID: c.PipelineID, Logger: logger})
	}
	return nil, usageErrorf("--post needs GitHub Actions or GitLab CI (GITHUB_ACTIONS or GITLAB_CI set); here there is no pull or merge request to post on")
}

// postOutcome is what posting did, for the exit code and the outputs.
type postOutcome struct {
	posted      report.Posted
	publication string // the file written when the token could not write
	err         error  // a failure other than a read-only token
}

// post publishes a report where the CI context says. A read-only token (a
// pull request from a fork) is no failure: the publication goes to pubFile
// for a privileged workflow (`sluice report --post --from FILE`).
func post(ctx context.Context, c *ci.Context, pub *report.Publication, pubFile string, stderr io.Writer, logger *slog.Logger) postOutcome {
	pub.Repository, pub.DetailsURL = c.Repository, c.JobURL
	if c.Platform == ci.GitLab && c.ProjectID != "" {
		pub.Repository = c.ProjectID
	}
	if pub.Number == 0 {
		pub.Number = c.Number
	}
	if c.HeadSHA != "" {
		pub.HeadSHA = c.HeadSHA
	}
	handOff := func(why error) postOutcome {
		err := os.MkdirAll(filepath.Dir(pubFile), 0o755)
		if err == nil {
			err = report.WritePublication(pubFile, pub)
		}
		if err != nil {
			return postOutcome{err: fmt.Errorf("%v; and the report could not be kept for a later publisher: %w", why, err)}
		}
		fmt.Fprintf(stderr, "sluice: not posted: %v\nsluice: the report is in %s, for a workflow with a write token to post (`sluice report --post --from %s`)\n", why, pubFile, pubFile)
		return postOutcome{publication: pubFile}
	}
	if c.Token == "" {
		why := fmt.Errorf("%w: there is no token (set the action's token input, GITHUB_TOKEN, or SLUICE_GITLAB_TOKEN)", report.ErrReadOnly)
		if c.Fork {
			why = fmt.Errorf("%w: the pull or merge request comes from a fork, whose job has no token", report.ErrReadOnly)
		}
		return handOff(why)
	}
	p, err := publisherFor(c, logger)
	if err != nil {
		return postOutcome{err: err}
	}
	posted, err := p.Publish(ctx, pub)
	switch {
	case errors.Is(err, report.ErrReadOnly):
		return handOff(err)
	case err != nil:
		return postOutcome{posted: posted, err: err}
	}
	switch {
	case posted.Comment != "" && posted.CommentURL != "":
		fmt.Fprintf(stderr, "sluice: report %s: %s\n", posted.Comment, posted.CommentURL)
	case posted.Comment != "":
		fmt.Fprintf(stderr, "sluice: report %s\n", posted.Comment)
	}
	if posted.Check != "" {
		fmt.Fprintf(stderr, "sluice: %s %q set on %s\n", posted.Check, pub.CheckName, shortCommit(pub.HeadSHA))
	}
	return postOutcome{posted: posted}
}

// postFromFile publishes a publication that an unprivileged run left (a
// fork's pull request). The file is untrusted: it goes to this repository
// only, and only when the pull request's head is the commit it was made for.
func postFromFile(ctx context.Context, c *ci.Context, path string, stderr io.Writer, logger *slog.Logger) error {
	pub, err := report.ReadPublication(path)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if pub.Number <= 0 {
		return usageErrorf("%s names no pull or merge request: nothing to post on", path)
	}
	if n := []rune(pub.Body); len(n) > report.DefaultLimit+1000 {
		return usageErrorf("%s: the report has %d characters, more than a report sluice writes", path, len(n))
	}
	if c.Event == "workflow_run" && c.HeadSHA != "" && c.HeadSHA != pub.HeadSHA {
		return usageErrorf("%s was made for commit %s, but the workflow run was for %s: not posted", path, shortCommit(pub.HeadSHA), shortCommit(c.HeadSHA))
	}
	if c.Platform == ci.GitHub {
		gp, err := github.New(github.Config{APIURL: c.APIURL, Token: c.Token, Repository: c.Repository, Logger: logger})
		if err != nil {
			return usageErrorf("%v", err)
		}
		head, err := gp.HeadSHA(ctx, pub.Number)
		if err != nil {
			return &exitError{code: exitFailed, err: err}
		}
		if head != pub.HeadSHA {
			return usageErrorf("%s was made for commit %s, but pull request #%d is at %s now: not posted (a newer run will report)",
				path, shortCommit(pub.HeadSHA), pub.Number, shortCommit(head))
		}
	}
	// Where it goes is this repository, whatever the file says.
	c2 := *c
	c2.Number, c2.HeadSHA, c2.Fork = pub.Number, pub.HeadSHA, false
	out := post(ctx, &c2, pub, path+".unposted", stderr, logger)
	if out.err != nil {
		return &exitError{code: exitFailed, err: out.err}
	}
	if out.publication != "" {
		return &exitError{code: exitFailed, err: errors.New("this token may not write either: give the publishing workflow `pull-requests: write` and `checks: write`")}
	}
	return nil
}
