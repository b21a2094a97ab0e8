package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/store"
)

// newAgentCmd is `sluice agent`, what runs where a remote step runs.
func newAgentCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "The part of sluice that runs beside a remote step (started by sluice itself)",
		Hidden: true,
	}
	cmd.AddCommand(
		agentVerb("fetch", "Lay out /valohai from the store and place the agent for the step's container",
			func(ctx context.Context, st store.Store, spec *agent.Spec) error {
				if err := agent.Fetch(ctx, st, spec, agent.Options{}); err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("agent fetch: %w", err)}
				}
				return nil
			}),
		agentVerb("exec", "Run the step's command, stream its log and put its outputs into the store",
			func(ctx context.Context, st store.Store, spec *agent.Spec) error {
				exit, err := agent.Exec(ctx, st, spec, agent.Options{Stdout: stdout, Stderr: stderr})
				if err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("agent exec: %w", err)}
				}
				// The step's own exit code, for a backend that reads it (a
				// Kubernetes pod failure policy, a Batch task).
				if exit.ExitCode != 0 {
					return &exitError{code: exit.ExitCode}
				}
				return nil
			}),
		agentVerb("finish", "Make sure the attempt has an exit record, whatever happened to the step's container",
			func(ctx context.Context, st store.Store, spec *agent.Spec) error {
				if err := agent.Finish(ctx, st, spec); err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("agent finish: %w", err)}
				}
				return nil
			}),
	)
	return cmd
}

// agentVerb is one `sluice agent VERB --store URL --job KEY`: it opens the
// store, reads the job spec, and hands both to run.
func agentVerb(verb, short string, run func(context.Context, store.Store, *agent.Spec) error) *cobra.Command {
	var storeURL, jobKey string
	c := &cobra.Command{
		Use:   verb + " --store URL --job KEY",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !strings.HasPrefix(storeURL, "gs://") {
				return usageErrorf("--store %s: the agent reads a gs:// store", storeURL)
			}
			st, err := openStore(storeURL, "")
			if err != nil {
				return err
			}
			spec, err := agent.ReadSpec(c.Context(), st, jobKey)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return run(c.Context(), st, spec)
		},
	}
	c.Flags().StringVar(&storeURL, "store", "", "the run's store, gs://BUCKET/PREFIX")
	c.Flags().StringVar(&jobKey, "job", "", "the key of the job spec in the store")
	_ = c.MarkFlagRequired("store")
	_ = c.MarkFlagRequired("job")
	return c
}
