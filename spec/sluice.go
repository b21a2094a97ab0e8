package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// SluiceConfig is sluice.yaml: what valohai.yaml cannot say. It sits beside
// valohai.yaml and is optional; every key is optional.
type SluiceConfig struct {
	File string
	// Steps holds per-step settings by step name.
	Steps map[string]StepConfig
	// Gates are the metric thresholds, in file order.
	Gates []Gate
	// Report holds the report's options.
	Report ReportConfig
	// Environments maps Valohai environment slugs to where their steps run.
	Environments map[string]*Environment
	// DefaultEnvironment is the slug of the steps that name no environment;
	// empty means the local Docker host.
	DefaultEnvironment string
	// MaxCost caps a run's estimated cloud cost in USD (elapsed VM time x
	// each environment's hourly-price): crossing it cancels the run. Nil
	// means no cap.
	MaxCost *float64
}

// ReportConfig is sluice.yaml's `report:` section:
//
//	report:
//	  series: [train.loss]             # metric series drawn as charts (node.key)
//	  approval-label: sluice/approved  # the label that approves a require-approval action
//	  links: signed                    # artifact links: console (default), signed or none
//	  signed-url-hours: 24             # how long signed links work (at most 168)
type ReportConfig struct {
	Series        []string
	ApprovalLabel string
	Links         string
	// SignedURLHours is how long a signed link stays valid.
	SignedURLHours float64
}

// Report defaults.
const (
	DefaultApprovalLabel  = "sluice/approved"
	DefaultSignedURLHours = 24
	LinksConsole          = "console"
	LinksSigned           = "signed"
	LinksNone             = "none"
)

// Gate is one metric threshold of sluice.yaml's `gates:` list:
//
//	gates:
//	  - metric: evaluate.accuracy   # node.key: the last value the node printed for key
//	    direction: higher           # higher or lower is better
//	    min: 0.90                   # absolute bounds, inclusive
//	    max: 1.0
//	    max-regression: 0.02        # largest allowed worsening against the baseline, in the metric's units
//	    max-regression-percent: 5   # largest allowed worsening, in percent of the baseline value
//	    noise: 0.001                # a change at most this big is noise, never a regression
//
// "Worsening" follows direction: a drop when higher is better, a rise when
// lower is better. Limits against the baseline need a direction. Every limit
// is optional; a gate with none only tracks the metric in the report (and
// still fails when the metric is missing or NaN). Whether the node exists in
// the pipeline is checked by the report, against the run.
type Gate struct {
	// Metric is "node.key" as written; Node is the part before the first
	// dot, Key the rest (a key may contain dots).
	Metric    string
	Node, Key string
	Direction Direction
	Min, Max  *float64
	// MaxRegression bounds the worsening against the baseline in the
	// metric's own units; MaxRegressionPercent in percent of the baseline's
	// absolute value.
	MaxRegression        *float64
	MaxRegressionPercent *float64
	// Noise is the size of a change (either way) that is never a regression.
	Noise float64
	// File and Pos locate the gate's `metric:` in sluice.yaml, for errors
	// found later (a node the pipeline lacks).
	File string
	Pos  Pos
	// index is the gate's place in the list, for messages.
	index int
}

// Direction says which way a metric is better.
type Direction string

// Directions; DirectionNone when the gate does not say.
const (
	DirectionNone   Direction = ""
	DirectionHigher Direction = "higher"
	DirectionLower  Direction = "lower"
)

// StepConfig is the sluice.yaml section of one step.
type StepConfig struct {
	// Reuse, when false, makes the step run every time (say, it reads a
	// database whose changes sluice cannot see). Unset means reuse.
	Reuse *bool
	// Environment, when set, replaces the Valohai environment slug the step
	// names (or its absence), for sluice: a key of Environments.
	Environment string
}

// Reuses reports whether a step's results may be reused.
func (c *SluiceConfig) Reuses(step string) bool {
	if c == nil {
		return true
	}
	s, ok := c.Steps[step]
	return !ok || s.Reuse == nil || *s.Reuse
}

var schSluiceStep = obj("step setting", nil, p("reuse", sBool), p("environment", sSlug))

var (
	sNonNeg = &schema{types: tNum, min: fptr(0)}
	schGate = obj("gate", []string{"metric"},
		p("metric", &schema{types: tStr, pattern: regexp.MustCompile(`^[^.\s]+\.\S+$`), patDesc: "node.key, such as evaluate.accuracy"}),
		p("direction", enum(string(DirectionHigher), string(DirectionLower))),
		p("min", sNum), p("max", sNum),
		p("max-regression", sNonNeg), p("max-regression-percent", sNonNeg),
		p("noise", sNonNeg))
	sMetricName = &schema{types: tStr, pattern: regexp.MustCompile(`^[^.\s]+\.\S+$`), patDesc: "node.key, such as train.loss"}
	schReport   = obj("report setting", nil,
		p("series", list(sMetricName)),
		p("approval-label", &schema{types: tStr, pattern: regexp.MustCompile(`\S`), patDesc: "a label name"}),
		p("links", enum(LinksConsole, LinksSigned, LinksNone)),
		p("signed-url-hours", &schema{types: tNum, min: fptr(0.01), max: fptr(168)}))
	schSluice = &schema{name: "sluice.yaml", types: tObj, closed: true, desc: "a mapping of settings", props: []prop{
		p("default-environment", sSlug),
		p("environments", sEnvironments),
		p("gates", list(schGate)),
		p("max-cost", &schema{types: tNum, min: fptr(0), desc: "a price in USD, such as 20"}),
		p("report", schReport),
		p("steps", &schema{name: "steps", types: tObj, anyKey: schSluiceStep, desc: "a mapping of step names to their settings"}),
	}}
)

// LoadSluiceConfig reads sluice.yaml. A file that does not exist is no
// error: it returns nil. Unknown keys and wrong types are errors with file,
// line and column; step names that valohai.yaml does not define are errors
// too (a typo would silently change nothing), and so are environment slugs
// (default-environment, steps.<name>.environment) that environments lacks.
func LoadSluiceConfig(name string, cfg *Config) (*SluiceConfig, Diagnostics) {
	data, err := readLimited(name)
	if err != nil {
		if _, statErr := os.Stat(name); errors.Is(statErr, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, Diagnostics{{File: name, Severity: SeverityError, Message: err.Error()}}
	}
	r := &reporter{file: name}
	root := load(r, data)
	if root == nil {
		return nil, r.diags
	}
	vd := &validator{}
	vd.check(schSluice, root, nil, nil)
	checkEnvironments(vd, root.Get("environments"))
	for _, e := range sortedErrs(vd.errs) {
		r.errorf(e.pos, renderSluicePath(e.path), "%s", e.msg)
	}
	if r.diags.HasErrors() {
		return nil, r.diags
	}
	out := &SluiceConfig{File: name, Steps: map[string]StepConfig{},
		Report: ReportConfig{ApprovalLabel: DefaultApprovalLabel, Links: LinksConsole, SignedURLHours: DefaultSignedURLHours}}
	if envs := root.Get("environments"); envs != nil {
		out.Environments = loadEnvironments(name, envs)
	}
	if x := root.Get("max-cost"); x.IsNumber() {
		checkMaxCost(r, x, out.Environments)
		f := x.Number()
		out.MaxCost = &f
	}
	if x := root.Get("default-environment"); x.IsString() {
		checkSlug(r, x, "default-environment", out.Environments)
		out.DefaultEnvironment = x.Str
	}
	if gates := root.Get("gates"); gates != nil {
		out.Gates = loadGates(r, name, gates)
		for _, g := range out.Gates {
			checkMetricNode(r, cfg, g.Pos, fmt.Sprintf("gates[%d].metric", g.index), g.Node)
		}
	}
	if rep := root.Get("report"); rep != nil {
		if series := rep.Get("series"); series != nil {
			for i, x := range series.Items {
				node, _, _ := strings.Cut(x.Str, ".")
				checkMetricNode(r, cfg, x.Pos, fmt.Sprintf("report.series[%d]", i), node)
				out.Report.Series = append(out.Report.Series, x.Str)
			}
		}
		if x := rep.Get("approval-label"); x.IsString() {
			out.Report.ApprovalLabel = x.Str
		}
		if x := rep.Get("links"); x.IsString() {
			out.Report.Links = x.Str
		}
		if x := rep.Get("signed-url-hours"); x.IsNumber() {
			out.Report.SignedURLHours = x.Number()
		}
	}
	if steps := root.Get("steps"); steps != nil {
		for _, pr := range steps.Pairs {
			step := pr.Key.String()
			if cfg != nil && cfg.Step(step) == nil {
				r.errorf(pr.Key.Pos, "steps."+step, "valohai.yaml has no step %q%s", step, didYouMean(step, stepNames(cfg)))
				continue
			}
			var sc StepConfig
			if v := pr.Value.Get("reuse"); v != nil && v.Kind == KindBool {
				sc.Reuse = &v.Bool
			}
			if v := pr.Value.Get("environment"); v.IsString() {
				checkSlug(r, v, "steps."+step+".environment", out.Environments)
				sc.Environment = v.Str
			}
			out.Steps[step] = sc
		}
	}
	if r.diags.HasErrors() {
		return nil, r.diags
	}
	return out, r.diags
}

// checkMaxCost reports the environments whose spend max-cost (x) could not
// count: a Batch or kubernetes environment without hourly-price.
func checkMaxCost(r *reporter, x *Value, envs map[string]*Environment) {
	if f := x.Number(); math.IsNaN(f) || math.IsInf(f, 0) {
		r.errorf(x.Pos, "max-cost", "expected a finite price in USD, got %s", x.Repr())
		return
	}
	var unpriced []string
	for name, env := range envs {
		if env.Backend == BackendBatch && env.Batch.HourlyPrice == nil || env.Backend == BackendKubernetes && env.Kube.HourlyPrice == nil {
			unpriced = append(unpriced, name)
		}
	}
	slices.Sort(unpriced)
	for _, name := range unpriced {
		what := "VM"
		if envs[name].Backend == BackendKubernetes {
			what = "node"
		}
		r.errorf(envs[name].Pos, "environments."+name, "environment %s has no hourly-price, so max-cost (line %d) cannot count what its %ss cost; give its price per %s hour in USD, hourly-price: 1.20", name, x.Pos.Line, what, what)
	}
}

// loadGates reads the schema-checked `gates:` list, checking what the
// schema cannot: finite numbers, min <= max, a direction for limits against
// the baseline, one gate per metric.
func loadGates(r *reporter, file string, list *Value) []Gate {
	var out []Gate
	seen := map[string]int{}
	for i, v := range list.Items {
		at := func(key string) string { return fmt.Sprintf("gates[%d].%s", i, key) }
		mv := v.Get("metric")
		g := Gate{Metric: mv.Str, File: file, Pos: posOf(mv, v), index: i}
		g.Node, g.Key, _ = strings.Cut(g.Metric, ".")
		if d := v.Get("direction"); d.IsString() {
			g.Direction = Direction(d.Str)
		}
		num := func(key string) *float64 {
			x := v.Get(key)
			if !x.IsNumber() {
				return nil
			}
			f := x.Number()
			if math.IsNaN(f) || math.IsInf(f, 0) {
				r.errorf(x.Pos, at(key), "expected a finite number, got %s", x.Repr())
				return nil
			}
			return &f
		}
		g.Min, g.Max = num("min"), num("max")
		g.MaxRegression, g.MaxRegressionPercent = num("max-regression"), num("max-regression-percent")
		if n := num("noise"); n != nil {
			g.Noise = *n
		}
		if g.Min != nil && g.Max != nil && *g.Min > *g.Max {
			r.errorf(v.Get("min").Pos, at("min"), "min %s is greater than max %s: no value could pass", PyFloatOrInt(*g.Min), PyFloatOrInt(*g.Max))
		}
		if g.Direction == DirectionNone {
			for _, k := range []string{"max-regression", "max-regression-percent"} {
				if x := v.Get(k); x != nil {
					r.errorf(x.Pos, at(k), "%s needs `direction: higher` or `direction: lower` (which way is a regression?)", k)
				}
			}
		}
		if line, dup := seen[g.Metric]; dup {
			r.errorf(g.Pos, at("metric"), "metric %q already has a gate (line %d); put its limits in one gate", g.Metric, line)
			continue
		}
		seen[g.Metric] = g.Pos.Line
		out = append(out, g)
	}
	return out
}

// checkMetricNode reports a metric whose node is no node of any pipeline and
// no step of valohai.yaml (a step runs alone as a node of its name): no run
// could ever print it.
func checkMetricNode(r *reporter, cfg *Config, pos Pos, at, node string) {
	if cfg == nil {
		return
	}
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, p := range cfg.Pipelines {
		for _, n := range p.Nodes {
			add(n.Name)
		}
	}
	for _, s := range cfg.Steps {
		add(s.Name)
	}
	if seen[node] {
		return
	}
	r.errorf(pos, at, "no pipeline of valohai.yaml has a node %q, and no step is named so: no run can print this metric%s", node, didYouMean(node, names))
}

func renderSluicePath(pt path) string {
	var s string
	for i, el := range pt {
		switch x := el.(type) {
		case string:
			if i > 0 {
				s += "."
			}
			s += x
		case int:
			s += "[" + strconv.Itoa(x) + "]"
		}
	}
	return s
}

// Backends an environment of sluice.yaml can name.
const (
	BackendDocker = "docker"
)

// Environment is one entry of sluice.yaml's `environments:`, keyed by a
// Valohai environment slug (what a step's `environment:`, or a node's
// override of it, names). It says where the steps of that environment run:
//
//	default-environment: local     # the environment of steps that name none
//	environments:
//	  local:
//	    backend: docker
//	  gpu-box:
//	    backend: docker
//	    max-parallel: 1            # at most one of its nodes at once
//	    transfer: store            # docker: auto (default), copy, bind or store
//	    network: host              # docker: the containers' network
//	steps:
//	  train:
//	    environment: gpu-box       # overrides what valohai.yaml says
type Environment struct {
	// Name is the slug, the key in `environments:`.
	Name string
	// Backend is what runs the nodes: BackendDocker.
	Backend string
	// MaxParallel bounds how many nodes of this environment run at once; 0
	// means only the run's --concurrency bounds them.
	MaxParallel int
	// Docker holds the settings of the docker backend.
	Docker DockerEnvironment
	// Batch holds the settings of the batch backend.
	Batch BatchEnvironment
	// Kube holds the settings of the kubernetes backend.
	Kube KubeEnvironment
	// File and Pos locate the entry's key in sluice.yaml, for messages.
	File string
	Pos  Pos
}

// DockerEnvironment holds the settings of `backend: docker`.
type DockerEnvironment struct {
	// Transfer is how files reach the containers: auto (empty), copy, bind,
	// or store (through `sluice agent` and a gs:// store, as remote backends do).
	Transfer string
	// Network is the Docker network the containers join; empty is the
	// daemon's default (bridge).
	Network string
	// Image is the sluice image whose first container fetches a job's files
	// with transfer store; empty means the image of this sluice's version.
	Image string
}

// EnvironmentOf says where a step runs: the Valohai environment slug that
// applies (sluice.yaml's steps.<step>.environment, else stepEnv, the step's
// environment with the node's override applied, else default-environment)
// and its entry in `environments:`. The entry is nil when the slug is empty
// or has no mapping: the step then runs on the local Docker host.
func (c *SluiceConfig) EnvironmentOf(step, stepEnv string) (string, *Environment) {
	if c == nil {
		return stepEnv, nil
	}
	slug := stepEnv
	if s, ok := c.Steps[step]; ok && s.Environment != "" {
		slug = s.Environment
	}
	if slug == "" {
		slug = c.DefaultEnvironment
	}
	if env, ok := c.Environments[slug]; ok {
		return slug, env
	}
	return slug, nil
}
