package runner

// This file resolves a node's inputs: files along edges from finished
// nodes, the inputs' defaults (paths in the repository, globs, https://
// and gs:// downloads), and the parameters and variables edges bring.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

func atomsOf(v *spec.Value) []*spec.Value {
	if v == nil {
		return nil
	}
	if v.Kind == spec.KindList {
		return v.Items
	}
	return []*spec.Value{v}
}

// edgeValues sets the parameters and environment variables that edges bring
// from finished nodes.
func (r *pipelineRun) edgeValues(n *spec.Node, np *spec.NodePlan, vals *nodeValues) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.opts.Pipeline.Edges {
		if e.Target.Node != n.Name {
			continue
		}
		src := r.values[e.Source.Node]
		if src == nil {
			continue // the source did not run (on-error: continue)
		}
		switch {
		case e.Target.Type == spec.SocketParameter && e.Source.Type == spec.SocketParameter:
			if v, ok := src.params[e.Source.Key]; ok {
				vals.params[e.Target.Key] = v
			}
		case e.Target.Type == spec.SocketParameter && e.Source.Type == spec.SocketMetadata:
			v, ok := src.metadata[e.Source.Key]
			if !ok {
				return fmt.Errorf("edge %s -> %s: node %q printed no metadata %q", e.Source, e.Target, e.Source.Node, e.Source.Key)
			}
			vals.params[e.Target.Key] = valueFromJSON(v)
		case e.Target.Type == spec.SocketEnvVar && e.Source.Type == spec.SocketEnvVar:
			if v, ok := src.env[e.Source.Key]; ok {
				vals.env[e.Target.Key] = v
			}
		}
	}
	return nil
}

// valueFromJSON turns a metadata value into a parameter value.
func valueFromJSON(v any) *spec.Value {
	switch x := v.(type) {
	case nil:
		return &spec.Value{Kind: spec.KindNull}
	case bool:
		return spec.NewBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return spec.NewInt(int64(x))
		}
		return spec.NewFloat(x)
	case json.Number:
		if !strings.ContainsAny(x.String(), ".eE") {
			if i, err := x.Int64(); err == nil {
				return spec.NewInt(i)
			}
		}
		f, _ := x.Float64()
		return spec.NewFloat(f)
	case string:
		return spec.NewString(x)
	case []any:
		items := make([]*spec.Value, len(x))
		for i, it := range x {
			items[i] = valueFromJSON(it)
		}
		return spec.NewList(items...)
	}
	data, _ := json.Marshal(v)
	return spec.NewString(string(data))
}

// resolveInputs finds the files of each input: outputs and inputs of finished
// nodes along edges, and the input's defaults (paths in the repository, or
// http(s) URLs).
func (r *pipelineRun) resolveInputs(ctx context.Context, n *spec.Node, np *spec.NodePlan) ([]Input, []store.File, error) {
	// Fetch the defaults of every input (downloads, gs:// objects, files in
	// the repository) first, up to transferWorkers at once; the files and
	// records are then put together in the order of the inputs and their
	// defaults, as if fetched one by one.
	type fetch struct{ input, def int }
	var fetches []fetch
	for i, ip := range np.Inputs {
		for j := range ip.Defaults {
			fetches = append(fetches, fetch{i, j})
		}
	}
	fetched := make([][]InputFile, len(fetches))
	fetchErrs := forEach(ctx, len(fetches), transferWorkers, func(k int) error {
		var err error
		fetched[k], err = r.defaultFiles(ctx, np.Inputs[fetches[k].input].Defaults[fetches[k].def])
		return err
	})
	next := 0 // the next of fetches

	var inputs []Input
	var records []store.File
	for _, ip := range np.Inputs {
		in := Input{Name: ip.Name}
		decl := np.Step.Input(ip.Name)
		seen := map[string]bool{}
		add := func(f InputFile, rec store.File) error {
			if seen[f.Name] {
				return nil
			}
			if err := safeInputName(f.Name); err != nil {
				return fmt.Errorf("input %s: %w", ip.Name, err)
			}
			seen[f.Name] = true
			in.Files = append(in.Files, f)
			rec.Input, rec.Path = ip.Name, f.Name
			records = append(records, rec)
			return nil
		}
		for _, src := range ip.Edges {
			files, err := r.edgeFiles(src)
			if err != nil {
				return nil, nil, fmt.Errorf("input %s: %w", ip.Name, err)
			}
			for _, f := range files {
				name := inputFileName(f.Path, src.Key, decl.KeepDirectories)
				if decl.Filename != "" && len(files) == 1 {
					name = decl.Filename
				}
				d, size := f.Digest, f.Size
				uri := fmt.Sprintf("sluice://%s/%s/%s", r.rec.ID, src.Node, f.Path)
				if err := add(InputFile{Name: name, Size: size, Digest: d.Hex(), URI: uri, Open: r.blobOpener(d), Blob: d},
					store.File{Digest: d, Size: size, URI: uri}); err != nil {
					return nil, nil, err
				}
			}
		}
		for range ip.Defaults {
			files, err := fetched[next], fetchErrs[next]
			next++
			if err != nil {
				return nil, nil, fmt.Errorf("input %s: %w", ip.Name, err)
			}
			for _, f := range files {
				if decl.Filename != "" && len(files) == 1 && len(ip.Defaults) == 1 {
					f.Name = decl.Filename
				}
				d, _ := store.ParseDigest("sha256:" + f.Digest)
				if err := add(f, store.File{Size: f.Size, URI: f.URI, Digest: d}); err != nil {
					return nil, nil, err
				}
			}
		}
		if len(in.Files) == 0 && !ip.Optional && (len(ip.Edges) > 0 || len(ip.Defaults) > 0) {
			return nil, nil, fmt.Errorf("input %s: no files matched %s", ip.Name, strings.Join(ip.Sources(), ", "))
		}
		inputs = append(inputs, in)
	}
	return inputs, sortedFiles(records), nil
}

func (r *pipelineRun) blobOpener(d store.Digest) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, _, err := store.OpenBlob(context.Background(), r.opts.Store, d)
		return rc, err
	}
}

// edgeFiles returns the files a source socket names: outputs (or inputs) of a
// finished node whose path matches the socket's glob.
func (r *pipelineRun) edgeFiles(src spec.Socket) ([]store.File, error) {
	r.mu.Lock()
	vals := r.values[src.Node]
	r.mu.Unlock()
	if vals == nil {
		return nil, nil
	}
	var pool []store.File
	switch src.Type {
	case spec.SocketOutput:
		pool = vals.outputs
	case spec.SocketInput:
		for _, f := range vals.inputs {
			if matchGlob(src.Key, f.Input) {
				pool = append(pool, f)
			}
		}
		return pool, nil
	default:
		return nil, nil
	}
	var out []store.File
	for _, f := range pool {
		if matchGlob(src.Key, f.Path) || !strings.Contains(src.Key, "/") && matchGlob(src.Key, path.Base(f.Path)) {
			out = append(out, f)
		}
	}
	return out, nil
}

// inputFileName places a file below /valohai/inputs/<input>/ per keep-directories.
func inputFileName(p, glob, keep string) string {
	switch keep {
	case "full":
		return p
	case "suffix":
		prefix := glob
		if i := strings.IndexAny(prefix, "*?["); i >= 0 {
			prefix = prefix[:i]
		}
		if j := strings.LastIndex(prefix, "/"); j >= 0 {
			return strings.TrimPrefix(p, prefix[:j+1])
		}
		return p
	}
	return path.Base(p)
}

// safeInputName refuses input file names that would escape the input's directory.
func safeInputName(name string) error {
	if name == "" || path.IsAbs(name) || strings.Contains(name, "\\") {
		return fmt.Errorf("file name %q is not a relative path", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("file name %q has a %q segment; input files stay inside their input's directory", name, seg)
		}
	}
	return nil
}

// defaultFiles resolves one input default: a path (or glob) in the
// repository, or an http(s) URL.
func (r *pipelineRun) defaultFiles(ctx context.Context, def string) ([]InputFile, error) {
	switch {
	case (strings.HasPrefix(def, "http://") || strings.HasPrefix(def, "https://")) && r.opts.DryRun:
		return nil, fmt.Errorf("%s would have to be downloaded to know whether it changed", def)
	case strings.HasPrefix(def, "http://") || strings.HasPrefix(def, "https://"):
		f, err := r.download(ctx, def)
		if err != nil {
			return nil, err
		}
		return []InputFile{f}, nil
	case strings.HasPrefix(def, "gs://"):
		return r.gsFiles(ctx, def)
	case strings.Contains(def, "://"):
		scheme, _, _ := strings.Cut(def, "://")
		return nil, fmt.Errorf("%s: %s:// inputs are not supported by sluice yet; use gs://, https:// or a path in the repository", def, scheme)
	}
	if r.opts.RepoDir == "" {
		return nil, fmt.Errorf("%s: no repository directory to find it in", def)
	}
	root, err := os.OpenRoot(r.opts.RepoDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	clean := path.Clean(strings.TrimPrefix(def, "./"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, fmt.Errorf("%s: input paths are relative to the repository and stay inside it", def)
	}
	matches, err := fsGlob(root, clean)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", def, err)
	}
	var out []InputFile
	for _, m := range matches {
		st, err := root.Stat(m)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		// The digest makes a changed file a changed input (for reuse).
		digest, err := fileDigest(root, m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", def, err)
		}
		out = append(out, InputFile{Name: path.Base(m), Path: filepath.Join(r.opts.RepoDir, filepath.FromSlash(m)), Size: st.Size(), URI: def, Digest: digest})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no such file in the repository", def)
	}
	return out, nil
}

// fileDigest is the hex sha256 of a file inside root.
func fileDigest(root *os.Root, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fsGlob matches a slash-separated pattern inside root (no escaping it).
func fsGlob(root *os.Root, pattern string) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[") {
		return []string{pattern}, nil
	}
	var out []string
	var walk func(dir string) error
	walk = func(dir string) error {
		f, err := root.Open(dir)
		if err != nil {
			return nil
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return nil
		}
		for _, e := range entries {
			p := e.Name()
			if dir != "." {
				p = dir + "/" + e.Name()
			}
			if e.IsDir() {
				if e.Name() == ".git" || e.Name() == ".sluice" {
					continue
				}
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			if matchGlob(pattern, p) {
				out = append(out, p)
			}
		}
		return nil
	}
	err := walk(".")
	sort.Strings(out)
	return out, err
}

func (r *pipelineRun) download(ctx context.Context, url string) (InputFile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return InputFile{}, err
	}
	client := r.opts.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return InputFile{}, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return InputFile{}, fmt.Errorf("download %s: %s", url, resp.Status)
	}
	d, size, err := store.PutBlob(ctx, r.opts.Store, resp.Body)
	if err != nil {
		return InputFile{}, fmt.Errorf("download %s: %w", url, err)
	}
	name := path.Base(strings.SplitN(url[strings.Index(url, "://")+3:], "?", 2)[0])
	if name == "" || name == "." || name == "/" {
		name = "download"
	}
	return InputFile{Name: name, Size: size, Digest: d.Hex(), URI: url, Open: r.blobOpener(d), Blob: d}, nil
}
