package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Run is the record of one pipeline run: what ran, from which commit, and for
// every node its status, times, parameters, inputs, outputs, metadata and
// log. It is stored as JSON under RunKey(id).
type Run struct {
	ID       string `json:"id"`
	Pipeline string `json:"pipeline"`
	File     string `json:"file,omitempty"`
	Commit   string `json:"commit,omitempty"`
	Branch   string `json:"branch,omitempty"`
	// PR is the pull or merge request the run was for, 0 when none.
	PR       int       `json:"pr,omitempty"`
	Status   Status    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Parameters holds the pipeline parameter values given for the run.
	Parameters map[string]any `json:"parameters,omitempty"`
	// Host and PID name the sluice process that runs the pipeline; Process
	// identifies it further, so that a sluice on the same machine can tell
	// whether it is still there (see internal/liveness).
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Process string `json:"process,omitempty"`
	// Heartbeat is when that process last wrote the record: every
	// HeartbeatEvery while the run is going. A running run whose heartbeat is
	// older than HeartbeatTimeout is interrupted (see Stale).
	Heartbeat time.Time  `json:"heartbeat,omitzero"`
	Nodes     []*NodeRun `json:"nodes"`
}

// How often a running sluice writes its run's heartbeat, and how old the
// heartbeat of a running run may grow before the run counts as interrupted:
// its sluice was killed, or its machine went away, or the store could no
// longer be written.
const (
	HeartbeatEvery   = 15 * time.Second
	HeartbeatTimeout = time.Minute
)

// Stale reports whether a run recorded as running (or pending) has gone
// without a heartbeat for longer than HeartbeatTimeout at now. A record
// without a heartbeat (written before sluice kept one) counts from its start.
func (r *Run) Stale(now time.Time) bool {
	if r.Status != StatusRunning && r.Status != StatusPending {
		return false
	}
	last := r.Heartbeat
	if last.IsZero() {
		last = r.Started
	}
	return !last.IsZero() && now.Sub(last) > HeartbeatTimeout
}

// MarkInterrupted records that a running run ended without its sluice
// saying so: the run and each node still running or pending end
// interrupted, at the last heartbeat, with why.
func (r *Run) MarkInterrupted(why string) {
	end := r.Heartbeat
	if end.IsZero() {
		end = r.Started
	}
	r.Status, r.Reason = StatusInterrupted, why
	if r.Finished.IsZero() {
		r.Finished = end
	}
	for _, n := range r.Nodes {
		switch n.Status {
		case StatusRunning:
			n.Status, n.Reason = StatusInterrupted, "the run was interrupted while this node ran"
			if n.Finished.IsZero() && !n.Started.IsZero() {
				n.Finished = end
			}
		case StatusPending:
			n.Status, n.Reason = StatusSkipped, "the run was interrupted before this node could start"
		}
		for _, e := range n.Executions {
			if e.Status == StatusRunning {
				e.Status, e.Reason = StatusInterrupted, "the run was interrupted while this execution ran"
			}
		}
	}
}

// Node returns the record of a node, or nil.
func (r *Run) Node(name string) *NodeRun {
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Status is the state of a run or of one of its nodes.
type Status string

// Statuses. A run is Running until it ends as Succeeded, Failed, Stopped (a
// node action stopped it) or Cancelled, or Interrupted when its sluice went
// away without a word (see Run.Stale); a node is Pending until it runs, or
// ends Skipped when it never will.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusStopped   Status = "stopped"
	StatusSkipped   Status = "skipped"
	StatusCancelled Status = "cancelled"
	// StatusInterrupted marks a run (and its nodes that were running) whose
	// sluice stopped without finishing the record: killed, or its machine or
	// store gone.
	StatusInterrupted Status = "interrupted"
	// StatusWouldRun is only used by dry runs (sluice plan): the node would
	// run rather than reuse an earlier result.
	StatusWouldRun Status = "would-run"
)

// NodeRun is the record of one node of a run.
type NodeRun struct {
	Name     string    `json:"name"`
	Step     string    `json:"step,omitempty"`
	Status   Status    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Image    string    `json:"image,omitempty"`
	// ImageDigest identifies the image that ran (repository digest or image id).
	ImageDigest string         `json:"image_digest,omitempty"`
	Command     string         `json:"command,omitempty"`
	Parameters  map[string]any `json:"parameters,omitempty"`
	Inputs      []File         `json:"inputs,omitempty"`
	Outputs     []File         `json:"outputs,omitempty"`
	// Metadata holds the last value of each key the step printed; Series
	// holds every value of the keys printed more than once, in order.
	Metadata map[string]any   `json:"metadata,omitempty"`
	Series   map[string][]any `json:"series,omitempty"`
	// Log is the digest of the node's log (stdout and stderr, in order) in the blob store.
	Log      Digest   `json:"log,omitzero"`
	Warnings []string `json:"warnings,omitempty"`
	// ReusedFrom names the run whose result this node reused (nothing ran).
	ReusedFrom string `json:"reused_from,omitempty"`
	// CacheKey identifies everything that decided the result; CacheParts
	// hashes each part (image, command, parameters, environment, inputs,
	// code, resources), to say what changed between runs.
	CacheKey   string            `json:"cache_key,omitempty"`
	CacheParts map[string]string `json:"cache_parts,omitempty"`
	// Variant labels one execution of a task node ("lr=0.1 epochs=3").
	Variant string `json:"variant,omitempty"`
	// Executions holds a task node's executions, one per variant; the node's
	// outputs are all of theirs.
	Executions []*NodeRun `json:"executions,omitempty"`
	// Placement says where a node that ran elsewhere than the local Docker
	// host ran: the backend, the machine, its tries, its estimated cost.
	Placement *Placement `json:"placement,omitempty"`
}

// Placement is where a node ran on a remote backend, and how it got there.
type Placement struct {
	// Backend is the environment's backend (batch, kubernetes); Environment
	// its slug in sluice.yaml.
	Backend     string `json:"backend"`
	Environment string `json:"environment"`
	// Machine is the machine type of the last try; Accelerator and
	// AcceleratorCount its GPUs; Provisioning spot or standard; Location
	// the region or zone (Batch) or the cluster and node (Kubernetes).
	Machine          string `json:"machine,omitempty"`
	Accelerator      string `json:"accelerator,omitempty"`
	AcceleratorCount int    `json:"accelerator_count,omitempty"`
	Provisioning     string `json:"provisioning,omitempty"`
	Location         string `json:"location,omitempty"`
	// Tries lists every remote job the node took, in order.
	Tries []Try `json:"tries,omitempty"`
	// Cost is the estimated cost in USD of all tries (VM time from when it
	// was scheduled, times the environment's hourly price); CostKnown is
	// false when the environment has no price.
	Cost      float64 `json:"cost,omitempty"`
	CostKnown bool    `json:"cost_known,omitempty"`
}

// Try is one remote job of a node.
type Try struct {
	// Job names the remote job (a Batch job's name, a Kubernetes Job's).
	Job          string `json:"job"`
	Machine      string `json:"machine,omitempty"`
	Provisioning string `json:"provisioning,omitempty"`
	// Outcome says how the try ended: completed, failed, preempted,
	// no-capacity, lost (the VM or node went away), cancelled, error.
	Outcome string `json:"outcome"`
	// Why is the backend's word on it, when it said more.
	Why      string    `json:"why,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Cost     float64   `json:"cost,omitempty"`
}

// Duration is how long the node ran, or zero.
func (n *NodeRun) Duration() time.Duration {
	if n.Started.IsZero() || n.Finished.IsZero() {
		return 0
	}
	return n.Finished.Sub(n.Started)
}

// Output returns the record of an output file by its path, or nil.
func (n *NodeRun) Output(path string) *File {
	for i := range n.Outputs {
		if n.Outputs[i].Path == path {
			return &n.Outputs[i]
		}
	}
	return nil
}

// File is one input or output file and the blob holding its content.
type File struct {
	// Input names the input a file was given to (inputs only).
	Input string `json:"input,omitempty"`
	// Path is the file's path: below /valohai/outputs for outputs, below
	// /valohai/inputs/<input> for inputs.
	Path   string `json:"path"`
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
	// URI is where an input came from.
	URI string `json:"uri,omitempty"`
	// Properties are an output's properties, from its sidecar
	// <file>.metadata.json or from valohai.metadata.jsonl (valohai.alias,
	// valohai.tags, anything else the step wrote).
	Properties map[string]any `json:"properties,omitempty"`
}

// RunKey is the key of a run's record: runs/<id>/run.json.
func RunKey(id string) string { return "runs/" + id + "/run.json" }

// PutRun writes a run's record (replacing an earlier version of it).
func PutRun(ctx context.Context, s Store, r *Run) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	if _, err := s.Put(ctx, RunKey(r.ID), bytes.NewReader(append(data, '\n'))); err != nil {
		return fmt.Errorf("write run %s: %w", r.ID, err)
	}
	return nil
}

// ErrInvalidRunID is wrapped by the error of GetRun for a string that
// cannot be a run id (a branch name with a slash, say).
var ErrInvalidRunID = errors.New("not a valid run id")

// GetRun reads a run's record; a run that does not exist is an error
// wrapping fs.ErrNotExist, a string that cannot be a run id one wrapping
// ErrInvalidRunID.
func GetRun(ctx context.Context, s Store, id string) (*Run, error) {
	if err := ValidateKey(RunKey(id)); err != nil || strings.Contains(id, "/") {
		return nil, fmt.Errorf("run id %q: %w", id, ErrInvalidRunID)
	}
	rc, _, err := s.Open(ctx, RunKey(id))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("run %s: the record is not valid JSON: %w", id, err)
	}
	return &r, nil
}

// ListRuns returns the ids of the stored runs, newest first (run ids start
// with their start time).
func ListRuns(ctx context.Context, s Store) ([]string, error) {
	var ids []string
	for info, err := range s.List(ctx, "runs/") {
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		rest := strings.TrimPrefix(info.Key, "runs/")
		id, file, ok := strings.Cut(rest, "/")
		if ok && file == "run.json" {
			ids = append(ids, id)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	return ids, nil
}
