package docker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// copyIn puts part of /valohai (repository, inputs, config and an empty
// outputs directory) into the created container, as one tar stream built
// while it is sent.
func (e *Executor) copyIn(ctx context.Context, id string, job runner.Job, part contract.Part) error {
	pr, pw := io.Pipe()
	built := make(chan error, 1)
	go func() {
		err := contract.WriteTarPart(pw, job, e.opts.Now(), part)
		pw.CloseWithError(err)
		built <- err
	}()
	// CopyUIDGID gives the files to the image's user, so a step that runs as
	// a non-root USER can write where root could.
	err := e.cli.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{CopyUIDGID: true})
	pr.CloseWithError(errors.New("copy into container ended"))
	if berr := <-built; berr != nil {
		return berr
	}
	if err != nil {
		return fmt.Errorf("copy files into container: %w", err)
	}
	return nil
}
