package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/docker"
	"github.com/sluice-ci/sluice/runner/imageref"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/gcs"
	"github.com/sluice-ci/sluice/store/retry"
)

// openStore opens the store a URL names: gs://bucket/prefix for Google Cloud
// Storage (Application Default Credentials), a path or file://path for the
// local store; empty means .sluice in the repository.
func openStore(url, repo string) (store.Store, error) {
	switch {
	case url == "":
		url = filepath.Join(repo, ".sluice")
	case strings.HasPrefix(url, "file://"):
		url = strings.TrimPrefix(url, "file://")
	case strings.HasPrefix(url, "gs://"):
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := gcs.New(ctx, url)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("--store %s: %w", url, err)}
		}
		// Transient faults (429, 5xx, resets) are retried with backoff;
		// permanent ones (403, a missing bucket) fail at once.
		return retry.New(s, retry.WithLogger(slog.Default())), nil
	case strings.Contains(url, "://"):
		return nil, usageErrorf("--store %s: unknown store; use gs://BUCKET/PREFIX or a directory (file://DIR)", url)
	}
	s, err := file.New(url)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", url, err)
	}
	return s, nil
}

// repoRoot is the git work tree holding dir, or dir itself.
func repoRoot(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err == nil {
		if top := strings.TrimSpace(string(out)); top != "" {
			return top
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	return abs
}

func gitOutput(dir string, args ...string) string {
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// runFlags are the flags of `sluice run`.
type runFlags struct {
	pipeline, step, task, storeURL, pull, baseline, reportFile string
	params, noCache                                            []string
	concurrency                                                int
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var fl runFlags
	cmd := &cobra.Command{
		Use:   "run [FILE]",
		Short: "Run a pipeline (or one step) in containers on Docker, keeping every output, log and metric",
		Long: "run runs the pipeline of a valohai.yaml (default ./valohai.yaml): each node in its own container as\n" +
			"soon as the nodes it waits for are done, files and values passed along the edges. Outputs, logs and\n" +
			"metadata go to the store (default .sluice/ in the repository).\n\n" +
			"Exit codes: 0 the pipeline succeeded and every gate of sluice.yaml passed, 1 the pipeline failed\n" +
			"(or was cancelled), 2 a gate failed or a node action stopped the pipeline, 3 usage or config error.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), fl, args, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.pipeline, "pipeline", "", "the pipeline to run (needed when the file has several)")
	f.StringVar(&fl.step, "step", "", "run a single step instead of a pipeline")
	f.StringVar(&fl.task, "task", "", "run a task: a step once per variant of its parameters")
	f.StringArrayVarP(&fl.params, "param", "p", nil, "pipeline parameter value NAME=VALUE (repeatable)")
	f.IntVar(&fl.concurrency, "concurrency", 0, "how many nodes run at once (default: the number of CPUs)")
	f.StringSliceVar(&fl.noCache, "no-cache", nil, "run every node (--no-cache), or a node and what depends on it (--no-cache=NODE), reusing no earlier result")
	f.Lookup("no-cache").NoOptDefVal = "*"
	f.StringVar(&fl.storeURL, "store", "", "where outputs, logs and run records go: gs://BUCKET/PREFIX or a directory (default .sluice in the repository)")
	f.StringVar(&fl.pull, "pull", "missing", "when to pull images: missing, always or never")
	f.StringVar(&fl.baseline, "baseline", "", "a run id, or a branch, whose run the gates compare with (its run at the merge base, else its latest)")
	f.StringVar(&fl.reportFile, "report", "", "also write the Markdown report to this file")
	return cmd
}

// runRun is `sluice run`: the pipeline, its summary, then the verdict.
func runRun(ctx context.Context, fl runFlags, args []string, stdout, stderr io.Writer) error {
	if fl.concurrency < 0 {
		return usageErrorf("--concurrency %d: give a positive number", fl.concurrency)
	}
	if fl.concurrency == 0 {
		fl.concurrency = runtime.NumCPU()
	}
	pullPolicy, err := docker.ParsePullPolicy(fl.pull)
	if err != nil {
		return usageErrorf("--pull: %v", err)
	}
	values, err := parseParams(fl.params)
	if err != nil {
		return err
	}
	step, err := stepOrTask(fl.step, fl.task)
	if err != nil {
		return err
	}
	cfg, p, fileName, err := loadPipeline(ctx, stderr, args, fl.pipeline, step)
	if err != nil {
		return err
	}
	sc, err := loadSluiceConfig(stderr, fileName, cfg)
	if err != nil {
		return err
	}
	// The pipeline's repository is the directory of its valohai.yaml (as
	// on Valohai, where valohai.yaml sits at the repository's root); the
	// store is shared by the whole git work tree around it.
	repo, err := filepath.Abs(filepath.Dir(fileName))
	if err != nil {
		return err
	}
	st, err := openStore(fl.storeURL, repoRoot(repo))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	clouds := &cloudClients{getenv: os.Getenv}
	defer clouds.Close()
	ex, err := startExecutors(ctx, runOptions{pull: pullPolicy, logger: logger, getenv: os.Getenv,
		st: st, storeURL: fl.storeURL, repo: repositoryName(os.Getenv, repo), clouds: clouds}, cfg, p, sc)
	if err != nil {
		return err
	}
	opts := runner.Options{Config: cfg, Pipeline: p, Params: values, Executor: ex.local, Environments: ex.envs, Store: st, RepoDir: repo,
		Concurrency: fl.concurrency, Logger: logger, Sluice: sc, ApprovalHint: approvalHint(sc), MaxCost: maxCost(sc),
		Commit: gitOutput(repo, "rev-parse", "HEAD"), Branch: gitOutput(repo, "rev-parse", "--abbrev-ref", "HEAD")}
	opts.NoCache, opts.NoCacheNodes = noCacheOf(fl.noCache)
	rec, err := runPipelineLive(ctx, opts, ex, stdout, stderr)
	switch {
	case rec == nil:
		return &exitError{code: exitUsage, err: err}
	case err != nil && !errors.Is(err, runner.ErrPipelineFailed):
		return &exitError{code: exitFailed, err: err}
	}
	// The verdict: a failed pipeline (1), a failed gate of sluice.yaml
	// or a node action that stopped the pipeline (2), or passed (0).
	r, err := report.Assemble(ctx, report.Input{Store: st, StoreURL: fl.storeURL, Run: rec, Sluice: sc,
		Pipeline: p, Want: fl.baseline, RepoDir: repo, Warn: stderr})
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	v := r.Verdict
	if len(report.PipelineGates(sc, p)) > 0 {
		fmt.Fprintf(stderr, "sluice: gates (baseline: %s): %s\n", r.BaselineNote, v.Summary())
	}
	if fl.reportFile != "" {
		if err := writeFileAtomic(fl.reportFile, strings.NewReader(report.Markdown(r))); err != nil {
			return err
		}
	}
	if code := v.ExitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// noCacheOf reads --no-cache: every node ("*"), or the nodes named.
func noCacheOf(noCache []string) (all bool, nodes []string) {
	for _, n := range noCache {
		if n == "*" {
			all = true
		} else {
			nodes = append(nodes, n)
		}
	}
	return all, nodes
}

// runPipelineLive runs the pipeline with its nodes' output on stdout (and
// a live status line when stdout is a terminal), removes what the
// executors left, and writes the run's summary.
func runPipelineLive(ctx context.Context, opts runner.Options, ex *executors, stdout, stderr io.Writer) (*store.Run, error) {
	log, stopLive := io.Writer(stdout), func() {}
	if liveTerminal(stdout, os.Getenv) {
		live := newLiveStatus(stdout, len(opts.Pipeline.Nodes), timeNow)
		log, opts.OnNodeStatus, opts.OnNodeActivity, stopLive = live, live.Node, live.Activity, live.Stop
	}
	opts.Log = log
	opts.RunID = runner.NewRunID(timeNow())
	fmt.Fprintf(stderr, "sluice: run %s of pipeline %q (%d nodes, concurrency %d)\n", opts.RunID, opts.Pipeline.Name, len(opts.Pipeline.Nodes), opts.Concurrency)
	gs, httpClient := inputSources(opts.Store)
	defer gs.Close()
	opts.GS, opts.HTTP = gs, httpClient
	rec, err := runner.Run(ctx, opts)
	stopLive()
	ex.sweep(ctx, opts.RunID, stderr)
	if rec != nil {
		fmt.Fprintln(stdout)
		if werr := runner.WriteSummary(stdout, rec); werr != nil {
			return rec, werr
		}
	}
	return rec, err
}

// openStoreFlag opens --store relative to the current directory's repository.
func openStoreFlag(url string) (store.Store, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return openStore(url, repoRoot(wd))
}

// openStoreFlagToRead opens --store, relative to the current directory's
// repository, for a command that only reads it: a local store read-only (no
// lock directory is made), and an error that says so when it does not exist.
func openStoreFlagToRead(url string, mustExist bool) (store.Store, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	st, where, err := openStoreToRead(url, repoRoot(wd))
	var ee *exitError
	if errors.As(err, &ee) {
		return nil, err
	}
	if err != nil {
		return nil, &exitError{code: exitFailed, err: err}
	}
	if st == nil && mustExist {
		return nil, usageErrorf("there is no store at %s: no run was recorded there (run a pipeline first, or name the store with --store)", where)
	}
	return st, nil
}

// openExistingStoreFlag opens --store to write, as openStoreFlag does, but
// only when it exists: a local store that does not is nil, and is not made.
func openExistingStoreFlag(url string) (store.Store, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	repo := repoRoot(wd)
	if strings.Contains(url, "://") && !strings.HasPrefix(url, "file://") {
		return openStore(url, repo)
	}
	if st, _, err := openStoreToRead(url, repo); err != nil || st == nil {
		if err != nil {
			return nil, &exitError{code: exitFailed, err: err}
		}
		return nil, nil
	}
	return openStore(url, repo)
}

func newRunsCmd(stdout io.Writer) *cobra.Command {
	var storeURL string
	var limit int
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the runs in the store, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStoreFlagToRead(storeURL, true)
			if err != nil {
				return err
			}
			ids, err := store.ListRuns(cmd.Context(), st)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			for i, id := range ids {
				if limit > 0 && i == limit {
					break
				}
				rec, err := store.GetRun(cmd.Context(), st, id)
				if err != nil {
					fmt.Fprintf(stdout, "%s\t(unreadable: %v)\n", id, err)
					continue
				}
				showLive(rec)
				fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", rec.ID, rec.Status, printable.Name(rec.Pipeline), printable.Name(shortCommit(rec.Commit)))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs to list (0: all)")
	return cmd
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func newShowCmd(stdout io.Writer) *cobra.Command {
	var storeURL string
	cmd := &cobra.Command{
		Use:   "show RUN [NODE]",
		Short: "Show a run, or one node of it with its outputs, metadata and log",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, rec, err := openRun(cmd.Context(), storeURL, args[0])
			if err != nil {
				return err
			}
			showLive(rec)
			if len(args) == 1 {
				fmt.Fprintf(stdout, "run %s: pipeline %q, commit %s, branch %s\n", rec.ID, rec.Pipeline, printable.Name(shortCommit(rec.Commit)), printable.Name(rec.Branch))
				if rec.Status == store.StatusRunning || rec.Status == store.StatusInterrupted {
					fmt.Fprintf(stdout, "sluice pid %d on %s, last heartbeat %s\n", rec.PID, printable.Name(orUnknownHost(rec.Host)), rec.Heartbeat.UTC().Format(time.RFC3339))
				}
				return runner.WriteSummary(stdout, rec)
			}
			n, err := runNode(rec, args[1])
			if err != nil {
				return err
			}
			// Names, paths and metadata come from the pipeline file and the
			// step: each prints on its line, quoted when it holds a control
			// character.
			fmt.Fprintf(stdout, "node %s (step %q): %s", printable.Name(n.Name), n.Step, n.Status)
			if n.Reason != "" {
				fmt.Fprintf(stdout, ": %s", printable.Escape(n.Reason))
			}
			fmt.Fprintf(stdout, "\nimage: %s %s\ncommand: %s\n", printable.Name(n.Image), printable.Name(n.ImageDigest), printable.Escape(n.Command))
			writeTries(stdout, n.Placement)
			for _, f := range n.Inputs {
				fmt.Fprintf(stdout, "input %s  %d bytes  %s\n", printable.Name(f.Input+"/"+f.Path), f.Size, printable.Name(f.URI))
			}
			for _, f := range n.Outputs {
				fmt.Fprintf(stdout, "output %s  %d bytes  %s\n", printable.Name(f.Path), f.Size, f.Digest)
			}
			for _, k := range slices.Sorted(maps.Keys(n.Metadata)) {
				fmt.Fprintf(stdout, "metadata %s = %s\n", printable.Name(k), printable.Escape(fmt.Sprint(n.Metadata[k])))
			}
			if !n.Log.IsZero() {
				fmt.Fprintln(stdout, "log:")
				rc, _, err := store.OpenBlob(cmd.Context(), st, n.Log)
				if err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("open the log: %w", err)}
				}
				defer rc.Close()
				if err := copyLines(stdout, rc); err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("read the log: %w", err)}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	return cmd
}

// copyLines copies a step's log to a terminal as `sluice run` prints it:
// control characters visible (printable.Line), in bounded memory.
func copyLines(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		piece, err := br.ReadSlice('\n')
		if len(piece) > 0 {
			text, nl := strings.CutSuffix(string(piece), "\n")
			out := printable.Line(text)
			if nl {
				out += "\n"
			}
			if _, werr := io.WriteString(w, out); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}

// writeTries says where a remote node ran, and each of its tries: the job,
// the machine, how it ended and why, and what it cost.
func writeTries(w io.Writer, pl *store.Placement) {
	if pl == nil {
		return
	}
	fmt.Fprintf(w, "ran on: environment %s (%s", printable.Name(pl.Environment), pl.Backend)
	if pl.Location != "" {
		fmt.Fprintf(w, ", %s", pl.Location)
	}
	fmt.Fprint(w, ")")
	if pl.CostKnown {
		fmt.Fprintf(w, ", est. $%.4f", pl.Cost)
	}
	fmt.Fprintln(w)
	for i, t := range pl.Tries {
		fmt.Fprintf(w, "try %d: %s", i+1, t.Outcome)
		if t.Machine != "" {
			fmt.Fprintf(w, " on %s", printable.Name(t.Machine))
			if t.Provisioning != "" {
				fmt.Fprintf(w, " (%s)", t.Provisioning)
			}
		}
		if !t.Started.IsZero() && !t.Finished.IsZero() {
			fmt.Fprintf(w, ", %s", t.Finished.Sub(t.Started).Round(time.Second))
		}
		if pl.CostKnown {
			fmt.Fprintf(w, ", est. $%.4f", t.Cost)
		}
		fmt.Fprintf(w, "  %s\n", printable.Name(t.Job))
		if t.Why != "" {
			fmt.Fprintf(w, "  %s\n", printable.Escape(strings.Join(strings.Fields(t.Why), " ")))
		}
	}
}

// openRun opens the store and reads one run's record.
func openRun(ctx context.Context, storeURL, id string) (store.Store, *store.Run, error) {
	st, err := openStoreFlagToRead(storeURL, true)
	if err != nil {
		return nil, nil, err
	}
	rec, err := store.GetRun(ctx, st, id)
	if err != nil {
		return nil, nil, notFoundOr(err)
	}
	return st, rec, nil
}

func runNode(rec *store.Run, name string) (*store.NodeRun, error) {
	n := rec.Node(name)
	if n == nil {
		var names []string
		for _, n := range rec.Nodes {
			names = append(names, printable.Name(n.Name))
		}
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("run %s has no node %q; its nodes: %s", rec.ID, name, strings.Join(names, ", "))}
	}
	return n, nil
}

func notFoundOr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &exitError{code: exitUsage, err: fmt.Errorf("%v (list the runs with `sluice runs`)", err)}
	}
	return &exitError{code: exitFailed, err: err}
}

func newArtifactsCmd(stdout io.Writer) *cobra.Command {
	var storeURL string
	get := &cobra.Command{
		Use:   "get RUN NODE PATH [DEST]",
		Short: "Copy an output of a node out of the store (to DEST, DEST/ to make the directory, or to stdout with -)",
		Args:  cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, rec, err := openRun(cmd.Context(), storeURL, args[0])
			if err != nil {
				return err
			}
			n, err := runNode(rec, args[1])
			if err != nil {
				return err
			}
			f := n.Output(args[2])
			if f == nil {
				var paths []string
				for _, o := range n.Outputs {
					paths = append(paths, printable.Name(o.Path))
				}
				return &exitError{code: exitUsage, err: fmt.Errorf("node %s of run %s has no output %q; its outputs: %s", printable.Name(n.Name), rec.ID, args[2], strings.Join(paths, ", "))}
			}
			dest := filepath.Base(f.Path)
			if len(args) == 4 {
				dest = args[3]
			}
			rc, _, err := store.OpenBlob(cmd.Context(), st, f.Digest)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			defer rc.Close()
			if dest == "-" {
				_, err = io.Copy(stdout, rc)
				return err
			}
			if strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, string(filepath.Separator)) {
				// DEST/ names a directory: made if need be.
				if err := os.MkdirAll(dest, 0o777); err != nil {
					return &exitError{code: exitFailed, err: err}
				}
			}
			if st, err := os.Stat(dest); err == nil && st.IsDir() {
				dest = filepath.Join(dest, filepath.Base(f.Path))
			}
			if dir := filepath.Dir(dest); !isDir(dir) {
				return usageErrorf("cannot write %s: the directory %s does not exist (create it, or end DEST with / to have it made)", dest, dir)
			}
			return writeFileAtomic(dest, rc)
		},
	}
	get.Flags().StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	cmd := &cobra.Command{Use: "artifacts", Short: "Get the outputs of runs out of the store"}
	cmd.AddCommand(get)
	return cmd
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// writeFileAtomic writes a file through a temporary file in the same directory.
func writeFileAtomic(dest string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".sluice-get-*")
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return &exitError{code: exitFailed, err: fmt.Errorf("write %s: %w", dest, err)}
	}
	// CreateTemp makes the file 0600; what sluice writes is for the user and
	// later CI steps, which may run as another user (a Docker action runs as
	// root, the steps after it do not).
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return &exitError{code: exitFailed, err: err}
	}
	if err := tmp.Close(); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	return nil
}

func newCleanCmd(stdout io.Writer) *cobra.Command {
	var storeURL string
	cmd := &cobra.Command{
		Use:   "clean [RUN]",
		Short: "Mark runs whose sluice was killed as interrupted, and remove the containers they left (all, or one run's)",
		Long: "clean records as interrupted each run still marked running whose sluice is gone: on this\n" +
			"machine its process has ended; anywhere, it has written no heartbeat for a minute. The\n" +
			"nodes that finished keep their results, which a rerun reuses. Then it removes the\n" +
			"containers sluice runs left behind.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			runID := ""
			if len(args) == 1 {
				runID = args[0]
			}
			st, err := openExistingStoreFlag(storeURL)
			if err != nil {
				return err
			}
			if st != nil {
				n, err := markInterrupted(cmd.Context(), st, runID, stdout)
				if err != nil {
					return &exitError{code: exitFailed, err: err}
				}
				fmt.Fprintf(stdout, "marked %s interrupted\n", plural(n, "run"))
			}
			exec, err := docker.NewFromEnv(docker.Options{})
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			n, err := exec.Cleanup(cmd.Context(), runID)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			fmt.Fprintf(stdout, "removed %s\n", plural(n, "container"))
			return nil
		},
	}
	cmd.Flags().StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	return cmd
}

// startExecutor makes the Docker executor of a run (credentials from the
// Docker config; the digests of images the host lacks from their registries,
// so that a reused node pulls nothing) and checks that the daemon answers.
func startExecutor(ctx context.Context, pull docker.PullPolicy, logger *slog.Logger, getenv func(string) string) (*docker.Executor, error) {
	exec, err := docker.NewFromEnv(docker.Options{Pull: pull, Logger: logger, CleanupTimeout: 30 * time.Second,
		RegistryAuth: docker.ConfigAuth(getenv), Registry: imageref.New(imageref.Options{Logger: logger})})
	if err != nil {
		return nil, &exitError{code: exitFailed, err: err}
	}
	if err := pingDocker(ctx, exec); err != nil {
		return nil, &exitError{code: exitFailed, err: err}
	}
	return exec, nil
}

// sweepContainers removes whatever the executor could not remove during the
// run (a daemon too slow under load, a cancellation mid-create).
func sweepContainers(ctx context.Context, exec *docker.Executor, runID string, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if n, err := exec.Cleanup(ctx, runID); err != nil {
		fmt.Fprintf(stderr, "sluice: removing the run's containers: %v (run `sluice clean %s`)\n", err, runID)
	} else if n > 0 {
		fmt.Fprintf(stderr, "sluice: removed %s the run left\n", plural(n, "container"))
	}
}

// pingDocker fails early, and clearly, when no Docker daemon answers.
func pingDocker(ctx context.Context, e *docker.Executor) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := e.Client().Ping(ctx); err != nil {
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			host = "the local socket"
		}
		return fmt.Errorf("cannot reach a Docker daemon at %s: %v; start dockerd, or set DOCKER_HOST", host, err)
	}
	return nil
}

// approvalHint says how a require-approval action is approved.
func approvalHint(sc *spec.SluiceConfig) string {
	label := spec.DefaultApprovalLabel
	if sc != nil {
		label = sc.Report.ApprovalLabel
	}
	return fmt.Sprintf("add the label %q to the pull request and run again", label)
}
