package docker

import (
	"math"

	"github.com/docker/docker/api/types/container"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// containerConfig is the container for job: the contract's command, working
// directory, environment, labels and resources. It is a pure function of the
// job; warnings tell of job settings it had to drop.
func containerConfig(job runner.Job) (*container.Config, *container.HostConfig, []string) {
	env, warnings := contract.Environ(job)
	cfg := &container.Config{
		Image: job.Image,
		// An empty, non-nil entrypoint clears the image's (nil would keep it).
		Entrypoint: []string{},
		Cmd:        []string{"/bin/sh", "-c", job.Command},
		WorkingDir: contract.RepositoryDir,
		Env:        env,
		Labels:     map[string]string{LabelRun: job.RunID, LabelNode: job.Node},
	}
	host := &container.HostConfig{
		Resources: resources(job.Resources),
		// The log stream is the job's output and the no-output clock: use a
		// driver the engine can always read back, whatever its default.
		LogConfig: container.LogConfig{Type: "json-file"},
	}
	return cfg, host, warnings
}

func resources(r runner.Resources) container.Resources {
	var res container.Resources
	if r.CPU > 0 {
		res.NanoCPUs = int64(math.Round(r.CPU * 1e9))
	}
	if r.MemoryMB > 0 {
		res.Memory = r.MemoryMB << 20
	}
	if r.GPUs != 0 {
		// Count -1 is all GPUs; 0 would be none, so no request at all then.
		res.DeviceRequests = []container.DeviceRequest{{
			Driver:       "nvidia",
			Count:        r.GPUs,
			Capabilities: [][]string{{"gpu"}},
		}}
	}
	return res
}
