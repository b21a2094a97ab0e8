package spec

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/spec/expr"
)

// lintAfterSteps runs the semantic checks on a parsed config once each step
// has been checked on its own (lintStep, as parsing reads each step):
// references between objects, sockets, cycles, expressions, parameter
// defaults. Each loop stops once the caller gives up (r.stopped).
func lintAfterSteps(r *reporter, cfg *Config) {
	for _, t := range cfg.Tasks {
		if r.stopped() {
			return
		}
		lintTask(r, cfg, t)
	}
	for _, e := range cfg.Endpoints {
		if r.stopped() {
			return
		}
		if len(e.ServerCommand) == 0 && e.WSGI == "" {
			r.errorf(e.Pos, fmt.Sprintf("endpoint %q", e.Name), "an endpoint needs `server-command` or `wsgi`")
		}
	}
	for _, p := range cfg.Pipelines {
		if r.stopped() {
			return
		}
		lintPipeline(r, cfg, p)
	}
	for _, d := range cfg.Deployments {
		lintDeployment(r, d)
	}
}

// lintDeployment gives a deployment's defaults the verdict of Valohai's
// parser, which reads them as Python does: defaults that are empty or false
// (null, {}, [], "", false, 0) and a target that is so (absent, null, "")
// leave the deployment without a target, which Valohai warns about, as it
// cannot create the deployment on its own then; other defaults that are not
// a mapping make it fail. It accepts any other target; sluice warns that a
// target is the name or UUID of a deployment target, so a string.
func lintDeployment(r *reporter, d *Deployment) {
	label := fmt.Sprintf("deployment %q.defaults", d.Name)
	def, target := d.defaults, d.defaults.Get("target")
	switch {
	case def.Truthy() && def.Kind != KindMap:
		r.errorf(def.Pos, label, "expected a mapping such as `defaults: {target: NAME}`, got %s", describeValue(def))
	case !target.Truthy():
		pos := posOf(target, def)
		if pos.Line == 0 {
			pos = d.Pos
		}
		r.warnf(pos, label+".target", "deployment %q has no defaults.target set, which Valohai needs to create the deployment automatically", d.Name)
	case !target.IsString():
		r.warnf(target.Pos, label+".target", "the target is the name or UUID of a deployment target, a string; got %s%s", describeValue(target), quoteHint(tStr, target))
	}
}

// at returns the position of a field's value in an object's source mapping,
// or pos when the field is absent.
func at(raw *Value, pos Pos, key string) Pos {
	if v := raw.Get(key); v != nil && v.Pos.Line > 0 {
		return v.Pos
	}
	return pos
}

func stepLabel(s *Step) string { return fmt.Sprintf("step %q", s.Name) }

func lintStep(r *reporter, s *Step) {
	label := stepLabel(s)
	if strings.TrimSpace(s.Image) == "" {
		r.errorf(s.fields.at(s.Pos, "image"), label+".image", "the image is empty; name a container image such as python:3.12")
	}
	if len(s.Command) == 0 {
		r.warnf(s.fields.at(s.Pos, "command"), label+".command", "the command is empty: the step does nothing")
	}
	if s.RuntimeConfigPreset != "" && s.Environment == "" {
		r.errorf(s.fields.at(s.Pos, "runtime-config-preset"), label+".runtime-config-preset", "missing `environment`: a runtime config preset needs an environment too")
	}
	if s.StopCondition != "" {
		lintExpr(r, s.fields.at(s.Pos, "stop-condition"), label+".stop-condition", "stop-condition", s.StopCondition)
	}
	for i, p := range s.Parameters {
		lintParameter(r, p, fmt.Sprintf("%s.parameters[%d]", label, i))
	}
	for i, in := range s.Inputs {
		lintInput(r, in, fmt.Sprintf("%s.inputs[%d]", label, i))
	}
	lintPlaceholders(r, s, label)
}

func lintInput(r *reporter, in *Input, path string) {
	if in.Filename != "" && (strings.ContainsAny(in.Filename, "/\\") || in.Filename == "." || in.Filename == "..") {
		r.errorf(in.Pos, path+".filename", "filename %q must be a plain file name (no directories, not . or ..)", in.Filename)
	}
	if strings.ContainsAny(in.Name, "/\\") || in.Name == "." || in.Name == ".." || in.Name == "" {
		r.errorf(in.Pos, path+".name", "input name %q cannot be used as a directory name under /valohai/inputs", in.Name)
	}
}

var placeholderRe = regexp.MustCompile(`\{(.+?)\}`)

// lintPlaceholders warns about {parameter:NAME} placeholders that name no parameter
// (they stay in the command as they are).
func lintPlaceholders(r *reporter, s *Step, label string) {
	for _, c := range s.Command {
		// Valohai reads a placeholder from a { to the first }: one inside other
		// braces ({"rows": {parameter-value:rows}}) is never replaced.
		starts := map[int]bool{}
		for _, m := range placeholderRe.FindAllStringIndex(c, -1) {
			starts[m[0]] = true
		}
		for _, word := range []string{"{parameter:", "{parameter-value:", "{parameters}", "{params}", "{source-path}"} {
			for off := 0; ; {
				i := strings.Index(c[off:], word)
				if i < 0 {
					break
				}
				if !starts[off+i] {
					r.warnf(s.fields.at(s.Pos, "command"), label+".command", "%s... follows an unclosed { earlier in the command, so it is not replaced (placeholders run from a { to the first }); move it out of the braces, e.g. into a shell variable", word)
				}
				off += i + len(word)
			}
		}
		for _, m := range placeholderRe.FindAllStringSubmatch(c, -1) {
			for _, prefix := range []string{"parameter:", "parameter-value:"} {
				if name, ok := strings.CutPrefix(m[1], prefix); ok && s.Parameter(name) == nil {
					r.warnf(s.fields.at(s.Pos, "command"), label+".command", "%s names no parameter of this step: it stays in the command as written%s", m[0], didYouMean(name, paramNames(s.Parameters)))
				}
			}
		}
	}
}

// maxSuggest is the most names a "did you mean" looks through: beyond it,
// suggesting would make a finding cost time in proportion to the file.
const maxSuggest = 200

func paramNames(ps []*Parameter) []string {
	if len(ps) > maxSuggest {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

func inputNames(ins []*Input) []string {
	if len(ins) > maxSuggest {
		return nil
	}
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Name
	}
	return out
}

var passAsPlaceholderRe = regexp.MustCompile(`\{[^{}]*\}`)

func lintParameter(r *reporter, p *Parameter, path string) {
	raw := p.raw
	has := func(k string) bool { return raw != nil && raw.Get(k).Truthy() }
	if p.Type == TypeFlag {
		if has("optional") {
			r.warnf(p.Pos, path+".optional", "`optional` has no effect on flag parameters")
		}
		if (has("pass-true-as") || has("pass-false-as")) && has("pass-as") {
			r.warnf(p.Pos, path+".pass-as", "`pass-as` has no effect with `pass-true-as`/`pass-false-as`")
		}
	} else {
		if has("pass-true-as") {
			r.warnf(p.Pos, path+".pass-true-as", "`pass-true-as` has no effect on non-flag parameters")
		}
		if has("pass-false-as") {
			r.warnf(p.Pos, path+".pass-false-as", "`pass-false-as` has no effect on non-flag parameters")
		}
	}
	for _, tmpl := range []struct{ key, val string }{{"pass-as", p.PassAs}, {"pass-true-as", p.PassTrueAs}, {"pass-false-as", p.PassFalseAs}} {
		for _, ph := range passAsPlaceholderRe.FindAllString(tmpl.val, -1) {
			if ph != "{name}" && ph != "{value}" && ph != "{v}" {
				r.errorf(p.Pos, path+"."+tmpl.key, "%s in %q is not a placeholder Valohai fills; use {name}, {value} or {v}", ph, tmpl.val)
			}
		}
		if strings.Count(tmpl.val, "{") != strings.Count(tmpl.val, "}") {
			r.errorf(p.Pos, path+"."+tmpl.key, "unbalanced braces in %q", tmpl.val)
		}
	}
	if p.Multiple == MultipleNone && p.Default != nil && p.Default.Kind == KindList {
		r.errorf(posOf(p.Default, nil), path+".default", "the default is a list, but the parameter takes one value; add `multiple: repeat` or `multiple: separate`, or give a single value")
	}
	if p.Default != nil && (p.Default.Kind == KindMap || p.Default.Kind == KindList && hasNested(p.Default)) {
		r.errorf(posOf(p.Default, nil), path+".default", "a parameter default must be a value or a list of values, not %s", describeValue(p.Default))
	}
	if p.Min != nil && p.Max != nil && p.Min.Number() > p.Max.Number() {
		r.warnf(p.Pos, path, "min %s is greater than max %s: no value is allowed", p.Min.Repr(), p.Max.Repr())
	}
	if p.Default == nil {
		return
	}
	defaults := []*Value{p.Default}
	if p.Default.Kind == KindList {
		defaults = p.Default.Items
	}
	for _, d := range defaults {
		var msgs []string
		switch {
		case p.Default.Truthy():
			msgs = ValidateValue(p, d, true)
		case p.Type == TypeString && d.Kind != KindString:
			// Valohai skips checking false-y defaults, but an unquoted no or
			// off that YAML turned into False is a classic mistake.
			msgs = ValidateValue(p, d, true)[:1]
		}
		for _, msg := range msgs {
			r.warnf(posOf(d, p.Default), path+".default", "default %s", msg)
		}
	}
}

func hasNested(v *Value) bool {
	for _, it := range v.Items {
		if it.Kind == KindList || it.Kind == KindMap {
			return true
		}
	}
	return false
}

// ValidateValue checks one value of a parameter as Valohai does: the type
// (integer and float values are read from their text), min, max and choices.
// It returns what is wrong, or nothing. With strictString, a non-string value
// of a string parameter is reported (YAML may have typed an unquoted value).
func ValidateValue(p *Parameter, v *Value, strictString bool) []string {
	var errs []string
	if p.Type == TypeString && strictString && v.Kind != KindString {
		hint := ""
		if v.Plain {
			hint = fmt.Sprintf(" (YAML reads the unquoted %s as %s; quote it)", v.Text, articleType(v))
		}
		return []string{fmt.Sprintf("%s is not a string%s", v.String(), hint)}
	}
	switch p.Type {
	case TypeInteger:
		if _, ok := pyInt(v.String()); !ok {
			if v.String() == "" {
				errs = append(errs, "has no value")
			} else {
				errs = append(errs, fmt.Sprintf("%s is not an integer", v.String()))
			}
		}
	case TypeFloat:
		if _, ok := pyFloatParse(v.String()); !ok {
			if v.String() == "" {
				errs = append(errs, "has no value")
			} else {
				errs = append(errs, fmt.Sprintf("%s is not a floating-point number", v.String()))
			}
		}
	}
	if p.Min != nil {
		if c, ok := pyCompare(v, p.Min); ok && c < 0 {
			errs = append(errs, fmt.Sprintf("%s is less than the minimum allowed (%s)", v.String(), p.Min.String()))
		}
	}
	if p.Max != nil {
		if c, ok := pyCompare(v, p.Max); ok && c > 0 {
			errs = append(errs, fmt.Sprintf("%s is greater than the maximum allowed (%s)", v.String(), p.Max.String()))
		}
	}
	if p.Choices != nil {
		found := false
		for _, c := range p.Choices {
			if pyEqual(v, c) {
				found = true
				break
			}
		}
		if !found {
			reprs := make([]string, len(p.Choices))
			for i, c := range p.Choices {
				reprs[i] = c.Repr()
			}
			errs = append(errs, fmt.Sprintf("%s is not among the choices allowed ([%s])", v.String(), strings.Join(reprs, ", ")))
		}
	}
	return errs
}

func articleType(v *Value) string {
	t := v.TypeName()
	return article(t) + " " + t
}

// pyInt reads an integer the way Python's int(text, 10) does.
func pyInt(s string) (int64, bool) {
	t := strings.TrimSpace(s)
	if t != "" && (t[0] == '+' || t[0] == '-') {
		t = t[1:]
	}
	if !validUnderscores(t, false) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 10, 64)
	if err != nil {
		// Python ints have no size limit: digits that overflow are still an integer.
		return 0, err.(*strconv.NumError).Err == strconv.ErrRange
	}
	return n, true
}

// pyFloatParse reads a float the way Python's float(text) does.
func pyFloatParse(s string) (float64, bool) {
	t := strings.TrimSpace(s)
	body := strings.TrimLeft(t, "+-")
	if len(t)-len(body) > 1 {
		return 0, false
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		return math.Inf(1), true
	case "nan":
		return math.NaN(), true
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(body), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" && frac == "" {
		return 0, false
	}
	if !validUnderscores(intPart, true) || !validUnderscores(frac, true) {
		return 0, false
	}
	if hasExp {
		e := strings.TrimLeft(exp, "+-")
		if len(exp)-len(e) > 1 || !validUnderscores(e, false) {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(t, "_", ""), 64)
	if err != nil && err.(*strconv.NumError).Err != strconv.ErrRange {
		return 0, false
	}
	return f, true
}

// validUnderscores checks digits with single underscores between them.
func validUnderscores(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	if s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return false
	}
	for _, c := range s {
		if c != '_' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// pyEqual compares like Python's ==, where True == 1 and 1 == 1.0.
func pyEqual(a, b *Value) bool {
	an := a.Kind == KindBool || a.IsNumber()
	bn := b.Kind == KindBool || b.IsNumber()
	if an && bn {
		return a.Number() == b.Number()
	}
	return a.Equal(b)
}

// pyCompare orders two values like Python's <, reporting false where Python
// raises TypeError (a string against a number).
func pyCompare(a, b *Value) (int, bool) {
	an := a.Kind == KindBool || a.IsNumber()
	bn := b.Kind == KindBool || b.IsNumber()
	switch {
	case an && bn:
		x, y := a.Number(), b.Number()
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case a.Kind == KindString && b.Kind == KindString:
		return strings.Compare(a.Str, b.Str), true
	}
	return 0, false
}

func lintExpr(r *reporter, pos Pos, path, field, src string) {
	if err := expr.Check(src); err != nil {
		r.errorf(pos, path, "`%s` is not a valid expression: %s", field, err)
	}
}

func taskLabel(t *Task) string { return fmt.Sprintf("task %q", t.Name) }

// ruleKeys lists the rules each variant style needs to produce values.
var ruleKeys = map[string][]string{
	"linear":   {"start", "end", "step"},
	"logspace": {"start", "end", "count"},
	"multiple": {"items"},
	"random":   {"min", "max", "count"},
	"single":   {"value"},
}

func lintTask(r *reporter, cfg *Config, t *Task) {
	label := taskLabel(t)
	if t.StopCondition != "" {
		lintExpr(r, at(t.raw, t.Pos, "stop-condition"), label+".stop-condition", "stop-condition", t.StopCondition)
	}
	if len(t.ParameterSets) > 0 && t.Type != "manual_search" {
		r.warnf(at(t.raw, t.Pos, "parameter-sets"), label+".parameter-sets", "parameter sets only make sense with type manual_search (this task is %s)", t.Type)
	}
	if t.Type != "bayesian_tpe" {
		if t.Engine != "" {
			r.warnf(at(t.raw, t.Pos, "engine"), label+".engine", "engine only makes sense for bayesian_tpe tasks")
		}
		if t.OptimizationTargetMetric != "" {
			r.warnf(at(t.raw, t.Pos, "optimization-target-metric"), label+".optimization-target-metric", "optimization-target-metric only makes sense for bayesian_tpe tasks")
		}
		if t.OptimizationTargetValue != nil {
			r.warnf(at(t.raw, t.Pos, "optimization-target-value"), label+".optimization-target-value", "optimization-target-value only makes sense for bayesian_tpe tasks")
		}
	}
	step := cfg.Step(t.Step)
	if step == nil {
		// Valohai's linter does not check this; running the task fails.
		r.warnf(at(t.raw, t.Pos, "step"), label+".step", "step %q does not exist, so this task cannot run%s", t.Step, didYouMean(t.Step, stepNames(cfg)))
	}
	for i, vp := range t.Parameters {
		path := fmt.Sprintf("%s.parameters[%d]", label, i)
		if step != nil && step.Parameter(vp.Name) == nil {
			r.warnf(at(vp.raw, vp.Pos, "name"), path+".name", "step %q has no parameter %q%s", step.Name, vp.Name, didYouMean(vp.Name, paramNames(step.Parameters)))
		}
		for _, k := range ruleKeys[vp.Style] {
			if !vp.Rules.Has(k) {
				r.errorf(at(vp.raw, vp.Pos, "rules"), path+".rules", "style %s needs the rule `%s` (it uses %s)", vp.Style, k, quoteList(ruleKeys[vp.Style]))
			}
		}
	}
}

func stepNames(cfg *Config) []string {
	if len(cfg.Steps) > maxSuggest {
		return nil
	}
	out := make([]string, len(cfg.Steps))
	for i, s := range cfg.Steps {
		out[i] = s.Name
	}
	return out
}

func nodeNames(p *Pipeline) []string {
	if len(p.Nodes) > maxSuggest {
		return nil
	}
	out := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		out[i] = n.Name
	}
	return out
}

// edgePairs lists the socket types an edge may connect.
var edgePairs = map[string][]string{
	SocketOutput:     {SocketInput, SocketFile},
	SocketInput:      {SocketInput},
	SocketParameter:  {SocketParameter},
	SocketMetadata:   {SocketParameter},
	SocketEnvVar:     {SocketEnvVar},
	SocketDependency: {SocketDependency},
	SocketDeployment: {SocketParameter},
	SocketFile:       {SocketFile},
}

var socketTypes = []string{SocketOutput, SocketInput, SocketParameter, SocketMetadata, SocketEnvVar, SocketFile, SocketDependency, SocketDeployment}

// parameterTarget reads the socket type of a pipeline parameter's target as
// Valohai does: every type that starts with "parameter" names the node's
// parameter (valohai-cli writes NODE.parameters.NAME), so the socket comes
// back as NODE.parameter.NAME for the plan and the run. Spellings other than
// the singular and the plural are accepted with a warning. Edges are not
// read this way: their socket types must be spelt exactly.
func (b *builder) parameterTarget(v *Value, s Socket, path string) Socket {
	if s.Type == SocketParameter || !strings.HasPrefix(s.Type, SocketParameter) {
		return s
	}
	if s.Type != SocketParameter+"s" {
		b.r.warnf(v.Pos, path, "target %q: Valohai reads the socket type %q as %q; write %s.%s.%s", v.Str, s.Type, SocketParameter, s.Node, SocketParameter, s.Key)
	}
	s.Type = SocketParameter
	return s
}

// NodeStep returns the step a node runs (through its task blueprint for task
// nodes), or nil for deployment nodes and unknown steps.
func (c *Config) NodeStep(n *Node) *Step {
	if n.Commit != "" {
		return nil // a step of another commit: not in this file
	}
	switch n.Type {
	case NodeExecution:
		return c.Step(n.Step)
	case NodeTask:
		if n.Task != "" {
			if t := c.Task(n.Task); t != nil {
				return c.Step(t.Step)
			}
			return nil
		}
		return c.Step(n.Step)
	}
	return nil
}

func lintPipeline(r *reporter, cfg *Config, p *Pipeline) {
	label := fmt.Sprintf("pipeline %q", p.Name)
	if len(p.Nodes) == 0 {
		r.warnf(p.Pos, label+".nodes", "the pipeline has no nodes")
	}
	seen := map[string]int{}
	for i, n := range p.Nodes {
		if r.stopped() {
			return
		}
		path := fmt.Sprintf("%s.nodes[%d]", label, i)
		if j, dup := seen[n.Name]; dup {
			r.errorf(n.fields.at(n.Pos, "name"), path+".name", "node name %q is already used by nodes[%d]; node names must be unique", n.Name, j)
		} else {
			seen[n.Name] = i
		}
		if strings.Contains(n.Name, ".") {
			r.errorf(n.fields.at(n.Pos, "name"), path+".name", "node name %q contains a dot; edges address nodes as NODE.TYPE.KEY, so node names cannot contain dots", n.Name)
		}
		if n.Name == "" {
			r.errorf(n.fields.at(n.Pos, "name"), path+".name", "the node name is empty")
		}
		lintNode(r, cfg, p, n, path)
	}
	for i, e := range p.Edges {
		if r.stopped() {
			return
		}
		lintEdge(r, cfg, p, e, fmt.Sprintf("%s.edges[%d]", label, i))
	}
	for i, pp := range p.Parameters {
		path := fmt.Sprintf("%s.parameters[%d]", label, i)
		if len(pp.Targets) == 0 {
			r.warnf(pp.Pos, path, "pipeline parameter %q has no targets: it sets nothing", pp.Name)
		}
		for j, t := range pp.Targets {
			pos, text := pp.Pos, t.String()
			if j < len(pp.targetSrc) {
				pos, text = pp.targetSrc[j].Pos, pp.targetSrc[j].Str
			}
			if t.Type != SocketParameter {
				r.errorf(pos, path+".targets", "target %q: a pipeline parameter can only set node parameters (NODE.parameter.NAME), not %s", text, t.Type)
				continue
			}
			n := p.Node(t.Node)
			if n == nil {
				r.errorf(pos, path+".targets", "target %q: node %q does not exist%s", text, t.Node, didYouMean(t.Node, nodeNames(p)))
				continue
			}
			s := cfg.NodeStep(n)
			switch {
			case s == nil || s.Parameter(t.Key) != nil:
			case n.Type == NodeTask:
				// Valohai checks the targets of execution nodes only, so
				// it accepts the file; the value has nothing to set.
				r.warnf(pos, path+".targets", "target %q: step %q of task node %q has no parameter %q, so the target sets nothing%s", text, s.Name, n.Name, t.Key, didYouMean(t.Key, paramNames(s.Parameters)))
			default:
				r.errorf(pos, path+".targets", "target %q: step %q has no parameter %q%s", text, s.Name, t.Key, didYouMean(t.Key, paramNames(s.Parameters)))
			}
		}
	}
	if r.errors == 0 {
		if _, err := p.Graph(); err != nil {
			r.errorf(p.Pos, label+".edges", "%s", err)
		}
	}
}

var actionWhen = []string{"node-starting", "node-complete", "node-error"}
var actionThen = []string{"stop-pipeline", "error-pipeline", "noop", "require-approval"}

func lintNode(r *reporter, cfg *Config, p *Pipeline, n *Node, path string) {
	prefix := fmt.Sprintf("node %q", n.Name)
	var step *Step
	if n.Commit != "" && n.Type != NodeDeployment {
		r.warnf(n.fields.at(n.Pos, "commit"), path+".commit", "%s runs a step of commit %q; sluice runs the steps of the checked-out files only and cannot check or run this node", prefix, n.Commit)
		return
	}
	switch n.Type {
	case NodeExecution:
		step = cfg.Step(n.Step)
		if step == nil {
			r.errorf(n.fields.at(n.Pos, "step"), path+".step", "%s: step %q does not exist%s", prefix, n.Step, didYouMean(n.Step, stepNames(cfg)))
		}
	case NodeTask:
		if n.Task != "" {
			t := cfg.Task(n.Task)
			if t == nil {
				r.errorf(n.fields.at(n.Pos, "task"), path+".task", "%s: task %q does not exist", prefix, n.Task)
			} else if step = cfg.Step(t.Step); step == nil {
				r.errorf(n.fields.at(n.Pos, "task"), path+".task", "%s: the step %q of task %q does not exist", prefix, t.Step, n.Task)
			}
		} else if step = cfg.Step(n.Step); step == nil {
			r.errorf(n.fields.at(n.Pos, "step"), path+".step", "%s: step %q does not exist%s", prefix, n.Step, didYouMean(n.Step, stepNames(cfg)))
		}
	case NodeDeployment:
		for _, e := range n.Endpoints {
			if cfg.Endpoint(e) == nil {
				r.warnf(n.fields.at(n.Pos, "endpoints"), path+".endpoints", "%s: endpoint %q is not defined in this file", prefix, e)
			}
		}
	}
	if o := n.Override; o != nil && step != nil {
		for i, in := range o.Inputs {
			if step.Input(in.Name) == nil {
				r.errorf(in.Pos, fmt.Sprintf("%s.override.inputs[%d]", path, i), "%s: input %q does not exist in step %q%s", prefix, in.Name, step.Name, didYouMean(in.Name, inputNames(step.Inputs)))
			}
		}
		for i, pr := range o.Parameters {
			if step.Parameter(pr.Name) == nil {
				r.errorf(pr.Pos, fmt.Sprintf("%s.override.parameters[%d]", path, i), "%s: parameter %q does not exist in step %q%s", prefix, pr.Name, step.Name, didYouMean(pr.Name, paramNames(step.Parameters)))
			}
		}
	}
	if o := n.Override; o != nil {
		if o.RuntimeConfigPreset != "" && o.Environment == "" {
			r.errorf(at(o.raw, o.Pos, "runtime-config-preset"), path+".override.runtime-config-preset", "%s: missing `environment`: an override that sets a runtime config preset must set the environment too", prefix)
		}
		for i, pr := range o.Parameters {
			if m := overrideParam(step, pr); m != nil {
				lintParameter(r, m, fmt.Sprintf("%s.override.parameters[%d]", path, i))
			}
		}
	}
	for i, a := range n.Actions {
		apath := fmt.Sprintf("%s.actions[%d]", path, i)
		for _, w := range a.When {
			if !containsStr(actionWhen, w) {
				r.errorf(at(a.raw, a.Pos, "when"), apath+".when", "%q is not an event; use one of: %s%s", w, strings.Join(actionWhen, ", "), didYouMean(w, actionWhen))
			}
		}
		for _, t := range a.Then {
			if !containsStr(actionThen, t) {
				r.errorf(at(a.raw, a.Pos, "then"), apath+".then", "%q is not an action; use one of: %s%s", t, strings.Join(actionThen, ", "), didYouMean(t, actionThen))
			}
		}
		for _, cond := range a.If {
			lintExpr(r, at(a.raw, a.Pos, "if"), apath+".if", "if", cond)
		}
	}
}

// overrideParam returns an override's parameter merged into the step's of
// the same name, which is what the node runs with: a field the override does
// not set, its type above all, is the step's. It returns nil when there is no
// such step parameter (that is reported on its own). The result keeps the override's
// own fields for the checks of what it sets; it has no default to check when
// the override changes nothing its default is checked against (the step's
// own checks cover that).
func overrideParam(step *Step, pr *Parameter) *Parameter {
	if step == nil {
		return nil
	}
	bp := step.Parameter(pr.Name)
	if bp == nil {
		return nil
	}
	m := mergeParam(bp, pr)
	m.raw, m.Pos = pr.raw, pr.Pos
	touches := false
	for _, k := range []string{"default", "type", "min", "max", "choices", "multiple"} {
		touches = touches || pr.raw.Has(k)
	}
	if !touches {
		m.Default = nil
	}
	return m
}

func lintEdge(r *reporter, cfg *Config, p *Pipeline, e *Edge, path string) {
	desc := e.Source.String() + " -> " + e.Target.String()
	ok := true
	for _, s := range []struct {
		sock Socket
		what string
	}{{e.Source, "source"}, {e.Target, "target"}} {
		if p.Node(s.sock.Node) == nil {
			r.errorf(e.Pos, path, "edge %s: %s node %q does not exist%s", desc, s.what, s.sock.Node, didYouMean(s.sock.Node, nodeNames(p)))
			ok = false
		}
		if !containsStr(socketTypes, s.sock.Type) {
			r.errorf(e.Pos, path, "edge %s: %q is not a socket type; use one of: %s%s", desc, s.sock.Type, strings.Join(socketTypes, ", "), didYouMean(s.sock.Type, socketTypes))
			ok = false
		}
	}
	if !ok {
		return
	}
	if !containsStr(edgePairs[e.Source.Type], e.Target.Type) {
		var valid []string
		for _, src := range socketTypes {
			for _, t := range edgePairs[src] {
				valid = append(valid, src+" -> "+t)
			}
		}
		r.errorf(e.Pos, path, "edge %s: an edge cannot connect %s to %s; valid pairs: %s", desc, e.Source.Type, e.Target.Type, strings.Join(valid, ", "))
		return
	}
	src, tgt := p.Node(e.Source.Node), p.Node(e.Target.Node)
	srcStep, tgtStep := cfg.NodeStep(src), cfg.NodeStep(tgt)
	switch e.Target.Type {
	case SocketInput:
		if tgt.Type == NodeDeployment {
			r.errorf(e.Pos, path, "edge %s: node %q is a deployment node; it takes files (NODE.file.ENDPOINT.FILE), not inputs", desc, tgt.Name)
		} else if tgtStep != nil && tgtStep.Input(e.Target.Key) == nil {
			r.warnf(e.Pos, path, "edge %s: step %q of node %q declares no input %q%s", desc, tgtStep.Name, tgt.Name, e.Target.Key, didYouMean(e.Target.Key, inputNames(tgtStep.Inputs)))
		}
	case SocketParameter:
		if tgtStep != nil && tgtStep.Parameter(e.Target.Key) == nil {
			r.warnf(e.Pos, path, "edge %s: step %q of node %q declares no parameter %q%s", desc, tgtStep.Name, tgt.Name, e.Target.Key, didYouMean(e.Target.Key, paramNames(tgtStep.Parameters)))
		}
	case SocketFile:
		if tgt.Type != NodeDeployment {
			r.errorf(e.Pos, path, "edge %s: only deployment nodes take files; node %q is an %s node", desc, tgt.Name, tgt.Type)
		}
	}
	if e.Source.Type == SocketParameter && srcStep != nil && srcStep.Parameter(e.Source.Key) == nil {
		r.warnf(e.Pos, path, "edge %s: step %q of node %q declares no parameter %q%s", desc, srcStep.Name, src.Name, e.Source.Key, didYouMean(e.Source.Key, paramNames(srcStep.Parameters)))
	}
	if e.Source.Type == SocketDeployment && src.Type != NodeDeployment {
		r.errorf(e.Pos, path, "edge %s: node %q is not a deployment node", desc, src.Name)
	}
}
