// Package contract is Valohai's runtime contract as sluice lays it out for
// a step, wherever the step runs: the /valohai tree (the repository, the
// inputs, the config files and an empty outputs directory), the VH_*
// environment, and the rules by which what a step leaves in
// /valohai/outputs becomes its outputs.
//
// The tree inside the container:
//
//	/valohai/repository             the repository snapshot; the working directory
//	/valohai/inputs/<name>/<file>   each input's files, read-only
//	/valohai/outputs/               empty, mode 0777; what the step leaves here is kept
//	/valohai/config/parameters.json the parameters, by name
//	/valohai/config/inputs.json     each input's files: name, path, uri, size, sha256
//	/valohai/config/execution.json  the execution's identity (id, step, image, pipeline, node)
//
// The Docker executor writes the tree as a tar stream for the API
// (WriteTar) or into a host directory it bind-mounts (WriteDir), and reads
// the outputs back from a tar stream (FromTar) or a directory (FromDir);
// `sluice agent` writes the tree in place inside a remote container and
// reads the outputs from it. Both apply the same output rules, in one
// place: see FromTar.
package contract

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

// Paths of the runtime contract inside the container.
const (
	Root          = "/valohai"
	RepositoryDir = "/valohai/repository"
	InputsDir     = "/valohai/inputs"
	OutputsDir    = "/valohai/outputs"
	ConfigDir     = "/valohai/config"
	// AgentDir is where the sluice binary is placed for `sluice agent`; it
	// is sluice's, not part of Valohai's contract.
	AgentDir = "/valohai/.sluice"
)

// Env is the environment of the runtime contract, in a fixed order:
// VH_CONFIG_DIR, VH_INPUTS_DIR, VH_OUTPUTS_DIR, VH_REPOSITORY_DIR,
// VH_JOB_ID and VH_EXECUTION_ID (both the execution id), VH_PIPELINE_ID
// (the run), VH_PIPELINE_NODE_ID (the node), then VH_PROJECT_ID when the
// job has a project.
func Env(job runner.Job) [][2]string {
	exec := job.ExecutionIDOrDefault()
	env := [][2]string{
		{"VH_CONFIG_DIR", ConfigDir},
		{"VH_INPUTS_DIR", InputsDir},
		{"VH_OUTPUTS_DIR", OutputsDir},
		{"VH_REPOSITORY_DIR", RepositoryDir},
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

// Environ is the whole environment a step gets, as NAME=value: Env, then
// PYTHONUNBUFFERED=1 unless job.Env sets it (so a Python step's log
// streams), then job.Env sorted by name. A name of job.Env that Env
// reserves is dropped, with a warning: the contract's value wins.
func Environ(job runner.Job) (env []string, warnings []string) {
	contract := Env(job)
	reserved := map[string]bool{}
	env = make([]string, 0, len(contract)+1+len(job.Env))
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
	return env, warnings
}

// ExecutionJSON is /valohai/config/execution.json of job started at now,
// with the keys Valohai writes that have a meaning here (execution id,
// step, image, creation time, status, pipeline, node, project, commit);
// the others are left out, and those the job does not know are null.
func ExecutionJSON(job runner.Job, now time.Time) map[string]any {
	orNil := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	return map[string]any{
		"valohai.execution-id":      job.ExecutionIDOrDefault(),
		"valohai.execution-step":    orNil(job.Step),
		"valohai.execution-image":   job.Image,
		"valohai.execution-ctime":   now.UTC().Format(time.RFC3339Nano),
		"valohai.execution-status":  "started",
		"valohai.pipeline-id":       job.RunID,
		"valohai.pipeline-node-id":  job.Node,
		"valohai.project-id":        orNil(job.ProjectID),
		"valohai.commit-identifier": orNil(job.Commit),
	}
}

// inputsJSON is /valohai/config/inputs.json.
type inputsJSON map[string]inputJSON

type inputJSON struct {
	Files []inputFileJSON `json:"files"`
}

type inputFileJSON struct {
	Name      string            `json:"name"`
	Path      string            `json:"path"`
	URI       *string           `json:"uri"`
	Size      int64             `json:"size"`
	Checksums map[string]string `json:"checksums"`
}

// marshalJSON is the content of a config file: indented, ending in a newline.
func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
