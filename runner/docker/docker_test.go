package docker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/runner"
)

// These tests run real containers on the local Docker (busybox, a second or
// less each); they skip without Docker, and fail in CI (see dockertest).

type env struct {
	exec *Executor
	cli  *client.Client
	img  string
}

func setup(t *testing.T, opts Options) env {
	t.Helper()
	t.Parallel()
	cli := dockertest.Client(t)
	img := dockertest.Image(t)
	e, err := New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	return env{exec: e, cli: cli, img: img}
}

// transfers are the transfers the tests that depend on them run with.
var transfers = []Transfer{TransferCopy, TransferBind}

// assertEmpty fails the test if dir has anything in it.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in %s", e.Name(), dir)
	}
}

// job returns a job with a run id of its own, whose outputs go to a
// temporary directory, and checks when the test ends that no container of
// that run is left.
func (v env) job(t *testing.T, command string) runner.Job {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	j := runner.Job{
		RunID:     "test-" + hex.EncodeToString(b[:]),
		Node:      strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		Image:     v.img,
		Command:   command,
		OutputDir: filepath.Join(t.TempDir(), "outputs"),
	}
	t.Cleanup(func() {
		if err := v.exec.Wait(context.Background()); err != nil {
			t.Errorf("Wait: %v", err)
		}
		if n := v.containers(t, j.RunID); n != 0 {
			t.Errorf("%d containers of run %s left on the Docker host", n, j.RunID)
			_, _ = v.exec.Cleanup(context.Background(), j.RunID)
		}
	})
	return j
}

// waitRemoved waits for the executor's background removals (deferred in a
// test that makes its own executor, so it runs before the test's cleanups
// count what is left).
func waitRemoved(t *testing.T, e *Executor) {
	t.Helper()
	if err := e.Wait(context.Background()); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func (v env) containers(t *testing.T, runID string) int {
	t.Helper()
	list, err := v.cli.ContainerList(context.Background(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelRun+"="+runID)),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return len(list)
}

// lines collects what a sink receives, line by line.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) writer(then func(string)) *runner.LineWriter {
	return runner.NewLineWriter(func(s string) {
		l.mu.Lock()
		l.l = append(l.l, s)
		l.mu.Unlock()
		if then != nil {
			then(s)
		}
	})
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.l)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// With bind mounts, inputs are read-only: root in the container cannot
// write to them (with the copy transfer they are the container's own copies,
// and the conformance suite accepts both).
func TestRunBindInputsReadOnly(t *testing.T) {
	tmp := t.TempDir()
	t.Cleanup(func() { assertEmpty(t, tmp) })
	v := setup(t, Options{Transfer: TransferBind, TempDir: tmp})
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte("world"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := v.job(t, `if (echo tampered >> /valohai/inputs/data/in.txt) 2>/dev/null; then echo writable; else echo read-only; fi`)
	j.Inputs = []runner.Input{{Name: "data", Files: []runner.InputFile{{Name: "in.txt", Path: in}}}}
	var stdout lines
	j.Stdout = stdout.writer(nil)
	res, err := v.exec.Run(context.Background(), j)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("Run: %v, %s", err, res.Reason)
	}
	if got := stdout.get(); !slices.Equal(got, []string{"read-only"}) {
		t.Errorf("stdout %q, want [read-only]", got)
	}
	if got := readFile(t, in); got != "world" {
		t.Errorf("the step changed the host's input file: %q", got)
	}
}

func TestRunImageMissingPullNever(t *testing.T) {
	v := setup(t, Options{Pull: PullNever})
	j := v.job(t, "true")
	j.Image = "sluice-test/does-not-exist:never"
	res, err := v.exec.Run(context.Background(), j)
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("Run error %v, want ErrImageNotFound", err)
	}
	for _, want := range []string{j.Node, j.Image, "pull policy is never"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if res.Reason != runner.ReasonError {
		t.Errorf("Reason %s, want error", res.Reason)
	}
}

// The image's entrypoint must not wrap the command, and its non-root user
// can write outputs and in the working directory, with either transfer.
func TestRunClearsEntrypoint(t *testing.T) {
	v := setup(t, Options{})
	ctx := context.Background()
	c, err := v.cli.ContainerCreate(ctx, &container.Config{Image: v.img, Cmd: []string{"true"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	img, err := v.cli.ContainerCommit(ctx, c.ID, container.CommitOptions{
		Reference: "sluice-test/entrypoint:" + sha(t.Name() + c.ID)[:12],
		Changes:   []string{`ENTRYPOINT ["/bin/echo", "entrypoint was not cleared"]`, `USER nobody`},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = v.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}) })

	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			t.Cleanup(func() { assertEmpty(t, tmp) })
			e, err := New(v.cli, Options{Transfer: tr, TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			defer waitRemoved(t, e)
			j := v.job(t, `echo $(id -u) > /valohai/outputs/uid && mkdir /valohai/outputs/sub && echo x > /valohai/outputs/sub/x &&
chmod 600 /valohai/outputs/sub/x && echo w > w.txt && echo cleared`)
			j.Image = img.ID
			j.RepositoryDir = t.TempDir()
			if err := os.WriteFile(filepath.Join(j.RepositoryDir, "code.sh"), []byte("true\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout lines
			j.Stdout = stdout.writer(nil)
			res, err := e.Run(ctx, j)
			if err != nil || res.Reason != runner.ReasonCompleted {
				t.Fatalf("Run: %v, %s, %q", err, res.Reason, res.Warnings)
			}
			if got := stdout.get(); !slices.Equal(got, []string{"cleared"}) {
				t.Errorf("stdout %q, want [cleared]", got)
			}
			// USER nobody could write to /valohai/outputs and /valohai/repository.
			if got := readFile(t, filepath.Join(j.OutputDir, "uid")); got != "65534\n" {
				t.Errorf("uid %q, want 65534", got)
			}
			if got := readFile(t, filepath.Join(j.OutputDir, "sub", "x")); got != "x\n" {
				t.Errorf("sub/x %q, want x", got)
			}
		})
	}
}

func TestCleanup(t *testing.T) {
	v := setup(t, Options{})
	ctx := context.Background()
	j := v.job(t, "true")
	other := v.job(t, "true")
	for _, run := range []string{j.RunID, j.RunID, other.RunID} {
		_, err := v.cli.ContainerCreate(ctx, &container.Config{
			Image: v.img, Cmd: []string{"sleep", "30"},
			Labels: map[string]string{LabelRun: run, LabelNode: "leftover"},
		}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := v.exec.Cleanup(ctx, j.RunID)
	if err != nil || n != 2 {
		t.Fatalf("Cleanup = %d, %v; want 2, nil", n, err)
	}
	if got := v.containers(t, other.RunID); got != 1 {
		t.Errorf("the other run has %d containers, want 1 (untouched)", got)
	}
	if n, err := v.exec.Cleanup(ctx, other.RunID); err != nil || n != 1 {
		t.Errorf("Cleanup(other) = %d, %v", n, err)
	}
}
