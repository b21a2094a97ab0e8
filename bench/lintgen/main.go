// Command lintgen writes the generated pipeline files that bench/lint.sh
// lints: lintgen steps N FILE (N minimal steps), lintgen size MIB FILE
// (minimal steps up to MIB mebibytes), lintgen pipeline N FILE (N steps and
// a pipeline of N nodes).
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/sluice-ci/sluice/internal/bigyaml"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: lintgen steps|size|pipeline N FILE")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var data []byte
	switch os.Args[1] {
	case "steps":
		data = bigyaml.Steps(n)
	case "size":
		data = bigyaml.StepsOfSize(n << 20)
	case "pipeline":
		data = bigyaml.Pipeline(n)
	default:
		fmt.Fprintln(os.Stderr, "usage: lintgen steps|size|pipeline N FILE")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[3], data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
