package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/runner/batch"
	"github.com/sluice-ci/sluice/runner/kube"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
)

func newGCCmd(stdout io.Writer) *cobra.Command {
	var storeURL, config string
	var keepDays int
	var dryRun, cloud bool
	cmd := &cobra.Command{
		Use:   "gc --keep-days N [--dry-run] [--store URL]",
		Short: "Remove runs older than N days and the blobs nothing refers to any more",
		Long: "gc removes the runs that started more than --keep-days days ago (their records and everything\n" +
			"under runs/<id>/), the cache entries they made, and then every blob that nothing left in the\n" +
			"store refers to. It never removes a blob that a kept run, cache entry, gs:// input note or ref\n" +
			"refers to, nor one written in the last hour (a run in progress may not have recorded it yet).\n" +
			"It keeps old runs that are still running (unless their record has not changed for 7 days),\n" +
			"runs that a ref names (a branch's baseline), and records it cannot read, with everything they\n" +
			"mention. --dry-run prints what would be removed and deletes nothing.\n\n" +
			"With --cloud it deletes the cloud jobs that sluice started and that are past their TTL (the\n" +
			"sluice-created and sluice-ttl labels every job carries): the Cloud Batch jobs of every batch\n" +
			"environment of sluice.yaml, and the Kubernetes Jobs (with their pods) in the namespace of every\n" +
			"kubernetes environment: what a CI job killed outright left. --cloud alone sweeps only the cloud.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cloud {
				if err := gcCloud(cmd.Context(), stdout, config, dryRun); err != nil {
					return err
				}
				if !cmd.Flags().Changed("keep-days") {
					return nil
				}
			}
			if !cmd.Flags().Changed("keep-days") {
				return usageErrorf("gc: --keep-days is required: how many days of runs to keep (0 removes every finished run), or --cloud")
			}
			if keepDays < 0 {
				return usageErrorf("gc: --keep-days %d: want 0 or more days", keepDays)
			}
			st, err := openStoreFlag(storeURL)
			if err != nil {
				return err
			}
			if c, ok := st.(io.Closer); ok {
				defer c.Close()
			}
			rep, err := store.GC(cmd.Context(), st, keepDays, timeNow(), dryRun)
			if cmd.Context().Err() != nil {
				return interrupted(cmd.Context())
			}
			printGCReport(stdout, rep, keepDays)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&keepDays, "keep-days", 0, "keep the runs of the last N days (required; 0 keeps none but unfinished ones)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed; delete nothing")
	cmd.Flags().StringVar(&storeURL, "store", "", "the store (default .sluice in the repository)")
	cmd.Flags().BoolVar(&cloud, "cloud", false, "delete the cloud jobs sluice started that are past their TTL")
	cmd.Flags().StringVar(&config, "config", "sluice.yaml", "with --cloud: the sluice.yaml whose environments to sweep")
	return cmd
}

// gcCloud sweeps the cloud jobs past their TTL: the Batch jobs of every
// batch environment of sluice.yaml, one location at a time, and the Jobs in
// the namespace of every kubernetes environment, one namespace of a cluster
// at a time.
func gcCloud(ctx context.Context, stdout io.Writer, config string, dryRun bool) error {
	sc, diags := spec.LoadSluiceConfig(config, nil)
	if diags.HasErrors() {
		return usageErrorf("%s", strings.TrimSpace(diags.Error()))
	}
	if sc == nil {
		return usageErrorf("gc --cloud: %s: no such file; give the sluice.yaml whose environments to sweep with --config", config)
	}
	parents := map[string]bool{}
	var kubes []*spec.Environment
	for _, slug := range slices.Sorted(maps.Keys(sc.Environments)) {
		switch env := sc.Environments[slug]; env.Backend {
		case spec.BackendBatch:
			parents[fmt.Sprintf("projects/%s/locations/%s", env.Batch.Project, env.Batch.Region)] = true
		case spec.BackendKubernetes:
			kubes = append(kubes, env)
		}
	}
	if len(parents) == 0 && len(kubes) == 0 {
		fmt.Fprintf(stdout, "gc --cloud: %s has no batch or kubernetes environment: nothing to sweep\n", config)
		return nil
	}
	clouds := &cloudClients{getenv: os.Getenv}
	defer clouds.Close()
	g := cloudSweep{ctx: ctx, stdout: stdout, clouds: clouds, now: timeNow(), dryRun: dryRun, verb: "deleted"}
	if dryRun {
		g.verb = "would delete"
	}
	if len(parents) > 0 {
		if err := g.batch(slices.Sorted(maps.Keys(parents))); err != nil {
			return &exitError{code: exitFailed, err: err}
		}
	}
	g.kube(sc.File, kubes)
	if err := errors.Join(g.errs...); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	return nil
}

// cloudSweep is one gc --cloud: what it prints to, and the errors it met.
type cloudSweep struct {
	ctx    context.Context
	stdout io.Writer
	clouds *cloudClients
	now    time.Time
	dryRun bool
	verb   string // "deleted", or "would delete" in a dry run
	errs   []error
}

// batch sweeps the Batch jobs of each location (projects/P/locations/R);
// the error is that there is no Batch client.
func (g *cloudSweep) batch(parents []string) error {
	client, err := g.clouds.Batch(g.ctx)
	if err != nil {
		return err
	}
	for _, parent := range parents {
		swept, err := batch.Sweep(g.ctx, client, parent, g.now, g.dryRun)
		for _, s := range swept {
			if s.Err != nil {
				g.errs = append(g.errs, fmt.Errorf("delete %s: %w", s.Name, s.Err))
				continue
			}
			fmt.Fprintf(g.stdout, "%s %s (run %s, node %s, %s, created %s, expired %s ago)\n", g.verb, s.Name, s.Run, s.Node,
				strings.ToLower(s.State), s.Created.Format(time.RFC3339), g.now.Sub(s.Expired).Round(time.Second))
		}
		if err != nil {
			g.errs = append(g.errs, err)
		}
		fmt.Fprintf(g.stdout, "gc --cloud: %s: %s %s past their TTL\n", parent, g.verb, plural(len(swept), "job"))
	}
	return nil
}

// kube sweeps the Jobs in the namespace of each kubernetes environment,
// each namespace of a cluster once; file is sluice.yaml, for messages.
func (g *cloudSweep) kube(file string, envs []*spec.Environment) {
	type target struct {
		client    any // one per kubeconfig and context: two contexts may share a name
		namespace string
	}
	seen := map[target]bool{}
	for _, env := range envs {
		client, cluster, err := g.clouds.Kube(env.Kube)
		if err != nil {
			g.errs = append(g.errs, fmt.Errorf("%s:%d:%d: environment %q: %w", file, env.Pos.Line, env.Pos.Col, env.Name, err))
			continue
		}
		where := cluster + "/" + env.Kube.Namespace
		t := target{client, env.Kube.Namespace}
		if seen[t] {
			continue
		}
		seen[t] = true
		swept, err := kube.Sweep(g.ctx, client, env.Kube.Namespace, g.now, g.dryRun)
		n := 0
		for _, s := range swept {
			if s.Err != nil {
				g.errs = append(g.errs, fmt.Errorf("delete Job %s/%s: %w", s.Namespace, s.Name, s.Err))
				continue
			}
			n++
			fmt.Fprintf(g.stdout, "%s Job %s/%s on %s (run %s, node %s, created %s, expired %s ago)\n", g.verb, s.Namespace, s.Name, cluster,
				s.Run, s.Node, s.Created.Format(time.RFC3339), g.now.Sub(s.Expired).Round(time.Second))
		}
		if err != nil {
			g.errs = append(g.errs, fmt.Errorf("environment %q: %w", env.Name, err))
		}
		fmt.Fprintf(g.stdout, "gc --cloud: %s: %s %s past their TTL\n", where, g.verb, plural(n, "Job"))
	}
}

func printGCReport(w io.Writer, rep store.GCReport, keepDays int) {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(w, "cut-off %s (keep %s)\n", rep.Cutoff.UTC().Format(time.RFC3339), plural(keepDays, "day"))
	for _, id := range rep.Runs {
		fmt.Fprintf(w, "%s run %s\n", verb, id)
	}
	for _, id := range rep.Unfinished {
		fmt.Fprintf(w, "kept run %s: older than the cut-off but still running\n", id)
	}
	for _, id := range rep.Named {
		fmt.Fprintf(w, "kept run %s: older than the cut-off but a ref names it\n", id)
	}
	for _, key := range rep.Damaged {
		fmt.Fprintf(w, "kept %s: it is not valid JSON; every blob it mentions is kept too\n", key)
	}
	if rep.RecentBlobs > 0 {
		fmt.Fprintf(w, "kept %s (%s) that nothing refers to yet: written in the last %s\n",
			plural(rep.RecentBlobs, "blob"), byteSize(rep.RecentBytes), strings.TrimSuffix(store.BlobGrace.String(), "0m0s"))
	}
	entries := fmt.Sprintf("%d cache entries", rep.CacheEntries)
	if rep.CacheEntries == 1 {
		entries = "1 cache entry"
	}
	freed := "freed"
	if rep.DryRun {
		freed = "to free"
	}
	fmt.Fprintf(w, "%s %s, %s, %s (%s); %s %s in all\n", verb, plural(len(rep.Runs), "run"),
		entries, plural(rep.Blobs, "blob"), byteSize(rep.BlobBytes), byteSize(rep.Bytes), freed)
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was deleted")
	}
}

// byteSize formats n bytes for people: 512 B, 1.5 KiB, 2.0 GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
