package docker

import (
	"fmt"
	"math"
	"sort"

	"github.com/docker/docker/api/types/container"

	"github.com/sluice-ci/sluice/runner"
)

// contractEnv is the environment of the runtime contract, in a fixed order.
func contractEnv(job runner.Job) [][2]string {
	exec := job.ExecutionIDOrDefault()
	env := [][2]string{
		{"VH_CONFIG_DIR", configDir},
		{"VH_INPUTS_DIR", inputsDir},
		{"VH_OUTPUTS_DIR", outputsDir},
		{"VH_REPOSITORY_DIR", repositoryDir},
		{"VH_JOB_ID", exec},
		{"VH_EXECUTION_ID", exec},
		{"VH_PIPELINE_ID", job.RunID},
		{"VH_PIPELINE_NODE_ID", job.Node},
	}
	if job.ProjectID != "" {
		env = append(env, [2]string{"VH_PROJECT_ID", job.ProjectID})
	}
	return env
}

// containerConfig is the container for job: the contract's command, working
// directory, environment, labels and resources. It is a pure function of the
// job; warnings tell of job settings it had to drop.
func containerConfig(job runner.Job) (*container.Config, *container.HostConfig, []string) {
	var warnings []string
	contract := contractEnv(job)
	reserved := map[string]bool{}
	env := make([]string, 0, len(contract)+1+len(job.Env))
	for _, kv := range contract {
		reserved[kv[0]] = true
		env = append(env, kv[0]+"="+kv[1])
	}
	if _, ok := job.Env["PYTHONUNBUFFERED"]; !ok {
		env = append(env, "PYTHONUNBUFFERED=1")
	}
	keys := make([]string, 0, len(job.Env))
	for k := range job.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if reserved[k] {
			warnings = append(warnings, fmt.Sprintf("environment variable %s is set by the runtime contract; the step's value is ignored", k))
			continue
		}
		env = append(env, k+"="+job.Env[k])
	}

	cfg := &container.Config{
		Image: job.Image,
		// An empty, non-nil entrypoint clears the image's (nil would keep it).
		Entrypoint: []string{},
		Cmd:        []string{"/bin/sh", "-c", job.Command},
		WorkingDir: repositoryDir,
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
