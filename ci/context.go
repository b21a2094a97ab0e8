// Package ci knows the CI system sluice runs in: GitHub Actions, GitLab CI,
// or neither (a run on a developer's machine).
//
// Detect builds a Context from the environment and, on GitHub, the event
// payload: which repository, pull or merge request, commits and branches the
// run is for, and the token to post with. Log writes GitHub workflow commands
// or GitLab log sections and keeps untrusted step output from issuing
// commands of its own. SetOutputs and WriteSummary hand results to the CI
// system: step outputs or a dotenv report, and the job summary.
//
// Nothing here reads the process environment or the clock directly: the
// environment comes in as a getenv function, files are found through paths
// in it, and randomness comes from an io.Reader, so tests use fakes.
package ci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Platform names the CI system a run is in.
type Platform string

// The platforms Detect recognises.
const (
	GitHub Platform = "github"
	GitLab Platform = "gitlab"
	Local  Platform = "local"
)

// Context is what a run needs to know about the CI job it runs in. Fields a
// platform or an event does not provide are left empty; on Local every field
// but Platform is empty and the caller asks git instead.
type Context struct {
	Platform Platform
	// Repository is "owner/name" on GitHub. On GitLab it is the project's
	// path, "group/project": in a merge request pipeline the target project
	// (CI_MERGE_REQUEST_PROJECT_PATH, which differs from CI_PROJECT_PATH
	// when the pipeline runs in a fork), else CI_PROJECT_PATH.
	Repository string
	// ProjectID is GitLab's numeric project id, of the merge request's
	// target project in a merge request pipeline (CI_MERGE_REQUEST_PROJECT_ID),
	// else CI_PROJECT_ID. Empty on GitHub.
	ProjectID string
	// APIURL is the REST API's base URL (GITHUB_API_URL, CI_API_V4_URL);
	// ServerURL is the web UI's (GITHUB_SERVER_URL, CI_SERVER_URL).
	APIURL, ServerURL string
	// Event is what triggered the run: GITHUB_EVENT_NAME ("pull_request",
	// "push", ...) or CI_PIPELINE_SOURCE ("merge_request_event", "push", ...).
	Event string
	// Number is the pull request's number or the merge request's iid; 0 when
	// the run is not for one, and for a workflow_run from a fork, whose
	// payload does not name its pull request.
	Number int
	// HeadSHA is the commit a check or status belongs on: the pull request's
	// head (not GITHUB_SHA, which is GitHub's test merge commit), the merge
	// request's source commit (CI_MERGE_REQUEST_SOURCE_BRANCH_SHA in merged
	// results pipelines), the pushed commit otherwise.
	HeadSHA string
	// BaseSHA is the pull request's base commit or the merge request's diff
	// base (CI_MERGE_REQUEST_DIFF_BASE_SHA); empty when not a PR/MR run.
	BaseSHA string
	// Commit is what the job checked out: GITHUB_SHA or CI_COMMIT_SHA. In a
	// pull_request run that is the test merge commit, in a GitLab merged
	// results pipeline the merged result, in pull_request_target and
	// workflow_run the default branch's commit.
	Commit string
	// Branch is the branch the run is for: the pull or merge request's source
	// branch, else the pushed branch. Empty for a tag or a detached commit.
	Branch string
	// TargetBranch is the pull or merge request's target branch; empty when
	// the run is not for one.
	TargetBranch string
	// DefaultBranch is the repository's default branch, when known.
	DefaultBranch string
	// Fork is true when the pull or merge request comes from another
	// repository: its token is then read-only, or missing on GitLab.
	Fork bool
	// Labels are the pull or merge request's labels, in the platform's order.
	Labels []string
	// JobURL links to the CI run: the workflow run on GitHub, the job on
	// GitLab.
	JobURL string
	// Token is the token to call the API with: on GitHub the action's
	// "token" input (INPUT_TOKEN), else GITHUB_TOKEN; on GitLab
	// SLUICE_GITLAB_TOKEN, else GITLAB_TOKEN, else CI_JOB_TOKEN, and then
	// JobToken is true (a job token can read merge request notes but not
	// write them). Never printed: String leaves it out and JSON skips it.
	Token    string `json:"-"`
	JobToken bool
	// PipelineID is GitLab's CI_PIPELINE_ID; 0 on GitHub.
	PipelineID int64
	// Workspace is the directory the repository is checked out in:
	// GITHUB_WORKSPACE or CI_PROJECT_DIR.
	Workspace string
}

// String describes the context in one line, without the token.
func (c *Context) String() string {
	if c == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", c.Platform, c.Repository)
	if c.Number > 0 {
		fmt.Fprintf(&b, "#%d", c.Number)
	}
	if c.Event != "" {
		fmt.Fprintf(&b, " event=%s", c.Event)
	}
	if c.Branch != "" {
		fmt.Fprintf(&b, " branch=%s", c.Branch)
	}
	if c.TargetBranch != "" {
		fmt.Fprintf(&b, " target=%s", c.TargetBranch)
	}
	if c.HeadSHA != "" {
		fmt.Fprintf(&b, " head=%s", c.HeadSHA)
	}
	if c.Fork {
		b.WriteString(" fork")
	}
	return b.String()
}

// Detect reads the CI context from the environment: GitHub Actions when
// GITHUB_ACTIONS is "true", GitLab CI when GITLAB_CI is "true", Local
// otherwise. On GitHub it also reads the event payload at GITHUB_EVENT_PATH;
// a missing or malformed payload is an error naming the file, as is a
// malformed number in a GitLab variable.
func Detect(getenv func(string) string) (*Context, error) {
	if getenv == nil {
		return nil, errors.New("detect ci: no getenv function")
	}
	switch {
	case getenv("GITHUB_ACTIONS") == "true":
		c, err := detectGitHub(getenv)
		if err != nil {
			return nil, fmt.Errorf("detect github actions: %w", err)
		}
		return c, nil
	case getenv("GITLAB_CI") == "true":
		c, err := detectGitLab(getenv)
		if err != nil {
			return nil, fmt.Errorf("detect gitlab ci: %w", err)
		}
		return c, nil
	default:
		return &Context{Platform: Local}, nil
	}
}

// ghEvent is the part of a GitHub event payload sluice reads. One struct
// serves every event: the fields an event does not have stay zero.
type ghEvent struct {
	Number      int            `json:"number"`
	Ref         string         `json:"ref"`   // push
	After       string         `json:"after"` // push
	PullRequest *ghPullRequest `json:"pull_request"`
	Repository  *ghRepo        `json:"repository"`
	WorkflowRun *ghWorkflowRun `json:"workflow_run"`
}

type ghPullRequest struct {
	Number int      `json:"number"`
	Head   ghBranch `json:"head"`
	Base   ghBranch `json:"base"`
	Labels []struct {
		Name string `json:"name"`
	} `json:"labels"`
}

type ghBranch struct {
	Ref  string  `json:"ref"`
	SHA  string  `json:"sha"`
	Repo *ghRepo `json:"repo"` // null when the head repository was deleted
}

type ghRepo struct {
	ID            int64  `json:"id"`
	FullName      string `json:"full_name"`
	DefaultBranch string `json:"default_branch"`
}

type ghWorkflowRun struct {
	HeadSHA        string  `json:"head_sha"`
	HeadBranch     string  `json:"head_branch"`
	HeadRepository *ghRepo `json:"head_repository"`
	Repository     *ghRepo `json:"repository"`
	// PullRequests lists the pull requests the triggering run was for; it is
	// empty when the head branch is in a fork. Its entries' repo objects
	// carry id, url and name only.
	PullRequests []ghPullRequest `json:"pull_requests"`
}

// sameRepo says whether two payload repositories are the same: by id when
// both have one, else by full name. A missing head repository (deleted
// fork) is never the base.
func sameRepo(head, base *ghRepo) bool {
	if head == nil || base == nil {
		return false
	}
	if head.ID != 0 && base.ID != 0 {
		return head.ID == base.ID
	}
	return head.FullName != "" && strings.EqualFold(head.FullName, base.FullName)
}

func detectGitHub(getenv func(string) string) (*Context, error) {
	c := &Context{
		Platform:   GitHub,
		Repository: getenv("GITHUB_REPOSITORY"),
		APIURL:     strings.TrimRight(getenv("GITHUB_API_URL"), "/"),
		ServerURL:  strings.TrimRight(getenv("GITHUB_SERVER_URL"), "/"),
		Event:      getenv("GITHUB_EVENT_NAME"),
		Commit:     getenv("GITHUB_SHA"),
		Token:      getenv("INPUT_TOKEN"),
		Workspace:  getenv("GITHUB_WORKSPACE"),
	}
	if c.ServerURL == "" {
		c.ServerURL = "https://github.com"
	}
	if c.APIURL == "" {
		c.APIURL = "https://api.github.com"
	}
	if c.Token == "" {
		c.Token = getenv("GITHUB_TOKEN")
	}
	if id := getenv("GITHUB_RUN_ID"); id != "" && c.Repository != "" {
		c.JobURL = c.ServerURL + "/" + c.Repository + "/actions/runs/" + id
	}

	path := getenv("GITHUB_EVENT_PATH")
	if path == "" {
		return nil, errors.New("GITHUB_EVENT_PATH is not set")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read event payload: %w", err)
	}
	var ev ghEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("decode event payload %s: %w", path, err)
	}
	if ev.Repository != nil {
		c.DefaultBranch = ev.Repository.DefaultBranch
	}

	switch {
	case strings.HasPrefix(c.Event, "pull_request"):
		// pull_request, pull_request_target, and the review events, which
		// carry the same pull_request object.
		pr := ev.PullRequest
		if pr == nil {
			return nil, fmt.Errorf("event payload %s: %s event without a pull_request", path, c.Event)
		}
		c.Number = ev.Number
		if c.Number == 0 {
			c.Number = pr.Number
		}
		c.HeadSHA = pr.Head.SHA
		c.BaseSHA = pr.Base.SHA
		c.Branch = pr.Head.Ref
		c.TargetBranch = pr.Base.Ref
		c.Fork = !sameRepo(pr.Head.Repo, pr.Base.Repo)
		if c.DefaultBranch == "" && pr.Base.Repo != nil {
			c.DefaultBranch = pr.Base.Repo.DefaultBranch
		}
		for _, l := range pr.Labels {
			c.Labels = append(c.Labels, l.Name)
		}
	case c.Event == "workflow_run" && ev.WorkflowRun != nil:
		wr := ev.WorkflowRun
		c.HeadSHA = wr.HeadSHA
		c.Branch = wr.HeadBranch
		base := wr.Repository
		if base == nil {
			base = ev.Repository
		}
		c.Fork = !sameRepo(wr.HeadRepository, base)
		if len(wr.PullRequests) > 0 {
			pr := wr.PullRequests[0]
			c.Number = pr.Number
			c.BaseSHA = pr.Base.SHA
			c.TargetBranch = pr.Base.Ref
		}
	default:
		// push, workflow_dispatch, schedule, ...: the commit and the branch
		// that were checked out.
		c.HeadSHA = c.Commit
		if ev.After != "" && c.Event == "push" {
			c.HeadSHA = ev.After
		}
		ref := ev.Ref
		if ref == "" || c.Event != "push" {
			ref = getenv("GITHUB_REF")
		}
		c.Branch, _ = strings.CutPrefix(ref, "refs/heads/")
		if c.Branch == ref {
			c.Branch = "" // a tag or a pull request ref, not a branch
		}
	}
	return c, nil
}

func detectGitLab(getenv func(string) string) (*Context, error) {
	c := &Context{
		Platform:      GitLab,
		Repository:    getenv("CI_MERGE_REQUEST_PROJECT_PATH"),
		ProjectID:     getenv("CI_MERGE_REQUEST_PROJECT_ID"),
		APIURL:        strings.TrimRight(getenv("CI_API_V4_URL"), "/"),
		ServerURL:     strings.TrimRight(getenv("CI_SERVER_URL"), "/"),
		Event:         getenv("CI_PIPELINE_SOURCE"),
		HeadSHA:       getenv("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA"),
		BaseSHA:       getenv("CI_MERGE_REQUEST_DIFF_BASE_SHA"),
		Commit:        getenv("CI_COMMIT_SHA"),
		Branch:        getenv("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
		TargetBranch:  getenv("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
		DefaultBranch: getenv("CI_DEFAULT_BRANCH"),
		JobURL:        getenv("CI_JOB_URL"),
		Workspace:     getenv("CI_PROJECT_DIR"),
	}
	if c.Repository == "" {
		c.Repository = getenv("CI_PROJECT_PATH")
	}
	if c.ProjectID == "" {
		c.ProjectID = getenv("CI_PROJECT_ID")
	}
	if c.APIURL == "" && c.ServerURL != "" {
		c.APIURL = c.ServerURL + "/api/v4"
	}
	if c.HeadSHA == "" {
		// Outside merged results pipelines CI_COMMIT_SHA is the source
		// branch's head.
		c.HeadSHA = c.Commit
	}
	if c.Branch == "" {
		c.Branch = getenv("CI_COMMIT_BRANCH")
	}
	if iid := getenv("CI_MERGE_REQUEST_IID"); iid != "" {
		n, err := strconv.Atoi(iid)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("CI_MERGE_REQUEST_IID %q is not a merge request iid", iid)
		}
		c.Number = n
	}
	if id := getenv("CI_PIPELINE_ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("CI_PIPELINE_ID %q is not a pipeline id", id)
		}
		c.PipelineID = n
	}
	src, dst := getenv("CI_MERGE_REQUEST_SOURCE_PROJECT_ID"), getenv("CI_MERGE_REQUEST_PROJECT_ID")
	c.Fork = src != "" && dst != "" && src != dst
	for l := range strings.SplitSeq(getenv("CI_MERGE_REQUEST_LABELS"), ",") {
		if l = strings.TrimSpace(l); l != "" {
			c.Labels = append(c.Labels, l)
		}
	}
	for _, name := range []string{"SLUICE_GITLAB_TOKEN", "GITLAB_TOKEN"} {
		if c.Token = getenv(name); c.Token != "" {
			break
		}
	}
	if c.Token == "" {
		c.Token = getenv("CI_JOB_TOKEN")
		c.JobToken = c.Token != ""
	}
	return c, nil
}
