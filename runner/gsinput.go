package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/sluice-ci/sluice/store"
)

// GSObjects lists and reads Cloud Storage objects, for gs:// input
// defaults (store/gcs's Objects implements it).
type GSObjects interface {
	// List calls fn for each object of bucket whose name starts with
	// prefix, with its size and generation.
	List(ctx context.Context, bucket, prefix string, fn func(name string, size, generation int64) error) error
	// Open reads one generation of an object.
	Open(ctx context.Context, bucket, name string, generation int64) (io.ReadCloser, error)
}

// gsObject is one object a gs:// default names.
type gsObject struct {
	bucket, name     string
	size, generation int64
}

// gsFiles resolves a gs:// default: one object, or every object a glob (*,
// **, ?) matches. Each object is fetched into the blob store once per
// generation: an unchanged object is never downloaded twice.
func (r *pipelineRun) gsFiles(ctx context.Context, url string) ([]InputFile, error) {
	rest := strings.TrimPrefix(url, "gs://")
	bucket, pattern, _ := strings.Cut(rest, "/")
	if bucket == "" || pattern == "" {
		return nil, fmt.Errorf("%s: a gs:// input names a bucket and an object (gs://BUCKET/PATH, globs allowed)", url)
	}
	if r.opts.GS == nil {
		return nil, fmt.Errorf("%s: this run has no Cloud Storage client for gs:// inputs", url)
	}
	glob := strings.ContainsAny(pattern, "*?[")
	prefix := pattern
	if i := strings.IndexAny(pattern, "*?["); i >= 0 {
		prefix = pattern[:i]
	}
	var objs []gsObject
	err := r.opts.GS.List(ctx, bucket, prefix, func(name string, size, generation int64) error {
		if !strings.HasSuffix(name, "/") && (glob && matchGlob(pattern, name) || !glob && name == pattern) {
			objs = append(objs, gsObject{bucket, name, size, generation})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	var out []InputFile
	for _, o := range objs {
		d, err := r.fetchGS(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		out = append(out, InputFile{Name: path.Base(o.name), Size: o.size, Digest: d.Hex(),
			URI: fmt.Sprintf("gs://%s/%s#%d", bucket, o.name, o.generation), Open: r.blobOpener(d), Blob: d})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no such object", url)
	}
	return out, nil
}

// gsFetched is the note kept under inputs/gs/<hash>.json: which blob holds an
// object's generation.
type gsFetched struct {
	Object string       `json:"object"`
	Digest store.Digest `json:"digest"`
}

func (r *pipelineRun) fetchGS(ctx context.Context, o gsObject) (store.Digest, error) {
	id := fmt.Sprintf("gs://%s/%s#%d", o.bucket, o.name, o.generation)
	sum := sha256.Sum256([]byte(id))
	note := "inputs/gs/" + hex.EncodeToString(sum[:]) + ".json"
	if rc, _, err := r.opts.Store.Open(ctx, note); err == nil {
		var f gsFetched
		err := json.NewDecoder(rc).Decode(&f)
		rc.Close()
		if err == nil && f.Object == id {
			if _, err := r.opts.Store.Stat(ctx, store.BlobKey(f.Digest)); err == nil {
				return f.Digest, nil
			}
		}
	}
	if r.opts.DryRun {
		return store.Digest{}, fmt.Errorf("%s has not been fetched yet, so whether it changed is unknown", id)
	}
	rd, err := r.opts.GS.Open(ctx, o.bucket, o.name, o.generation)
	if err != nil {
		return store.Digest{}, fmt.Errorf("download %s: %w", id, err)
	}
	defer rd.Close()
	d, _, err := store.PutBlob(ctx, r.opts.Store, rd)
	if err != nil {
		return store.Digest{}, fmt.Errorf("download %s: %w", id, err)
	}
	data, _ := json.Marshal(gsFetched{Object: id, Digest: d})
	if _, err := r.opts.Store.Put(ctx, note, bytes.NewReader(data)); err != nil {
		return store.Digest{}, fmt.Errorf("remember %s: %w", id, err)
	}
	return d, nil
}
