package spec

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/internal/printable"
)

// PipelinePlan is a pipeline resolved for display: its layers and the plan of each node.
type PipelinePlan struct {
	Pipeline *Pipeline
	Graph    *Graph
	Nodes    map[string]*NodePlan
	// Sluice is the sluice.yaml beside the pipeline file, nil when there is
	// none; it says where each node runs.
	Sluice *SluiceConfig
	config *Config
}

// NewPipelinePlan resolves a pipeline for display (see Config.Plan).
func (c *Config) NewPipelinePlan(p *Pipeline, values map[string]*Value) (*PipelinePlan, error) {
	return c.NewPipelinePlanContext(context.Background(), p, values)
}

// NewPipelinePlanContext is NewPipelinePlan that gives up with ctx's error
// once ctx is done.
func (c *Config) NewPipelinePlanContext(ctx context.Context, p *Pipeline, values map[string]*Value) (*PipelinePlan, error) {
	g, err := p.Graph()
	if err != nil {
		return nil, err
	}
	plans, err := c.PlanContext(ctx, p, values)
	if err != nil {
		return nil, err
	}
	pp := &PipelinePlan{Pipeline: p, Graph: g, Nodes: make(map[string]*NodePlan, len(plans)), config: c}
	for _, np := range plans {
		pp.Nodes[np.Node.Name] = np
	}
	return pp, nil
}

// SingleStep wraps one step as a one-node pipeline named after it, with a
// pipeline parameter for each of the step's parameters, so that values given
// for the run (-p) set them.
func SingleStep(s *Step) *Pipeline {
	p := &Pipeline{Name: s.Name, Nodes: []*Node{{Name: s.Name, Type: NodeExecution, Step: s.Name,
		OnError: OnErrorStopAll, EdgeMergeMode: defaultEdgeMerge, Pos: s.Pos}}, Pos: s.Pos}
	for _, prm := range s.Parameters {
		p.Parameters = append(p.Parameters, &PipelineParameter{Name: prm.Name,
			Targets: []Socket{{Node: s.Name, Type: SocketParameter, Key: prm.Name}}, Pos: prm.Pos})
	}
	p.Index()
	return p
}

// SingleTask wraps a task as a one-node pipeline named after it.
func SingleTask(t *Task) *Pipeline {
	p := &Pipeline{Name: t.Name, Nodes: []*Node{{Name: t.Name, Type: NodeTask, Task: t.Name,
		OnError: OnErrorStopAll, EdgeMergeMode: defaultEdgeMerge, Pos: t.Pos}}, Pos: t.Pos}
	p.Index()
	return p
}

// WriteText prints the plan for people: layer by layer, each node with its
// step, image, command and inputs.
func (pp *PipelinePlan) WriteText(w io.Writer) error {
	p := pp.Pipeline
	layers := pp.Graph.Layers()
	ew := &errWriter{w: w}
	ew.printf("pipeline %q: %d nodes, %d edges, %d layers\n", p.Name, len(p.Nodes), len(p.Edges), len(layers))
	for i, layer := range layers {
		ew.printf("\nlayer %d\n", i+1)
		for _, n := range layer {
			np := pp.Nodes[n.Name]
			switch {
			case n.Type == NodeDeployment:
				ew.printf("  %s  (deployment %q, endpoints %s)\n", n.Name, n.Deployment, strings.Join(n.Endpoints, ", "))
			case np.Step == nil:
				ew.printf("  %s  (%s, step %q of commit %q: not run by sluice)\n", n.Name, n.Type, n.Step, n.Commit)
			default:
				what := fmt.Sprintf("step %q", np.Step.Name)
				if n.Task != "" {
					what = fmt.Sprintf("task %q of step %q", n.Task, np.Step.Name)
				}
				ew.printf("  %s  (%s, %s)\n", n.Name, n.Type, what)
				if t := pp.task(n); t != nil {
					if vs, err := t.Variants(); err != nil {
						ew.printf("    variants: %v\n", err)
					} else {
						ew.printf("    variants: %d (%s)\n", len(vs), variantList(vs, 6))
					}
				}
				ew.printf("    runs on: %s\n", pp.whereText(np))
				ew.printf("    image:   %s\n", np.Image)
				ew.printf("    command: %s\n", verbatim(indentLines(safeLines(np.Script), "             ")))
				for _, in := range np.Inputs {
					src := strings.Join(in.Sources(), ", ")
					if src == "" {
						src = "(none)"
					}
					ew.printf("    input %s <- %s\n", in.Name, src)
				}
				for _, name := range slices.Sorted(maps.Keys(np.ParamEdges)) {
					var srcs []string
					for _, s := range np.ParamEdges[name] {
						srcs = append(srcs, s.String())
					}
					ew.printf("    parameter %s <- %s (at run time)\n", name, strings.Join(srcs, ", "))
				}
			}
			if deps := pp.Graph.Deps(n.Name); len(deps) > 0 {
				names := make([]string, len(deps))
				for i, d := range deps {
					names[i] = d.Name
				}
				ew.printf("    after:   %s\n", strings.Join(names, ", "))
			}
		}
	}
	return ew.err
}

// task returns the task blueprint of a task node, or nil.
func (pp *PipelinePlan) task(n *Node) *Task {
	if n.Type != NodeTask || n.Task == "" || pp.config == nil {
		return nil
	}
	return pp.config.Task(n.Task)
}

func variantList(vs []Variant, max int) string {
	var parts []string
	for i, v := range vs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(vs)-max))
			break
		}
		parts = append(parts, v.Label())
	}
	return strings.Join(parts, "; ")
}

func indentLines(s, indent string) string {
	return strings.ReplaceAll(s, "\n", "\n"+indent)
}

// JSON returns the plan as plain data for machines.
func (pp *PipelinePlan) JSON() map[string]any {
	var layers [][]map[string]any
	for _, layer := range pp.Graph.Layers() {
		var out []map[string]any
		for _, n := range layer {
			np := pp.Nodes[n.Name]
			m := map[string]any{"name": n.Name, "type": n.Type, "on_error": n.OnError}
			deps := []string{}
			for _, d := range pp.Graph.Deps(n.Name) {
				deps = append(deps, d.Name)
			}
			m["after"] = deps
			if n.Task != "" {
				m["task"] = n.Task
			}
			if n.Type == NodeDeployment {
				m["deployment"], m["endpoints"] = n.Deployment, n.Endpoints
			}
			if np.Step != nil {
				m["step"], m["image"], m["command"], m["script"] = np.Step.Name, np.Image, np.Command, np.Script
				slug, env := pp.Where(np)
				m["environment"], m["backend"], m["mapped"] = slug, BackendDocker, env != nil
				if env != nil {
					m["backend"] = env.Backend
					if env.MaxParallel > 0 {
						m["max_parallel"] = env.MaxParallel
					}
				}
				params := map[string]any{}
				for k, v := range np.Params {
					params[k] = v.Interface()
				}
				m["parameters"] = params
				inputs := []map[string]any{}
				for _, in := range np.Inputs {
					inputs = append(inputs, map[string]any{"name": in.Name, "sources": nonNil(in.Sources())})
				}
				m["inputs"] = inputs
			}
			out = append(out, m)
		}
		layers = append(layers, out)
	}
	edges := []map[string]string{}
	for _, e := range pp.Pipeline.Edges {
		edges = append(edges, map[string]string{"source": e.Source.String(), "target": e.Target.String()})
	}
	return map[string]any{"pipeline": pp.Pipeline.Name, "layers": layers, "edges": edges}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Mermaid renders the pipeline as a Mermaid flowchart. label, when not nil,
// gives extra text for a node's box (a status, a duration).
func (p *Pipeline) Mermaid(label func(*Node) string) string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := make(map[string]string, len(p.Nodes))
	for i, n := range p.Nodes {
		id := fmt.Sprintf("n%d", i)
		ids[n.Name] = id
		text := mermaidEscape(n.Name)
		if n.Step != "" && n.Step != n.Name {
			text += "<br/><small>" + mermaidEscape(n.Step) + "</small>"
		}
		if label != nil {
			if extra := label(n); extra != "" {
				text += "<br/>" + mermaidEscape(extra)
			}
		}
		shape := `["%s"]`
		if n.Type == NodeDeployment {
			shape = `[/"%s"/]`
		} else if n.Type == NodeTask {
			shape = `[["%s"]]`
		}
		fmt.Fprintf(&b, "  %s"+shape+"\n", id, text)
	}
	for _, e := range p.Edges {
		s, okS := ids[e.Source.Node]
		t, okT := ids[e.Target.Node]
		if !okS || !okT {
			continue
		}
		if e.Source.Type == SocketDependency {
			fmt.Fprintf(&b, "  %s -.-> %s\n", s, t)
			continue
		}
		fmt.Fprintf(&b, "  %s -->|\"%s\"| %s\n", s, mermaidEscape(e.Source.Type+" "+e.Source.Key+" → "+e.Target.Type+" "+e.Target.Key), t)
	}
	return b.String()
}

// mermaidEscape makes text safe inside a quoted Mermaid label.
func mermaidEscape(s string) string {
	s = printable.Name(s)
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ", "|", "#124;", "`", "#96;")
	return r.Replace(s)
}

type errWriter struct {
	w   io.Writer
	err error
}

// printf writes a line of the plan. Strings with control characters in
// args print quoted (see safeArgs); a verbatim arg prints as it is.
func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, safeArgs(args)...)
	}
}

// verbatim is text that printf prints as it is: it is already safe.
type verbatim string

// safeLines is printable.Line for each line of s.
func safeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = printable.Line(l)
	}
	return strings.Join(lines, "\n")
}

// Where says where a node runs: the Valohai environment slug that applies
// and its entry in sluice.yaml's environments, nil when the node runs on the
// local Docker host (see SluiceConfig.EnvironmentOf).
func (pp *PipelinePlan) Where(np *NodePlan) (string, *Environment) {
	if np.Step == nil {
		return "", nil
	}
	return pp.Sluice.EnvironmentOf(np.Step.Name, np.Step.Environment)
}

// whereText says where a node runs, for people.
func (pp *PipelinePlan) whereText(np *NodePlan) string {
	slug, env := pp.Where(np)
	switch {
	case env != nil:
		s := fmt.Sprintf("%s (environment %q", env.Backend, slug)
		switch env.Backend {
		case BackendBatch:
			s += ", " + env.Batch.Describe()
		case BackendKubernetes:
			s += ", " + env.Kube.Describe()
		}
		if env.MaxParallel > 0 {
			s += fmt.Sprintf(", at most %d at once", env.MaxParallel)
		}
		return s + ")"
	case slug != "":
		return fmt.Sprintf("local docker (environment %q is not in sluice.yaml)", slug)
	}
	return "local docker"
}

// Mermaid renders the plan's pipeline as a Mermaid flowchart whose boxes
// say where each node runs: the environment and its backend, or local docker.
func (pp *PipelinePlan) Mermaid() string {
	return pp.Pipeline.Mermaid(func(n *Node) string {
		np := pp.Nodes[n.Name]
		if np == nil || np.Step == nil {
			return ""
		}
		if slug, env := pp.Where(np); env != nil {
			return slug + " (" + env.Backend + ")"
		}
		return "local docker"
	})
}
