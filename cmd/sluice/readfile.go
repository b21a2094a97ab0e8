package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/sluice-ci/sluice/spec"
)

// readingGCPercent is the garbage collector's target while a pipeline file
// is read. Reading makes many short-lived values beside the model it keeps;
// at Go's default (100) the heap grows to twice what is live before a
// collection, at 25 to a quarter more: the peak RSS of linting a 15 MiB file
// is 18 times its size instead of 23, for half again as much CPU
// (bench/README.md).
const readingGCPercent = 25

// whileReading runs f with the garbage collector's target at
// readingGCPercent, unless GOGC says otherwise.
func whileReading(f func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		f()
		return
	}
	old := debug.SetGCPercent(readingGCPercent)
	defer debug.SetGCPercent(old)
	f()
}

// parseFile reads and checks a pipeline file (spec.ParseFileContext).
func parseFile(ctx context.Context, name string) (cfg *spec.Config, diags spec.Diagnostics) {
	whileReading(func() { cfg, diags = spec.ParseFileContext(ctx, name) })
	return cfg, diags
}

// lintFile checks a pipeline file and its sluice.yaml (spec.LintFileContext).
func lintFile(ctx context.Context, name string) (diags spec.Diagnostics) {
	whileReading(func() { _, _, diags = spec.LintFileContext(ctx, name) })
	return diags
}
