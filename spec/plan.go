package spec

import (
	"context"
	"fmt"
	"strings"
)

// NodePlan is what one pipeline node will run: its step with the node's
// override applied, the parameter values known before the run, the rendered
// command, and where each input's files come from.
type NodePlan struct {
	Node  *Node
	Step  *Step // the step with the override applied; nil for deployment nodes and steps of other commits
	Image string
	// Command holds the rendered command items, and Script the shell script they join into.
	Command []string
	Script  string
	// Params holds the values known before the run: defaults (flags too), the
	// override's defaults, pipeline parameters and values given by the caller.
	Params map[string]*Value
	// ParamEdges names the parameters an edge sets at run time, with the source socket.
	ParamEdges map[string][]Socket
	Inputs     []InputPlan
	EnvEdges   map[string][]Socket
}

// InputPlan says where the files of one input come from.
type InputPlan struct {
	Name string
	// Defaults are the URLs or paths from the step (kept or replaced by edges per edge-merge-mode).
	Defaults []string
	// Edges are the sockets that feed this input.
	Edges    []Socket
	Optional bool
}

// Sources lists the input's sources for people: edge sockets first, then defaults.
func (ip InputPlan) Sources() []string {
	var out []string
	for _, e := range ip.Edges {
		out = append(out, e.String())
	}
	return append(out, ip.Defaults...)
}

// EffectiveStep returns the node's step with its override applied, or nil.
func (c *Config) EffectiveStep(n *Node) *Step {
	base := c.NodeStep(n)
	if base == nil {
		return nil
	}
	o := n.Override
	if o == nil {
		return base
	}
	s := *base
	if o.Image != "" {
		s.Image = o.Image
	}
	if len(o.Command) > 0 {
		s.Command = o.Command
	}
	if o.Environment != "" {
		s.Environment = o.Environment
	}
	if o.RuntimeConfigPreset != "" {
		s.RuntimeConfigPreset = o.RuntimeConfigPreset
	}
	s.Parameters = mergeParams(base.Parameters, o.Parameters)
	s.Inputs = mergeInputs(base.Inputs, o.Inputs)
	s.EnvVars = mergeEnvVars(base.EnvVars, o.EnvVars)
	if len(o.Mounts) > 0 {
		s.Mounts = append(append([]*Mount(nil), base.Mounts...), o.Mounts...)
	}
	return &s
}

// mergeParams lays override parameters over the step's: the fields an override
// sets replace the step's, the others stay.
func mergeParams(base, over []*Parameter) []*Parameter {
	out := append([]*Parameter(nil), base...)
	at := indexNames(out, func(p *Parameter) string { return p.Name })
	for _, op := range over {
		if i, ok := at[op.Name]; ok {
			out[i] = mergeParam(out[i], op)
			continue
		}
		at[op.Name] = len(out)
		out = append(out, op)
	}
	return out
}

// indexNames maps each name to the place of its first item.
func indexNames[T any](items []T, name func(T) string) map[string]int {
	at := make(map[string]int, len(items))
	for i := len(items) - 1; i >= 0; i-- {
		at[name(items[i])] = i
	}
	return at
}

// mergeParam returns step parameter bp with the fields override parameter
// op sets.
func mergeParam(bp, op *Parameter) *Parameter {
	m := *bp
	if op.raw == nil {
		return &m
	}
	for _, pr := range op.raw.Pairs {
		switch pr.Key.String() {
		case "default":
			m.Default = op.Default
		case "type":
			m.Type = op.Type
		case "optional":
			m.Optional = op.Optional
		case "min":
			m.Min = op.Min
		case "max":
			m.Max = op.Max
		case "choices":
			m.Choices = op.Choices
		case "multiple":
			m.Multiple = op.Multiple
		case "multiple-separator":
			m.Separator = op.Separator
		case "pass-as":
			m.PassAs = op.PassAs
		case "pass-true-as":
			m.PassTrueAs = op.PassTrueAs
		case "pass-false-as":
			m.PassFalseAs = op.PassFalseAs
		case "description":
			m.Description = op.Description
		}
	}
	return &m
}

func mergeInputs(base, over []*Input) []*Input {
	out := append([]*Input(nil), base...)
	at := indexNames(out, func(in *Input) string { return in.Name })
	for _, oi := range over {
		i, ok := at[oi.Name]
		if !ok {
			at[oi.Name] = len(out)
			out = append(out, oi)
			continue
		}
		bi := out[i]
		m := *bi
		if oi.Default != nil {
			m.Default = oi.Default
		}
		if oi.Filename != "" {
			m.Filename = oi.Filename
		}
		if oi.Description != "" {
			m.Description = oi.Description
		}
		m.Optional = oi.Optional || bi.Optional
		out[i] = &m
	}
	return out
}

func mergeEnvVars(base, over []*EnvVar) []*EnvVar {
	out := append([]*EnvVar(nil), base...)
	at := indexNames(out, func(e *EnvVar) string { return e.Name })
	for _, oe := range over {
		if i, ok := at[oe.Name]; ok {
			out[i] = oe
			continue
		}
		at[oe.Name] = len(out)
		out = append(out, oe)
	}
	return out
}

// Plan resolves every node of a pipeline before it runs. values holds
// pipeline parameter values given by the caller (they replace the pipeline
// parameters' defaults).
func (c *Config) Plan(p *Pipeline, values map[string]*Value) ([]*NodePlan, error) {
	return c.PlanContext(context.Background(), p, values)
}

// PlanContext is Plan that gives up with ctx's error once ctx is done.
func (c *Config) PlanContext(ctx context.Context, p *Pipeline, values map[string]*Value) ([]*NodePlan, error) {
	declared := make(map[string]bool, len(p.Parameters))
	for _, pp := range p.Parameters {
		declared[pp.Name] = true
	}
	for name := range values {
		if !declared[name] {
			var names []string
			for _, pp := range p.Parameters {
				names = append(names, pp.Name)
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("pipeline %q has no parameters, so %q cannot be set", p.Name, name)
			}
			return nil, fmt.Errorf("pipeline %q has no parameter %q; its parameters: %s", p.Name, name, strings.Join(names, ", "))
		}
	}
	plans := make([]*NodePlan, 0, len(p.Nodes))
	byName := make(map[string]*NodePlan, len(p.Nodes))
	for _, n := range p.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		np := &NodePlan{Node: n, Params: map[string]*Value{}, ParamEdges: map[string][]Socket{}, EnvEdges: map[string][]Socket{}}
		if s := c.EffectiveStep(n); s != nil {
			np.Step, np.Image = s, s.Image
			for _, prm := range s.Parameters {
				if prm.Default != nil {
					np.Params[prm.Name] = prm.Default
				}
			}
		}
		plans = append(plans, np)
		byName[n.Name] = np
	}
	for _, pp := range p.Parameters {
		v := pp.Default
		if given, ok := values[pp.Name]; ok {
			v = given
		}
		if v.IsNull() {
			continue
		}
		for _, t := range pp.Targets {
			// A target naming a parameter the node's step does not have
			// sets nothing (lint warns about it on task nodes).
			if np := byName[t.Node]; np != nil && (np.Step == nil || np.Step.Parameter(t.Key) != nil) {
				np.Params[t.Key] = v
			}
		}
	}
	edgesTo := map[string][]*Edge{}
	for _, e := range p.Edges {
		edgesTo[e.Target.Node] = append(edgesTo[e.Target.Node], e)
	}
	for _, np := range plans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		inputEdges := map[string][]Socket{}
		for _, e := range edgesTo[np.Node.Name] {
			switch e.Target.Type {
			case SocketParameter:
				np.ParamEdges[e.Target.Key] = append(np.ParamEdges[e.Target.Key], e.Source)
			case SocketEnvVar:
				np.EnvEdges[e.Target.Key] = append(np.EnvEdges[e.Target.Key], e.Source)
			case SocketInput:
				inputEdges[e.Target.Key] = append(inputEdges[e.Target.Key], e.Source)
			}
		}
		if np.Step == nil {
			continue
		}
		for _, in := range np.Step.Inputs {
			ip := InputPlan{Name: in.Name, Defaults: in.Default, Optional: in.Optional, Edges: inputEdges[in.Name]}
			if len(ip.Edges) > 0 && np.Node.EdgeMergeMode != "append" {
				ip.Defaults = nil
			}
			np.Inputs = append(np.Inputs, ip)
		}
		cmd, err := np.Step.BuildCommand(np.Params)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", np.Node.Name, err)
		}
		np.Command, np.Script = cmd, JoinCommand(cmd)
	}
	return plans, nil
}
