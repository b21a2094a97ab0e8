package baseline

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// record puts a run and its refs into the store, as a finished run does.
func record(t *testing.T, st store.Store, id, pipeline, commit, branch string, status store.Status, at time.Duration) {
	t.Helper()
	r := &store.Run{ID: id, Pipeline: pipeline, Commit: commit, Branch: branch, Status: status, Started: t0.Add(at)}
	if err := store.PutRun(context.Background(), st, r); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordRun(context.Background(), st, r); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	ctx := context.Background()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// main: at the merge base mb1, an old success, a failure after it, and
	// a success of another pipeline; later, main moved on (success at c2).
	record(t, st, "20260301-100000-aaaa", "train", "mb1", "main", store.StatusSucceeded, 0)
	record(t, st, "20260301-100100-bbbb", "train", "mb1", "main", store.StatusFailed, time.Minute)
	record(t, st, "20260301-100200-cccc", "deploy", "mb1", "main", store.StatusSucceeded, 2*time.Minute)
	record(t, st, "20260301-110000-dddd", "train", "c2", "main", store.StatusSucceeded, time.Hour)
	// A branch whose only successful run is the run being judged.
	record(t, st, "20260301-120000-eeee", "train", "c3", "feature/x", store.StatusSucceeded, 2*time.Hour)
	// A branch whose latest run was removed from the store (gc).
	record(t, st, "20260301-130000-ffff", "train", "c4", "old", store.StatusSucceeded, 3*time.Hour)
	if err := st.Delete(ctx, store.RunKey("20260301-130000-ffff")); err != nil {
		t.Fatal(err)
	}

	judged := &store.Run{ID: "20260301-120000-eeee", Pipeline: "train"}
	before := &store.Run{Pipeline: "train"} // before the run: no id yet
	for _, tc := range []struct {
		name     string
		rec      *store.Run
		want, mb string
		baseline string // the chosen run's id, "" for none
		note     string
	}{
		{"nothing wanted", before, "", "mb1", "", "no baseline was asked for"},
		{"a run id", before, "20260301-110000-dddd", "", "20260301-110000-dddd", "run 20260301-110000-dddd, as asked"},
		{"a run id wins over a merge base", before, "20260301-100000-aaaa", "c2", "20260301-100000-aaaa", "as asked"},
		{"the merge base's success, not its later failure", before, "main", "mb1", "20260301-100000-aaaa",
			"the latest successful run on main at the merge base mb1"},
		{"a merge base without runs: the branch's latest", before, "main", "0123456789abcdef", "20260301-110000-dddd",
			"the latest successful run on main (none at the merge base)"},
		{"no merge base: the branch's latest", before, "main", "", "20260301-110000-dddd", "(none at the merge base)"},
		{"another pipeline's runs do not count", &store.Run{Pipeline: "deploy"}, "main", "c2", "20260301-100200-cccc",
			"the latest successful run on main (none at the merge base)"},
		{"a branch name with a slash is a branch", &store.Run{ID: "x", Pipeline: "train"}, "feature/x", "", "20260301-120000-eeee",
			"the latest successful run on feature/x"},
		{"the branch's latest is the judged run", judged, "feature/x", "", "", "the latest successful run on feature/x is this run"},
		{"the judged run at the merge base is skipped", judged, "feature/x", "c3", "", "is this run"},
		{"a branch without runs", before, "develop", "", "", "no successful run of train on develop yet"},
		{"a pipeline without runs on the branch", &store.Run{Pipeline: "eval"}, "main", "mb1", "", "no successful run of eval on main yet"},
		{"the branch's latest is gone", before, "old", "", "", "the latest run on old (20260301-130000-ffff) is no longer in the store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, note, err := Find(ctx, st, tc.rec, tc.want, tc.mb)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if b != nil {
				got = b.ID
			}
			if got != tc.baseline || !strings.Contains(note, tc.note) {
				t.Errorf("baseline %q (%s), want %q (%s)", got, note, tc.baseline, tc.note)
			}
		})
	}
}

// A store that cannot be read is an error, not "no baseline".
func TestFindStoreError(t *testing.T) {
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	record(t, st, "20260301-100000-aaaa", "train", "mb1", "main", store.StatusSucceeded, 0)
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(store.CommitRefKey("mb1"))), []byte("{damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = Find(context.Background(), st, &store.Run{Pipeline: "train"}, "main", "mb1")
	if err == nil || !strings.Contains(err.Error(), "mb1") {
		t.Errorf("a damaged commit list: %v", err)
	}
	if errors.Is(err, store.ErrInvalidRunID) {
		t.Errorf("the error is not about a run id: %v", err)
	}
}

func TestMergeBase(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git: %v", err)
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	git("commit", "-q", "--allow-empty", "-m", "base")
	base := git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "feature")
	git("commit", "-q", "--allow-empty", "-m", "change")
	git("checkout", "-q", "main")
	git("commit", "-q", "--allow-empty", "-m", "main moves on")
	git("checkout", "-q", "feature")
	if got := MergeBase(dir, "main"); got != base {
		t.Errorf("merge base with main: %q, want %q", got, base)
	}
	// A CI checkout has only the remote's copy of the target branch.
	git("update-ref", "refs/remotes/origin/release", base)
	if got := MergeBase(dir, "release"); got != base {
		t.Errorf("merge base with origin/release: %q, want %q", got, base)
	}
	if got := MergeBase(dir, "nope"); got != "" {
		t.Errorf("merge base with a branch that does not exist: %q", got)
	}
	if got := MergeBase(dir, ""); got != "" {
		t.Errorf("merge base with no branch: %q", got)
	}
}
