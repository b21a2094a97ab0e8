package spec

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// This file reads sluice.yaml's `environments:` (where steps run) and warns
// about the environments valohai.yaml names that sluice.yaml does not map.

// Docker transfers (DockerEnvironment.Transfer); empty is TransferAuto.
const (
	TransferAuto  = "auto"
	TransferCopy  = "copy"
	TransferBind  = "bind"
	TransferStore = "store"
)

// backendDef is one backend an environment can name: the keys of its own
// settings (besides backend and max-parallel, which every environment has),
// and how they fill an Environment once the schema accepted them.
type backendDef struct {
	name     string
	required []string
	props    []prop
	// check, when set, checks what the schema cannot say (a zone outside
	// the region, a GPU its machine cannot take) in an entry the schema
	// accepted; load fills an Environment from such an entry.
	check func(vd *validator, v *Value, pt path)
	load  func(env *Environment, v *Value)
}

// backends lists every backend, in the order messages name them. A new
// backend adds its entry here, with its settings.
var backends = []backendDef{
	{
		name: BackendDocker,
		props: []prop{
			p("transfer", enum(TransferAuto, TransferCopy, TransferBind, TransferStore)),
			p("network", &schema{types: tStr, pattern: nonBlank, patDesc: "a Docker network name, such as host"}),
			p("image", sAgentImage),
		},
		load: func(env *Environment, v *Value) {
			env.Docker = DockerEnvironment{Transfer: getStr(v, "transfer"), Network: getStr(v, "network"), Image: getStr(v, "image")}
		},
	},
	batchBackend,
	kubeBackend,
}

// Backends returns the names of the backends an environment can name.
func Backends() []string {
	out := make([]string, len(backends))
	for i, b := range backends {
		out[i] = b.name
	}
	return out
}

func backendOf(name string) *backendDef {
	for i := range backends {
		if backends[i].name == name {
			return &backends[i]
		}
	}
	return nil
}

var (
	nonBlank = regexp.MustCompile(`\S`)
	// sAgentImage is the sluice image an environment's agent runs in;
	// sHourlyPrice the USD price of one machine hour, for the cost estimate.
	sAgentImage  = &schema{types: tStr, pattern: nonBlank, patDesc: "an image reference, such as ghcr.io/sluice-ci/sluice:v1"}
	sHourlyPrice = &schema{types: tNum, min: fptr(0)}
	// sSlug is a Valohai environment slug, as sluice.yaml refers to one.
	sSlug = &schema{types: tStr, pattern: nonBlank, patDesc: "an environment slug, a key of environments"}
	// sEnvironments holds the entries' shape only; checkEnvironments checks
	// each entry against its backend's settings.
	sEnvironments = &schema{name: "environments", types: tObj, desc: "a mapping of environment slugs to where their steps run",
		anyKey: &schema{types: tObj, desc: "a mapping of settings, such as `backend: docker`"}}
)

// environmentSchema is the schema of one entry of environments: the common
// keys and those of its backend, or of every backend when the entry names
// none sluice knows (the backend's own error says so).
func environmentSchema(b *backendDef) *schema {
	props := []prop{
		p("backend", enum(Backends()...)),
		p("max-parallel", &schema{types: tInt, max: fptr(math.MaxInt32)}),
	}
	name, required := "environment", []string{"backend"}
	if b != nil {
		name = b.name + " environment"
		props = append(props, b.props...)
		required = append(required, b.required...)
	} else {
		for _, b := range backends {
			for _, pr := range b.props {
				if !slices.ContainsFunc(props, func(x prop) bool { return x.key == pr.key }) {
					props = append(props, pr)
				}
			}
		}
	}
	return obj(name, required, props...)
}

// checkEnvironments checks each entry of environments against the settings
// of the backend it names, adding what is wrong to vd.
func checkEnvironments(vd *validator, envs *Value) {
	if envs == nil || envs.Kind != KindMap {
		return // the schema said what is wrong
	}
	for _, pr := range envs.Pairs {
		slug := pr.Key.String()
		if strings.TrimSpace(slug) == "" {
			vd.fail(pr.Key, path{"environments"}, false, "an environment slug cannot be empty (%s); use the slug a step's `environment:` names", pr.Key.Repr())
			continue
		}
		pt := path{"environments", slug}
		v := pr.Value
		if v == nil || v.Kind != KindMap {
			continue // the schema said what is wrong
		}
		var b *backendDef
		if x := v.Get("backend"); x.IsString() {
			b = backendOf(x.Str)
		}
		if b != nil {
			// A setting of another backend gets its own message, not "unknown key".
			own := environmentSchema(b)
			kept := *v
			kept.Pairs = nil
			for _, kv := range v.Pairs {
				k := kv.Key.String()
				if other := backendWithKey(k); own.prop(k) == nil && other != "" {
					vd.fail(kv.Key, pt.with(k), false, "%q is a setting of backend %s; this environment's backend is %s, whose settings are: %s",
						k, other, b.name, strings.Join(own.keys(), ", "))
					continue
				}
				kept.Pairs = append(kept.Pairs, kv)
			}
			v = &kept
		}
		before := len(vd.errs)
		vd.check(environmentSchema(b), v, pt, envs)
		if b != nil && b.check != nil && len(vd.errs) == before {
			b.check(vd, v, pt)
		}
		if x := v.Get("max-parallel"); typeMatches(tInt, x) && x.Number() < 1 {
			vd.fail(x, pt.with("max-parallel"), false, "max-parallel %s lets no node of this environment run; give at least 1, or leave it out (then only --concurrency limits it)", x.Repr())
		}
	}
}

// backendWithKey names the backend that has a setting key, or "".
func backendWithKey(key string) string {
	for _, b := range backends {
		for _, pr := range b.props {
			if pr.key == key {
				return b.name
			}
		}
	}
	return ""
}

// loadEnvironments reads the schema-checked `environments:`.
func loadEnvironments(file string, envs *Value) map[string]*Environment {
	out := make(map[string]*Environment, len(envs.Pairs))
	for _, pr := range envs.Pairs {
		v := pr.Value
		env := &Environment{Name: pr.Key.String(), Backend: getStr(v, "backend"), File: file, Pos: pr.Key.Pos}
		if x := v.Get("max-parallel"); x.IsNumber() {
			env.MaxParallel = int(x.Number())
		}
		if b := backendOf(env.Backend); b != nil && b.load != nil {
			b.load(env, v)
		}
		out[env.Name] = env
	}
	return out
}

// checkSlug reports a slug that names no entry of environments.
func checkSlug(r *reporter, x *Value, at string, envs map[string]*Environment) {
	if _, ok := envs[x.Str]; ok {
		return
	}
	if len(envs) == 0 {
		r.errorf(x.Pos, at, "environment %q is not defined: sluice.yaml has no `environments:`; add it there with its backend", x.Str)
		return
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range envs {
			if !yield(k) {
				return
			}
		}
	})
	r.errorf(x.Pos, at, "environment %q is not a key of environments%s; they are: %s", x.Str, didYouMean(x.Str, names), strings.Join(names, ", "))
}

// LintEnvironments warns about each step, and each node override, whose
// Valohai environment sluice.yaml (sc, nil when there is none) does not map:
// such a step runs on the local Docker host, which may not be what its
// author meant. The warnings sit at the `environment:` in valohai.yaml.
func LintEnvironments(cfg *Config, sc *SluiceConfig) Diagnostics {
	if cfg == nil {
		return nil
	}
	r := &reporter{file: cfg.File}
	var mapped []string
	if sc != nil {
		for k := range sc.Environments {
			mapped = append(mapped, k)
		}
		slices.Sort(mapped)
	}
	warn := func(pos Pos, at, who, slug string) {
		r.warnf(pos, at, "%s names environment %q, which sluice.yaml does not map%s: it runs on the local Docker host; to send it elsewhere, add to sluice.yaml:\n"+
			"  environments:\n    %s:\n      backend: ...   # one of: %s",
			who, slug, didYouMean(slug, mapped), yamlKey(slug), strings.Join(Backends(), ", "))
	}
	for _, s := range cfg.Steps {
		if s.Environment == "" {
			continue
		}
		if _, env := sc.EnvironmentOf(s.Name, s.Environment); env == nil {
			warn(s.fields.at(s.Pos, "environment"), stepLabel(s)+".environment", stepLabel(s), s.Environment)
		}
	}
	for _, p := range cfg.Pipelines {
		for i, n := range p.Nodes {
			o := n.Override
			step := cfg.NodeStep(n)
			if o == nil || o.Environment == "" || step == nil {
				continue
			}
			if _, env := sc.EnvironmentOf(step.Name, o.Environment); env == nil {
				warn(at(o.raw, o.Pos, "environment"), fmt.Sprintf("pipeline %q.nodes[%d].override.environment", p.Name, i),
					fmt.Sprintf("node %q of pipeline %q", n.Name, p.Name), o.Environment)
			}
		}
	}
	r.diags.Sort()
	return r.diags
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)

// yamlKey writes a slug as a YAML mapping key, quoted when it must be.
func yamlKey(s string) string {
	if plainKey.MatchString(s) {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// SluiceFile is where the sluice.yaml of a pipeline file is: beside it.
func SluiceFile(pipelineFile string) string {
	return filepath.Join(filepath.Dir(pipelineFile), "sluice.yaml")
}

// LintFile checks a pipeline file (see ParseFile), what a run of it would
// refuse (see LintRun), and the sluice.yaml beside it, when there is one (see
// LoadSluiceConfig), and warns about the environments sluice.yaml does not
// map (see LintEnvironments). It returns
// the findings about the pipeline file first, in order of position, then
// those about sluice.yaml.
func LintFile(name string) (*Config, *SluiceConfig, Diagnostics) {
	return LintFileContext(context.Background(), name)
}

// LintFileContext is LintFile that gives up once ctx is done: it then
// returns no config and one error, that it stopped.
func LintFileContext(ctx context.Context, name string) (*Config, *SluiceConfig, Diagnostics) {
	cfg, diags := ParseFileContext(ctx, name)
	if ctx.Err() != nil {
		return nil, nil, stoppedDiags(name, ctx)
	}
	if st, err := os.Stat(name); err != nil || !st.Mode().IsRegular() {
		return cfg, nil, diags // a file that cannot be read has no sluice.yaml to speak of
	}
	if cfg != nil {
		diags = append(diags, LintRun(cfg)...)
		diags.Sort()
	}
	sc, scDiags := LoadSluiceConfig(SluiceFile(name), cfg)
	if cfg != nil && !scDiags.HasErrors() {
		diags = append(diags, LintEnvironments(cfg, sc)...)
		diags.Sort()
	}
	return cfg, sc, append(diags, scDiags...)
}
