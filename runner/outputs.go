package runner

// This file puts a finished node's outputs into the store.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/sluice-ci/sluice/store"
)

// storeOutputs puts a node's output files into the store as blobs, with the
// properties their sidecar files give them (the sidecars are not outputs),
// up to transferWorkers at once. The records and the errors are in the order
// of files. A sidecar that cannot be read is a warning, not a failure.
//
// Outputs the executor already stored (OutputFile.Stored) are recorded as
// they are, with the properties the executor read: nothing is uploaded.
func (r *pipelineRun) storeOutputs(ctx context.Context, node, dir string, files []OutputFile) ([]store.File, []string, error) {
	var local []OutputFile
	var out []store.File
	var errs []error
	for _, f := range files {
		if !f.Stored {
			local = append(local, f)
			continue
		}
		d, err := store.ParseDigest(store.DigestPrefix + f.Digest)
		if err != nil {
			errs = append(errs, fmt.Errorf("output %s: %w", f.Path, err))
			continue
		}
		out = append(out, store.File{Path: f.Path, Digest: d, Size: f.Size, Properties: f.Properties})
	}
	props, sidecars, propErrs := OutputProperties(local, func(rel string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	})
	var warnings []string
	for _, e := range propErrs {
		warnings = append(warnings, e.Error())
	}
	var todo []OutputFile
	for _, f := range local {
		if !sidecars[f.Path] {
			todo = append(todo, f)
		}
	}
	stored := make([]store.File, len(todo))
	putErrs := forEach(ctx, len(todo), transferWorkers, func(i int) error {
		f := todo[i]
		// The file itself, not a stream: PutBlob hashes it in place and
		// uploads it from the start, without a temporary copy.
		file, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return fmt.Errorf("output %s: %w", f.Path, err)
		}
		defer file.Close()
		d, size, err := store.PutBlob(ctx, r.opts.Store, file)
		if err != nil {
			return fmt.Errorf("store output %s: %w", f.Path, err)
		}
		stored[i] = store.File{Path: f.Path, Digest: d, Size: size, Properties: props[f.Path]}
		return nil
	})
	for i := range todo {
		if putErrs[i] == nil {
			out = append(out, stored[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, warnings, errors.Join(append(errs, putErrs...)...)
}

// forEach calls fn(0), ..., fn(n-1), at most workers at once, and returns
// their errors by index. Once ctx is done, the calls not yet begun are not
// made and their error is ctx's.
func forEach(ctx context.Context, n, workers int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(workers, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errs
}
