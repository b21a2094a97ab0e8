package docker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/runner"
)

// gatedRemove is the real client, except that ContainerRemove waits for
// release (or fails with fail, when set) and says when it was called.
type gatedRemove struct {
	client.APIClient
	called  chan string
	release chan struct{}
	fail    error
}

func (c *gatedRemove) ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error {
	c.called <- id
	<-c.release
	if c.fail != nil {
		return c.fail
	}
	return c.APIClient.ContainerRemove(ctx, id, o)
}

// A job that ran its course returns before its container is removed: the
// removal is in the background, and Wait waits for it. With either transfer.
func TestRunRemovesInBackground(t *testing.T) {
	v := setup(t, Options{})
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			t.Cleanup(func() { assertEmpty(t, tmp) })
			gc := &gatedRemove{APIClient: v.cli, called: make(chan string, 1), release: make(chan struct{})}
			e, err := New(gc, Options{Transfer: tr, TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			j := chainJob(t, v)
			res, err := e.Run(context.Background(), j)
			checkChainJob(t, j, res, err)
			// Run returned while the removal is held.
			var id string
			select {
			case id = <-gc.called:
			case <-time.After(30 * time.Second): // a guard
				t.Fatal("the container was never removed")
			}
			if n := v.containers(t, j.RunID); n != 1 {
				t.Errorf("%d containers of the run while the removal is held, want 1", n)
			}
			waited := make(chan error, 1)
			go func() { waited <- e.Wait(context.Background()) }()
			select {
			case err := <-waited:
				t.Fatalf("Wait returned (%v) before the removal ended", err)
			case <-time.After(100 * time.Millisecond):
			}
			close(gc.release)
			if err := <-waited; err != nil {
				t.Errorf("Wait: %v", err)
			}
			if n := v.containers(t, j.RunID); n != 0 {
				t.Errorf("container %s still there after Wait", shortID(id))
			}
		})
	}
}

// A removal that fails reaches Wait's error, naming the container and the
// node (and the executor's log); the container is left for Cleanup.
func TestRunBackgroundRemovalFails(t *testing.T) {
	v := setup(t, Options{})
	gc := &gatedRemove{APIClient: v.cli, called: make(chan string, 1), release: make(chan struct{}), fail: errors.New("daemon said no")}
	close(gc.release)
	e, err := New(gc, Options{Transfer: TransferCopy})
	if err != nil {
		t.Fatal(err)
	}
	j := chainJob(t, v)
	res, err := e.Run(context.Background(), j)
	checkChainJob(t, j, res, err)
	id := <-gc.called
	err = e.Wait(context.Background())
	if err == nil || !strings.Contains(err.Error(), "daemon said no") || !strings.Contains(err.Error(), shortID(id)) || !strings.Contains(err.Error(), j.Node) {
		t.Errorf("Wait: %v, want the removal's error naming container %s and node %s", err, shortID(id), j.Node)
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Errorf("second Wait: %v, want nil (errors are told once)", err)
	}
	if n, err := v.exec.Cleanup(context.Background(), j.RunID); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want the one container left", n, err)
	}
}

// A cancelled job is removed before Run returns, as the Executor contract
// says: nothing waits in the background.
func TestRunCancelledRemovesAtOnce(t *testing.T) {
	v := setup(t, Options{})
	gc := &gatedRemove{APIClient: v.cli, called: make(chan string, 1), release: make(chan struct{})}
	close(gc.release)
	e, err := New(gc, Options{Transfer: TransferCopy})
	if err != nil {
		t.Fatal(err)
	}
	j := v.job(t, "echo started; sleep 30")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	j.Stdout = writerFunc(func(p []byte) (int, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		return len(p), nil
	})
	go func() { <-started; cancel() }()
	res, err := e.Run(ctx, j)
	if !errors.Is(err, context.Canceled) || res.Reason != runner.ReasonCancelled {
		t.Fatalf("Run: %v, %s; want cancelled", err, res.Reason)
	}
	if n := v.containers(t, j.RunID); n != 0 {
		t.Errorf("%d containers of the cancelled run when Run returned", n)
	}
}
