// Package runner schedules a pipeline's nodes and runs each of them through an
// Executor. The executors live in subpackages (runner/docker, and later
// runner/batch and runner/kube); this file holds the contract they share.
package runner

import (
	"context"
	"io"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// Executor runs one node of a pipeline as one container, with the Valohai
// runtime contract:
//
//   - /valohai/repository: a copy of Job.RepositoryDir; the working directory.
//   - /valohai/inputs/<input>/<file>: Job.Inputs, read-only by convention.
//   - /valohai/outputs/: empty at start; copied out to Job.OutputDir after the
//     command exits, also when it failed or hit a limit.
//   - /valohai/config/parameters.json (Job.Parameters), inputs.json
//     ({input: {files: [{name, path, uri, size, checksums: {sha256}}]}}) and
//     execution.json (valohai.execution-id, -step, -image, pipeline ids, ...).
//   - VH_CONFIG_DIR, VH_INPUTS_DIR, VH_OUTPUTS_DIR, VH_REPOSITORY_DIR, VH_JOB_ID,
//     VH_EXECUTION_ID, VH_PIPELINE_ID, VH_PIPELINE_NODE_ID (and VH_PROJECT_ID
//     when Job.ProjectID is set), PYTHONUNBUFFERED=1, then Job.Env.
//   - the image's entrypoint cleared; the command is `/bin/sh -c Job.Command`.
//
// Package runner/contract lays this tree and environment out and reads the
// outputs back under one set of rules, for every executor and the agent.
//
// Files travel one of two ways. A local executor copies them: the snapshot in
// Job.RepositoryDir, each input through InputFile.Path or Open, the outputs
// into Job.OutputDir. A store-native executor (one whose containers run where
// this process's files are not: the Docker store transfer, Cloud Batch,
// Kubernetes) passes references instead: Job.RepositoryBlob and each input's
// InputFile.Blob (Job.Stage puts what is only local into the store), and it
// reports outputs its agent already put into the store (OutputFile.Stored),
// which the scheduler then neither downloads nor uploads again.
//
// Implementations must be safe for concurrent use: the scheduler runs up to
// --concurrency jobs at once through one Executor (and at most its
// environment's max-parallel).
type Executor interface {
	// Run executes one node to completion. It returns when the container has
	// exited and its outputs are in Job.OutputDir (or, Stored, in the
	// store), or when ctx is cancelled,
	// after it removed what it started. An executor that is a Waiter may
	// remove the exited container of a job that was not cancelled after Run
	// returned, in the background; Wait waits for that.
	//
	// The returned error is non-nil only when the executor could not carry
	// the job through: a bad Job, a missing image, an unreachable daemon, a
	// failed copy, or ctx cancelled (the error then wraps ctx.Err() and
	// Result.Reason is ReasonCancelled). A command that exits non-zero or hits
	// a limit is not an error: Result.Reason and Result.ExitCode tell. Result
	// is filled as far as the run got, also when err is non-nil.
	Run(ctx context.Context, job Job) (Result, error)
}

// Waiter is implemented by an executor that finishes some of its work in
// the background after Run returned: the Docker executor removes the
// containers of jobs that ended while the next ones run. Wait returns once
// all of that work, started before the call, is done (or ctx is done), with
// the errors it met since the previous Wait, each naming its container and
// node; nothing is left of those jobs when it returned nil. Run (the
// pipeline's) calls Wait on each of its executors before it returns, so a
// run leaves nothing behind, also when it was cancelled. It is safe for
// concurrent use, also with Run.
type Waiter interface {
	Wait(ctx context.Context) error
}

// Preparer is implemented by an executor that can make a job's container
// ahead, while the nodes the job waits for still run: what is known before
// its inputs exist (the image, the command, the environment, the
// resources, the repository copy) is set up, and Prepared.Run adds the rest
// and starts it. The scheduler prepares a few nodes ahead, those whose
// command does not depend on what upstream nodes print (no parameter or
// environment edges into them); an executor that is not a Preparer runs
// every job through Run, as before.
type Preparer interface {
	// Prepare makes job's container, without starting it. job is complete
	// but for what only exists later: Inputs, OutputDir, Stdout, Stderr,
	// Attempt. ctx bounds the preparation only: a Prepared outlives it. An
	// error (the executor cannot prepare this job, e.g. with a transfer that
	// needs the inputs first) means the job runs through Run as usual; the
	// preparation left nothing behind then.
	Prepare(ctx context.Context, job Job) (Prepared, error)
}

// Prepared is a job's container made ahead by a Preparer. Exactly one of
// Run and Discard should be called; calling Discard after Run, or twice, is
// harmless.
type Prepared interface {
	// Run is Executor.Run on the prepared container: job is the prepared
	// job, completed (Inputs, OutputDir, the output sinks, Attempt). When
	// job differs from the prepared one in what the container was made with
	// (image, command, environment, resources, repository), Run discards the
	// container and runs job as Executor.Run does, so the result is the
	// same either way.
	Run(ctx context.Context, job Job) (Result, error)
	// Discard removes what Prepare made. The removal may go on in the
	// background, as the executor's Waiter says.
	Discard()
}

// Job is one node, ready to run: everything in it is already resolved
// (parameters rendered into Command, inputs fetched or openable).
type Job struct {
	// RunID identifies the pipeline run; it labels the container and is the
	// pipeline id of the runtime contract (VH_PIPELINE_ID).
	RunID string
	// Node is the pipeline node's name (VH_PIPELINE_NODE_ID). Required.
	Node string
	// Step is the step's name, for execution.json. Optional.
	Step string
	// ExecutionID is VH_EXECUTION_ID and VH_JOB_ID; empty means RunID + "-" + Node.
	ExecutionID string
	// ProjectID is VH_PROJECT_ID; empty leaves the variable unset.
	ProjectID string
	// Commit is the repository's commit, valohai.commit-identifier. Optional.
	Commit string
	// Environment is the Valohai environment slug the node runs in, as
	// sluice.yaml maps it; empty for the local Docker host.
	Environment string
	// Attempt counts the tries of this execution, from 1. A store-native
	// executor keeps each attempt's files apart.
	Attempt int

	// Image is the container image reference. Required.
	Image string
	// Command is the whole shell script, already rendered (commands joined
	// with " && "); it runs as /bin/sh -c Command.
	Command string
	// Env holds the step's environment variables. They cannot replace the
	// VH_* variables of the runtime contract.
	Env map[string]string
	// Resources limits the container; the zero value means no limits.
	Resources Resources

	// TimeLimit kills the command when it has run this long (ReasonTimeLimit).
	// Zero means no limit.
	TimeLimit time.Duration
	// NoOutputTimeout kills the command when it has printed nothing on stdout
	// or stderr for this long (ReasonNoOutputTimeout). Zero means no limit.
	NoOutputTimeout time.Duration

	// Inputs land in /valohai/inputs/<Name>/<File.Name>.
	Inputs []Input
	// Parameters is written as /valohai/config/parameters.json: parameter
	// name to typed value (string, float64, int, bool, or a list of them).
	Parameters map[string]any
	// RepositoryDir is the host path of a repository snapshot, copied as is
	// (regular files, directories, symlinks) to /valohai/repository. Empty
	// means an empty /valohai/repository.
	RepositoryDir string
	// RepositoryBlob returns the same snapshot as one blob in the run's
	// store: a tar stream of it (contract.TarTree's format). It builds and
	// stores the blob on the first call of a run and returns the same one
	// afterwards; it is safe for concurrent use. Nil when the run has no
	// store-native executor.
	RepositoryBlob func(ctx context.Context) (store.File, error)
	// OutputDir is the host path where the executor puts the files it copied
	// out of /valohai/outputs; it is created if missing, and should be empty
	// (files in the way are replaced). Empty means outputs are not copied out.
	OutputDir string

	// Progress, when set, is told what the executor is doing, one line at a
	// time, for the node's log (a VM was scheduled, a try was preempted).
	// It may be called from any goroutine, never after Run returned.
	Progress func(line string)
	// Activity, when set, is told what the executor is doing for the job
	// now, in a few words ("pulling image", "copying in", "running",
	// "copying out"), for a live display; "running" means the command
	// started. It may be called from any goroutine, never after Run
	// returned.
	Activity func(what string)
	// Spend, when set, is told of the estimated cost in USD the job has
	// added since the last call, as it accrues (for the run's max-cost).
	Spend func(usd float64)

	// Stdout and Stderr receive the command's output live, in order, as it
	// comes: Write is called from one goroutine at a time, never after Run
	// returned; chunks are not aligned to lines (see LineWriter). A sink that
	// implements Flusher is flushed once after the last Write. Nil discards.
	Stdout io.Writer
	Stderr io.Writer
}

// ExecutionIDOrDefault returns ExecutionID, or RunID + "-" + Node when it is empty.
func (j Job) ExecutionIDOrDefault() string {
	if j.ExecutionID != "" {
		return j.ExecutionID
	}
	return j.RunID + "-" + j.Node
}

// Resources is what a node asks of the machine that runs it.
type Resources struct {
	// CPU is the number of CPUs, fractions allowed; 0 means no limit.
	CPU float64
	// MemoryMB is the memory limit in MiB; 0 means no limit.
	MemoryMB int64
	// GPUs is the number of GPUs: 0 none, -1 all of the host's.
	GPUs int
	// CPURequest and MemoryRequestMB are what the node asks to be sure of
	// (the step's cpu.min and memory.min), for a scheduler that reserves
	// capacity (a Kubernetes pod's requests); 0 means none. Executors
	// without one ignore them.
	CPURequest      float64
	MemoryRequestMB int64
}

// Input is one named input of a step and the files resolved for it.
type Input struct {
	Name  string
	Files []InputFile
}

// InputFile is one file of an input. Exactly one of Path and Open is set;
// Blob, when set, is where the same content is in the run's store.
type InputFile struct {
	// Name is the file's path below /valohai/inputs/<input>/: a base name, or
	// a relative slash-separated path when the input keeps directories.
	Name string
	// Path is the file on the host.
	Path string
	// Open opens the content, e.g. a blob in the store. It may be called more
	// than once; each call returns a fresh reader from the start.
	Open func() (io.ReadCloser, error)
	// Size is the content's length in bytes; required with Open, ignored with Path.
	Size int64
	// Digest is the hex sha256 of the content; computed while copying if empty.
	Digest string
	// URI is where the file came from (a store reference, https://, gs://),
	// shown to the step in inputs.json. Optional.
	URI string
	// Blob is the content's address in the run's store, when it is there
	// (outputs of earlier nodes, downloads, gs:// objects); zero for a file
	// only on this host (a path in the repository).
	Blob store.Digest
}

// Result is how a node's run ended.
type Result struct {
	// ExitCode is the command's exit status; -1 when the command never ran
	// or its status is unknown. A killed command reports 137.
	ExitCode int
	// Reason says why the run ended.
	Reason Reason
	// Outputs lists the regular files copied to Job.OutputDir, sorted by Path.
	Outputs []OutputFile
	// Started and Finished bracket the command: from the container's start
	// to the moment its exit was seen. Zero when it never started.
	Started, Finished time.Time
	// ImageDigest identifies the image that ran: its repository digest
	// (name@sha256:...) when it has one, else its image id (sha256:...).
	ImageDigest string
	// Warnings are things the user should know that did not fail the run,
	// e.g. an output refused because it pointed outside /valohai/outputs.
	Warnings []string
	// Placement says where a remote executor ran the job; nil for local ones.
	Placement *store.Placement
}

// OutputFile is one file a step left in /valohai/outputs.
type OutputFile struct {
	// Path is relative to /valohai/outputs, slash-separated.
	Path string `json:"path"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Digest is the hex sha256 of the content.
	Digest string `json:"digest"`
	// Stored says the content is already a blob of the run's store (put
	// there by the executor's agent): the file is not in Job.OutputDir and
	// the scheduler does not upload it. Properties then holds what its
	// sidecars said (see OutputProperties): the executor read them, and
	// left the sidecars out of Result.Outputs.
	Stored     bool           `json:"-"`
	Properties map[string]any `json:"properties,omitempty"`
}

// Reason is why a run ended.
type Reason string

const (
	// ReasonCompleted: the command exited 0.
	ReasonCompleted Reason = "completed"
	// ReasonFailed: the command exited non-zero on its own.
	ReasonFailed Reason = "failed"
	// ReasonTimeLimit: the command ran longer than Job.TimeLimit and was killed.
	ReasonTimeLimit Reason = "time-limit"
	// ReasonNoOutputTimeout: the command printed nothing for Job.NoOutputTimeout and was killed.
	ReasonNoOutputTimeout Reason = "no-output-timeout"
	// ReasonCancelled: the run's context was cancelled; the container was removed.
	ReasonCancelled Reason = "cancelled"
	// ReasonError: the executor failed (see the error Run returned).
	ReasonError Reason = "error"
)

// Flusher is implemented by an output sink that holds back a partial line
// (LineWriter, bufio.Writer). Executors call Flush once after the last Write.
type Flusher interface {
	Flush() error
}
