package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-ci/sluice/ci"
	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/report/baseline"
	"github.com/sluice-ci/sluice/report/gitlab"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/docker"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

// ciFlags are the inputs of `sluice ci`, which are also the GitHub Action's.
type ciFlags struct {
	file, pipeline, step, storeURL, baseline, config, workDir, pull, reportFile, publication string
	concurrency                                                                              int
	post                                                                                     bool
}

// newCICmd is sluice ci, which reads the environment through getenv.
func newCICmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var fl ciFlags
	cmd := &cobra.Command{
		Use:   "ci [FILE]",
		Short: "Lint, run, report, post and gate in one step: the GitHub Action and the GitLab component run this",
		Long: "ci detects GitHub Actions or GitLab CI from the environment and does the whole job: it lints the\n" +
			"pipeline file (errors as annotations), runs the pipeline (each node's log folded, step output kept\n" +
			"from issuing workflow commands), compares with the target branch's run, writes the report (the job\n" +
			"summary on GitHub, metrics.txt on GitLab), posts it on the pull or merge request with a check or\n" +
			"commit status, sets the step's outputs, and exits with the verdict.\n\n" +
			"Every flag can also be given as INPUT_<NAME> in the environment, hyphens kept (INPUT_WORKING-DIRECTORY),\n" +
			"as GitHub passes a Docker action's inputs; a flag on the command line wins.\n\n" +
			"Exit codes: 0 passed, 1 the pipeline failed, 2 a gate failed, 3 usage or config error.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := inputsFromEnv(cmd.Flags(), getenv); err != nil {
				return err
			}
			if len(args) == 1 {
				fl.file = args[0]
			}
			return runCI(cmd.Context(), fl, getenv, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.file, "file", defaultFile, "the pipeline file, relative to the working directory")
	f.StringVar(&fl.pipeline, "pipeline", "", "the pipeline to run (needed when the file has several)")
	f.StringVar(&fl.step, "step", "", "run a single step instead of a pipeline")
	f.StringVar(&fl.storeURL, "store", "", "where outputs, logs and run records go: gs://BUCKET/PREFIX or a directory (default .sluice)")
	f.IntVar(&fl.concurrency, "concurrency", 0, "how many nodes run at once (default: the number of CPUs)")
	f.StringVar(&fl.baseline, "baseline", "", "a run id or a branch to compare with (default: the pull or merge request's target branch)")
	f.BoolVar(&fl.post, "post", true, "post the report on the pull or merge request, with a check or commit status")
	f.StringVar(&fl.config, "config", "", "sluice.yaml (default: the one beside the pipeline file)")
	f.StringVar(&fl.workDir, "working-directory", "", "the directory to work in (default: the current one)")
	f.StringVar(&fl.pull, "pull", "missing", "when to pull images: missing, always or never")
	f.StringVar(&fl.reportFile, "report", ".sluice/report.md", "where the Markdown report is written")
	f.StringVar(&fl.publication, "publication", ".sluice/publication.json", "where the report is kept when the token may not post it (a fork)")
	return cmd
}

// inputsFromEnv sets each flag not given on the command line from
// INPUT_<NAME> (uppercased, hyphens kept), when that is not empty: GitHub
// sets every input of a Docker action so, empty when the workflow left it out.
func inputsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		v := strings.TrimSpace(getenv("INPUT_" + strings.ToUpper(f.Name)))
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = usageErrorf("input %s=%q: %v", f.Name, v, e)
		}
	})
	return err
}

func runCI(ctx context.Context, fl ciFlags, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := ci.Detect(getenv)
	if err != nil {
		return usageErrorf("%v", err)
	}
	log := ci.NewLog(c.Platform, stdout, nil)
	log.Mask(c.Token)
	if fl.workDir != "" {
		if err := os.Chdir(fl.workDir); err != nil {
			return usageErrorf("working-directory: %v", err)
		}
	}
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
	fmt.Fprintf(stderr, "sluice: %s\n", c)

	// Lint: every finding an annotation on the line it is about.
	cfg, diags := parseFile(ctx, fl.file)
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	annotate(log, diags)
	if diags.HasErrors() {
		return usageErrorf("%s has %s; fix them and run again", fl.file, plural(diags.Count(spec.SeverityError), "error"))
	}
	if fl.pipeline != "" && fl.step != "" {
		return usageErrorf("give one of --pipeline and --step")
	}
	p, err := choosePipeline(cfg, fl.file, fl.pipeline, fl.step)
	if err != nil {
		return err
	}
	scFile := fl.config
	if scFile == "" {
		scFile = filepath.Join(filepath.Dir(fl.file), "sluice.yaml")
	}
	sc, scDiags := spec.LoadSluiceConfig(scFile, cfg)
	annotate(log, scDiags)
	if scDiags.HasErrors() {
		return usageErrorf("%s has %s", scFile, plural(scDiags.Count(spec.SeverityError), "error"))
	}
	annotate(log, spec.LintEnvironments(cfg, sc))
	if fl.config != "" && sc == nil {
		return usageErrorf("--config %s: no such file", fl.config)
	}

	repo, err := filepath.Abs(filepath.Dir(fl.file))
	if err != nil {
		return err
	}
	st, err := openStore(fl.storeURL, repoRoot(repo))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	clouds := &cloudClients{getenv: getenv}
	defer clouds.Close()
	ex, err := startExecutors(ctx, runOptions{pull: pullPolicy, logger: logger, getenv: getenv, st: st, storeURL: fl.storeURL,
		repo: repositoryName(getenv, repo), clouds: clouds}, cfg, p, sc)
	if err != nil {
		return err
	}

	// What the run is: its commit, branch and pull request, from the CI
	// context, else from git.
	commit, branch := c.HeadSHA, c.Branch
	if commit == "" {
		commit = gitOutput(repo, "rev-parse", "HEAD")
	}
	if branch == "" && c.Platform == ci.Local {
		branch = gitOutput(repo, "rev-parse", "--abbrev-ref", "HEAD")
	}
	// The baseline is found before the run: after it, a branch's latest run
	// may be this one.
	want := fl.baseline
	if want == "" {
		want = c.TargetBranch
	}
	probe := &store.Run{Pipeline: p.Name}
	mb := c.BaseSHA
	if c.Platform != ci.GitLab || mb == "" {
		if m := baseline.MergeBase(repo, want); m != "" {
			mb = m
		}
	}
	base, baseNote, err := baseline.Find(ctx, st, probe, want, mb)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if want == "" {
		baseNote = "this run is not for a pull or merge request, and no --baseline was given"
	}

	var approved string
	label := spec.DefaultApprovalLabel
	if sc != nil {
		label = sc.Report.ApprovalLabel
	}
	if slices.Contains(c.Labels, label) {
		approved = fmt.Sprintf("the label %q on pull request #%d", label, c.Number)
	}

	runID := runner.NewRunID(timeNow())
	fmt.Fprintf(stderr, "sluice: run %s of pipeline %q (%d nodes, concurrency %d)\n", runID, p.Name, len(p.Nodes), fl.concurrency)
	folds := newFolder(ctx, log, st, stderr)
	gs, httpClient := inputSources(st)
	defer gs.Close()
	rec, runErr := runner.Run(ctx, runner.Options{GS: gs, HTTP: httpClient,
		Config: cfg, Pipeline: p, Executor: ex.local, Environments: ex.envs, Store: st, RepoDir: repo, MaxCost: maxCost(sc),
		Concurrency: fl.concurrency, RunID: runID, Log: io.Discard, Logger: logger,
		Sluice: sc, Commit: commit, Branch: branch, PR: c.Number,
		Approved: approved, ApprovalHint: approvalHint(sc),
		OnNodeStatus: folds.status, OnNodeDone: folds.done,
	})
	folds.wait()
	ex.sweep(ctx, runID, stderr)
	switch {
	case rec == nil:
		return &exitError{code: exitUsage, err: runErr}
	case runErr != nil && !errors.Is(runErr, runner.ErrPipelineFailed):
		return &exitError{code: exitFailed, err: runErr}
	}
	if err := runner.WriteSummary(stderr, rec); err != nil {
		return err
	}

	// The report.
	r, err := report.Assemble(ctx, report.Input{Store: st, StoreURL: fl.storeURL, Run: rec, Sluice: sc, Pipeline: p,
		Resolved: true, Base: base, BaseNote: baseNote, RepoDir: repo, Warn: stderr, FullReport: fullReportWhere(c)})
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	body := report.Markdown(r)
	if err := os.MkdirAll(filepath.Dir(fl.reportFile), 0o755); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if err := writeFileAtomic(fl.reportFile, strings.NewReader(body)); err != nil {
		return err
	}
	verdict := r.Verdict
	code := verdict.ExitCode()
	for _, f := range verdict.Failures {
		log.Error(ci.Annotation{Title: "sluice: " + p.Name, Message: f.Reason})
	}
	// The job summary holds up to 1 MiB: the report in full.
	summary := r
	summary.Limit = ci.SummaryMaxBytes
	if err := ci.WriteSummary(getenv, report.Markdown(summary)); err != nil {
		fmt.Fprintf(stderr, "sluice: the job summary: %v\n", err)
	}
	if c.Platform == ci.GitLab {
		path := getenv("SLUICE_METRICS_FILE")
		if path == "" {
			path = "metrics.txt"
		}
		if err := os.WriteFile(path, gitlab.OpenMetrics(rec, verdict), 0o644); err != nil {
			fmt.Fprintf(stderr, "sluice: %s: %v\n", path, err)
		}
	}

	// Posting.
	if fl.post && c.Platform != ci.Local {
		pub := report.NewPublication(r, body)
		out := post(ctx, c, pub, fl.publication, stderr, logger)
		if out.err != nil {
			log.Error(ci.Annotation{Title: "sluice: the report was not posted", Message: out.err.Error()})
			if code == 0 {
				code = exitFailed
			}
		}
	}

	// Outputs for later steps and jobs.
	metrics := map[string]float64{}
	for _, m := range verdict.Metrics {
		if m.Value != nil && !math.IsNaN(*m.Value) && !math.IsInf(*m.Value, 0) {
			metrics[m.Name] = *m.Value
		}
	}
	mj, _ := json.Marshal(metrics)
	word := "passed"
	if !verdict.Passed {
		word = "failed"
	}
	outputs := map[string]string{"run-id": rec.ID, "verdict": word, "exit-code": strconv.Itoa(verdict.ExitCode()), "report": fl.reportFile}
	if c.Platform != ci.GitLab || len(mj) <= ci.DotenvMaxBytes/2 {
		// GitLab's dotenv report holds 5 KB in all: many metrics stay in
		// metrics.txt and the report only.
		outputs["metrics"] = string(mj)
	}
	if err := ci.SetOutputs(c, getenv, rand.Reader, outputs); err != nil {
		fmt.Fprintf(stderr, "sluice: outputs: %v\n", err)
	}
	fmt.Fprintf(stderr, "sluice: %s\n", verdict.Summary())
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// fullReportWhere says where the full report is when the comment has to be
// shortened: the job's page, whose summary holds it on GitHub.
func fullReportWhere(c *ci.Context) string {
	switch {
	case c.Platform == ci.GitHub && c.JobURL != "":
		return "the job summary of " + c.JobURL
	case c.JobURL != "":
		return "the report artifact of " + c.JobURL
	}
	return ""
}

// annotate writes lint findings as annotations on their file and line.
func annotate(log *ci.Log, diags spec.Diagnostics) {
	for _, d := range diags {
		a := ci.Annotation{File: d.File, Line: d.Line, Col: d.Col, Title: "sluice lint", Message: d.Message}
		if d.Path != "" {
			a.Message = d.Path + ": " + d.Message
		}
		if d.Severity == spec.SeverityError {
			log.Error(a)
		} else {
			log.Warning(a)
		}
	}
}

// folder prints the job's log: a line when a node starts, and each node's
// whole log in a folded group as soon as the node ends (nodes running in
// parallel would interleave their lines otherwise). Step output goes through
// Log.Untrusted, so a step cannot issue workflow commands.
type folder struct {
	ctx    context.Context
	log    *ci.Log
	st     store.Store
	stderr io.Writer
	queue  chan *store.NodeRun
	wg     sync.WaitGroup
}

func newFolder(ctx context.Context, log *ci.Log, st store.Store, stderr io.Writer) *folder {
	f := &folder{ctx: context.WithoutCancel(ctx), log: log, st: st, stderr: stderr, queue: make(chan *store.NodeRun, 1024)}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for nr := range f.queue {
			f.print(nr)
		}
	}()
	return f
}

func (f *folder) status(node string, s store.Status) {
	if s == store.StatusRunning {
		fmt.Fprintf(f.stderr, "sluice: %s started\n", node)
	}
}

func (f *folder) done(nr *store.NodeRun) { f.queue <- nr }

func (f *folder) wait() {
	close(f.queue)
	f.wg.Wait()
}

func (f *folder) print(nr *store.NodeRun) {
	title := fmt.Sprintf("%s: %s", nr.Name, nr.Status)
	switch {
	case nr.ReusedFrom != "":
		title += " (reused from " + nr.ReusedFrom + ")"
	case nr.Duration() > 0:
		title += " in " + nr.Duration().Round(100*time.Millisecond).String()
	}
	if nr.Reason != "" {
		title += ": " + nr.Reason
	}
	f.log.Group(title)
	defer f.log.EndGroup()
	f.printLog(nr)
	for _, e := range nr.Executions {
		_ = f.log.Untrusted(strings.NewReader(fmt.Sprintf("--- %s [%s]: %s\n", nr.Name, e.Variant, e.Status)))
		f.printLog(e)
	}
}

func (f *folder) printLog(nr *store.NodeRun) {
	if nr.Log.IsZero() {
		return
	}
	rc, _, err := store.OpenBlob(f.ctx, f.st, nr.Log)
	if err != nil {
		fmt.Fprintf(f.stderr, "sluice: the log of %s: %v\n", nr.Name, err)
		return
	}
	defer rc.Close()
	if err := f.log.Untrusted(rc); err != nil {
		fmt.Fprintf(f.stderr, "sluice: the log of %s: %v\n", nr.Name, err)
	}
}
