// Package fakegitlab is a stand-in for GitLab's REST API (v4) in end-to-end
// tests: an HTTP handler answering the endpoints sluice uses (the token's
// user, a merge request, its notes, commit statuses) with the payload shapes
// of GitLab's public API documentation, keeping what was written and
// recording every request.
package fakegitlab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// BotID and BotUsername are the token's user.
const (
	BotID       = 4242
	BotUsername = "project_7_bot_sluice"
)

// Request is one request the fake received.
type Request struct {
	Method, Path string // Path unescaped, without /api/v4
	Token        string // PRIVATE-TOKEN or JOB-TOKEN
	Body         map[string]any
}

// Note is a merge request note.
type Note struct {
	ID       int64
	IID      int
	Body     string
	AuthorID int64
}

// Status is a commit status.
type Status struct {
	SHA, Name, State, Description, TargetURL string
	PipelineID                               int64
}

// Server is the fake for one project. MRs maps a merge request iid to its
// source commit.
type Server struct {
	Project string // path, "group/project"
	ID      int    // numeric id
	MRs     map[int]string

	mu       sync.Mutex
	nextID   int64
	requests []Request
	notes    []*Note
	statuses []Status
}

// New returns a fake for the project with this path and id.
func New(project string, id int) *Server {
	return &Server{Project: project, ID: id, MRs: map[int]string{}, nextID: 500}
}

// Requests returns what was received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Notes returns the notes, oldest first.
func (s *Server) Notes() []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Note
	for _, n := range s.notes {
		out = append(out, *n)
	}
	return out
}

// Statuses returns the commit statuses set, in order.
func (s *Server) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.statuses...)
}

var (
	reMR    = regexp.MustCompile(`^/projects/([^/]+)/merge_requests/(\d+)$`)
	reNotes = regexp.MustCompile(`^/projects/([^/]+)/merge_requests/(\d+)/notes$`)
	reNote  = regexp.MustCompile(`^/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)$`)
	reState = regexp.MustCompile(`^/projects/([^/]+)/statuses/([0-9a-f]+)$`)
)

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.EscapedPath()
	raw = strings.TrimPrefix(raw, "/api/v4")
	req := Request{Method: r.Method, Token: r.Header.Get("PRIVATE-TOKEN")}
	if req.Token == "" {
		req.Token = r.Header.Get("JOB-TOKEN")
	}
	data, _ := io.ReadAll(r.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &req.Body); err != nil {
			// Form-encoded bodies.
			if v, err := url.ParseQuery(string(data)); err == nil {
				req.Body = map[string]any{}
				for k := range v {
					req.Body[k] = v.Get(k)
				}
			}
		}
	}
	// A project path arrives escaped as one segment: group%2Fproject.
	segs := strings.Split(raw, "/")
	for i := range segs {
		segs[i], _ = url.PathUnescape(segs[i])
		segs[i] = strings.ReplaceAll(segs[i], "/", "%2F")
	}
	path := strings.Join(segs, "/")
	req.Path = strings.ReplaceAll(path, "%2F", "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	w.Header().Set("Content-Type", "application/json")
	if req.Token == "" || r.Header.Get("JOB-TOKEN") != "" && r.Method != http.MethodGet {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	project := func(m []string) bool {
		if m == nil {
			return false
		}
		p := strings.ReplaceAll(m[1], "%2F", "/")
		return p == s.Project || p == strconv.Itoa(s.ID)
	}
	iid := func(m []string) (int, bool) {
		n, _ := strconv.Atoi(m[2])
		_, ok := s.MRs[n]
		return n, ok
	}
	switch {
	case path == "/user":
		writeJSON(w, http.StatusOK, map[string]any{"id": BotID, "username": BotUsername, "name": "sluice", "state": "active", "bot": true})
	case project(reMR.FindStringSubmatch(path)):
		n, ok := iid(reMR.FindStringSubmatch(path))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": 90000 + n, "iid": n, "project_id": s.ID, "state": "opened",
			"sha": s.MRs[n], "source_branch": "feature", "target_branch": "main", "labels": []string{},
			"web_url": fmt.Sprintf("https://gitlab.example.com/%s/-/merge_requests/%d", s.Project, n)})
	case project(reNotes.FindStringSubmatch(path)):
		n, ok := iid(reNotes.FindStringSubmatch(path))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
			return
		}
		if r.Method == http.MethodPost {
			s.nextID++
			note := &Note{ID: s.nextID, IID: n, Body: str(req.Body["body"]), AuthorID: BotID}
			s.notes = append(s.notes, note)
			writeJSON(w, http.StatusCreated, noteJSON(note))
			return
		}
		list := []any{}
		for _, note := range s.notes {
			if note.IID == n {
				list = append(list, noteJSON(note))
			}
		}
		w.Header().Set("X-Page", "1")
		w.Header().Set("X-Total-Pages", "1")
		writeJSON(w, http.StatusOK, list)
	case project(reNote.FindStringSubmatch(path)) && r.Method == http.MethodPut:
		id, _ := strconv.ParseInt(reNote.FindStringSubmatch(path)[3], 10, 64)
		for _, note := range s.notes {
			if note.ID == id {
				note.Body = str(req.Body["body"])
				writeJSON(w, http.StatusOK, noteJSON(note))
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
	case project(reState.FindStringSubmatch(path)) && r.Method == http.MethodPost:
		st := Status{SHA: reState.FindStringSubmatch(path)[2], Name: str(req.Body["name"]), State: str(req.Body["state"]),
			Description: str(req.Body["description"]), TargetURL: str(req.Body["target_url"])}
		if f, ok := req.Body["pipeline_id"].(float64); ok {
			st.PipelineID = int64(f)
		}
		for i := len(s.statuses) - 1; i >= 0; i-- {
			if old := s.statuses[i]; old.SHA == st.SHA && old.Name == st.Name {
				if old.State == st.State {
					writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Cannot transition status via :" + st.State + " from :" + old.State})
					return
				}
				break
			}
		}
		s.statuses = append(s.statuses, st)
		writeJSON(w, http.StatusCreated, map[string]any{"id": len(s.statuses), "sha": st.SHA, "name": st.Name, "status": st.State, "description": st.Description})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
	}
}

func noteJSON(n *Note) map[string]any {
	return map[string]any{"id": n.ID, "body": n.Body, "system": false, "noteable_type": "MergeRequest", "noteable_iid": n.IID,
		"author": map[string]any{"id": n.AuthorID, "username": BotUsername, "name": "sluice"}}
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
