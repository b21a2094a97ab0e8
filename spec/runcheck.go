package spec

import (
	"fmt"
	gopath "path"
	"strings"
)

// LintRun reports what a sluice run of the file would refuse although
// Valohai's parser accepts it, as errors at the line and column at fault, so
// that `sluice lint` gives the run's verdict before anything runs: an input
// default that is a path outside the repository (absolute, or climbing out
// with ..), and an edge whose output glob can match no output (a leading /,
// or a .., . or empty part).
func LintRun(cfg *Config) Diagnostics {
	if cfg == nil {
		return nil
	}
	r := &reporter{file: cfg.File}
	for _, s := range cfg.Steps {
		for i, in := range s.Inputs {
			lintDefaults(r, in, fmt.Sprintf("%s.inputs[%d].default", stepLabel(s), i), "")
		}
	}
	for _, p := range cfg.Pipelines {
		for i, n := range p.Nodes {
			if n.Override == nil {
				continue
			}
			for j, in := range n.Override.Inputs {
				lintDefaults(r, in, fmt.Sprintf("pipeline %q.nodes[%d].override.inputs[%d].default", p.Name, i, j), fmt.Sprintf("node %q: ", n.Name))
			}
		}
		for i, e := range p.Edges {
			if e.Source.Type != SocketOutput {
				continue
			}
			if msg := outputGlobProblem(e.Source.Key); msg != "" {
				r.errorf(e.Pos, fmt.Sprintf("pipeline %q.edges[%d]", p.Name, i), "edge %s -> %s: output glob %q: %s", e.Source, e.Target, e.Source.Key, msg)
			}
		}
	}
	r.diags.Sort()
	return r.diags
}

func lintDefaults(r *reporter, in *Input, path, prefix string) {
	for i, def := range in.Default {
		msg := repoPathProblem(def)
		if msg == "" {
			continue
		}
		pos := in.Pos
		if i < len(in.defaultPos) && in.defaultPos[i].Line > 0 {
			pos = in.defaultPos[i]
		}
		r.errorf(pos, path, "%sinput %q: default %q: %s", prefix, in.Name, def, msg)
	}
}

// repoPathProblem says why the run would refuse an input default that is a
// path in the repository (not a URL), or "" when it would not: the run reads
// such paths relative to the repository and keeps them inside it.
func repoPathProblem(def string) string {
	if strings.Contains(def, "://") {
		return ""
	}
	clean := gopath.Clean(strings.TrimPrefix(def, "./"))
	if gopath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "input paths are relative to the repository and stay inside it, so a run that uses this default refuses it; put the file in the repository, or give a gs:// or https:// URL"
	}
	return ""
}

// outputGlobProblem says why an output glob of an edge can match no file, or
// "" when it may: a node's outputs are named by clean paths relative to
// /valohai/outputs.
func outputGlobProblem(glob string) string {
	for _, seg := range strings.Split(glob, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return "outputs are files below /valohai/outputs named by paths relative to it, so a glob with a leading \"/\" or a \"..\", \".\" or empty part matches none of them and the run finds no files for the edge"
		}
	}
	return ""
}
