package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/sluice-ci/sluice/store"
)

// gsInputs fetches gs:// input defaults. The client (Application Default
// Credentials; STORAGE_EMULATOR_HOST for an emulator) is made on first use.
type gsInputs struct {
	once   sync.Once
	client *storage.Client
	err    error
}

func (g *gsInputs) get(ctx context.Context) (*storage.Client, error) {
	g.once.Do(func() {
		g.client, g.err = storage.NewClient(context.WithoutCancel(ctx))
		if g.err != nil {
			g.err = fmt.Errorf("Google Cloud Storage client (credentials come from GOOGLE_APPLICATION_CREDENTIALS or the metadata server): %w", g.err)
		}
	})
	return g.client, g.err
}

func (g *gsInputs) close() {
	if g.client != nil {
		g.client.Close()
	}
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
	client, err := r.gs.get(ctx)
	if err != nil {
		return nil, err
	}
	glob := strings.ContainsAny(pattern, "*?[")
	prefix := pattern
	if i := strings.IndexAny(pattern, "*?["); i >= 0 {
		prefix = pattern[:i]
	}
	var out []InputFile
	it := client.Bucket(bucket).Objects(ctx, &storage.Query{Prefix: prefix})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: list gs://%s/%s: %w", url, bucket, prefix, err)
		}
		if strings.HasSuffix(attrs.Name, "/") || glob && !matchGlob(pattern, attrs.Name) || !glob && attrs.Name != pattern {
			continue
		}
		d, err := r.fetchGS(ctx, client, attrs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		out = append(out, InputFile{Name: path.Base(attrs.Name), Size: attrs.Size, Digest: d.Hex(),
			URI: fmt.Sprintf("gs://%s/%s#%d", bucket, attrs.Name, attrs.Generation), Open: r.blobOpener(d), Blob: d})
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

func (r *pipelineRun) fetchGS(ctx context.Context, client *storage.Client, attrs *storage.ObjectAttrs) (store.Digest, error) {
	id := fmt.Sprintf("gs://%s/%s#%d", attrs.Bucket, attrs.Name, attrs.Generation)
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
	rd, err := client.Bucket(attrs.Bucket).Object(attrs.Name).Generation(attrs.Generation).NewReader(ctx)
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
