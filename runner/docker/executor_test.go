package docker

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/executortest"
	"github.com/sluice-ci/sluice/store/file"
)

// TestExecutor runs the executor conformance suite with each transfer, on
// the local Docker (see dockertest: it skips without Docker, and fails in
// CI). Each executor's job directories go to a temporary directory that must
// be empty when its test ends.
func TestExecutor(t *testing.T) {
	t.Parallel()
	cli := dockertest.Client(t)
	img := dockertest.Image(t)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leftovers := func(ctx context.Context, runID string) (int, error) {
		list, err := cli.ContainerList(ctx, container.ListOptions{
			All:     true,
			Filters: filters.NewArgs(filters.Arg("label", LabelRun+"="+runID)),
		})
		return len(list), err
	}
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			executortest.Run(t, executortest.Harness{
				New: func(t *testing.T) runner.Executor {
					tmp := t.TempDir()
					t.Cleanup(func() { assertEmpty(t, tmp) })
					e, err := New(cli, Options{Transfer: tr, TempDir: tmp})
					if err != nil {
						t.Fatal(err)
					}
					return e
				},
				Store:     st,
				Image:     img,
				Leftovers: leftovers,
			})
		})
	}
}

// TestExecutorPrepared runs the same suite with every job through Prepare
// (given the job without its inputs, output directory and sinks, as the
// scheduler prepares a node ahead) and then Prepared.Run: the prepared path
// keeps the whole contract, with each transfer.
func TestExecutorPrepared(t *testing.T) {
	t.Parallel()
	cli := dockertest.Client(t)
	img := dockertest.Image(t)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			executortest.Run(t, executortest.Harness{
				New: func(t *testing.T) runner.Executor {
					tmp := t.TempDir()
					t.Cleanup(func() { assertEmpty(t, tmp) })
					e, err := New(cli, Options{Transfer: tr, TempDir: tmp})
					if err != nil {
						t.Fatal(err)
					}
					return preparedRun{e}
				},
				Store:     st,
				Image:     img,
				Leftovers: countContainers(cli),
			})
		})
	}
}

// preparedRun runs each job through Prepare and Prepared.Run.
type preparedRun struct{ *Executor }

func (p preparedRun) Run(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	defer cancelledReason(ctx, &res, &err)
	ahead := job
	ahead.Inputs, ahead.OutputDir, ahead.Stdout, ahead.Stderr, ahead.Attempt = nil, "", nil, nil, 0
	pr, err := p.Prepare(ctx, ahead)
	if err != nil {
		return res, err
	}
	return pr.Run(ctx, job)
}

func countContainers(cli client.APIClient) func(ctx context.Context, runID string) (int, error) {
	return func(ctx context.Context, runID string) (int, error) {
		list, err := cli.ContainerList(ctx, container.ListOptions{
			All:     true,
			Filters: filters.NewArgs(filters.Arg("label", LabelRun+"="+runID)),
		})
		return len(list), err
	}
}

// TestExecutorStoreTransfer runs the same suite with the store transfer:
// every file through a bucket of fake-gcs-server (the stand-in for Cloud
// Storage, on 127.0.0.1) and `sluice agent` in the sluice image, as a remote
// backend runs a job. Inputs are given by blob only.
func TestExecutorStoreTransfer(t *testing.T) {
	v := storeTransfer(t)
	executortest.Run(t, executortest.Harness{
		New: func(t *testing.T) runner.Executor {
			e, err := New(v.exec.cli, v.exec.opts)
			if err != nil {
				t.Fatal(err)
			}
			return e
		},
		Store: v.plain,
		Image: v.image,
		Leftovers: func(ctx context.Context, runID string) (int, error) {
			f := filters.NewArgs(filters.Arg("label", LabelRun+"="+runID))
			cs, err := v.exec.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
			if err != nil {
				return 0, err
			}
			vs, err := v.exec.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
			return len(cs) + len(vs.Volumes), err
		},
		StoreNative: true,
	})
}
