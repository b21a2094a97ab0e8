package main

import (
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

func newReportCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var runID, baseline, storeURL, format, out, from, pubFile string
	var doPost bool
	var pr int
	cmd := &cobra.Command{
		Use:   "report [FILE]",
		Short: "Compare a run with its baseline, apply the gates of sluice.yaml, and write the Markdown report",
		Long: "report writes the report of a run (default: the newest in the store) against a baseline: a run id,\n" +
			"or a branch, whose run at the merge base with HEAD is used (else the branch's latest successful run).\n" +
			"FILE is the pipeline file (default: the one the run recorded); sluice.yaml beside it holds the gates.\n\n" +
			"Exit codes: 0 passed, 1 the pipeline failed, 2 a gate failed, 3 usage or config error.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "markdown" && format != "json" {
				return usageErrorf("--format %q: use markdown or json", format)
			}
			ctx := cmd.Context()
			if from != "" && !doPost {
				return usageErrorf("--from FILE posts a kept report: give --post too")
			}
			var c *ci.Context
			if doPost {
				var err error
				if c, err = ci.Detect(getenv); err != nil {
					return usageErrorf("%v", err)
				}
				if c.Platform == ci.Local {
					return usageErrorf("--post needs GitHub Actions or GitLab CI (GITHUB_ACTIONS or GITLAB_CI set): here there is no pull or merge request to post on")
				}
				if pr < 0 {
					return usageErrorf("--pr %d: not a pull or merge request number", pr)
				}
				if pr > 0 {
					c.Number = pr
				}
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if from != "" {
				return postFromFile(ctx, c, from, stderr, logger)
			}
			st, err := openStoreFlagToRead(storeURL, true)
			if err != nil {
				return err
			}
			if runID == "" {
				ids, err := store.ListRuns(ctx, st)
				if err != nil {
					return &exitError{code: exitFailed, err: err}
				}
				if len(ids) == 0 {
					return usageErrorf("the store has no runs; run a pipeline first")
				}
				runID = ids[0]
			}
			rec, err := store.GetRun(ctx, st, runID)
			if err != nil {
				return notFoundOr(err)
			}
			showLive(rec)
			file := rec.File
			if len(args) == 1 {
				file = args[0]
			}
			in := report.Input{Store: st, StoreURL: storeURL, Run: rec, Want: baseline, RepoDir: filepath.Dir(file), Warn: stderr}
			if file != "" {
				if cfg, diags := parseFile(ctx, file); ctx.Err() != nil {
					return interrupted(ctx)
				} else if !diags.HasErrors() {
					in.Pipeline = cfg.Pipeline(rec.Pipeline)
					if in.Sluice, err = loadSluiceConfig(stderr, file, cfg); err != nil {
						return err
					}
				} else if len(args) == 1 {
					return usageErrorf("%s has errors; run `sluice lint %s`", file, file)
				}
			}
			r, err := report.Assemble(ctx, in)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			v, base, note := r.Verdict, r.Baseline, r.BaselineNote
			var text string
			if format == "json" {
				data, err := json.MarshalIndent(struct {
					Run      string         `json:"run"`
					Baseline string         `json:"baseline,omitempty"`
					Note     string         `json:"baseline_note"`
					Verdict  report.Verdict `json:"verdict"`
				}{rec.ID, baseID(base), note, v}, "", "  ")
				if err != nil {
					return err
				}
				text = string(data) + "\n"
			} else {
				text = report.Markdown(r)
			}
			if out != "" {
				if err := writeFileAtomic(out, strings.NewReader(text)); err != nil {
					return err
				}
			} else if _, err := io.WriteString(stdout, text); err != nil {
				return err
			}
			code := v.ExitCode()
			if doPost {
				body := text
				if format != "markdown" {
					body = report.Markdown(r)
				}
				if c.Number == 0 && c.HeadSHA == "" {
					return usageErrorf("--post: this is no pull or merge request run and no --pr was given: nothing to post on")
				}
				if o := post(ctx, c, report.NewPublication(r, body), pubFile, stderr, logger); o.err != nil {
					fmt.Fprintf(stderr, "sluice: the report was not posted: %v\n", o.err)
					if code == 0 {
						code = exitFailed
					}
				}
			}
			fmt.Fprintf(stderr, "sluice: %s\n", v.Summary())
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runID, "run", "", "the run to report on (default: the newest)")
	f.StringVar(&baseline, "baseline", "", "a run id, or a branch to compare with (its run at the merge base, else its latest)")
	f.StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	f.StringVar(&format, "format", "markdown", "markdown or json")
	f.StringVarP(&out, "out", "o", "", "write the report to this file instead of stdout")
	f.BoolVar(&doPost, "post", false, "post the report on the pull or merge request (GitHub Actions, GitLab CI) with a check or commit status")
	f.IntVar(&pr, "pr", 0, "the pull or merge request to post on (default: the one the CI event names)")
	f.StringVar(&from, "from", "", "post a report kept in this file by a run whose token could not (with --post; checks the pull request's head first)")
	f.StringVar(&pubFile, "publication", ".sluice/publication.json", "where the report is kept when the token may not post it")
	return cmd
}

func baseID(r *store.Run) string {
	if r == nil {
		return ""
	}
	return r.ID
}
