package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/ci"
	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/store"
)

// reportFlags are the flags of `sluice report`.
type reportFlags struct {
	runID, baseline, storeURL, format, out, from, pubFile string
	post                                                  bool
	pr                                                    int
}

func newReportCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var fl reportFlags
	cmd := &cobra.Command{
		Use:   "report [FILE]",
		Short: "Compare a run with its baseline, apply the gates of sluice.yaml, and write the Markdown report",
		Long: "report writes the report of a run (default: the newest in the store) against a baseline: a run id,\n" +
			"or a branch, whose run at the merge base with HEAD is used (else the branch's latest successful run).\n" +
			"FILE is the pipeline file (default: the one the run recorded); sluice.yaml beside it holds the gates.\n\n" +
			"Exit codes: 0 passed, 1 the pipeline failed, 2 a gate failed, 3 usage or config error.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), fl, args, getenv, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.runID, "run", "", "the run to report on (default: the newest)")
	f.StringVar(&fl.baseline, "baseline", "", "a run id, or a branch to compare with (its run at the merge base, else its latest)")
	f.StringVar(&fl.storeURL, "store", "", "the store (default .sluice in the repository)")
	f.StringVar(&fl.format, "format", "markdown", "markdown or json")
	f.StringVarP(&fl.out, "out", "o", "", "write the report to this file instead of stdout")
	f.BoolVar(&fl.post, "post", false, "post the report on the pull or merge request (GitHub Actions, GitLab CI) with a check or commit status")
	f.IntVar(&fl.pr, "pr", 0, "the pull or merge request to post on (default: the one the CI event names)")
	f.StringVar(&fl.from, "from", "", "post a report kept in this file by a run whose token could not (with --post; checks the pull request's head first)")
	f.StringVar(&fl.pubFile, "publication", ".sluice/publication.json", "where the report is kept when the token may not post it")
	return cmd
}

func runReport(ctx context.Context, fl reportFlags, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if fl.format != "markdown" && fl.format != "json" {
		return usageErrorf("--format %q: use markdown or json", fl.format)
	}
	if fl.from != "" && !fl.post {
		return usageErrorf("--from FILE posts a kept report: give --post too")
	}
	var c *ci.Context
	if fl.post {
		var err error
		if c, err = postContext(getenv, fl.pr); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if fl.from != "" {
		return postFromFile(ctx, c, fl.from, stderr, logger)
	}
	r, err := reportOf(ctx, fl, args, stderr)
	if err != nil {
		return err
	}
	var text string
	if fl.format == "json" {
		data, err := json.MarshalIndent(struct {
			Run      string         `json:"run"`
			Baseline string         `json:"baseline,omitempty"`
			Note     string         `json:"baseline_note"`
			Verdict  report.Verdict `json:"verdict"`
		}{r.Run.ID, baseID(r.Baseline), r.BaselineNote, r.Verdict}, "", "  ")
		if err != nil {
			return err
		}
		text = string(data) + "\n"
	} else {
		text = report.Markdown(r)
	}
	if fl.out != "" {
		if err := writeFileAtomic(fl.out, strings.NewReader(text)); err != nil {
			return err
		}
	} else if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	code := r.Verdict.ExitCode()
	if fl.post {
		body := text
		if fl.format != "markdown" {
			body = report.Markdown(r)
		}
		if c.Number == 0 && c.HeadSHA == "" {
			return usageErrorf("--post: this is no pull or merge request run and no --pr was given: nothing to post on")
		}
		if o := post(ctx, c, report.NewPublication(r, body), fl.pubFile, stderr, logger); o.err != nil {
			fmt.Fprintf(stderr, "sluice: the report was not posted: %v\n", o.err)
			if code == 0 {
				code = exitFailed
			}
		}
	}
	fmt.Fprintf(stderr, "sluice: %s\n", r.Verdict.Summary())
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// postContext is the CI context a report is posted in, with --pr's number
// when given.
func postContext(getenv func(string) string, pr int) (*ci.Context, error) {
	c, err := ci.Detect(getenv)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	if c.Platform == ci.Local {
		return nil, usageErrorf("--post needs GitHub Actions or GitLab CI (GITHUB_ACTIONS or GITLAB_CI set): here there is no pull or merge request to post on")
	}
	if pr < 0 {
		return nil, usageErrorf("--pr %d: not a pull or merge request number", pr)
	}
	if pr > 0 {
		c.Number = pr
	}
	return c, nil
}

// reportOf assembles the report of the run --run names (the newest by
// default), with the pipeline file it recorded or FILE and the sluice.yaml
// beside it.
func reportOf(ctx context.Context, fl reportFlags, args []string, stderr io.Writer) (report.Report, error) {
	st, err := openStoreFlagToRead(fl.storeURL, true)
	if err != nil {
		return report.Report{}, err
	}
	runID := fl.runID
	if runID == "" {
		ids, err := store.ListRuns(ctx, st)
		if err != nil {
			return report.Report{}, &exitError{code: exitFailed, err: err}
		}
		if len(ids) == 0 {
			return report.Report{}, usageErrorf("the store has no runs; run a pipeline first")
		}
		runID = ids[0]
	}
	rec, err := store.GetRun(ctx, st, runID)
	if err != nil {
		return report.Report{}, notFoundOr(err)
	}
	showLive(rec)
	file := rec.File
	if len(args) == 1 {
		file = args[0]
	}
	in := report.Input{Store: st, StoreURL: fl.storeURL, Run: rec, Want: fl.baseline, RepoDir: filepath.Dir(file), Warn: stderr}
	if file != "" {
		if cfg, diags := parseFile(ctx, file); ctx.Err() != nil {
			return report.Report{}, interrupted(ctx)
		} else if !diags.HasErrors() {
			in.Pipeline = cfg.Pipeline(rec.Pipeline)
			if in.Sluice, err = loadSluiceConfig(stderr, file, cfg); err != nil {
				return report.Report{}, err
			}
		} else if len(args) == 1 {
			return report.Report{}, usageErrorf("%s has errors; run `sluice lint %s`", file, file)
		}
	}
	r, err := report.Assemble(ctx, in)
	if err != nil {
		return r, &exitError{code: exitFailed, err: err}
	}
	return r, nil
}

func baseID(r *store.Run) string {
	if r == nil {
		return ""
	}
	return r.ID
}
