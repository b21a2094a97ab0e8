package main

import (
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
	var storeURL, jobKey string
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&storeURL, "store", "", "the run's store, gs://BUCKET/PREFIX")
		c.Flags().StringVar(&jobKey, "job", "", "the key of the job spec in the store")
		_ = c.MarkFlagRequired("store")
		_ = c.MarkFlagRequired("job")
	}
	open := func(c *cobra.Command) (store.Store, *agent.Spec, error) {
		if !strings.HasPrefix(storeURL, "gs://") {
			return nil, nil, usageErrorf("--store %s: the agent reads a gs:// store", storeURL)
		}
		st, err := openStore(storeURL, "")
		if err != nil {
			return nil, nil, err
		}
		spec, err := agent.ReadSpec(c.Context(), st, jobKey)
		if err != nil {
			return nil, nil, &exitError{code: exitUsage, err: err}
		}
		return st, spec, nil
	}
	fetch := &cobra.Command{
		Use:   "fetch --store URL --job KEY",
		Short: "Lay out /valohai from the store and place the agent for the step's container",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, spec, err := open(c)
			if err != nil {
				return err
			}
			if err := agent.Fetch(c.Context(), st, spec, agent.Options{}); err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("agent fetch: %w", err)}
			}
			return nil
		},
	}
	exec := &cobra.Command{
		Use:   "exec --store URL --job KEY",
		Short: "Run the step's command, stream its log and put its outputs into the store",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, spec, err := open(c)
			if err != nil {
				return err
			}
			exit, err := agent.Exec(c.Context(), st, spec, agent.Options{Stdout: stdout, Stderr: stderr})
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("agent exec: %w", err)}
			}
			// The step's own exit code, for a backend that reads it (a
			// Kubernetes pod failure policy, a Batch task).
			if exit.ExitCode != 0 {
				return &exitError{code: exit.ExitCode}
			}
			return nil
		},
	}
	finish := &cobra.Command{
		Use:   "finish --store URL --job KEY",
		Short: "Make sure the attempt has an exit record, whatever happened to the step's container",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, spec, err := open(c)
			if err != nil {
				return err
			}
			if err := agent.Finish(c.Context(), st, spec); err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("agent finish: %w", err)}
			}
			return nil
		},
	}
	flags(fetch)
	flags(exec)
	flags(finish)
	cmd.AddCommand(fetch, exec, finish)
	return cmd
}
