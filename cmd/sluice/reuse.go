package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/docker"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// reusePrediction is a dry run's answer, or why there is none.
type reusePrediction struct {
	rec *store.Run
	err error
}

// predictReuse dry-runs the pipeline: which nodes would reuse an earlier
// result, and why the others would run. It needs the store and a Docker
// daemon (for image digests; nothing is pulled).
func predictReuse(ctx context.Context, stderr io.Writer, cfg *spec.Config, p *spec.Pipeline, values map[string]*spec.Value, file, storeURL string) reusePrediction {
	sc, err := loadSluiceConfig(stderr, file, cfg)
	if err != nil {
		return reusePrediction{err: err}
	}
	repo, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return reusePrediction{err: err}
	}
	st, where, err := openStoreToRead(storeURL, repoRoot(repo))
	if err != nil {
		return reusePrediction{err: err}
	}
	if st == nil {
		return reusePrediction{rec: nothingToReuse(p, where)}
	}
	exec, err := docker.NewFromEnv(docker.Options{Pull: docker.PullNever, RegistryAuth: docker.ConfigAuth(os.Getenv)})
	if err == nil {
		err = pingDocker(ctx, exec)
	}
	if err != nil {
		return reusePrediction{err: err}
	}
	gs, httpClient := inputSources(st)
	defer gs.Close()
	rec, err := runner.Run(ctx, runner.Options{Config: cfg, Pipeline: p, Params: values, Executor: exec, Store: st, GS: gs, HTTP: httpClient,
		RepoDir: repo, Concurrency: 1, DryRun: true, RunID: runner.NewRunID(time.Now()), Sluice: sc})
	return reusePrediction{rec: rec, err: err}
}

// openStoreToRead opens the store a plan looks in without changing it: a
// local store read-only, and none at all (nil, with its path) when it does
// not exist yet. A gs:// store is read as usual; a dry run writes nothing.
func openStoreToRead(url, repo string) (store.Store, string, error) {
	dir := url
	switch {
	case url == "":
		dir = filepath.Join(repo, ".sluice")
	case strings.HasPrefix(url, "file://"):
		dir = strings.TrimPrefix(url, "file://")
	case strings.Contains(url, "://"):
		st, err := openStore(url, repo)
		return st, url, err
	}
	st, err := file.New(dir, file.ReadOnly())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, dir, nil
	}
	if err != nil {
		return nil, dir, fmt.Errorf("open store %s: %w", dir, err)
	}
	return st, dir, nil
}

// nothingToReuse is the prediction when there is no store yet: every node
// runs (deployment nodes never do), and Docker need not be asked.
func nothingToReuse(p *spec.Pipeline, where string) *store.Run {
	rec := &store.Run{Pipeline: p.Name, Status: store.StatusWouldRun}
	for _, n := range p.Nodes {
		nr := &store.NodeRun{Name: n.Name, Status: store.StatusWouldRun,
			Reason: fmt.Sprintf("no earlier result to reuse (there is no store at %s yet)", where)}
		if n.Type == spec.NodeDeployment {
			nr.Status, nr.Reason = store.StatusSkipped, "sluice does not deploy"
		}
		rec.Nodes = append(rec.Nodes, nr)
	}
	return rec
}

func writeReuse(w io.Writer, pr reusePrediction) error {
	if pr.err != nil {
		_, err := fmt.Fprintf(w, "\nreuse: cannot tell: %v\n", pr.err)
		return err
	}
	fmt.Fprintln(w, "\nreuse")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range pr.rec.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\n", n.Name, reuseText(n))
		for _, e := range n.Executions {
			fmt.Fprintf(tw, "    %s\t%s\n", e.Variant, reuseText(e))
		}
	}
	return tw.Flush()
}

func reuseText(n *store.NodeRun) string {
	switch {
	case n.ReusedFrom != "":
		return "reused from run " + n.ReusedFrom
	case n.Status == store.StatusWouldRun:
		return "runs: " + n.Reason
	case n.Status == store.StatusSucceeded && len(n.Executions) > 0:
		return "reused (every execution)"
	}
	return fmt.Sprintf("%s: %s", n.Status, n.Reason)
}

func reuseJSON(pr reusePrediction) any {
	if pr.err != nil {
		return map[string]string{"error": pr.err.Error()}
	}
	out := map[string]map[string]string{}
	for _, n := range pr.rec.Nodes {
		out[n.Name] = map[string]string{"status": string(n.Status), "reused_from": n.ReusedFrom, "why": n.Reason}
	}
	return out
}
