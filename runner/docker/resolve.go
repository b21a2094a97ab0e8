package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/sluice-ci/sluice/runner"
)

var _ runner.ImageResolver = (*Executor)(nil)

// ImageDigest names the exact image ref points to (its repository digest, or
// its image id for an image built locally), as Run will find it. Reuse keys
// on it: a tag can move, a digest cannot.
//
// An image the Docker host has is named by the host. One it lacks, or any
// with PullAlways, is named by Options.Registry when it is set, without a
// pull; without it, or when the registry cannot say, the pull policy is
// applied first, as Run does. With PullNever only the host's images count.
func (e *Executor) ImageDigest(ctx context.Context, ref string) (string, error) {
	if e.opts.Registry == nil || e.opts.Pull == PullNever {
		digest, _, err := e.ensureImage(ctx, ref, nil)
		return digest, err
	}
	if e.opts.Pull != PullAlways {
		img, err := e.cli.ImageInspect(ctx, ref)
		if err == nil {
			return imageDigest(ref, img), nil
		}
		if !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("inspect image %s: %w", ref, err)
		}
	}
	digest, err := e.opts.Registry.ImageDigest(ctx, ref)
	if err == nil {
		return digest, nil
	}
	if ctx.Err() != nil {
		return "", err
	}
	e.log.Info("the registry did not name the image's digest; pulling the image to learn it", "image", ref, "err", err)
	digest, _, err = e.ensureImage(ctx, ref, nil)
	return digest, err
}
