package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// RunRef points at one run: what a branch ref holds, and each entry of a
// commit's list of runs.
type RunRef struct {
	Run      string    `json:"run"`
	Pipeline string    `json:"pipeline"`
	Commit   string    `json:"commit,omitempty"`
	Branch   string    `json:"branch,omitempty"`
	Status   Status    `json:"status"`
	Started  time.Time `json:"started"`
}

// refName turns a branch or pipeline name into one key segment: readable
// when it is simple, hashed when it is not.
func refName(s string) string {
	simple := s != "" && len(s) <= 100
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.", c)) {
			simple = false
			break
		}
	}
	if simple && !strings.HasPrefix(s, ".") {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:12])
}

// BranchRefKey is where the latest successful run of a pipeline on a branch
// is recorded: refs/branches/<branch>/<pipeline>.json.
func BranchRefKey(branch, pipeline string) string {
	return "refs/branches/" + refName(branch) + "/" + refName(pipeline) + ".json"
}

// CommitRefKey is where the runs of a commit are listed: refs/commits/<sha>.json.
func CommitRefKey(commit string) string { return "refs/commits/" + refName(commit) + ".json" }

// RecordRun updates the refs of a finished run: a successful run becomes its
// branch's latest for its pipeline unless a run that started later is
// already there, and every run joins its commit's list. Both updates are
// compare-and-swap writes, so runs finishing together never lose one.
func RecordRun(ctx context.Context, s Store, r *Run) error {
	ref := RunRef{Run: r.ID, Pipeline: r.Pipeline, Commit: r.Commit, Branch: r.Branch, Status: r.Status, Started: r.Started}
	if r.Branch != "" && r.Status == StatusSucceeded {
		_, err := Update(ctx, s, BranchRefKey(r.Branch, r.Pipeline), func(old []byte, exists bool) ([]byte, error) {
			if exists {
				var cur RunRef
				if json.Unmarshal(old, &cur) == nil && cur.Started.After(r.Started) {
					return old, nil // a later run is already the branch's latest
				}
			}
			return json.Marshal(ref)
		})
		if err != nil {
			return fmt.Errorf("update the ref of branch %s: %w", r.Branch, err)
		}
	}
	if r.Commit != "" {
		_, err := Update(ctx, s, CommitRefKey(r.Commit), func(old []byte, exists bool) ([]byte, error) {
			var refs []RunRef
			if exists {
				if err := json.Unmarshal(old, &refs); err != nil {
					refs = nil // a damaged list is rebuilt from this run on
				}
			}
			for _, x := range refs {
				if x.Run == r.ID {
					return old, nil
				}
			}
			refs = append(refs, ref)
			sort.Slice(refs, func(i, j int) bool { return refs[i].Started.Before(refs[j].Started) })
			return json.Marshal(refs)
		})
		if err != nil {
			return fmt.Errorf("update the runs of commit %s: %w", r.Commit, err)
		}
	}
	return nil
}

// BranchRef returns the latest successful run of a pipeline on a branch; a
// branch with none is an error wrapping fs.ErrNotExist.
func BranchRef(ctx context.Context, s Store, branch, pipeline string) (*RunRef, error) {
	var ref RunRef
	if err := readJSON(ctx, s, BranchRefKey(branch, pipeline), &ref); err != nil {
		return nil, fmt.Errorf("branch %s, pipeline %s: %w", branch, pipeline, err)
	}
	return &ref, nil
}

// CommitRuns lists the runs of a commit, oldest first.
func CommitRuns(ctx context.Context, s Store, commit string) ([]RunRef, error) {
	var refs []RunRef
	if err := readJSON(ctx, s, CommitRefKey(commit), &refs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("runs of commit %s: %w", commit, err)
	}
	return refs, nil
}

func readJSON(ctx context.Context, s Store, key string, v any) error {
	rc, _, err := s.Open(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxUpdateSize))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s is not valid JSON: %w", key, err)
	}
	return nil
}
