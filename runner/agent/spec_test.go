package agent

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store/file"
)

// A spec read with TryEnv set puts the try's files below a prefix of its
// own (a Kubernetes pod's name); without it, below the spec's prefix.
func TestReadSpecTryPrefix(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	job := runner.Job{RunID: "r1", Node: "train", Image: "busybox", Command: "true"}
	sp, err := NewSpec(ctx, job, "gs://b/p", AttemptPrefix(job), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := sp.Put(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(TryEnv, "")
	got, err := ReadSpec(ctx, st, key)
	if err != nil || got.Prefix != "runs/r1/jobs/r1-train/1" {
		t.Fatalf("without %s: prefix %v, %v", TryEnv, got, err)
	}
	t.Setenv(TryEnv, "sluice-r1-train-1-x7k2p")
	got, err = ReadSpec(ctx, st, key)
	if err != nil || got.Prefix != "runs/r1/jobs/r1-train/1/sluice-r1-train-1-x7k2p" {
		t.Fatalf("with %s: prefix %v, %v", TryEnv, got.Prefix, err)
	}
}
