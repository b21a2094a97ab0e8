package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluice-ci/sluice/store"
)

// cacheVersion is part of every cache key: bump it when what a key covers
// changes, so old entries stop matching.
const cacheVersion = "sluice-cache-1"

// ImageResolver is implemented by executors that can name the exact image a
// reference points to (a repository digest or image id) before running it.
// Reuse needs it: a tag like python:3.12 moves, its digest does not.
type ImageResolver interface {
	ImageDigest(ctx context.Context, ref string) (string, error)
}

// cacheKey is everything that decides a node's result. Each part is hashed
// on its own, so that a miss can say which part changed.
type cacheKey struct {
	parts map[string]string // part name -> hex sha256
	key   string
}

// keyParts are the parts of a cache key, in the order they are reported.
var keyParts = []string{"image", "command", "parameters", "environment", "inputs", "code", "resources"}

func hashJSON(v any) string {
	data, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		data = []byte(fmt.Sprint(v))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// newCacheKey combines the parts into one key.
func newCacheKey(imageDigest, command string, params map[string]any, env map[string]string, inputs []store.File, code string, gpus int) cacheKey {
	in := make([]string, 0, len(inputs))
	for _, f := range inputs {
		in = append(in, f.Input+"/"+f.Path+"="+f.Digest.String())
	}
	sort.Strings(in)
	k := cacheKey{parts: map[string]string{
		"image":       hashJSON(imageDigest),
		"command":     hashJSON(command),
		"parameters":  hashJSON(params),
		"environment": hashJSON(env),
		"inputs":      hashJSON(in),
		"code":        code,
		"resources":   hashJSON(map[string]int{"gpus": gpus}),
	}}
	var b strings.Builder
	b.WriteString(cacheVersion)
	for _, p := range keyParts {
		b.WriteString("\n" + p + "=" + k.parts[p])
	}
	sum := sha256.Sum256([]byte(b.String()))
	k.key = hex.EncodeToString(sum[:])
	return k
}

// changedParts names the parts that differ from an earlier key's.
func (k cacheKey) changedParts(earlier map[string]string) []string {
	var out []string
	for _, p := range keyParts {
		if earlier[p] != k.parts[p] {
			out = append(out, p)
		}
	}
	return out
}

// cacheEntry is what the store keeps under cache/<key>.json: the run and node
// that produced the result, and the result.
type cacheEntry struct {
	Run    string         `json:"run"`
	Node   string         `json:"node"`
	Result *store.NodeRun `json:"result"`
	// Metadata is the metadata as printed (numbers keep their literal), for edges.
	Metadata map[string]any `json:"metadata"`
}

func cacheObjectKey(key string) string { return "cache/" + key + ".json" }

// lookupCache returns the cached result for a key when every blob it needs
// (outputs and log) is still in the store; a missing blob is a miss.
func lookupCache(ctx context.Context, st store.Store, key string) (*cacheEntry, string) {
	rc, _, err := st.Open(ctx, cacheObjectKey(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ""
		}
		return nil, fmt.Sprintf("the cache entry cannot be read: %v", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Sprintf("the cache entry cannot be read: %v", err)
	}
	var e cacheEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil || e.Result == nil || e.Result.Status != store.StatusSucceeded {
		return nil, "the cache entry is damaged"
	}
	for _, f := range e.Result.Outputs {
		if _, err := st.Stat(ctx, store.BlobKey(f.Digest)); err != nil {
			return nil, fmt.Sprintf("output %s of run %s is no longer in the store", f.Path, e.Run)
		}
	}
	if !e.Result.Log.IsZero() {
		if _, err := st.Stat(ctx, store.BlobKey(e.Result.Log)); err != nil {
			return nil, fmt.Sprintf("the log of run %s is no longer in the store", e.Run)
		}
	}
	return &e, ""
}

// saveCache records a successful node's result under its key.
func saveCache(ctx context.Context, st store.Store, key, run, node string, result *store.NodeRun, metadata map[string]any) error {
	data, err := json.Marshal(cacheEntry{Run: run, Node: node, Result: result, Metadata: metadata})
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, cacheObjectKey(key), bytes.NewReader(data))
	return err
}

// sluiceConfigFile is sluice.yaml beside valohai.yaml, at the top of the
// repository snapshot; it is not part of the code a step runs.
const sluiceConfigFile = "sluice.yaml"

// codeHash hashes the repository files a step can see: every file of the
// snapshot, or only source-path (a file or a directory) when the step names
// one, except sluice.yaml at the top. Paths, modes and contents count;
// timestamps do not.
func codeHash(snapshot, sourcePath string) (string, error) {
	root := snapshot
	if sourcePath != "" {
		root = filepath.Join(snapshot, filepath.FromSlash(sourcePath))
		if rel, err := filepath.Rel(snapshot, root); err != nil || strings.HasPrefix(rel, "..") {
			return "", fmt.Errorf("source-path %q leaves the repository", sourcePath)
		}
	}
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return nil // a source-path that is not in the repository hashes as nothing
			}
			return err
		}
		rel, _ := filepath.Rel(snapshot, p)
		if rel == sluiceConfigFile {
			// sluice.yaml says where steps run and how a run is judged, not
			// what a step computes: moving a step to another environment
			// keeps its results.
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "link %s %s\n", filepath.ToSlash(rel), target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			fh := sha256.New()
			_, err = io.Copy(fh, f)
			f.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "file %s %o %x\n", filepath.ToSlash(rel), info.Mode().Perm()&0o111, fh.Sum(nil))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash the repository: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
