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
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
)

// CheckpointDir is the directory below /valohai/outputs whose files survive
// a preemption: the agent puts them into the store as they change, and a
// retry of the same execution finds them there again when it starts.
const CheckpointDir = "checkpoints"

// CheckpointsKey is the index of an execution's checkpoints below the
// prefix that Spec.Checkpoints names: a JSON object of path (below
// checkpoints/) to {digest, size, mode}.
func CheckpointsKey(prefix string) string { return prefix + "/index.json" }

// CheckpointsPrefix is where the checkpoints of job's execution go, shared
// by all the tries of one attempt.
func CheckpointsPrefix(job runner.Job) string { return AttemptPrefix(job) + "/checkpoints" }

type checkpointFile struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
}

// checkpointer keeps the store's copy of the checkpoints directory up to
// date. Sync is called before each log chunk is put, so a line the step
// prints after writing a checkpoint reaches the host only once the
// checkpoint is in the store.
type checkpointer struct {
	st     store.Store
	prefix string
	dir    string // <outputs>/checkpoints

	mu    sync.Mutex
	seen  map[string]stamp // what the store has, by path
	index map[string]checkpointFile
	err   error
}

type stamp struct {
	size int64
	mod  time.Time
}

func newCheckpointer(st store.Store, prefix, outputs string) *checkpointer {
	return &checkpointer{st: st, prefix: prefix, dir: filepath.Join(outputs, CheckpointDir),
		seen: map[string]stamp{}, index: map[string]checkpointFile{}}
}

// sync puts the checkpoint files that changed since the last sync into the
// store, then the index. A file that fails is tried again next time; the
// first error is kept for the exit record's warnings.
func (c *checkpointer) sync(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return // no checkpoints (yet)
	}
	defer root.Close()
	changed := false
	_ = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st := stamp{info.Size(), info.ModTime()}
		if c.seen[rel] == st {
			return nil
		}
		f, err := root.Open(rel)
		if err != nil {
			return nil
		}
		digest, size, err := store.PutBlob(context.WithoutCancel(ctx), c.st, f)
		f.Close()
		if err != nil {
			if c.err == nil {
				c.err = fmt.Errorf("checkpoint %s: %w", rel, err)
			}
			return nil
		}
		c.seen[rel] = st
		c.index[rel] = checkpointFile{Digest: digest.String(), Size: size, Mode: uint32(info.Mode().Perm())}
		changed = true
		return nil
	})
	if !changed {
		return
	}
	data, _ := json.Marshal(c.index)
	if _, err := c.st.Put(context.WithoutCancel(ctx), CheckpointsKey(c.prefix), bytes.NewReader(data)); err != nil && c.err == nil {
		c.err = fmt.Errorf("checkpoint index: %w", err)
	}
}

// restoreCheckpoints writes the checkpoints an earlier try left into
// outputs/checkpoints, and returns how many files it restored.
func restoreCheckpoints(ctx context.Context, st store.Store, prefix, outputs string) (int, error) {
	rc, _, err := st.Open(ctx, CheckpointsKey(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the checkpoint index: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxSpecBytes))
	rc.Close()
	if err != nil {
		return 0, fmt.Errorf("read the checkpoint index: %w", err)
	}
	index := map[string]checkpointFile{}
	if err := json.Unmarshal(data, &index); err != nil {
		return 0, fmt.Errorf("checkpoint index %s: %w", CheckpointsKey(prefix), err)
	}
	dir := filepath.Join(outputs, CheckpointDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	names := make([]string, 0, len(index))
	for name := range index {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := index[name]
		if !runner.LocalPath(name) {
			return 0, fmt.Errorf("checkpoint index: bad path %q", name)
		}
		d, err := store.ParseDigest(f.Digest)
		if err != nil {
			return 0, fmt.Errorf("checkpoint %s: %w", name, err)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o777); err != nil {
				return 0, err
			}
		}
		in, _, err := store.OpenBlob(ctx, st, d)
		if err != nil {
			return 0, fmt.Errorf("checkpoint %s: %w", name, err)
		}
		out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fs.FileMode(f.Mode)|0o666)
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return 0, fmt.Errorf("restore checkpoint %s: %w", name, err)
		}
	}
	return len(names), nil
}

// Finish makes sure the attempt has an exit record, for the runnable that
// Batch runs after the step whatever happened to it: when `agent exec`
// could not write one (it was killed, or ran out of memory), Finish writes
// one that says so. It changes nothing when the record exists.
func Finish(ctx context.Context, st store.Store, spec *Spec) error {
	if _, err := ReadExit(ctx, st, spec.Prefix); err == nil {
		return nil
	} else if !isNotExist(err) {
		return err
	}
	n := 0
	for ; ; n++ {
		if _, err := st.Stat(ctx, LogKey(spec.Prefix, n+1)); err != nil {
			break
		}
	}
	return PutExit(ctx, st, spec.Prefix, &Exit{ExitCode: -1, Reason: runner.ReasonError, Phase: "exec", LogChunks: n,
		Outputs: []runner.OutputFile{},
		Error:   "the step's container ended without the agent's exit record (it was killed, or ran out of memory)"})
}
