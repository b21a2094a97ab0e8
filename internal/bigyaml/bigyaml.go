// Package bigyaml writes large valohai.yaml files for the benchmarks and the
// tests that lint, plan or interrupt sluice on files near its size limit.
package bigyaml

import (
	"fmt"
	"strings"
)

// Steps writes n minimal steps, one after the other: the shape of a file
// that was generated (or concatenated) carelessly, about 66 bytes a step.
func Steps(n int) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		writeStep(&b, i)
	}
	return []byte(b.String())
}

func writeStep(b *strings.Builder, i int) {
	fmt.Fprintf(b, "- step:\n    name: s%06d\n    image: busybox\n    command: echo hi\n", i)
}

// StepsOfSize writes minimal steps (see Steps) until the file holds size
// bytes or more.
func StepsOfSize(size int) []byte {
	var b strings.Builder
	b.Grow(size + 128)
	for i := 0; b.Len() < size; i++ {
		writeStep(&b, i)
	}
	return []byte(b.String())
}

// Pipeline writes n steps, each with a parameter and an input that its
// command uses, and one pipeline with a node per step: a chain of output to
// input edges, with a metadata-to-parameter edge from every seventh node
// reaching back to the node half-way before it.
func Pipeline(n int) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `- step:
    name: step-%d
    image: python:3.12
    command: python train.py {parameter:lr}
    parameters:
      - name: lr
        type: float
        default: 0.001
    inputs:
      - name: data
        optional: true
`, i)
	}
	b.WriteString("- pipeline:\n    name: big\n    nodes:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - name: node-%d\n        type: execution\n        step: step-%d\n", i, i)
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

// Devices writes one step whose resources ask for n devices: a mapping of n
// keys.
func Devices(n int) []byte {
	var b strings.Builder
	b.WriteString("- step:\n    name: many-devices\n    image: busybox\n    command: echo hi\n    resources:\n      devices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "        vendor.example/dev%d: 1\n", i)
	}
	return []byte(b.String())
}

// Parameters writes one step of n parameters and n inputs, whose command
// names every parameter, and a pipeline of one node of that step whose
// override sets every parameter and input again.
func Parameters(n int) []byte {
	var b strings.Builder
	b.WriteString("- step:\n    name: wide\n    image: busybox\n    command:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - echo {parameter:p%d}\n", i)
	}
	b.WriteString("    parameters:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - {name: p%d, type: integer, default: %d}\n", i, i)
	}
	b.WriteString("    inputs:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - {name: in%d, optional: true}\n", i)
	}
	b.WriteString("- pipeline:\n    name: wide\n    nodes:\n      - name: n\n        type: execution\n        step: wide\n        override:\n          parameters:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "            - {name: p%d, default: %d}\n", i, i+1)
	}
	b.WriteString("          inputs:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "            - {name: in%d, default: data/x%d}\n", i, i)
	}
	b.WriteString("    edges: []\n")
	return []byte(b.String())
}

// MissingSteps writes n steps and a pipeline of n nodes that each name a
// step that does not exist: a file with n errors.
func MissingSteps(n int) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		writeStep(&b, i)
	}
	b.WriteString("- pipeline:\n    name: broken\n    nodes:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - {name: n%d, type: execution, step: t%06d}\n", i, i)
	}
	b.WriteString("    edges: []\n")
	return []byte(b.String())
}
