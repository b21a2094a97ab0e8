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

// ciJob is one `sluice ci`: what it learned so far, step by step.
type ciJob struct {
	fl             ciFlags
	getenv         func(string) string
	stdout, stderr io.Writer
	c              *ci.Context
	log            *ci.Log
	logger         *slog.Logger
	pull           docker.PullPolicy

	cfg  *spec.Config
	p    *spec.Pipeline
	sc   *spec.SluiceConfig
	repo string
	st   store.Store
}

func runCI(ctx context.Context, fl ciFlags, getenv func(string) string, stdout, stderr io.Writer) error {
	j := &ciJob{fl: fl, getenv: getenv, stdout: stdout, stderr: stderr}
	if err := j.setup(); err != nil {
		return err
	}
	if err := j.lint(ctx); err != nil {
		return err
	}
	rec, base, baseNote, err := j.run(ctx)
	if err != nil {
		return err
	}
	r, body, err := j.report(ctx, rec, base, baseNote)
	if err != nil {
		return err
	}
	code := r.Verdict.ExitCode()
	for _, f := range r.Verdict.Failures {
		j.log.Error(ci.Annotation{Title: "sluice: " + j.p.Name, Message: f.Reason})
	}
	if j.fl.post && j.c.Platform != ci.Local {
		out := post(ctx, j.c, report.NewPublication(r, body), j.fl.publication, stderr, j.logger)
		if out.err != nil {
			j.log.Error(ci.Annotation{Title: "sluice: the report was not posted", Message: out.err.Error()})
			if code == 0 {
				code = exitFailed
			}
		}
	}
	j.setOutputs(rec, r.Verdict)
	fmt.Fprintf(stderr, "sluice: %s\n", r.Verdict.Summary())
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// setup reads the CI context and checks the flags.
func (j *ciJob) setup() error {
	c, err := ci.Detect(j.getenv)
	if err != nil {
		return usageErrorf("%v", err)
	}
	j.c = c
	j.log = ci.NewLog(c.Platform, j.stdout, nil)
	j.log.Mask(c.Token)
	if j.fl.workDir != "" {
		if err := os.Chdir(j.fl.workDir); err != nil {
			return usageErrorf("working-directory: %v", err)
		}
	}
	if j.fl.concurrency < 0 {
		return usageErrorf("--concurrency %d: give a positive number", j.fl.concurrency)
	}
	if j.fl.concurrency == 0 {
		j.fl.concurrency = runtime.NumCPU()
	}
	if j.pull, err = docker.ParsePullPolicy(j.fl.pull); err != nil {
		return usageErrorf("--pull: %v", err)
	}
	j.logger = slog.New(slog.NewTextHandler(j.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Fprintf(j.stderr, "sluice: %s\n", c)
	return nil
}

// lint reads the pipeline file and sluice.yaml, every finding an
// annotation on the line it is about, and picks the pipeline.
func (j *ciJob) lint(ctx context.Context) error {
	fl := j.fl
	cfg, diags := parseFile(ctx, fl.file)
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	annotate(j.log, diags)
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
	annotate(j.log, scDiags)
	if scDiags.HasErrors() {
		return usageErrorf("%s has %s", scFile, plural(scDiags.Count(spec.SeverityError), "error"))
	}
	annotate(j.log, spec.LintEnvironments(cfg, sc))
	if fl.config != "" && sc == nil {
		return usageErrorf("--config %s: no such file", fl.config)
	}
	j.cfg, j.p, j.sc = cfg, p, sc
	if j.repo, err = filepath.Abs(filepath.Dir(fl.file)); err != nil {
		return err
	}
	return nil
}

// baseline finds what the run is compared with, before the run: after it,
// a branch's latest run may be this one.
func (j *ciJob) baseline(ctx context.Context) (*store.Run, string, error) {
	want := j.fl.baseline
	if want == "" {
		want = j.c.TargetBranch
	}
	mb := j.c.BaseSHA
	if j.c.Platform != ci.GitLab || mb == "" {
		if m := baseline.MergeBase(j.repo, want); m != "" {
			mb = m
		}
	}
	base, note, err := baseline.Find(ctx, j.st, &store.Run{Pipeline: j.p.Name}, want, mb)
	if err != nil {
		return nil, "", &exitError{code: exitFailed, err: err}
	}
	if want == "" {
		note = "this run is not for a pull or merge request, and no --baseline was given"
	}
	return base, note, nil
}

// run opens the store, makes the executors, finds the baseline and runs the
// pipeline, each node's log folded.
func (j *ciJob) run(ctx context.Context) (*store.Run, *store.Run, string, error) {
	var err error
	if j.st, err = openStore(j.fl.storeURL, repoRoot(j.repo)); err != nil {
		return nil, nil, "", err
	}
	clouds := &cloudClients{getenv: j.getenv}
	defer clouds.Close()
	ex, err := startExecutors(ctx, runOptions{pull: j.pull, logger: j.logger, getenv: j.getenv, st: j.st, storeURL: j.fl.storeURL,
		repo: repositoryName(j.getenv, j.repo), clouds: clouds}, j.cfg, j.p, j.sc)
	if err != nil {
		return nil, nil, "", err
	}
	// What the run is: its commit, branch and pull request, from the CI
	// context, else from git.
	commit, branch := j.c.HeadSHA, j.c.Branch
	if commit == "" {
		commit = gitOutput(j.repo, "rev-parse", "HEAD")
	}
	if branch == "" && j.c.Platform == ci.Local {
		branch = gitOutput(j.repo, "rev-parse", "--abbrev-ref", "HEAD")
	}
	base, baseNote, err := j.baseline(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	var approved string
	label := spec.DefaultApprovalLabel
	if j.sc != nil {
		label = j.sc.Report.ApprovalLabel
	}
	if slices.Contains(j.c.Labels, label) {
		approved = fmt.Sprintf("the label %q on pull request #%d", label, j.c.Number)
	}

	runID := runner.NewRunID(timeNow())
	fmt.Fprintf(j.stderr, "sluice: run %s of pipeline %q (%d nodes, concurrency %d)\n", runID, j.p.Name, len(j.p.Nodes), j.fl.concurrency)
	folds := newFolder(ctx, j.log, j.st, j.stderr)
	gs, httpClient := inputSources(j.st)
	defer gs.Close()
	rec, runErr := runner.Run(ctx, runner.Options{GS: gs, HTTP: httpClient,
		Config: j.cfg, Pipeline: j.p, Executor: ex.local, Environments: ex.envs, Store: j.st, RepoDir: j.repo, MaxCost: maxCost(j.sc),
		Concurrency: j.fl.concurrency, RunID: runID, Log: io.Discard, Logger: j.logger,
		Sluice: j.sc, Commit: commit, Branch: branch, PR: j.c.Number,
		Approved: approved, ApprovalHint: approvalHint(j.sc),
		OnNodeStatus: folds.status, OnNodeDone: folds.done,
	})
	folds.wait()
	ex.sweep(ctx, runID, j.stderr)
	switch {
	case rec == nil:
		return nil, nil, "", &exitError{code: exitUsage, err: runErr}
	case runErr != nil && !errors.Is(runErr, runner.ErrPipelineFailed):
		return nil, nil, "", &exitError{code: exitFailed, err: runErr}
	}
	if err := runner.WriteSummary(j.stderr, rec); err != nil {
		return nil, nil, "", err
	}
	return rec, base, baseNote, nil
}

// report assembles the report and writes it: the Markdown file, the job
// summary (in full: it holds up to 1 MiB), and GitLab's metrics.txt.
func (j *ciJob) report(ctx context.Context, rec, base *store.Run, baseNote string) (report.Report, string, error) {
	r, err := report.Assemble(ctx, report.Input{Store: j.st, StoreURL: j.fl.storeURL, Run: rec, Sluice: j.sc, Pipeline: j.p,
		Resolved: true, Base: base, BaseNote: baseNote, RepoDir: j.repo, Warn: j.stderr, FullReport: fullReportWhere(j.c)})
	if err != nil {
		return r, "", &exitError{code: exitFailed, err: err}
	}
	body := report.Markdown(r)
	if err := os.MkdirAll(filepath.Dir(j.fl.reportFile), 0o755); err != nil {
		return r, "", &exitError{code: exitFailed, err: err}
	}
	if err := writeFileAtomic(j.fl.reportFile, strings.NewReader(body)); err != nil {
		return r, "", err
	}
	summary := r
	summary.Limit = ci.SummaryMaxBytes
	if err := ci.WriteSummary(j.getenv, report.Markdown(summary)); err != nil {
		fmt.Fprintf(j.stderr, "sluice: the job summary: %v\n", err)
	}
	if j.c.Platform == ci.GitLab {
		path := j.getenv("SLUICE_METRICS_FILE")
		if path == "" {
			path = "metrics.txt"
		}
		if err := os.WriteFile(path, gitlab.OpenMetrics(rec, r.Verdict), 0o644); err != nil {
			fmt.Fprintf(j.stderr, "sluice: %s: %v\n", path, err)
		}
	}
	return r, body, nil
}

// setOutputs sets the step's outputs for later steps and jobs.
func (j *ciJob) setOutputs(rec *store.Run, verdict report.Verdict) {
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
	outputs := map[string]string{"run-id": rec.ID, "verdict": word, "exit-code": strconv.Itoa(verdict.ExitCode()), "report": j.fl.reportFile}
	if j.c.Platform != ci.GitLab || len(mj) <= ci.DotenvMaxBytes/2 {
		// GitLab's dotenv report holds 5 KB in all: many metrics stay in
		// metrics.txt and the report only.
		outputs["metrics"] = string(mj)
	}
	if err := ci.SetOutputs(j.c, j.getenv, rand.Reader, outputs); err != nil {
		fmt.Fprintf(j.stderr, "sluice: outputs: %v\n", err)
	}
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
