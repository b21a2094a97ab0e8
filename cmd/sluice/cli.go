package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/spec"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1 // lint found errors; later: the pipeline failed
	exitUsage    = 3 // bad flags or arguments
	defaultFile  = "valohai.yaml"
	formatText   = "text"
	formatJSON   = "json"
	formatMermai = "mermaid"
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// Main runs the sluice command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return mainEnv(ctx, os.Getenv, args, stdin, stdout, stderr)
}

// mainEnv is Main with the environment that sluice ci and sluice report
// --post read given as getenv (tests pass their own).
func mainEnv(ctx context.Context, getenv func(string) string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr, getenv)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = interrupted(ctx) // a command that stopped on a signal, with the context's error
	}
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "sluice: %v\n", ee.err)
		}
		return ee.code
	}
	// cobra's own errors: unknown flags, commands, argument counts.
	fmt.Fprintf(stderr, "sluice: %v\n", err)
	return exitUsage
}

func newRoot(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Run Valohai pipelines (valohai.yaml) in CI: lint, plan, run, gate the merge",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newLintCmd(stdout, stderr), newPlanCmd(stdout), newRunCmd(stdout, stderr), newRunsCmd(stdout),
		newGCCmd(stdout),
		newShowCmd(stdout), newArtifactsCmd(stdout), newCleanCmd(stdout), newReportCmd(stdout, stderr, getenv), newCICmd(stdout, stderr, getenv), newVersionCmd(stdout), newAgentCmd(stdout, stderr))
	return root
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of sluice",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(stdout, "sluice %s\n", version())
			return nil
		},
	}
}

// version is set at build time with -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

func newLintCmd(stdout, stderr io.Writer) *cobra.Command {
	var format string
	var strict bool
	cmd := &cobra.Command{
		Use:   "lint [FILE...]",
		Short: "Check pipeline files as Valohai does; print file:line:col: error|warning: message",
		Long: "lint reads each valohai.yaml (default ./valohai.yaml), checks it as Valohai's own parser does\n" +
			"(YAML 1.1, its schema, references between steps, nodes and edges, cycles, expressions),\n" +
			"what a run would refuse (input defaults outside the repository, edge globs that match no\n" +
			"output), and the sluice.yaml beside it, if any, and prints every finding. It warns about each\n" +
			"environment a step names that sluice.yaml does not map (the step runs on local Docker).\n" +
			"It exits 1 when a file has errors, or warnings with --strict.",
		RunE: func(cmd *cobra.Command, files []string) error {
			if format != formatText && format != formatJSON {
				return usageErrorf("--format %q: use text or json", format)
			}
			if len(files) == 0 {
				files = []string{defaultFile}
			}
			var all spec.Diagnostics
			for _, f := range files {
				diags := lintFile(cmd.Context(), f)
				if cmd.Context().Err() != nil {
					return interrupted(cmd.Context())
				}
				all = append(all, diags...)
			}
			errs, warns := all.Count(spec.SeverityError), all.Count(spec.SeverityWarning)
			if format == formatJSON {
				out := struct {
					Files       []string         `json:"files"`
					Errors      int              `json:"errors"`
					Warnings    int              `json:"warnings"`
					Diagnostics spec.Diagnostics `json:"diagnostics"`
				}{files, errs, warns, all}
				if out.Diagnostics == nil {
					out.Diagnostics = spec.Diagnostics{}
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				for _, d := range all {
					fmt.Fprintln(stdout, d.String())
				}
				what := files[0]
				if len(files) > 1 {
					what = plural(len(files), "file")
				}
				fmt.Fprintf(stderr, "%s: %s, %s\n", what, plural(errs, "error"), plural(warns, "warning"))
			}
			if errs > 0 || strict && warns > 0 {
				return &exitError{code: exitFailed}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", formatText, "output format: text or json")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	return cmd
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func newPlanCmd(stdout io.Writer) *cobra.Command {
	var format, pipeline, step, task, storeURL string
	var params []string
	var reuse bool
	cmd := &cobra.Command{
		Use:   "plan [FILE]",
		Short: "Show what a pipeline would run: the DAG in layers, each node's environment, image, command and inputs",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != formatText && format != formatJSON && format != formatMermai {
				return usageErrorf("--format %q: use text, json or mermaid", format)
			}
			values, err := parseParams(params)
			if err != nil {
				return err
			}
			step, err := stepOrTask(step, task)
			if err != nil {
				return err
			}
			cfg, p, file, err := loadPipeline(cmd.Context(), cmd.ErrOrStderr(), args, pipeline, step)
			if err != nil {
				return err
			}
			plan, err := cfg.NewPipelinePlanContext(cmd.Context(), p, values)
			if cmd.Context().Err() != nil {
				return interrupted(cmd.Context())
			}
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if plan.Sluice, err = loadSluiceConfig(cmd.ErrOrStderr(), file, cfg); err != nil {
				return err
			}
			switch format {
			case formatMermai:
				_, err = io.WriteString(stdout, plan.Mermaid())
			case formatJSON:
				out := plan.JSON()
				if reuse {
					out["reuse"] = reuseJSON(predictReuse(cmd.Context(), cmd.ErrOrStderr(), cfg, p, values, file, storeURL))
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(out)
			default:
				if err = plan.WriteText(stdout); err == nil && reuse {
					err = writeReuse(stdout, predictReuse(cmd.Context(), cmd.ErrOrStderr(), cfg, p, values, file, storeURL))
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", formatText, "output format: text, json or mermaid")
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "the pipeline to plan (needed when the file has several)")
	cmd.Flags().StringVar(&step, "step", "", "plan a single step instead of a pipeline")
	cmd.Flags().StringVar(&task, "task", "", "plan a task (a sweep of a step's parameters)")
	cmd.Flags().BoolVar(&reuse, "reuse", true, "say which nodes would reuse an earlier result and why the others would run (needs Docker for image digests)")
	cmd.Flags().StringVar(&storeURL, "store", "", "the store to look for earlier results in (default .sluice in the repository)")
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "pipeline parameter value NAME=VALUE (repeatable)")
	return cmd
}

func parseParams(params []string) (map[string]*spec.Value, error) {
	values := map[string]*spec.Value{}
	for _, kv := range params {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("-p %q: write NAME=VALUE", kv)
		}
		values[k] = spec.ParseScalar(v)
	}
	return values, nil
}

// loadPipeline parses the pipeline file (args[0], default valohai.yaml),
// prints its findings, and picks the pipeline (or step) to work on. A file
// with errors is a configuration error.
func loadPipeline(ctx context.Context, stderr io.Writer, args []string, pipeline, step string) (*spec.Config, *spec.Pipeline, string, error) {
	if pipeline != "" && step != "" {
		return nil, nil, "", usageErrorf("give one of --pipeline, --step and --task")
	}
	file := defaultFile
	if len(args) == 1 {
		file = args[0]
	}
	cfg, diags := parseFile(ctx, file)
	if ctx.Err() != nil {
		return nil, nil, file, interrupted(ctx)
	}
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	if diags.HasErrors() {
		return nil, nil, file, usageErrorf("%s has %s; fix them and run again (`sluice lint %s` lists them)", file, plural(diags.Count(spec.SeverityError), "error"), file)
	}
	p, err := choosePipeline(cfg, file, pipeline, step)
	return cfg, p, file, err
}

// loadSluiceConfig reads the sluice.yaml beside the pipeline file, if any.
func loadSluiceConfig(stderr io.Writer, file string, cfg *spec.Config) (*spec.SluiceConfig, error) {
	name := filepath.Join(filepath.Dir(file), "sluice.yaml")
	sc, diags := spec.LoadSluiceConfig(name, cfg)
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	if diags.HasErrors() {
		return nil, usageErrorf("%s has %s", name, plural(diags.Count(spec.SeverityError), "error"))
	}
	return sc, nil
}

func choosePipeline(cfg *spec.Config, file, pipeline, step string) (*spec.Pipeline, error) {
	if task, ok := strings.CutPrefix(step, taskPrefix); ok {
		t := cfg.Task(task)
		if t == nil {
			return nil, usageErrorf("%s has no task %q; its tasks: %s", file, task, names(cfg.Tasks, func(t *spec.Task) string { return t.Name }))
		}
		return spec.SingleTask(t), nil
	}
	if step != "" {
		s := cfg.Step(step)
		if s == nil {
			return nil, usageErrorf("%s has no step %q; its steps: %s", file, step, names(cfg.Steps, func(s *spec.Step) string { return s.Name }))
		}
		return spec.SingleStep(s), nil
	}
	if pipeline != "" {
		p := cfg.Pipeline(pipeline)
		if p == nil {
			return nil, usageErrorf("%s has no pipeline %q; its pipelines: %s", file, pipeline, names(cfg.Pipelines, func(p *spec.Pipeline) string { return p.Name }))
		}
		return p, nil
	}
	switch len(cfg.Pipelines) {
	case 0:
		return nil, usageErrorf("%s has no pipeline; use --step NAME to plan one of its steps (%s)", file, names(cfg.Steps, func(s *spec.Step) string { return s.Name }))
	case 1:
		return cfg.Pipelines[0], nil
	}
	return nil, usageErrorf("%s has %d pipelines; choose one with --pipeline: %s", file, len(cfg.Pipelines), names(cfg.Pipelines, func(p *spec.Pipeline) string { return p.Name }))
}

func names[T any](items []T, name func(T) string) string {
	if len(items) == 0 {
		return "none"
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf("%q", name(it))
	}
	return strings.Join(out, ", ")
}

// taskPrefix marks a --task given through the --step slot of loadPipeline.
const taskPrefix = "\x00task:"

// stepOrTask folds --step and --task into the one value loadPipeline takes.
func stepOrTask(step, task string) (string, error) {
	if step != "" && task != "" {
		return "", usageErrorf("give --step or --task, not both")
	}
	if task != "" {
		return taskPrefix + task, nil
	}
	return step, nil
}

// timeNow is the clock of the command line.
func timeNow() time.Time { return time.Now() }
