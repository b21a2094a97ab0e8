// Package baseline decides what a run is compared with. The rule, for a
// wanted baseline (what --baseline says, or the pull request's target
// branch):
//
//  1. nothing wanted: no baseline;
//  2. the id of a run in the store: that run;
//  3. otherwise a branch: the newest successful run of the same pipeline at
//     the merge base of HEAD and the branch (the commit the pull request
//     forked from), not the run being judged;
//  4. else the branch's latest successful run of the pipeline, unless that is
//     the run being judged or it is gone from the store;
//  5. else no baseline.
//
// Every answer comes with a note that says which rule chose it, for the
// report.
package baseline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"

	"github.com/sluice-ci/sluice/store"
)

// Find applies the rule for run rec (whose Pipeline and ID matter; the ID
// may be empty before the run) and want, with mergeBase the merge base's
// commit ("" when unknown). It returns the baseline (nil for none) and the
// note; an error only when the store could not be read.
func Find(ctx context.Context, st store.Store, rec *store.Run, want, mergeBase string) (*store.Run, string, error) {
	if want == "" {
		return nil, "no baseline was asked for (--baseline BRANCH or RUN)", nil
	}
	if b, err := store.GetRun(ctx, st, want); err == nil {
		return b, fmt.Sprintf("run %s, as asked", b.ID), nil
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, store.ErrInvalidRunID) {
		return nil, "", err
	}
	if mergeBase != "" {
		refs, err := store.CommitRuns(ctx, st, mergeBase)
		if err != nil {
			return nil, "", err
		}
		for i := len(refs) - 1; i >= 0; i-- {
			if refs[i].Pipeline == rec.Pipeline && refs[i].Status == store.StatusSucceeded && refs[i].Run != rec.ID {
				if b, err := store.GetRun(ctx, st, refs[i].Run); err == nil {
					return b, fmt.Sprintf("the latest successful run on %s at the merge base %s", want, short(mergeBase)), nil
				}
			}
		}
	}
	ref, err := store.BranchRef(ctx, st, want, rec.Pipeline)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Sprintf("no successful run of %s on %s yet", rec.Pipeline, want), nil
	}
	if err != nil {
		return nil, "", err
	}
	if ref.Run == rec.ID {
		return nil, fmt.Sprintf("the latest successful run on %s is this run", want), nil
	}
	b, err := store.GetRun(ctx, st, ref.Run)
	if err != nil {
		return nil, fmt.Sprintf("the latest run on %s (%s) is no longer in the store", want, ref.Run), nil
	}
	return b, fmt.Sprintf("the latest successful run on %s (none at the merge base)", want), nil
}

// MergeBase is the merge base of HEAD and a branch in the git repository at
// dir, trying the remote's copy of the branch (origin/BRANCH, as a CI
// checkout has it) too; "" when git knows none.
func MergeBase(dir, branch string) string {
	if branch == "" {
		return ""
	}
	if dir == "" {
		dir = "."
	}
	for _, ref := range []string{branch, "origin/" + branch} {
		out, err := exec.Command("git", "-C", dir, "merge-base", "HEAD", ref).Output()
		if mb := strings.TrimSpace(string(out)); err == nil && mb != "" {
			return mb
		}
	}
	return ""
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
