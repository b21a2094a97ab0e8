package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
)

// Exit is the exit record an agent leaves when the attempt ends: how the
// command ended, the outputs it put into the store, and how many log chunks
// there are. It is written last: once it exists, everything it names does.
type Exit struct {
	// ExitCode is the command's exit status; -1 when it never ran. A killed
	// command reports 137.
	ExitCode int           `json:"exit_code"`
	Reason   runner.Reason `json:"reason"`
	// Error says why the agent could not carry the job through (with Reason
	// runner.ReasonError): a spec it could not read, an input it could not
	// fetch, an output it could not upload.
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Outputs are in the store (Stored), with their properties applied.
	Outputs  []runner.OutputFile `json:"outputs"`
	Warnings []string            `json:"warnings,omitempty"`
	// LogChunks is how many log chunks the attempt wrote (LogKey 1..n).
	LogChunks int `json:"log_chunks"`
	// Phase is where the agent was: "fetch" or "exec".
	Phase string `json:"phase"`
}

// PutExit writes the exit record of the attempt below prefix.
func PutExit(ctx context.Context, st store.Store, prefix string, e *Exit) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if _, err := st.Put(context.WithoutCancel(ctx), ExitKey(prefix), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("put the exit record: %w", err)
	}
	return nil
}

// ReadExit reads the exit record of the attempt below prefix; an error
// wrapping fs.ErrNotExist means there is none (yet).
func ReadExit(ctx context.Context, st store.Store, prefix string) (*Exit, error) {
	rc, _, err := st.Open(ctx, ExitKey(prefix))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSpecBytes))
	if err != nil {
		return nil, err
	}
	var e Exit
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("exit record %s: %w", ExitKey(prefix), err)
	}
	for i := range e.Outputs {
		e.Outputs[i].Stored = true
	}
	return &e, nil
}

// Result turns an exit record into the runner.Result of the attempt, and
// the error Run returns for it (the agent's own failure).
func (e *Exit) Result() (runner.Result, error) {
	res := runner.Result{ExitCode: e.ExitCode, Reason: e.Reason, Outputs: e.Outputs, Started: e.Started,
		Finished: e.Finished, Warnings: e.Warnings}
	if e.Reason == runner.ReasonError || e.Error != "" {
		res.Reason = runner.ReasonError
		msg := e.Error
		if msg == "" {
			msg = "the agent failed"
		}
		return res, fmt.Errorf("sluice agent (%s): %s", e.Phase, msg)
	}
	return res, nil
}

// isNotExist reports whether err says an object is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
