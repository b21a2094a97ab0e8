package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// Pipelines run by runner.Run on the Docker executor: the scheduler makes
// the next nodes' containers while the running node runs (runner.Preparer).

// upDown is a node up, and a node down that reads up's output.
func upDown(img, up string) string {
	return fmt.Sprintf(`
- step: {name: up, image: %q, command: %q}
- step: {name: down, image: %q, command: "cat /valohai/inputs/in/x.txt", inputs: [{name: in}]}
- pipeline:
    name: p
    nodes:
      - {name: up, type: execution, step: up}
      - {name: down, type: execution, step: down}
    edges:
      - [up.output.x.txt, down.input.in]
`, img, up, img)
}

// startPipeline runs the pipeline in the background with e; wait returns
// its record.
func startPipeline(ctx context.Context, t *testing.T, e runner.Executor, yaml string) (runID string, wait func() (*store.Run, error)) {
	t.Helper()
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runID = runner.NewRunID(time.Now())
	type ran struct {
		rec *store.Run
		err error
	}
	done := make(chan ran, 1)
	go func() {
		rec, err := runner.Run(ctx, runner.Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: e, Store: st,
			RepoDir: t.TempDir(), TempDir: t.TempDir(), RunID: runID, Concurrency: 2})
		done <- ran{rec, err}
	}()
	return runID, func() (*store.Run, error) {
		select {
		case r := <-done:
			return r.rec, r.err
		case <-time.After(2 * time.Minute): // a guard
			t.Fatal("the run did not end")
			return nil, nil
		}
	}
}

// nodeContainers lists the containers of a run's node.
func (v env) nodeContainers(t *testing.T, runID, node string) []container.Summary {
	t.Helper()
	list, err := v.cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelRun+"="+runID), filters.Arg("label", LabelNode+"="+node))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitContainer waits until the node has a container in state (created,
// running), and returns it.
func (v env) waitContainer(t *testing.T, runID, node, state string) container.Summary {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a guard
	for time.Now().Before(deadline) {
		for _, c := range v.nodeContainers(t, runID, node) {
			if c.State == state {
				return c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s never had a %s container", node, state)
	return container.Summary{}
}

// While up runs, down's container is made (created, not started); when up
// fails, down is skipped and its container removed: nothing of the run is
// left when Run returns. With each transfer.
func TestPreparedRemovedWhenUpstreamFails(t *testing.T) {
	v := setup(t, Options{})
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			t.Cleanup(func() { assertEmpty(t, tmp) })
			e, err := New(v.cli, Options{Transfer: tr, TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			runID, wait := startPipeline(context.Background(), t, e, upDown(v.img, "sleep 60"))
			v.waitContainer(t, runID, "down", "created")
			up := v.waitContainer(t, runID, "up", "running")
			if err := v.cli.ContainerKill(context.Background(), up.ID, "KILL"); err != nil {
				t.Fatal(err)
			}
			rec, err := wait()
			if err == nil || rec.Status != store.StatusFailed {
				t.Fatalf("run: %v, status %s; want failed", err, rec.Status)
			}
			if s := rec.Node("down").Status; s != store.StatusSkipped {
				t.Errorf("down: %s, want skipped", s)
			}
			if n := v.containers(t, runID); n != 0 {
				t.Errorf("%d containers of the run left when Run returned", n)
			}
		})
	}
}

// Cancelled once down's container is prepared (as soon as it exists, or
// once up runs too): Run returns with nothing of the run left.
func TestPreparedRemovedWhenCancelled(t *testing.T) {
	v := setup(t, Options{})
	for _, upRunning := range []bool{false, true} {
		t.Run(fmt.Sprintf("up-running=%v", upRunning), func(t *testing.T) {
			t.Parallel()
			testPreparedCancelled(t, v, upRunning)
		})
	}
}

func testPreparedCancelled(t *testing.T, v env, upRunning bool) {
	tmp := t.TempDir()
	t.Cleanup(func() { assertEmpty(t, tmp) })
	e, err := New(v.cli, Options{Transfer: TransferBind, TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runID, wait := startPipeline(ctx, t, e, upDown(v.img, "sleep 60"))
	v.waitContainer(t, runID, "down", "created")
	if upRunning {
		v.waitContainer(t, runID, "up", "running")
	}
	cancel()
	rec, err := wait()
	if err == nil || rec.Status != store.StatusCancelled {
		t.Fatalf("run: %v, status %s; want cancelled", err, rec.Status)
	}
	for _, node := range []string{"up", "down"} {
		for _, c := range v.nodeContainers(t, runID, node) {
			t.Errorf("node %s's container %s left (%s) when Run returned", node, shortID(c.ID), c.State)
		}
	}
}

// createTimes is the real client, recording when each node's container
// was created.
type createTimes struct {
	client.APIClient
	mu sync.Mutex
	at map[string][]time.Time
}

func (c *createTimes) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	c.mu.Lock()
	c.at[cfg.Labels[LabelNode]] = append(c.at[cfg.Labels[LabelNode]], time.Now())
	c.mu.Unlock()
	return c.APIClient.ContainerCreate(ctx, cfg, host, net, p, name)
}

// A chain runs in containers made while the node before ran: each node's
// only container was created before the node it waits for ended, and the
// file passed along is what it would be without preparing. With each
// transfer, and with a repository the containers see.
func TestPreparedChain(t *testing.T) {
	v := setup(t, Options{})
	yaml := fmt.Sprintf(`
- step: {name: first, image: %[1]q, command: "sleep 2; cat code.txt > /valohai/outputs/x.txt"}
- step: {name: next, image: %[1]q, command: "sleep 2; cat /valohai/inputs/in/x.txt code.txt > /valohai/outputs/x.txt; cat /valohai/config/inputs.json", inputs: [{name: in}]}
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: first}
      - {name: b, type: execution, step: next}
      - {name: c, type: execution, step: next}
    edges:
      - [a.output.x.txt, b.input.in]
      - [b.output.x.txt, c.input.in]
`, v.img)
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			t.Cleanup(func() { assertEmpty(t, tmp) })
			cc := &createTimes{APIClient: v.cli, at: map[string][]time.Time{}}
			e, err := New(cc, Options{Transfer: tr, TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			st, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			repo := t.TempDir()
			if err := os.WriteFile(filepath.Join(repo, "code.txt"), []byte("code\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			rec, err := runner.Run(context.Background(), runner.Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: e,
				Store: st, RepoDir: repo, TempDir: t.TempDir()})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if n := v.containers(t, rec.ID); n != 0 {
				t.Errorf("%d containers of the run left", n)
			}
			out := rec.Node("c").Outputs
			if len(out) != 1 {
				t.Fatalf("c's outputs: %+v", out)
			}
			if got := blob(t, st, out[0].Digest); got != "code\ncode\ncode\n" {
				t.Errorf("c's x.txt = %q", got)
			}
			for _, pair := range [][2]string{{"b", "a"}, {"c", "b"}} {
				at := cc.at[pair[0]]
				if len(at) != 1 {
					t.Errorf("node %s: %d containers created, want 1", pair[0], len(at))
					continue
				}
				if up := rec.Node(pair[1]); !at[0].Before(up.Finished) {
					t.Errorf("node %s's container was created at %s, after %s ended at %s: not prepared", pair[0], at[0].Format(time.StampMilli), pair[1], up.Finished.Format(time.StampMilli))
				}
			}
			if log := blob(t, st, rec.Node("c").Log); !strings.Contains(log, `"/valohai/inputs/in/x.txt"`) {
				t.Errorf("c's inputs.json does not name its input: %s", log)
			}
		})
	}
}

// blob reads a blob of the store.
func blob(t *testing.T, st store.Store, d store.Digest) string {
	t.Helper()
	rc, _, err := store.OpenBlob(context.Background(), st, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
