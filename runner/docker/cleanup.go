package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
)

// Cleanup force-removes the containers (and volumes) of run runID that are still on the
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
	// The volumes of the store transfer, once their containers are gone.
	vols, err := e.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("list volumes with label %s: %w", label, err))...)
	}
	for _, v := range vols.Volumes {
		if err := e.removeVolume(ctx, v.Name); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s (run %s, node %s): %w", v.Name, v.Labels[LabelRun], v.Labels[LabelNode], err))
		}
	}
	return n, errors.Join(errs...)
}
