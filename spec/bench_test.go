package spec

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// generatePipeline writes a valohai.yaml with 10 steps and one pipeline of n
// nodes: a chain with fan-in from earlier nodes, as a large DAG would have.
func generatePipeline(n int) []byte {
	var b strings.Builder
	for s := 0; s < 10; s++ {
		fmt.Fprintf(&b, `- step:
    name: step-%d
    image: python:3.12
    command:
      - python train.py {parameters}
    parameters:
      - name: lr
        type: float
        default: 0.001
      - name: epochs
        type: integer
        default: 10
    inputs:
      - name: data
`, s)
	}
	b.WriteString("- pipeline:\n    name: big\n    nodes:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - name: node-%d\n        type: execution\n        step: step-%d\n", i, i%10)
	}
	b.WriteString("    edges:\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "      - [node-%d.output.model*, node-%d.input.data]\n", i-1, i)
		if i%7 == 0 {
			fmt.Fprintf(&b, "      - [node-%d.metadata.loss, node-%d.parameter.lr]\n", i/2, i)
		}
	}
	return []byte(b.String())
}

func lintAndPlan(b testing.TB, data []byte) {
	cfg, diags := Parse("big.yaml", data)
	if diags.HasErrors() {
		b.Fatalf("generated pipeline rejected: %v", diags)
	}
	pp, err := cfg.NewPipelinePlan(cfg.Pipelines[0], nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := pp.WriteText(io.Discard); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLintPlan10k: lint + plan of a 10,000-node pipeline (target: ≤ 1 s).
func BenchmarkLintPlan10k(b *testing.B) {
	data := generatePipeline(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		lintAndPlan(b, data)
	}
}

func TestGeneratedPipelinePlans(t *testing.T) {
	lintAndPlan(t, generatePipeline(200))
}
