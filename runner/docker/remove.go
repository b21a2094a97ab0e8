package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// removeWorkers bounds the containers removed in the background at once:
// enough that removal keeps up with a run at --concurrency 8 of short
// steps, few enough that it does not crowd out the daemon's creates and
// starts, which are on the run's critical path.
const removeWorkers = 3

// removals removes the containers (and job directories) of finished jobs
// in the background, a few at once, and keeps their errors for Wait.
type removals struct {
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func newRemovals() *removals { return &removals{sem: make(chan struct{}, removeWorkers)} }

// later runs remove in the background; an error it returns is logged by
// the caller's remove and kept for Wait.
func (r *removals) later(remove func() error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sem <- struct{}{}
		err := remove()
		<-r.sem
		if err != nil {
			r.mu.Lock()
			r.errs = append(r.errs, err)
			r.mu.Unlock()
		}
	}()
}

// wait waits for every removal started so far, or for ctx, and returns
// the errors met since the last wait.
func (r *removals) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait for the removal of finished containers: %w", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := errors.Join(r.errs...)
	r.errs = nil
	return err
}

// Wait implements runner.Waiter: it returns once the containers and job
// directories of the jobs that ended before the call are removed (Run
// removes them in the background, a few at once, when the job was not
// cancelled), with what could not be removed (`sluice clean` removes
// such containers).
func (e *Executor) Wait(ctx context.Context) error { return e.removing.wait(ctx) }

// removeLater removes the container id and then the job directory jobDir
// (when not empty) in the background; what fails is logged and kept for
// Wait.
func (e *Executor) removeLater(id, node, jobDir string) {
	e.removing.later(func() error {
		var errs []error
		if err := e.remove(context.Background(), id); err != nil {
			e.log.Warn("remove container", "container", shortID(id), "node", node, "err", err)
			errs = append(errs, fmt.Errorf("container %s of node %s not removed: %w (sluice clean removes it)", shortID(id), node, err))
		}
		if jobDir != "" {
			if err := removeJobDir(jobDir); err != nil {
				e.log.Warn("remove job directory", "node", node, "err", err)
				errs = append(errs, fmt.Errorf("job directory %s of node %s not removed: %w", jobDir, node, err))
			}
		}
		return errors.Join(errs...)
	})
}
