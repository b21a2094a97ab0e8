package spec

import (
	"fmt"
	"testing"

	"github.com/sluice-ci/sluice/internal/bigyaml"
)

// BenchmarkLintSize lints generated files of growing size. Lint must take
// time in proportion to the file: the ns/step figure stays flat from 10k to
// 160k steps, and the 15 MiB file (about 240,000 steps, under the 16 MiB
// limit) lints in seconds. bench/lint.sh gives the peak RSS of the binary on
// the same files.
func BenchmarkLintSize(b *testing.B) {
	for _, n := range []int{10_000, 40_000, 160_000} {
		b.Run(fmt.Sprintf("steps=%dk", n/1000), func(b *testing.B) {
			benchLint(b, bigyaml.Steps(n), n)
		})
	}
	data := bigyaml.StepsOfSize(15 << 20)
	b.Run("steps=15MiB", func(b *testing.B) {
		benchLint(b, data, countSteps(data))
	})
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("pipeline=%dk", n/1000), func(b *testing.B) {
			benchLint(b, bigyaml.Pipeline(n), n)
		})
	}
}

// BenchmarkLintShapes lints files whose size lies in one place: a mapping
// of many keys, a step of many parameters and inputs (with an override of
// each), a pipeline whose every node names a missing step. Each must take
// time in proportion to its size too: ns/item stays flat from 10k to 40k.
func BenchmarkLintShapes(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("devices=%dk", n/1000), func(b *testing.B) {
			benchLintItems(b, bigyaml.Devices(n), n, false)
		})
		b.Run(fmt.Sprintf("parameters=%dk", n/1000), func(b *testing.B) {
			benchLintItems(b, bigyaml.Parameters(n), n, false)
		})
		b.Run(fmt.Sprintf("missing-steps=%dk", n/1000), func(b *testing.B) {
			benchLintItems(b, bigyaml.MissingSteps(n), n, true)
		})
	}
}

func benchLint(b *testing.B, data []byte, steps int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cfg, diags := Parse("big.yaml", data)
		if diags.HasErrors() || cfg == nil {
			b.Fatalf("generated file rejected: %v", diags)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(steps), "ns/step")
}

func benchLintItems(b *testing.B, data []byte, items int, wantErrors bool) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_, diags := Parse("big.yaml", data)
		if diags.HasErrors() != wantErrors {
			b.Fatalf("errors: %v, want %v: %.500s", diags.HasErrors(), wantErrors, diags.Error())
		}
		if wantErrors && diags.Count(SeverityError) < items {
			b.Fatalf("%d errors, want %d", diags.Count(SeverityError), items)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(items), "ns/item")
}

func countSteps(data []byte) int {
	n := 0
	for i := 0; i+8 <= len(data); i++ {
		if string(data[i:i+8]) == "- step:\n" {
			n++
		}
	}
	return n
}
