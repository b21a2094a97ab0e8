package runner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runNode runs one node to its end and returns its record. An execution
// node runs its step once; a task node runs it once per variant.
func (r *pipelineRun) runNode(ctx context.Context, n *spec.Node) *store.NodeRun {
	np := r.plans[n.Name]
	fail := func(format string, args ...any) *store.NodeRun {
		reason := fmt.Sprintf(format, args...)
		r.printf(n.Name, "failed: %s", reason)
		status := store.StatusFailed
		if r.opts.DryRun {
			status, reason = store.StatusWouldRun, "cannot tell: "+reason
		}
		var out *store.NodeRun
		r.setNode(n.Name, func(nr *store.NodeRun) {
			nr.Status, nr.Reason = status, reason
			if nr.Finished.IsZero() {
				nr.Finished = r.now().UTC()
			}
			out = cloneNode(nr)
		})
		return out
	}
	if np.Step == nil {
		if n.Commit != "" {
			return fail("the node runs step %q of commit %q; sluice runs the steps of the checked-out files only", n.Step, n.Commit)
		}
		return fail("no step to run")
	}
	vals := &nodeValues{params: map[string]*spec.Value{}, metadata: map[string]any{}, env: map[string]string{}}
	for k, v := range np.Params {
		vals.params[k] = v
	}
	if err := r.edgeValues(n, np, vals); err != nil {
		return fail("%v", err)
	}
	for _, e := range np.Step.EnvVars {
		if _, ok := vals.env[e.Name]; !ok && e.HasDefault {
			vals.env[e.Name] = e.Default
		}
	}
	variants := []spec.Variant{nil}
	if n.Type == spec.NodeTask {
		var err error
		if variants, err = r.taskVariants(n, np, vals); err != nil {
			return fail("%v", err)
		}
	}
	for _, v := range variants {
		if err := checkParams(np.Step, withVariant(vals.params, v)); err != nil {
			if len(variants) > 1 {
				return fail("variant %s: %v", v.Label(), err)
			}
			return fail("%v", err)
		}
	}
	inputs, inputFiles, err := r.resolveInputs(ctx, n, np)
	if err != nil {
		return fail("%v", err)
	}
	vals.inputs = inputFiles
	if slug, env := r.opts.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment); slug != "" && env == nil {
		r.printf(n.Name, "environment %q has no mapping in sluice.yaml: the node runs on the local Docker host", slug)
	}
	r.setNode(n.Name, func(nr *store.NodeRun) { nr.Status, nr.Inputs = store.StatusRunning, inputFiles })
	// The record says which nodes run, for a sluice that would find it
	// left behind; a failed write is the heartbeat's to retry.
	if err := r.save(ctx); err != nil {
		r.log.Warn("cannot write the run record", "run", r.rec.ID, "err", err)
	}
	if act := evalActions(n, "node-starting", vals, func(msg string) { r.printf(n.Name, "%s", msg) }); act.then != "" {
		return fail("%s", act.why)
	}

	var nr *store.NodeRun
	if n.Type == spec.NodeTask {
		nr = r.runVariants(ctx, n, np, vals, inputs, variants)
	} else {
		var raw map[string]any
		nr, raw = r.execute(ctx, n, np, vals.params, vals, inputs, "")
		vals.metadata, vals.outputs = raw, nr.Outputs
	}
	r.mu.Lock()
	r.values[n.Name] = vals
	rec := r.rec.Node(n.Name)
	nr.Name, nr.Step, nr.Image, nr.Inputs = rec.Name, rec.Step, rec.Image, inputFiles
	*rec = *nr
	out := cloneNode(rec)
	r.mu.Unlock()
	r.notify(n.Name, out.Status)
	for _, w := range out.Warnings {
		r.printf(n.Name, "warning: %s", w)
	}
	switch {
	case out.ReusedFrom != "":
	case out.Status == store.StatusSucceeded:
		r.printf(n.Name, "succeeded in %s", out.Duration().Round(1e6))
	default:
		r.printf(n.Name, "%s: %s", out.Status, out.Reason)
	}
	if err := r.save(ctx); err != nil {
		r.log.Warn("saving the run record failed", "err", err)
	}
	return out
}

// checkParams validates parameter values against the step's declarations.
func checkParams(step *spec.Step, params map[string]*spec.Value) error {
	for _, p := range step.Parameters {
		v, ok := params[p.Name]
		if !ok {
			if !p.Optional {
				return fmt.Errorf("parameter %s has no value: give it a default, a pipeline parameter or an edge", p.Name)
			}
			continue
		}
		for _, atom := range atomsOf(v) {
			if msgs := spec.ValidateValue(p, atom, false); len(msgs) > 0 {
				return fmt.Errorf("parameter %s: %s", p.Name, strings.Join(msgs, "; "))
			}
		}
	}
	return nil
}

func withVariant(params map[string]*spec.Value, v spec.Variant) map[string]*spec.Value {
	if len(v) == 0 {
		return params
	}
	out := make(map[string]*spec.Value, len(params)+len(v))
	for k, x := range params {
		out[k] = x
	}
	for k, x := range v {
		out[k] = x
	}
	return out
}

// execute runs the node's step once with the given parameter values (with
// retries when the node's on-error is retry), keeps its log and outputs in
// the store, and returns the execution's record. variant labels a task's
// execution ("" for an execution node). It also returns the metadata as the
// step printed it (1.0 stays a float), which is what edges pass on; the record
// holds plain JSON numbers, as it reads back from the store.
func (r *pipelineRun) execute(ctx context.Context, n *spec.Node, np *spec.NodePlan, params map[string]*spec.Value, vals *nodeValues, inputs []Input, variant string) (*store.NodeRun, map[string]any) {
	nr := &store.NodeRun{Status: store.StatusFailed, Variant: variant}
	label := n.Name
	if variant != "" {
		label = n.Name + "[" + variant + "]"
	}
	cmd, err := np.Step.BuildCommand(params)
	if err != nil {
		nr.Reason = err.Error()
		return nr, nil
	}
	nr.Command = spec.JoinCommand(cmd)
	nr.Parameters = map[string]any{}
	for k, v := range params {
		nr.Parameters[k] = v.Interface()
	}
	slug, exec := r.executorOf(np)
	job := Job{
		RunID: r.rec.ID, Node: n.Name, Step: np.Step.Name, Commit: r.opts.Commit, Environment: slug,
		Image: np.Image, Command: nr.Command, Env: vals.env, Inputs: inputs, Parameters: nr.Parameters,
		TimeLimit: np.Step.TimeLimit, NoOutputTimeout: np.Step.NoOutputTimeout,
		RepositoryDir: r.repo,
		RepositoryBlob: func(ctx context.Context) (store.File, error) {
			return r.snapshot.get(ctx, r.opts.Store, r.repo)
		},
		Progress: func(line string) { r.printf(label, "%s", line) },
		Spend:    func(usd float64) { r.spend(label, usd) },
	}
	if variant != "" {
		job.ExecutionID = fmt.Sprintf("%s-%s-%s", r.rec.ID, n.Name, randomHex(3))
	}
	if res := np.Step.Resources; res != nil {
		if res.CPU != nil && res.CPU.Max != nil {
			job.Resources.CPU = *res.CPU.Max
		}
		if res.Memory != nil && res.Memory.Max != nil {
			job.Resources.MemoryMB = int64(*res.Memory.Max)
		}
		if res.CPU != nil && res.CPU.Min != nil {
			job.Resources.CPURequest = *res.CPU.Min
		}
		if res.Memory != nil && res.Memory.Min != nil {
			job.Resources.MemoryRequestMB = int64(*res.Memory.Min)
		}
		job.Resources.GPUs = res.GPUs()
	}
	key, keyErr := r.cacheKey(ctx, exec, np, nr.Command, nr.Parameters, vals, job.Resources.GPUs)
	switch {
	case keyErr != nil:
		// Without a key the node runs without reuse. Its record says why, and
		// a node's warnings are printed when it ends; nothing prints those of
		// a task's executions, so they say it here.
		msg := fmt.Sprintf("reuse is off for this node: %v", keyErr)
		nr.Warnings = append(nr.Warnings, msg)
		if variant != "" && !r.noReuse[n.Name] && !r.opts.DryRun {
			r.printf(label, "%s", msg)
		}
	default:
		nr.CacheKey, nr.CacheParts = key.key, key.parts
		if !r.noReuse[n.Name] {
			if hit, why := lookupCache(ctx, r.opts.Store, key.key); hit != nil {
				out := cloneNode(hit.Result)
				out.Variant, out.ReusedFrom, out.Attempts, out.Warnings = variant, hit.Run, 0, nil
				out.Metadata = plainNumbers(out.Metadata).(map[string]any)
				out.Series, _ = plainNumbers(out.Series).(map[string][]any)
				r.printf(label, "reused the result of run %s: image, command, parameters, inputs and code are unchanged", hit.Run)
				return out, hit.Metadata
			} else {
				if why == "" {
					why = r.whyRun(ctx, n.Name, variant, key)
				}
				if r.opts.DryRun {
					nr.Status, nr.Reason = store.StatusWouldRun, why
					return nr, nil
				}
				r.printf(label, "runs: %s", why)
			}
		}
	}
	if r.opts.DryRun {
		nr.Status, nr.Reason = store.StatusWouldRun, "reuse is off for this node"
		if keyErr != nil {
			nr.Reason = fmt.Sprintf("cannot tell: %v", keyErr)
		}
		return nr, nil
	}
	if envSlots := r.envSlots[slug]; envSlots != nil {
		select {
		case envSlots <- struct{}{}:
			defer func() { <-envSlots }()
		case <-ctx.Done():
			nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
			return nr, nil
		}
	}
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
		return nr, nil
	}

	attempts := 1
	if n.OnError == spec.OnErrorRetry {
		attempts += r.opts.MaxRetries
	}
	var res Result
	var log *nodeLog
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			r.printf(label, "retrying (attempt %d of %d)", attempt, attempts)
		}
		if log, err = newNodeLog(r.tmp, label, r.opts.Log, &r.mu); err != nil {
			nr.Reason = err.Error()
			return nr, nil
		}
		job.OutputDir = filepath.Join(r.tmp, "outputs", n.Name, randomHex(4))
		job.Stdout, job.Stderr = log.writer(false), log.writer(true)
		nr.Attempts, nr.Started = attempt, r.now().UTC()
		job.Attempt = attempt
		res, err = exec.Run(ctx, job)
		log.flush()
		if err == nil && res.Reason == ReasonCompleted || ctx.Err() != nil || attempt == attempts {
			break
		}
		log.close()
	}
	defer log.close()
	var logErr, outErr error
	nr.Log, logErr = log.store(context.WithoutCancel(ctx), r.opts.Store)
	var propWarnings []string
	nr.Outputs, propWarnings, outErr = r.storeOutputs(context.WithoutCancel(ctx), n.Name, job.OutputDir, res.Outputs)
	nr.Metadata, nr.Series = plainNumbers(log.metadata).(map[string]any), log.series()
	nr.Finished = r.now().UTC()
	if !res.Started.IsZero() {
		nr.Started, nr.Finished = res.Started.UTC(), res.Finished.UTC()
		if res.ExitCode >= 0 {
			code := res.ExitCode
			nr.ExitCode = &code
		}
	}
	nr.ImageDigest = res.ImageDigest
	nr.Placement = res.Placement
	nr.Warnings = append(append(nr.Warnings, res.Warnings...), propWarnings...)
	switch {
	case ctx.Err() != nil:
		nr.Status, nr.Reason = store.StatusCancelled, "the run was cancelled"
	case err != nil:
		nr.Status, nr.Reason = store.StatusFailed, err.Error()
	case res.Reason == ReasonCompleted:
		nr.Status, nr.Reason = store.StatusSucceeded, ""
	case res.Reason == ReasonFailed:
		nr.Reason = fmt.Sprintf("the command exited with code %d", res.ExitCode)
	case res.Reason == ReasonTimeLimit:
		nr.Reason = fmt.Sprintf("killed after its time limit of %s", job.TimeLimit)
	case res.Reason == ReasonNoOutputTimeout:
		nr.Reason = fmt.Sprintf("killed after printing nothing for %s (no-output-timeout)", job.NoOutputTimeout)
	default:
		nr.Reason = string(res.Reason)
	}
	if storeErr := errors.Join(logErr, outErr); storeErr != nil {
		msg := "the store could not keep its files: " + strings.ReplaceAll(storeErr.Error(), "\n", "; ")
		if nr.Status == store.StatusSucceeded {
			nr.Status, nr.Reason = store.StatusFailed, msg
		} else {
			nr.Warnings = append(nr.Warnings, msg)
		}
	}
	if variant != "" {
		r.printf(label, "%s %s", nr.Status, nr.Reason)
	}
	if nr.Status == store.StatusSucceeded && nr.CacheKey != "" {
		if err := saveCache(context.WithoutCancel(ctx), r.opts.Store, nr.CacheKey, r.rec.ID, n.Name, nr, log.metadata); err != nil {
			nr.Warnings = append(nr.Warnings, fmt.Sprintf("the result was not saved for reuse: %v", err))
		}
	}
	return nr, log.metadata
}

var errNoResolver = errors.New("the executor cannot name image digests and no image resolver is set")

// executorOf returns the environment slug of a node's step and the executor
// that runs it: its environment's, when sluice.yaml maps the slug, else the
// run's default (the local Docker host).
func (r *pipelineRun) executorOf(np *spec.NodePlan) (string, Executor) {
	slug, env := r.opts.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment)
	if env != nil {
		if e, ok := r.opts.Environments[slug]; ok {
			return slug, e.Executor
		}
	}
	return slug, r.opts.Executor
}

// cacheKey computes what decides an execution's result. It fails when
// neither the node's executor nor Options.ImageResolver can name the image's
// digest, or the code cannot be hashed.
func (r *pipelineRun) cacheKey(ctx context.Context, exec Executor, np *spec.NodePlan, command string, params map[string]any, vals *nodeValues, gpus int) (cacheKey, error) {
	resolver, ok := exec.(ImageResolver)
	if !ok {
		resolver = r.opts.ImageResolver
	}
	if resolver == nil {
		return cacheKey{}, fmt.Errorf("no digest for image %s: %w", np.Image, errNoResolver)
	}
	digest, err := resolver.ImageDigest(ctx, np.Image)
	if err != nil {
		return cacheKey{}, fmt.Errorf("no image digest: %w", err)
	}
	source := ""
	if np.Step.HasSourcePath {
		source = np.Step.SourcePath
	}
	r.codeMu.Lock()
	code, ok := r.codeHashes[source]
	if !ok {
		code, err = codeHash(r.repo, source)
		if err == nil {
			r.codeHashes[source] = code
		}
	}
	r.codeMu.Unlock()
	if err != nil {
		return cacheKey{}, err
	}
	return newCacheKey(digest, command, params, vals.env, vals.inputs, code, gpus), nil
}

// whyRun says why an execution cannot reuse an earlier result: the parts of
// its key that changed since the newest earlier run of the same node.
func (r *pipelineRun) whyRun(ctx context.Context, node, variant string, key cacheKey) string {
	ids, err := store.ListRuns(ctx, r.opts.Store)
	if err != nil {
		return "no earlier result to reuse"
	}
	for i, id := range ids {
		if i == 20 {
			break
		}
		if id == r.rec.ID {
			continue
		}
		rec, err := store.GetRun(ctx, r.opts.Store, id)
		if err != nil || rec.Pipeline != r.rec.Pipeline {
			continue
		}
		prev := rec.Node(node)
		if prev == nil {
			continue
		}
		if variant != "" {
			var match *store.NodeRun
			for _, e := range prev.Executions {
				if e.Variant == variant {
					match = e
				}
			}
			if prev = match; prev == nil {
				continue
			}
		}
		if prev.CacheParts == nil {
			continue
		}
		if changed := key.changedParts(prev.CacheParts); len(changed) > 0 {
			return fmt.Sprintf("%s changed since run %s", strings.Join(changed, ", "), id)
		}
		if prev.Status != store.StatusSucceeded {
			return fmt.Sprintf("it %s in run %s, and only successful results are reused", prev.Status, id)
		}
	}
	return "no earlier result to reuse"
}

func cloneNode(nr *store.NodeRun) *store.NodeRun {
	c := *nr
	return &c
}

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
	resp, err := http.DefaultClient.Do(req)
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

// transferWorkers bounds the outputs of a node that are stored at once, and
// the input defaults of a node that are fetched at once. Each upload to GCS
// holds a chunk buffer (8 MiB), allocated afresh for every object: with two
// at once, moving 10 GiB stays under 100 MiB of RSS; with four, the storage
// client alone peaks above it (bench/gcs.sh rss).
const transferWorkers = 2

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

// nodeLog receives a node's output: it prefixes each line with the node name
// on the live log, keeps the whole log in a file for the store, and reads
// every stdout line that is a JSON object as metadata.
type nodeLog struct {
	node     string
	prefix   string // the node's name as the live log prints it
	live     io.Writer
	mu       *sync.Mutex
	file     *os.File
	metadata map[string]any
	points   map[string][]any
	lw       [2]*LineWriter
}

func newNodeLog(dir, node string, live io.Writer, mu *sync.Mutex) (*nodeLog, error) {
	f, err := os.CreateTemp(dir, "log-*")
	if err != nil {
		return nil, fmt.Errorf("make a log file: %w", err)
	}
	l := &nodeLog{node: node, prefix: printable.Name(node), live: live, mu: mu, file: f, metadata: map[string]any{}, points: map[string][]any{}}
	l.lw[0] = NewLineWriter(func(line string) { l.line(line, false) })
	l.lw[1] = NewLineWriter(func(line string) { l.line(line, true) })
	return l, nil
}

func (l *nodeLog) writer(stderr bool) io.Writer {
	if stderr {
		return l.lw[1]
	}
	return l.lw[0]
}

// maxMetadataLine bounds the lines read as metadata; longer lines are log only.
const maxMetadataLine = 1 << 20

func (l *nodeLog) line(line string, stderr bool) {
	l.mu.Lock()
	sep := " | "
	if stderr {
		sep = " ! "
	}
	// The live log is a terminal or a CI log: the line cannot move the
	// cursor or overwrite the prefix. The stored log keeps the bytes.
	fmt.Fprintf(l.live, "%s%s%s\n", l.prefix, sep, printable.Line(line))
	l.mu.Unlock()
	fmt.Fprintln(l.file, line)
	if stderr {
		return
	}
	t := strings.TrimSpace(line)
	if len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' || len(t) > maxMetadataLine {
		return
	}
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber() // keep 1.0 a float and 10 an integer, as Python's json module does
	if err := dec.Decode(&obj); err != nil || dec.More() {
		return
	}
	for k, v := range obj {
		l.metadata[k] = v
		l.points[k] = append(l.points[k], v)
	}
}

func (l *nodeLog) flush() {
	l.lw[0].Flush()
	l.lw[1].Flush()
}

// series returns the keys printed more than once with all their values.
func (l *nodeLog) series() map[string][]any {
	var out map[string][]any
	for k, pts := range l.points {
		if len(pts) > 1 {
			if out == nil {
				out = map[string][]any{}
			}
			out[k] = plainNumbers(pts).([]any)
		}
	}
	return out
}

// plainNumbers turns json.Numbers into float64s, all the way down, as
// encoding/json reads numbers back from a record.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainNumbers(e)
		}
		return out
	}
	return v
}

func (l *nodeLog) store(ctx context.Context, s store.Store) (store.Digest, error) {
	if _, err := l.file.Seek(0, io.SeekStart); err != nil {
		return store.Digest{}, err
	}
	d, _, err := store.PutBlob(ctx, s, l.file)
	if err != nil {
		return store.Digest{}, fmt.Errorf("store the log: %w", err)
	}
	return d, nil
}

func (l *nodeLog) close() {
	if l == nil || l.file == nil {
		return
	}
	name := l.file.Name()
	l.file.Close()
	os.Remove(name)
	l.file = nil
}
