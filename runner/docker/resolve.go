package docker

import (
	"context"

	"github.com/sluice-ci/sluice/runner"
)

var _ runner.ImageResolver = (*Executor)(nil)

// ImageDigest names the exact image ref points to (its repository digest, or
// its image id for an image built locally), applying the pull policy first,
// as Run will. Reuse keys on it: a tag can move, a digest cannot.
func (e *Executor) ImageDigest(ctx context.Context, ref string) (string, error) {
	digest, _, err := e.ensureImage(ctx, ref)
	return digest, err
}
