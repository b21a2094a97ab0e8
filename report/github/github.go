// Package github posts a sluice report on GitHub: one sticky comment on the
// pull request, edited in place on every run, and a check run on the pull
// request's head commit (a commit status when the token may not write check
// runs).
//
// The publisher talks to the REST API through go-github, one request at a
// time, with at least Config.WriteSpacing between two writes. It waits out
// primary and secondary rate limits (and HTTP 429) up to Config.MaxWait in
// total, retrying only the request that was limited. A write that failed
// with a server or connection error is not sent again blindly: the sticky
// comment or check is looked up again first, so a write that went through
// is not duplicated.
package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v84/github"

	"github.com/sluice-ci/sluice/report"
)

// DefaultAPIURL is the REST API of github.com.
const DefaultAPIURL = "https://api.github.com"

// BotIdentity is the login of the GITHUB_TOKEN of GitHub Actions, which
// GET /user refuses to name.
const BotIdentity = "github-actions[bot]"

const (
	defaultWriteSpacing = time.Second
	defaultMaxWait      = 15 * time.Minute
	userAgent           = "sluice (+https://github.com/sluice-ci/sluice)"
)

// Config configures a Publisher. Only Token and Repository are required.
type Config struct {
	// APIURL is the REST API's base URL, as in GITHUB_API_URL; "" means
	// https://api.github.com. A GitHub Enterprise Server URL is used as
	// given, so it must carry its path: https://ghes.example.com/api/v3.
	APIURL string
	// Token authenticates every request (sent as "Authorization: Bearer").
	// It is never logged nor put in an error.
	Token string
	// Repository is "owner/name".
	Repository string
	// Identity is the login whose comments and check runs are sluice's own.
	// "" means the token's: GET /user, or github-actions[bot] when GitHub
	// refuses to name an installation token. Set it for a GitHub App token,
	// whose bot login is "<app-slug>[bot]".
	Identity string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives what the publisher did and why it waited; nil
	// discards it.
	Logger *slog.Logger
	// Sleep waits for d or until ctx is done; nil means a timer that honours
	// ctx. All waits (rate limits, write spacing) go through it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock that rate-limit reset times are compared with; nil
	// means time.Now.
	Now func() time.Time
	// WriteSpacing is the least time between two writes; 0 means 1s, as
	// GitHub's REST API guidance asks; a negative value means no spacing.
	WriteSpacing time.Duration
	// MaxWait is the most time one call (Publish, HeadSHA, Labels) waits on
	// rate limits in total before it gives up with an error; 0 means 15
	// minutes; a negative value means it never waits.
	MaxWait time.Duration
}

// String describes the configuration without the token.
func (c Config) String() string {
	tok := "unset"
	if c.Token != "" {
		tok = "redacted"
	}
	api := c.APIURL
	if api == "" {
		api = DefaultAPIURL
	}
	return fmt.Sprintf("github{api=%s repository=%s token=%s}", redactURL(api), c.Repository, tok)
}

// LogValue is the configuration as a log attribute, without the token.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Publisher posts publications to one GitHub repository. Its methods make one
// request at a time; concurrent calls wait for each other.
type Publisher struct {
	client       *gh.Client
	owner, name  string
	repo         string // owner/name, for messages
	identity     string // "" until known
	log          *slog.Logger
	sleep        func(context.Context, time.Duration) error
	now          func() time.Time
	writeSpacing time.Duration
	maxWait      time.Duration

	mu        sync.Mutex
	lastWrite time.Time
}

var _ report.Publisher = (*Publisher)(nil)

// New checks cfg and returns a publisher. It makes no request.
func New(cfg Config) (*Publisher, error) {
	owner, name, ok := strings.Cut(cfg.Repository, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") ||
		strings.ContainsAny(cfg.Repository, " \t\r\n?#%") {
		return nil, fmt.Errorf("github: repository %q is not of the form owner/name", cfg.Repository)
	}
	token := strings.TrimSpace(cfg.Token)
	if token == "" {
		return nil, fmt.Errorf("github: no token to post to %s with", cfg.Repository)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, fmt.Errorf("github: the token for %s contains white space", cfg.Repository)
	}
	api := cfg.APIURL
	if api == "" {
		api = DefaultAPIURL
	}
	base, err := url.Parse(api)
	if err != nil {
		// url.Error repeats the URL, credentials and all: keep only why.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("github: API URL %q: %w", redactURL(api), err)
	}
	if (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("github: API URL %q is not an http(s) URL with a host", redactURL(api))
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("github: API URL %q may not carry credentials, a query or a fragment", redactURL(api))
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
		base.RawPath = ""
	}

	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	client := gh.NewClient(hc).WithAuthToken(token)
	client.BaseURL = base
	client.UserAgent = userAgent
	// The publisher waits out rate limits itself, on its own (injectable)
	// clock; go-github's client-side refusal would bypass that clock.
	client.DisableRateLimitCheck = true

	p := &Publisher{
		client:       client,
		owner:        owner,
		name:         name,
		repo:         cfg.Repository,
		identity:     cfg.Identity,
		log:          cfg.Logger,
		sleep:        cfg.Sleep,
		now:          cfg.Now,
		writeSpacing: cfg.WriteSpacing,
		maxWait:      cfg.MaxWait,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("repository", cfg.Repository)
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if p.now == nil {
		p.now = time.Now
	}
	switch {
	case p.writeSpacing == 0:
		p.writeSpacing = defaultWriteSpacing
	case p.writeSpacing < 0:
		p.writeSpacing = 0
	}
	switch {
	case p.maxWait == 0:
		p.maxWait = defaultMaxWait
	case p.maxWait < 0:
		p.maxWait = 0
	}
	return p, nil
}

// HeadSHA returns the head commit of pull request number: where its check
// goes, and what a publication handed over from a fork's run must match.
func (p *Publisher) HeadSHA(ctx context.Context, number int) (string, error) {
	pr, err := p.pull(ctx, number)
	if err != nil {
		return "", err
	}
	sha := pr.GetHead().GetSHA()
	if sha == "" {
		return "", fmt.Errorf("github: pull request %s#%d has no head commit", p.repo, number)
	}
	return sha, nil
}

// Labels returns the names of pull request number's labels.
func (p *Publisher) Labels(ctx context.Context, number int) ([]string, error) {
	pr, err := p.pull(ctx, number)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pr.Labels))
	for _, l := range pr.Labels {
		if n := l.GetName(); n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func (p *Publisher) pull(ctx context.Context, number int) (*gh.PullRequest, error) {
	if number <= 0 {
		return nil, fmt.Errorf("github: %d is not a pull request number (repository %s)", number, p.repo)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.newCall()
	ep := p.endpoint("GET", "pulls/%d", number)
	var pr *gh.PullRequest
	err := c.retryTransient(ctx, ep, func() error {
		resp, err := c.do(ctx, ep, false, func() (*gh.Response, error) {
			var resp *gh.Response
			var err error
			pr, resp, err = p.client.PullRequests.Get(ctx, p.owner, p.name, number)
			return resp, err
		})
		if err != nil {
			if statusOf(resp, err) == http.StatusNotFound {
				return fmt.Errorf("github: pull request #%d not found in %s, or the token may not read it (%s): %w", number, p.repo, ep, err)
			}
			return p.fail(fmt.Sprintf("read pull request %s#%d", p.repo, number), ep, resp, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pr, nil
}

// me returns the login whose comments and check runs are the publisher's.
func (p *Publisher) me(ctx context.Context, c *call) (string, error) {
	if p.identity != "" {
		return p.identity, nil
	}
	ep := p.endpoint("GET", "/user")
	var login string
	err := c.retryTransient(ctx, ep, func() error {
		resp, err := c.do(ctx, ep, false, func() (*gh.Response, error) {
			u, resp, err := p.client.Users.Get(ctx, "")
			login = u.GetLogin()
			return resp, err
		})
		switch {
		case err == nil && login == "":
			return fmt.Errorf("github: %s named no user", ep)
		case err == nil:
			return nil
		case statusOf(resp, err) == http.StatusForbidden && !isRateLimited(err):
			// An installation token (GITHUB_TOKEN) may not read /user.
			login = BotIdentity
			p.log.Debug("the token may not read /user; taking it for GitHub Actions' token", "identity", login)
			return nil
		default:
			return p.fail("find the token's identity", ep, resp, err)
		}
	})
	if err != nil {
		return "", err
	}
	p.identity = login
	p.log.Debug("token identity", "identity", login)
	return login, nil
}

// endpoint names a request for messages: "GET /repos/o/r/pulls/1".
func (p *Publisher) endpoint(method, format string, args ...any) string {
	path := fmt.Sprintf(format, args...)
	if !strings.HasPrefix(path, "/") {
		path = "/repos/" + p.repo + "/" + path
	}
	return method + " " + path
}

// fail turns a failed request into an error naming what was being done and
// the endpoint, with plain words for the common statuses.
func (p *Publisher) fail(what, ep string, resp *gh.Response, err error) error {
	var rl *rateLimitedError
	if errors.As(err, &rl) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("github: %s (%s): %w", what, ep, err)
	}
	switch statusOf(resp, err) {
	case http.StatusUnauthorized:
		return fmt.Errorf("github: %s (%s): the token is invalid or expired: %w", what, ep, err)
	case http.StatusForbidden:
		return fmt.Errorf("github: %s (%s): the token may not do this: %w", what, ep, err)
	case http.StatusNotFound:
		return fmt.Errorf("github: %s (%s): not found: the repository does not exist or the token may not see it: %w", what, ep, err)
	}
	return fmt.Errorf("github: %s (%s): %w", what, ep, err)
}

// statusOf is the HTTP status of a failed request, 0 when there was no
// response.
func statusOf(resp *gh.Response, err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	if resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	return 0
}

// denied says whether err is GitHub refusing the token permission (403
// that is not a rate limit), as on every write with a fork's read-only
// token: "Resource not accessible by integration".
func denied(err error) bool {
	if isRateLimited(err) {
		return false
	}
	var er *gh.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusForbidden
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redactURL drops credentials from a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.Index(s, "@"); i >= 0 && strings.Contains(s[:i], "://") {
			return s[:strings.Index(s, "://")+3] + "REDACTED@" + s[i+1:]
		}
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}
