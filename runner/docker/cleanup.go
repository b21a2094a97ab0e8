package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Cleanup force-removes the containers of run runID that are still on the
// Docker host, e.g. after a sluice process was killed before Run could remove
// them, and returns how many it removed. An empty runID removes the
// containers of every sluice run on the host, other processes' included:
// call it so only when no other sluice run uses the same daemon.
func (e *Executor) Cleanup(ctx context.Context, runID string) (int, error) {
	label := LabelRun
	if runID != "" {
		label += "=" + runID
	}
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return 0, fmt.Errorf("list containers with label %s: %w", label, err)
	}
	var errs []error
	n := 0
	for _, c := range list {
		if err := e.remove(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s (run %s, node %s): %w", shortID(c.ID), c.Labels[LabelRun], c.Labels[LabelNode], err))
			continue
		}
		e.log.Info("removed leftover container", "container", shortID(c.ID), "run", c.Labels[LabelRun], "node", c.Labels[LabelNode])
		n++
	}
	return n, errors.Join(errs...)
}
