package docker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

var _ runner.Preparer = (*Executor)(nil)

// errStoreTransfer: the store transfer's agent fetches everything in the
// container, so there is nothing to make ahead.
var errStoreTransfer = errors.New("the store transfer cannot prepare containers ahead")

// Prepare implements runner.Preparer with the copy and bind transfers: the
// image is made present, the container created and the repository copied
// in (or into its job directory); Prepared.Run copies the inputs and the
// config files in, then starts it. The container carries the run's labels
// from the start, so Cleanup, and a run's sweep, remove it too.
func (e *Executor) Prepare(ctx context.Context, job runner.Job) (runner.Prepared, error) {
	if e.opts.Transfer == TransferStore {
		return nil, errStoreTransfer
	}
	if err := job.Validate(); err != nil {
		return nil, err
	}
	c, err := e.create(ctx, job, contract.PartRepository)
	if err != nil {
		return nil, err
	}
	return &prepared{e: e, job: job, c: c}, nil
}

// prepared is a container made by Prepare.
type prepared struct {
	e   *Executor
	job runner.Job
	c   *jobContainer

	mu   sync.Mutex
	used bool // Run or Discard was called
}

var _ runner.Prepared = (*prepared)(nil)

// take marks p used and reports whether it was not yet.
func (p *prepared) take() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used {
		return false
	}
	p.used = true
	return true
}

// Run implements runner.Prepared.
func (p *prepared) Run(ctx context.Context, job runner.Job) (res runner.Result, err error) {
	if !p.take() {
		return p.e.Run(ctx, job)
	}
	if !sameContainer(p.job, job) {
		p.e.log.Debug("prepared container does not fit the job; running it afresh", "node", job.Node)
		p.discard()
		return p.e.Run(ctx, job)
	}
	res = runner.Result{ExitCode: -1, Reason: runner.ReasonError}
	defer cancelledReason(ctx, &res, &err)
	if err := job.Validate(); err != nil {
		p.discard()
		return res, err
	}
	if err := ctx.Err(); err != nil {
		p.release()
		return res, fmt.Errorf("node %s: %w", job.Node, err)
	}
	if err := p.e.complete(ctx, p.c, job, contract.PartJob); err != nil {
		p.release()
		return res, err
	}
	return p.e.runIn(ctx, job, p.c)
}

// Discard implements runner.Prepared: the container and its job directory
// are removed in the background (Wait waits for it).
func (p *prepared) Discard() {
	if p.take() {
		p.discard()
	}
}

func (p *prepared) discard() { p.e.removeLater(p.c.id, p.c.node, p.c.jobDir) }

// release removes the container at once (a job that could not start in
// it: Run's contract is that nothing is left when it fails).
func (p *prepared) release() {
	var res runner.Result
	p.e.release(context.Background(), p.c, &res, false)
	for _, w := range res.Warnings {
		p.e.log.Warn(w, "node", p.c.node)
	}
}

// sameContainer reports whether a container made for prepared can run job:
// the same container configuration (image, command, environment, labels,
// resources) and the same repository.
func sameContainer(prepared, job runner.Job) bool {
	if prepared.RepositoryDir != job.RepositoryDir {
		return false
	}
	pc, ph, _ := containerConfig(prepared)
	jc, jh, _ := containerConfig(job)
	return reflect.DeepEqual(pc, jc) && reflect.DeepEqual(ph, jh)
}
