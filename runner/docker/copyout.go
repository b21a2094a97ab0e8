package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// copyOut copies /valohai/outputs of the stopped container into dir,
// under the contract's output rules.
func (e *Executor) copyOut(ctx context.Context, id, dir string) ([]runner.OutputFile, []string, error) {
	rc, _, err := e.cli.CopyFromContainer(ctx, id, contract.OutputsDir)
	if cerrdefs.IsNotFound(err) {
		return nil, []string{contract.OutputsDir + " was removed by the step; no outputs"}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("copy outputs out of container: %w", err)
	}
	defer rc.Close()
	outs, warnings, err := intoDir(dir, func(sink contract.Sink) ([]runner.OutputFile, []string, error) {
		return contract.FromTar(rc, sink)
	})
	if err != nil {
		return outs, warnings, fmt.Errorf("copy outputs to %s: %w", dir, err)
	}
	return outs, warnings, nil
}

// intoDir runs read with a contract.DirSink writing below dir.
func intoDir(dir string, read func(contract.Sink) ([]runner.OutputFile, []string, error)) ([]runner.OutputFile, []string, error) {
	sink, err := contract.NewDirSink(dir)
	if err != nil {
		return nil, nil, err
	}
	outs, warnings, err := read(sink)
	if cerr := sink.Close(); err == nil {
		err = cerr
	}
	return outs, warnings, err
}
