// Package fakegithub is a stand-in for GitHub's REST API in end-to-end
// tests: an HTTP handler that answers the endpoints sluice uses (issue
// comments, check runs, commit statuses, pull requests, the token's user)
// with the payload shapes of GitHub's public REST documentation, keeps what
// was written, and records every request.
package fakegithub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bot is the login of the installation token's identity (GITHUB_TOKEN).
const Bot = "github-actions[bot]"

// Request is one request the fake received.
type Request struct {
	Method, Path string
	Query        string
	Auth         string
	Body         map[string]any
}

// Comment is an issue comment.
type Comment struct {
	ID     int64
	Number int
	Body   string
	Login  string
}

// Check is a check run or a commit status.
type Check struct {
	ID                            int64
	Kind                          string // "check-run" or "status"
	Name, SHA, Status, Conclusion string
	Title, Summary                string
}

// Server is the fake. Set Pulls (number -> head sha) before use; set
// ReadOnly to answer writes as GitHub answers a fork's read-only token.
type Server struct {
	Repo     string // owner/name
	Pulls    map[int]string
	Labels   map[int][]string
	ReadOnly bool

	mu       sync.Mutex
	nextID   int64
	requests []Request
	comments []*Comment
	checks   []*Check
}

// New returns a fake for repository repo ("owner/name").
func New(repo string) *Server {
	return &Server{Repo: repo, Pulls: map[int]string{}, Labels: map[int][]string{}, nextID: 1000}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Writes returns "METHOD path" of each request that was not a GET.
func (s *Server) Writes() []string {
	var out []string
	for _, r := range s.Requests() {
		if r.Method != http.MethodGet {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// Comments returns the comments, oldest first.
func (s *Server) Comments() []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.comments {
		out = append(out, *c)
	}
	return out
}

// Checks returns the check runs and statuses set.
func (s *Server) Checks() []Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Check
	for _, c := range s.checks {
		out = append(out, *c)
	}
	return out
}

// AddComment adds a comment by login, as if posted earlier.
func (s *Server) AddComment(number int, login, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.comments = append(s.comments, &Comment{ID: s.nextID, Number: number, Body: body, Login: login})
}

var (
	reComments  = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$`)
	reComment   = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$`)
	rePull      = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/pulls/(\d+)$`)
	reCheckRuns = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/check-runs$`)
	reCheckRun  = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/check-runs/(\d+)$`)
	reRefChecks = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/commits/([0-9a-f]+)/check-runs$`)
	reStatus    = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/statuses/([0-9a-f]+)$`)
)

const denied = `{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest","status":"403"}`

// ServeHTTP answers one request. Paths may carry GHES's /api/v3 prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	req := Request{Method: r.Method, Path: path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")}
	if data, _ := io.ReadAll(r.Body); len(data) > 0 {
		_ = json.Unmarshal(data, &req.Body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-RateLimit-Remaining", "4999")
	if !strings.HasPrefix(req.Auth, "Bearer ") && !strings.HasPrefix(req.Auth, "token ") {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Requires authentication","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	if r.Method != http.MethodGet && s.ReadOnly {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, denied)
		return
	}
	repoOK := func(m []string) bool { return m != nil && m[1] == s.Repo }
	switch {
	case path == "/user":
		// An installation token has no user.
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, denied)
	case r.Method == http.MethodGet && repoOK(rePull.FindStringSubmatch(path)):
		n, _ := strconv.Atoi(rePull.FindStringSubmatch(path)[2])
		sha, ok := s.Pulls[n]
		if !ok {
			notFound(w)
			return
		}
		var labels []map[string]any
		for i, l := range s.Labels[n] {
			labels = append(labels, map[string]any{"id": i + 1, "name": l})
		}
		writeJSON(w, http.StatusOK, map[string]any{"number": n, "state": "open", "labels": labels,
			"head": map[string]any{"sha": sha, "ref": "feature"}, "base": map[string]any{"ref": "main"}})
	case repoOK(reComments.FindStringSubmatch(path)):
		n, _ := strconv.Atoi(reComments.FindStringSubmatch(path)[2])
		if _, ok := s.Pulls[n]; !ok {
			notFound(w)
			return
		}
		if r.Method == http.MethodPost {
			s.nextID++
			c := &Comment{ID: s.nextID, Number: n, Body: str(req.Body["body"]), Login: Bot}
			s.comments = append(s.comments, c)
			writeJSON(w, http.StatusCreated, s.commentJSON(c))
			return
		}
		list := []any{}
		for _, c := range s.comments {
			if c.Number == n {
				list = append(list, s.commentJSON(c))
			}
		}
		writeJSON(w, http.StatusOK, list)
	case repoOK(reComment.FindStringSubmatch(path)) && r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(reComment.FindStringSubmatch(path)[2], 10, 64)
		for _, c := range s.comments {
			if c.ID == id {
				c.Body = str(req.Body["body"])
				writeJSON(w, http.StatusOK, s.commentJSON(c))
				return
			}
		}
		notFound(w)
	case repoOK(reRefChecks.FindStringSubmatch(path)):
		sha := reRefChecks.FindStringSubmatch(path)[2]
		name := r.URL.Query().Get("check_name")
		runs := []any{}
		for _, c := range s.checks {
			if c.Kind == "check-run" && c.SHA == sha && (name == "" || c.Name == name) {
				runs = append(runs, s.checkJSON(c))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"total_count": len(runs), "check_runs": runs})
	case repoOK(reCheckRuns.FindStringSubmatch(path)) && r.Method == http.MethodPost:
		s.nextID++
		c := &Check{ID: s.nextID, Kind: "check-run"}
		s.applyCheck(c, req.Body)
		s.checks = append(s.checks, c)
		writeJSON(w, http.StatusCreated, s.checkJSON(c))
	case repoOK(reCheckRun.FindStringSubmatch(path)) && r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(reCheckRun.FindStringSubmatch(path)[2], 10, 64)
		for _, c := range s.checks {
			if c.ID == id {
				s.applyCheck(c, req.Body)
				writeJSON(w, http.StatusOK, s.checkJSON(c))
				return
			}
		}
		notFound(w)
	case repoOK(reStatus.FindStringSubmatch(path)) && r.Method == http.MethodPost:
		s.nextID++
		c := &Check{ID: s.nextID, Kind: "status", SHA: reStatus.FindStringSubmatch(path)[2],
			Name: str(req.Body["context"]), Status: str(req.Body["state"]), Summary: str(req.Body["description"])}
		s.checks = append(s.checks, c)
		writeJSON(w, http.StatusCreated, map[string]any{"id": c.ID, "state": c.Status, "context": c.Name, "description": c.Summary})
	default:
		notFound(w)
	}
}

func (s *Server) applyCheck(c *Check, body map[string]any) {
	if v := str(body["name"]); v != "" {
		c.Name = v
	}
	if v := str(body["head_sha"]); v != "" {
		c.SHA = v
	}
	if v := str(body["status"]); v != "" {
		c.Status = v
	}
	if v := str(body["conclusion"]); v != "" {
		c.Conclusion, c.Status = v, "completed"
	}
	if out, ok := body["output"].(map[string]any); ok {
		c.Title, c.Summary = str(out["title"]), str(out["summary"])
	}
}

func (s *Server) commentJSON(c *Comment) map[string]any {
	return map[string]any{
		"id": c.ID, "node_id": fmt.Sprintf("IC_%d", c.ID), "body": c.Body,
		"html_url":   fmt.Sprintf("https://github.com/%s/pull/%d#issuecomment-%d", s.Repo, c.Number, c.ID),
		"url":        fmt.Sprintf("https://api.github.com/repos/%s/issues/comments/%d", s.Repo, c.ID),
		"user":       map[string]any{"login": c.Login, "id": 41898282, "type": userType(c.Login)},
		"created_at": time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).Format(time.RFC3339),
		"updated_at": time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).Format(time.RFC3339),
	}
}

func (s *Server) checkJSON(c *Check) map[string]any {
	return map[string]any{
		"id": c.ID, "name": c.Name, "head_sha": c.SHA, "status": c.Status, "conclusion": c.Conclusion,
		"output": map[string]any{"title": c.Title, "summary": c.Summary},
		"app":    map[string]any{"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
	}
}

func userType(login string) string {
	if strings.HasSuffix(login, "[bot]") {
		return "Bot"
	}
	return "User"
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
