// Package agent is the part of sluice that runs where a remote step runs: in
// a Cloud Batch VM, a Kubernetes pod, or a Docker container that cannot see
// this host's files. It follows the shape of Argo's emissary executor: a
// first container (the sluice image) runs Fetch, which lays out the Valohai
// runtime contract in a volume shared with the step, fetching the inputs and
// the repository from the store, and places the static sluice binary there;
// the step's own image then runs `sluice agent exec` (Exec), which runs the
// step's command with the contract's environment, enforces its limits,
// streams its log into the store in chunks, and at the end puts the outputs
// and an exit record into the store itself. The host that started the job
// hands over a Spec (a JSON object in the store) and gets back references
// only: it follows the log chunks (Follower) and reads the exit record.
//
// Credentials are never part of a Spec: the agent uses Application Default
// Credentials where it runs (the VM's or the pod's service account).
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
)

// SpecVersion is the version of the Spec format this sluice writes and reads.
const SpecVersion = 1

// Spec is one attempt of one node's execution, as the agent needs it: a
// runner.Job with every file given by its blob in the store.
type Spec struct {
	Version int `json:"version"`
	// Store is the URL of the store (gs://BUCKET/PREFIX), for people and
	// for `sluice agent`; the agent is told it on its command line too.
	Store string `json:"store"`
	// Prefix is the key below which this attempt's files go: the spec
	// itself, the log chunks and the exit record (see the Key functions).
	Prefix string `json:"prefix"`

	RunID       string `json:"run_id"`
	Node        string `json:"node"`
	Step        string `json:"step,omitempty"`
	ExecutionID string `json:"execution_id"`
	ProjectID   string `json:"project_id,omitempty"`
	Commit      string `json:"commit,omitempty"`
	Environment string `json:"environment,omitempty"`
	Attempt     int    `json:"attempt"`

	Image      string            `json:"image"`
	Command    string            `json:"command"`
	Env        map[string]string `json:"env,omitempty"`
	Parameters map[string]any    `json:"parameters"`
	// TimeLimit and NoOutputTimeout are Go durations ("1h30m0s"); empty is none.
	TimeLimit       string `json:"time_limit,omitempty"`
	NoOutputTimeout string `json:"no_output_timeout,omitempty"`

	Inputs     []Input `json:"inputs"`
	Repository *Blob   `json:"repository,omitempty"`
	// Checkpoints, when set, is the prefix below which the files of
	// /valohai/outputs/checkpoints/ are kept as they change, for a retry of
	// the same execution to start from (CheckpointsKey).
	Checkpoints string `json:"checkpoints,omitempty"`
	Created     string `json:"created"`
}

// Input is one named input and its files.
type Input struct {
	Name  string `json:"name"`
	Files []File `json:"files"`
}

// File is one input file: where it goes below /valohai/inputs/<input>/, and
// its blob.
type File struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // sha256:<hex>
	Size   int64  `json:"size"`
	URI    string `json:"uri,omitempty"`
}

// Blob is a blob of the store.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// TryEnv names the variable that keeps one try's files apart when the
// same spec is run more than once: a Kubernetes Job's controller makes a
// new pod with the same spec after an eviction, and each pod's agent, told
// its pod's name through this variable, puts its log chunks, outputs and
// exit record below <prefix>/<value> (TryPrefix) instead of <prefix>.
// ReadSpec applies it; unset, the spec's prefix is used as it is.
const TryEnv = "SLUICE_AGENT_TRY"

// TryPrefix is the prefix of the try named try of the attempt below prefix.
func TryPrefix(prefix, try string) string { return prefix + "/" + keySafe(try) }

// Keys of an attempt's files below its prefix.
func SpecKey(prefix string) string { return prefix + "/job.json" }

// ExitKey is the exit record's key.
func ExitKey(prefix string) string { return prefix + "/exit.json" }

// LogKey is the key of the n-th log chunk, from 1.
func LogKey(prefix string, n int) string { return fmt.Sprintf("%s/log/%08d", prefix, n) }

// AttemptPrefix is where an attempt of a node's execution keeps its files:
// runs/<run>/jobs/<execution id>/<attempt>, beside the run's record, so it
// goes with the run.
func AttemptPrefix(job runner.Job) string {
	return fmt.Sprintf("runs/%s/jobs/%s/%d", job.RunID, keySafe(job.ExecutionIDOrDefault()), max(job.Attempt, 1))
}

func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// NewSpec makes the spec of job for the store at storeURL. Every input file
// must have its blob (runner.Stage), and job.RepositoryBlob, when set, is
// called for the snapshot.
func NewSpec(ctx context.Context, job runner.Job, storeURL, prefix string, now time.Time) (*Spec, error) {
	if err := job.Validate(); err != nil {
		return nil, err
	}
	s := &Spec{
		Version: SpecVersion, Store: storeURL, Prefix: prefix,
		RunID: job.RunID, Node: job.Node, Step: job.Step, ExecutionID: job.ExecutionIDOrDefault(),
		ProjectID: job.ProjectID, Commit: job.Commit, Environment: job.Environment, Attempt: max(job.Attempt, 1),
		Image: job.Image, Command: job.Command, Env: job.Env, Parameters: job.Parameters,
		Inputs: []Input{}, Created: now.UTC().Format(time.RFC3339Nano),
	}
	if s.Parameters == nil {
		s.Parameters = map[string]any{}
	}
	if job.TimeLimit > 0 {
		s.TimeLimit = job.TimeLimit.String()
	}
	if job.NoOutputTimeout > 0 {
		s.NoOutputTimeout = job.NoOutputTimeout.String()
	}
	for _, in := range job.Inputs {
		si := Input{Name: in.Name, Files: []File{}}
		for _, f := range in.Files {
			if f.Blob.IsZero() {
				return nil, fmt.Errorf("input %s file %s is not in the store (stage the job first)", in.Name, f.Name)
			}
			si.Files = append(si.Files, File{Name: f.Name, Digest: f.Blob.String(), Size: f.Size, URI: f.URI})
		}
		s.Inputs = append(s.Inputs, si)
	}
	if job.RepositoryBlob != nil {
		rf, err := job.RepositoryBlob(ctx)
		if err != nil {
			return nil, err
		}
		s.Repository = &Blob{Digest: rf.Digest.String(), Size: rf.Size}
	}
	return s, nil
}

// Put writes the spec to its key in st.
func (s *Spec) Put(ctx context.Context, st store.Store) (string, error) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	key := SpecKey(s.Prefix)
	if _, err := st.Put(ctx, key, bytes.NewReader(data)); err != nil {
		return "", fmt.Errorf("put the job spec %s: %w", key, err)
	}
	return key, nil
}

// maxSpecBytes bounds a spec read from the store.
const maxSpecBytes = 64 << 20

// ReadSpec reads and checks the spec under key. Every way it can be wrong
// (missing, not JSON, another version, a field out of range) is an error
// that names the key and what is wrong.
func ReadSpec(ctx context.Context, st store.Store, key string) (*Spec, error) {
	rc, _, err := st.Open(ctx, key)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("job spec %s: not in the store: %w", key, err)
		}
		return nil, fmt.Errorf("job spec %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("job spec %s: %w", key, err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("job spec %s: larger than %d MiB", key, maxSpecBytes>>20)
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("job spec %s: not a valid job spec: %w", key, err)
	}
	if s.Version != SpecVersion {
		return nil, fmt.Errorf("job spec %s: version %d, this sluice reads version %d (use the same sluice version on the host and in the agent image)", key, s.Version, SpecVersion)
	}
	if s.Prefix == "" || SpecKey(s.Prefix) != key {
		return nil, fmt.Errorf("job spec %s: its prefix %q does not match its key", key, s.Prefix)
	}
	s.Parameters = plainJSON(s.Parameters).(map[string]any)
	if _, err := s.Job(nil); err != nil {
		return nil, fmt.Errorf("job spec %s: %w", key, err)
	}
	if try := os.Getenv(TryEnv); try != "" {
		s.Prefix = TryPrefix(s.Prefix, try)
	}
	return &s, nil
}

// plainJSON turns the json.Numbers of a decoded value into int64 when they
// are integers and float64 otherwise, so parameters.json keeps 10 as 10 and
// 1.0 as 1.0 written back (encoding/json writes float64(1) as 1).
func plainJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainJSON(e)
		}
		return out
	}
	return v
}

// Job is the runner.Job the spec describes, with each input read from st
// (nil: the inputs cannot be opened, for checking only).
func (s *Spec) Job(st store.Store) (runner.Job, error) {
	job := runner.Job{
		RunID: s.RunID, Node: s.Node, Step: s.Step, ExecutionID: s.ExecutionID, ProjectID: s.ProjectID,
		Commit: s.Commit, Environment: s.Environment, Attempt: s.Attempt,
		Image: s.Image, Command: s.Command, Env: s.Env, Parameters: s.Parameters,
	}
	var err error
	if s.TimeLimit != "" {
		if job.TimeLimit, err = time.ParseDuration(s.TimeLimit); err != nil || job.TimeLimit < 0 {
			return job, fmt.Errorf("time_limit %q: want a positive Go duration", s.TimeLimit)
		}
	}
	if s.NoOutputTimeout != "" {
		if job.NoOutputTimeout, err = time.ParseDuration(s.NoOutputTimeout); err != nil || job.NoOutputTimeout < 0 {
			return job, fmt.Errorf("no_output_timeout %q: want a positive Go duration", s.NoOutputTimeout)
		}
	}
	for _, in := range s.Inputs {
		ji := runner.Input{Name: in.Name}
		for _, f := range in.Files {
			d, err := store.ParseDigest(f.Digest)
			if err != nil {
				return job, fmt.Errorf("input %s file %s: %w", in.Name, f.Name, err)
			}
			if f.Size < 0 {
				return job, fmt.Errorf("input %s file %s: size %d", in.Name, f.Name, f.Size)
			}
			jf := runner.InputFile{Name: f.Name, Size: f.Size, Digest: d.Hex(), URI: f.URI, Blob: d}
			jf.Open = func() (io.ReadCloser, error) {
				if st == nil {
					return nil, errors.New("no store")
				}
				rc, _, err := store.OpenBlob(context.Background(), st, d)
				return rc, err
			}
			ji.Files = append(ji.Files, jf)
		}
		job.Inputs = append(job.Inputs, ji)
	}
	if s.Repository != nil {
		if _, err := store.ParseDigest(s.Repository.Digest); err != nil {
			return job, fmt.Errorf("repository: %w", err)
		}
	}
	if err := job.Validate(); err != nil {
		return job, err
	}
	return job, nil
}

// prefixOfSpecKey is the attempt prefix a spec key names ("" if none).
func prefixOfSpecKey(key string) string {
	if path.Base(key) != "job.json" {
		return ""
	}
	return path.Dir(key)
}
