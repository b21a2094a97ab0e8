package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Publication is one report as it is posted: on a GitHub pull request or a
// GitLab merge request (the sticky comment, the check or commit status), in
// the job summary, or as a file that a privileged workflow publishes later
// (`sluice report --post --from FILE`, for pull requests from forks). The
// same value goes to every publisher; its JSON form is that file.
type Publication struct {
	// Version of the file format; PublicationVersion when written.
	Version int `json:"version"`
	// Pipeline is the pipeline reported on; Marker is Marker(Pipeline), the
	// hidden comment by which the sticky comment is found again. Body starts
	// with it.
	Pipeline string `json:"pipeline"`
	RunID    string `json:"run"`
	Marker   string `json:"marker"`
	// Body is the Markdown report.
	Body string `json:"body"`
	// Passed is the verdict; ExitCode is Verdict.ExitCode(); Summary is
	// Verdict.Summary(), one line.
	Passed   bool   `json:"passed"`
	ExitCode int    `json:"exit_code"`
	Summary  string `json:"summary"`
	// CheckName names the check run or commit status ("sluice / train").
	CheckName string `json:"check_name"`
	// Title is the check run's title ("sluice: passed").
	Title string `json:"title"`
	// Repository is where it goes: "owner/name" on GitHub, the project id or
	// path on GitLab. Number is the pull request's number or the merge
	// request's iid; 0 when the run is not for one (no comment is posted,
	// only the check). HeadSHA is the commit the check is set on: the pull
	// request's head, the merge request's source commit.
	Repository string `json:"repository,omitempty"`
	Number     int    `json:"number,omitempty"`
	HeadSHA    string `json:"head_sha,omitempty"`
	// DetailsURL links the check to the CI job, when known.
	DetailsURL string `json:"details_url,omitempty"`
}

// PublicationVersion is the Version written by this sluice.
const PublicationVersion = 1

// Posted says what a publisher did.
type Posted struct {
	// Comment is "created", "updated" or "unchanged" ("" when no comment
	// was posted: no pull request); CommentURL links to it.
	Comment    string
	CommentURL string
	// Check is "check run" or "commit status", whichever was set ("" for
	// none).
	Check string
}

// Publisher posts a publication to a code host.
type Publisher interface {
	Publish(ctx context.Context, p *Publication) (Posted, error)
}

// ErrReadOnly is wrapped by a publisher's error when the token may not write
// to the repository: a pull request from a fork, whose token is read-only.
// The caller then leaves the publication in a file for a privileged workflow
// to post, and the exit code stays the gate's.
var ErrReadOnly = errors.New("the token may not write to this repository")

// NewPublication builds the publication of a report.
func NewPublication(r Report, body string) *Publication {
	p := &Publication{
		Version:   PublicationVersion,
		Body:      body,
		Passed:    r.Verdict.Passed,
		ExitCode:  r.Verdict.ExitCode(),
		Summary:   r.Verdict.Summary(),
		CheckName: "sluice",
	}
	if r.Run != nil {
		p.Pipeline = r.Run.Pipeline
		p.RunID = r.Run.ID
		p.HeadSHA = r.Run.Commit
	}
	p.Marker = Marker(p.Pipeline)
	if p.Pipeline != "" {
		p.CheckName = "sluice / " + p.Pipeline
	}
	if p.Passed {
		p.Title = "sluice: passed"
	} else {
		p.Title = "sluice: failed"
	}
	return p
}

// WritePublication writes p as JSON to path.
func WritePublication(path string, p *Publication) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadPublication reads a publication file and checks that it is whole and
// that its body carries its own marker. The file is untrusted (it may come
// from a fork's run): the caller still checks that HeadSHA is the pull
// request's head before posting.
func ReadPublication(path string) (*Publication, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Publication
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: not a sluice publication: %w", path, err)
	}
	switch {
	case p.Version != PublicationVersion:
		return nil, fmt.Errorf("%s: publication version %d; this sluice reads version %d", path, p.Version, PublicationVersion)
	case p.Marker != Marker(p.Pipeline):
		return nil, fmt.Errorf("%s: marker %q is not the marker of pipeline %q", path, p.Marker, p.Pipeline)
	case !strings.HasPrefix(p.Body, p.Marker):
		return nil, fmt.Errorf("%s: the body does not start with the report's marker", path)
	case p.Number < 0:
		return nil, fmt.Errorf("%s: number %d is not a pull request number", path, p.Number)
	}
	return &p, nil
}
