package spec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseFile reads, validates and lints a pipeline file. A file that cannot be
// read is reported as a diagnostic too.
func ParseFile(name string) (*Config, Diagnostics) {
	return ParseFileContext(context.Background(), name)
}

// ParseFileContext is ParseFile that gives up once ctx is done (see
// ParseContext).
func ParseFileContext(ctx context.Context, name string) (*Config, Diagnostics) {
	data, err := readLimited(name)
	if err != nil {
		return nil, Diagnostics{{File: name, Severity: SeverityError, Message: err.Error()}}
	}
	return ParseContext(ctx, name, data)
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no such file; sluice looks for valohai.yaml in the current directory unless given a path")
		}
		return nil, fmt.Errorf("cannot open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot stat: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("is a directory, not a pipeline file")
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("file is %s; sluice reads pipeline files of at most %d MiB", humanBytes(int(min(st.Size(), math.MaxInt32))), MaxFileSize>>20)
	}
	// One buffer of the file's size (and a byte to notice growth), not the
	// doublings of reading to the end.
	buf := bytes.NewBuffer(make([]byte, 0, st.Size()+1))
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	return buf.Bytes(), nil
}

// Parse validates a valohai.yaml the way Valohai does (YAML 1.1, its schema,
// then semantic checks) and returns the config and every finding. The config
// is nil when there is any error.
func Parse(file string, data []byte) (*Config, Diagnostics) {
	return ParseContext(context.Background(), file, data)
}

// ParseContext is Parse that gives up once ctx is done (a signal, a timeout):
// it then returns a nil config and one error, that it stopped. Reading,
// checking and linting take time in proportion to the file's size, and
// memory in proportion to what the file declares.
func ParseContext(ctx context.Context, file string, data []byte) (*Config, Diagnostics) {
	r := &reporter{file: file, ctx: ctx}
	cfg := parse(r, data)
	if r.stopped() {
		return nil, stoppedDiags(file, ctx)
	}
	r.diags.Sort()
	if r.diags.HasErrors() {
		return nil, r.diags
	}
	return cfg, r.diags
}

func stoppedDiags(file string, ctx context.Context) Diagnostics {
	return Diagnostics{{File: file, Severity: SeverityError, Message: fmt.Sprintf("stopped before the end: %v", context.Cause(ctx))}}
}

// parse reads the file a few items at a time when it has the plain shape
// (see stream.go), else as one document; both give the same config and
// findings.
func parse(r *reporter, data []byte) *Config {
	if !precheck(r, data) {
		return nil
	}
	if cfg, ok := parseStreamed(r, data, chunkSize); ok {
		return cfg
	}
	if r.stopped() {
		return nil
	}
	return parseDoc(r, data)
}

// parseStreamed reads the file in chunks of about size bytes (see
// stream.go). It returns false when the file does not read that way.
func parseStreamed(r *reporter, data []byte, size int) (*Config, bool) {
	chunks := splitItems(data, size)
	if chunks == nil {
		return nil, false
	}
	scratch := &reporter{file: r.file, ctx: r.ctx}
	ip := newItemParser(scratch)
	if err := streamItems(scratch, data, chunks, ip); err != nil {
		return nil, false
	}
	return ip.finish(r), true
}

// parseDoc reads the file as one YAML document.
func parseDoc(r *reporter, data []byte) *Config {
	n := decodeOne(r, data)
	if n == nil {
		return nil
	}
	c := newConverter(r, 0)
	if n.Kind == yaml.SequenceNode && n.Style&yaml.TaggedStyle == 0 && n.Anchor == "" {
		// Each item is turned into values, checked and built in turn, and its
		// YAML tree dropped.
		ip := newItemParser(r)
		ip.rootPos = c.pos(n)
		for i, item := range n.Content {
			v := c.convert(item, 1)
			if c.failed || r.stopped() {
				return nil
			}
			n.Content[i] = nil
			ip.add(i, v)
		}
		if c.total++; c.total > maxValues {
			c.fail(n, "the YAML expands to more than %d values (aliases that multiply?); refusing to expand it", maxValues)
			return nil
		}
		return ip.finish(nil)
	}
	root := c.convert(n, 0)
	if c.failed {
		return nil
	}
	return parseValue(r, root)
}

// parseValue runs everything after loading on a document: the short form,
// the schema, the model, the semantic checks.
func parseValue(r *reporter, root *Value) *Config {
	if root.Kind != KindList {
		vd := &validator{r: r}
		vd.check(schFile, root, nil, nil)
		for _, e := range sortedErrs(vd.errs) {
			r.errorf(e.pos, "", "%s", e.msg)
		}
		if len(vd.errs) > 0 || r.stopped() {
			return nil
		}
		return &Config{File: r.file}
	}
	ip := newItemParser(r)
	ip.rootPos = root.Pos
	for i, item := range root.Items {
		if r.stopped() {
			return nil
		}
		ip.add(i, item)
	}
	return ip.finish(nil)
}

// itemParser takes the top-level items of a file one at a time through the
// short form, the schema and the model, keeping what each stage finds apart,
// so that the findings are those of running each stage over the whole file
// in turn: a short-form error hides the schema's findings, a schema error
// the model's.
type itemParser struct {
	load    *reporter // where the findings of reading went; also its file and context
	short   *reporter // short-form findings
	build   *reporter // the model's findings
	schema  []verr    // with paths already rendered
	failed  bool      // a short-form or schema error: the model is built no further
	b       *builder
	cfg     *Config
	rootPos Pos
}

func newItemParser(load *reporter) *itemParser {
	short := &reporter{file: load.file, ctx: load.ctx}
	build := &reporter{file: load.file, ctx: load.ctx}
	ip := &itemParser{load: load, short: short, build: build, cfg: &Config{File: load.file}}
	ip.b = newBuilder(build)
	return ip
}

// add takes item idx of the file's top-level list.
func (ip *itemParser) add(idx int, item *Value) {
	if ip.short.stopped() {
		return
	}
	shortPl := expandShortForm(ip.short, item, idx)
	if ip.short.errors > 0 {
		ip.failed = true
	}
	if ip.short.errors == 0 {
		vd := &validator{r: ip.short}
		vd.check(schItem, item, path{idx}, &Value{Kind: KindList, Pos: ip.rootPos})
		for _, e := range vd.errs {
			e.rendered = renderItemPath(item, e.path)
			e.path = nil
			ip.schema = append(ip.schema, e)
		}
		if len(vd.errs) > 0 {
			ip.failed = true
		}
	}
	if !ip.failed {
		ip.b.item(ip.cfg, idx, item, shortPl)
	}
}

// finish returns the config, or nil when the file has errors, and puts the
// findings into r (nil: the reporter the items were read with).
func (ip *itemParser) finish(r *reporter) *Config {
	if r == nil {
		r = ip.load
	} else {
		r.merge(ip.load)
	}
	r.merge(ip.short)
	if ip.short.errors > 0 || r.stopped() {
		return nil
	}
	if len(ip.schema) > 0 {
		for _, e := range sortedErrs(ip.schema) {
			r.errorf(e.pos, e.rendered, "%s", e.msg)
		}
		return nil
	}
	r.merge(ip.build)
	if ip.build.errors > 0 {
		return nil
	}
	cfg := ip.cfg
	// The builder's name indexes are the config's.
	cfg.steps, cfg.pipelines, cfg.tasks, cfg.endpoints = ip.b.steps, ip.b.pipelines, ip.b.tasks, ip.b.endpoints
	cfg.indexPipelines()
	for _, lr := range ip.b.stepLint {
		r.merge(lr)
	}
	lintAfterSteps(r, cfg)
	if r.stopped() || r.errors > 0 {
		return nil
	}
	return cfg
}

// renderItemPath names a location inside a top-level item for people:
// `pipeline "train".nodes[1].step`. The path starts with the item's index.
func renderItemPath(item *Value, pt path) string {
	if len(pt) == 0 {
		return ""
	}
	var b strings.Builder
	i := 0
	if idx, ok := pt[0].(int); ok {
		if len(pt) > 1 {
			if kind, ok := pt[1].(string); ok {
				b.WriteString(itemLabel(kind, item.Get(kind), idx))
				i = 2
			}
		}
		if i == 0 {
			fmt.Fprintf(&b, "item %d", idx+1)
			i = 1
		}
	}
	for ; i < len(pt); i++ {
		switch el := pt[i].(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", el)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(el)
		}
	}
	return b.String()
}

func itemLabel(kind string, v *Value, idx int) string {
	if n := v.Get("name"); n.IsString() {
		return fmt.Sprintf("%s %q", kind, n.Str)
	}
	return fmt.Sprintf("%s (item %d)", kind, idx+1)
}

// expandShortForm rewrites a pipeline item written with `connections:
// [[a.output.x, b.input.y]]` (where the nodes are the steps themselves) into
// nodes and edges, with a warning that Valohai would reject the file. It
// returns the pipeline it rewrote, or nil.
func expandShortForm(r *reporter, item *Value, idx int) *Value {
	var short *Value
	{
		for _, kind := range []string{"pipeline", "blueprint"} {
			pl := item.Get(kind)
			if pl == nil || pl.Kind != KindMap || !pl.Has("connections") {
				continue
			}
			conns := pl.Get("connections")
			label := itemLabel(kind, pl, idx)
			r.warnf(posOf(conns, pl), label+".connections",
				"`connections` is sluice's short form: Valohai rejects it; sluice runs each step named here as a node of the same name (write `nodes:` and `edges:` to stay compatible with Valohai)")
			if conns.Kind != KindList {
				r.errorf(posOf(conns, pl), label+".connections", "expected a list of [source, target] pairs such as [train.output.model, test.input.model], got %s", describeValue(conns))
				continue
			}
			var edges []*Value
			var names []string
			seen := map[string]bool{}
			for i, c := range conns.Items {
				if c.Kind != KindList || len(c.Items) != 2 || !c.Items[0].IsString() || !c.Items[1].IsString() {
					r.errorf(posOf(c, conns), fmt.Sprintf("%s.connections[%d]", label, i), "a connection is a pair [source, target] of sockets such as [train.output.model, test.input.model], got %s", describeValue(c))
					continue
				}
				edges = append(edges, c)
				for _, s := range c.Items {
					node, _, _ := strings.Cut(s.Str, ".")
					if !seen[node] {
						seen[node] = true
						names = append(names, node)
					}
				}
			}
			var pairs []Pair
			for _, pr := range pl.Pairs {
				if !(pr.Key.IsString() && pr.Key.Str == "connections") {
					pairs = append(pairs, pr)
				}
			}
			if !pl.Has("nodes") {
				nodes := &Value{Kind: KindList, Pos: conns.Pos}
				for _, n := range names {
					nodes.Items = append(nodes.Items, &Value{Kind: KindMap, Pos: conns.Pos, Pairs: []Pair{
						{Key: NewString("name"), Value: &Value{Kind: KindString, Str: n, Pos: conns.Pos}},
						{Key: NewString("type"), Value: NewString("execution")},
						{Key: NewString("step"), Value: &Value{Kind: KindString, Str: n, Pos: conns.Pos}},
					}})
				}
				pairs = append(pairs, Pair{Key: NewString("nodes"), Value: nodes})
			}
			if e := pl.Get("edges"); e != nil && e.Kind == KindList {
				e.Items = append(e.Items, edges...)
			} else if e == nil {
				pairs = append(pairs, Pair{Key: NewString("edges"), Value: &Value{Kind: KindList, Pos: conns.Pos, Items: edges}})
			}
			pl.Pairs = pairs
			short = pl
		}
	}
	return short
}

// builder turns schema-valid items into the model, reporting what the
// schema cannot say (sockets, durations, the reference parser's crashes).
type builder struct {
	r *reporter
	// One name index per kind, so that a file of many items is read in time
	// proportional to its length.
	steps, tasks, endpoints, pipelines, deployments map[string]int
	// stepLint holds what each step's own checks (lintStep) found, in the
	// order of the config's steps.
	stepLint []*reporter
}

func newBuilder(r *reporter) *builder {
	return &builder{r: r, steps: map[string]int{}, tasks: map[string]int{}, endpoints: map[string]int{}, pipelines: map[string]int{}, deployments: map[string]int{}}
}

func getStr(v *Value, key string) string {
	if s := v.Get(key); s.IsString() {
		return s.Str
	}
	return ""
}

func getBool(v *Value, key string, def bool) bool {
	if b := v.Get(key); b != nil && b.Kind == KindBool {
		return b.Bool
	}
	return def
}

// strList reads a string or a list of strings.
func strList(v *Value) []string {
	if v == nil {
		return nil
	}
	if v.IsString() {
		return []string{v.Str}
	}
	var out []string
	for _, it := range v.Items {
		out = append(out, it.String())
	}
	return out
}

func getRange(v *Value) *Range {
	if v == nil || v.Kind != KindMap {
		return nil
	}
	r := &Range{}
	if m := v.Get("min"); m.IsNumber() {
		f := m.Number()
		r.Min = &f
	}
	if m := v.Get("max"); m.IsNumber() {
		f := m.Number()
		r.Max = &f
	}
	return r
}

func getResources(v *Value) *Resources {
	if v == nil || v.Kind != KindMap {
		return nil
	}
	res := &Resources{CPU: getRange(v.Get("cpu")), Memory: getRange(v.Get("memory")), EphemeralStorage: getRange(v.Get("ephemeral-storage"))}
	if d := v.Get("devices"); d != nil {
		for _, p := range d.Pairs {
			res.Devices = append(res.Devices, Device{Name: p.Key.String(), Count: p.Value.Number()})
		}
	}
	return res
}

var itemKinds = []string{"step", "task", "endpoint", "pipeline", "blueprint", "deployment"}

// item builds top-level item idx into cfg. short is the pipeline that
// expandShortForm rewrote, if any.
func (b *builder) item(cfg *Config, idx int, item, short *Value) {
	var found []string
	for _, k := range itemKinds {
		if item.Has(k) {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		var keys []string
		for _, p := range item.Pairs {
			keys = append(keys, p.Key.String())
		}
		what := "an empty item"
		if len(keys) > 0 {
			what = "unknown kind of item " + quoteList(keys)
		}
		b.r.warnf(item.Pos, fmt.Sprintf("item %d", idx+1), "%s: sluice and Valohai read step, pipeline, task, endpoint and deployment; this item is ignored", what)
		return
	}
	kind := found[0]
	if len(found) > 1 {
		b.r.warnf(item.Pos, fmt.Sprintf("item %d", idx+1), "item has %s: only the %s is read (as Valohai does); put each in its own list item", quoteList(found), kind)
	}
	v := item.Get(kind)
	label := itemLabel(kind, v, idx)
	switch kind {
	case "step":
		s := b.step(v, label)
		cfg.Steps = addNamed(b.r, b.steps, cfg.Steps, s, s.Name, "step", v)
		// A step's own checks run now, while its values are at hand; what
		// they find waits with the step (a later step of the same name
		// replaces both), and only the positions findings after the file's
		// end need are kept.
		lr := &reporter{file: b.r.file}
		lintStep(lr, s)
		s.fields = fieldsOf(v, "environment")
		if i := b.steps[s.Name]; i < len(b.stepLint) {
			b.stepLint[i] = lr
		} else {
			b.stepLint = append(b.stepLint, lr)
		}
	case "task":
		t := b.task(v, label)
		cfg.Tasks = addNamed(b.r, b.tasks, cfg.Tasks, t, t.Name, "task", v)
	case "endpoint":
		e := b.endpoint(v)
		cfg.Endpoints = addNamed(b.r, b.endpoints, cfg.Endpoints, e, e.Name, "endpoint", v)
	case "pipeline", "blueprint":
		pl := b.pipeline(v, label, v == short)
		cfg.Pipelines = addNamed(b.r, b.pipelines, cfg.Pipelines, pl, pl.Name, "pipeline", v)
	case "deployment":
		d := &Deployment{Name: getStr(v, "name"), Target: getStr(v.Get("defaults"), "target"), Pos: v.Pos, defaults: v.Get("defaults")}
		cfg.Deployments = addNamed(b.r, b.deployments, cfg.Deployments, d, d.Name, "deployment", v)
	}
}

// addNamed appends an object, or replaces an earlier one of the same name in
// place (the later definition wins, as in Valohai) with a warning. index
// maps the names in list to their places.
func addNamed[T any](r *reporter, index map[string]int, list []T, obj T, name, kind string, v *Value) []T {
	if i, ok := index[name]; ok {
		r.warnf(v.Pos, fmt.Sprintf("%s %q", kind, name), "duplicate %s name %q: this definition replaces the earlier one", kind, name)
		list[i] = obj
		return list
	}
	index[name] = len(list)
	return append(list, obj)
}

func (b *builder) step(v *Value, label string) *Step {
	s := &Step{
		Name: getStr(v, "name"), Image: getStr(v, "image"), Command: strList(v.Get("command")),
		Environment: getStr(v, "environment"), RuntimeConfigPreset: getStr(v, "runtime-config-preset"),
		UploadStore: getStr(v, "upload-store"), SourcePath: getStr(v, "source-path"), HasSourcePath: v.Get("source-path").IsString(),
		StopCondition: getStr(v, "stop-condition"), Description: getStr(v, "description"),
		Icon: getStr(v, "icon"), Category: getStr(v, "category"), Pos: v.Pos,
		EnvVarGroups: strList(v.Get("environment-variable-groups")), CacheVolumes: strList(v.Get("cache-volumes")),
		Resources: getResources(v.Get("resources")), fields: fieldsOf(v, stepFields...),
	}
	s.Parameters = b.parameters(v.Get("parameters"), label+".parameters")
	s.Inputs = b.inputs(v.Get("inputs"), label+".inputs")
	if len(s.Parameters) > 8 {
		s.params = indexNames(s.Parameters, func(p *Parameter) string { return p.Name })
	}
	if len(s.Inputs) > 8 {
		s.inputs = indexNames(s.Inputs, func(in *Input) string { return in.Name })
	}
	s.EnvVars = b.envVars(v.Get("environment-variables"), label+".environment-variables")
	s.Mounts = b.mounts(v.Get("mounts"))
	if outs := v.Get("outputs"); outs != nil {
		for _, o := range outs.Items {
			s.Outputs = append(s.Outputs, &Output{Name: getStr(o, "name"), Description: getStr(o, "description"), Pos: o.Pos})
		}
	}
	s.TimeLimit = b.duration(v.Get("time-limit"), label+".time-limit")
	s.NoOutputTimeout = b.duration(v.Get("no-output-timeout"), label+".no-output-timeout")
	return s
}

func (b *builder) parameters(v *Value, where string) []*Parameter {
	if v == nil {
		return nil
	}
	var out []*Parameter
	seen := map[string]int{}
	for i, pv := range v.Items {
		p := &Parameter{
			Name: getStr(pv, "name"), Type: ParamType(getStr(pv, "type")), Optional: getBool(pv, "optional", false),
			Min: pv.Get("min"), Max: pv.Get("max"), Multiple: Multiple(getStr(pv, "multiple")),
			Separator: getStr(pv, "multiple-separator"), PassAs: getStr(pv, "pass-as"),
			PassTrueAs: getStr(pv, "pass-true-as"), PassFalseAs: getStr(pv, "pass-false-as"),
			Description: getStr(pv, "description"), Category: getStr(pv, "category"), Widget: pv.Get("widget"),
			Pos: pv.Pos, raw: pv,
		}
		path := fmt.Sprintf("%s[%d]", where, i)
		if p.Type == "" {
			p.Type = TypeString
		}
		if p.Multiple == "none" {
			p.Multiple = MultipleNone
		}
		if p.Separator == "" {
			p.Separator = ","
		}
		if c := pv.Get("choices"); c != nil && len(c.Items) > 0 {
			p.Choices = c.Items
		}
		if d := pv.Get("default"); !d.IsNull() {
			p.Default = d
			if p.Multiple != MultipleNone && d.Kind != KindList {
				p.Default = &Value{Kind: KindList, Items: []*Value{d}, Pos: d.Pos}
			}
		}
		if p.Type == TypeFlag {
			p.Optional = true
			p.Choices = []*Value{NewBool(true), NewBool(false)}
			if p.Multiple != MultipleNone {
				b.r.errorf(posOf(pv.Get("multiple"), pv), path+".multiple", "a flag parameter cannot be multiple; remove `multiple` or use type string")
			}
		} else {
			p.PassTrueAs, p.PassFalseAs = "", ""
		}
		if j, dup := seen[p.Name]; dup {
			b.r.warnf(pv.Pos, path, "duplicate parameter name %q: this definition replaces the earlier one", p.Name)
			out[j] = p
			continue
		}
		seen[p.Name] = len(out)
		out = append(out, p)
	}
	return out
}

func (b *builder) inputs(v *Value, where string) []*Input {
	if v == nil {
		return nil
	}
	var out []*Input
	seen := map[string]int{}
	for i, iv := range v.Items {
		in := &Input{
			Name: getStr(iv, "name"), Default: strList(iv.Get("default")), Optional: getBool(iv, "optional", false),
			Description: getStr(iv, "description"), Filename: getStr(iv, "filename"),
			KeepDirectories: "none", Download: getStr(iv, "download"), Pos: iv.Pos,
		}
		if in.Download == "" {
			in.Download = "always"
		}
		if d := iv.Get("default"); d.IsString() {
			in.defaultPos = []Pos{d.Pos}
		} else if d != nil {
			for _, it := range d.Items {
				in.defaultPos = append(in.defaultPos, it.Pos)
			}
		}
		if kd := iv.Get("keep-directories"); kd != nil {
			switch {
			case kd.Kind == KindBool && kd.Bool:
				in.KeepDirectories = "full"
			case kd.IsString():
				in.KeepDirectories = kd.Str
			}
		}
		if j, dup := seen[in.Name]; dup {
			b.r.warnf(iv.Pos, fmt.Sprintf("%s[%d]", where, i), "duplicate input name %q: this definition replaces the earlier one", in.Name)
			out[j] = in
			continue
		}
		seen[in.Name] = len(out)
		out = append(out, in)
	}
	return out
}

func (b *builder) envVars(v *Value, where string) []*EnvVar {
	if v == nil {
		return nil
	}
	var out []*EnvVar
	seen := map[string]int{}
	for _, ev := range v.Items {
		e := &EnvVar{Name: getStr(ev, "name"), Default: getStr(ev, "default"), HasDefault: ev.Get("default").IsString(),
			Optional: getBool(ev, "optional", true), Description: getStr(ev, "description"), Pos: ev.Pos}
		if j, dup := seen[e.Name]; dup {
			out[j] = e
			continue
		}
		seen[e.Name] = len(out)
		out = append(out, e)
	}
	return out
}

func (b *builder) mounts(v *Value) []*Mount {
	if v == nil {
		return nil
	}
	var out []*Mount
	for _, mv := range v.Items {
		if mv.IsString() {
			src, dst, _ := strings.Cut(mv.Str, ":")
			// "host:/path:/dst" keeps the host in the source: split at the last ":/".
			if i := strings.LastIndex(mv.Str, ":/"); i > 0 {
				src, dst = mv.Str[:i], mv.Str[i+1:]
			}
			out = append(out, &Mount{Source: src, Destination: dst, Pos: mv.Pos})
			continue
		}
		out = append(out, &Mount{Source: getStr(mv, "source"), Destination: getStr(mv, "destination"),
			ReadOnly: getBool(mv, "readonly", false), Type: getStr(mv, "type"), Options: mv.Get("options"), Pos: mv.Pos})
	}
	return out
}

var durationPartRe = regexp.MustCompile(`([.\d]+)\s*([a-z]*)`)

var durationUnits = map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}

// duration reads time-limit and no-output-timeout: whole seconds, or a string
// such as "1h 30m 5s" (units s, m, h, d, w by their first letter).
func (b *builder) duration(v *Value, path string) time.Duration {
	if v.IsNull() {
		return 0
	}
	d, err := ParseDuration(v)
	if err != nil {
		b.r.errorf(v.Pos, path, "%s", err)
	}
	return d
}

// ParseDuration reads a Valohai duration value: an integer number of seconds
// or a string like "1h 30m 5s". Zero means no limit.
func ParseDuration(v *Value) (time.Duration, error) {
	const hint = `write a number of seconds (5400) or a duration such as "1h 30m" (units s, m, h, d, w)`
	switch {
	case v.IsNull():
		return 0, nil
	case v.Kind == KindInt:
		if v.Big != nil || v.Int > int64(math.MaxInt64/time.Second) {
			return 0, fmt.Errorf("%s seconds is too long a duration", v.Repr())
		}
		if v.Int < 0 {
			return 0, fmt.Errorf("duration %d is negative; %s", v.Int, hint)
		}
		return time.Duration(v.Int) * time.Second, nil
	case v.Kind == KindString:
		s := v.Str
		if strings.TrimSpace(s) == "" {
			return 0, nil
		}
		var total float64
		for _, m := range durationPartRe.FindAllStringSubmatch(s, -1) {
			n, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return 0, fmt.Errorf("cannot read %q in duration %q as a number; %s", m[1], s, hint)
			}
			if m[2] == "" {
				return 0, fmt.Errorf("duration %q has a number without a unit (%s); %s", s, m[1], hint)
			}
			unit, ok := durationUnits[m[2][0]]
			if !ok {
				return 0, fmt.Errorf("unknown unit %q in duration %q; %s", m[2], s, hint)
			}
			total += n * unit.Seconds()
		}
		if total <= 0 {
			return 0, fmt.Errorf("cannot read a positive duration from %q; %s", s, hint)
		}
		if total > float64(math.MaxInt64/int64(time.Second)) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(total * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("expected whole seconds or a duration string, got %s; %s", describeValue(v), hint)
}

var taskTypes = []string{"grid_search", "random_search", "bayesian_tpe", "manual_search", "distributed"}
var childErrors = []string{"continue-and-complete", "continue-and-error", "stop-all-and-error"}

func (b *builder) task(v *Value, label string) *Task {
	t := &Task{
		Name: getStr(v, "name"), Step: getStr(v, "step"), Engine: getStr(v, "engine"),
		OptimizationTargetMetric: getStr(v, "optimization-target-metric"), StopCondition: getStr(v, "stop-condition"),
		ReuseChildren: getBool(v, "reuse-children", false), Description: getStr(v, "description"), Pos: v.Pos, raw: v,
	}
	t.Type = "grid_search"
	if tv := v.Get("type"); tv.IsString() && tv.Str != "" {
		norm := strings.ReplaceAll(strings.ToLower(tv.Str), "-", "_")
		if !containsStr(taskTypes, norm) {
			b.r.errorf(tv.Pos, label+".type", "unknown task type %q; use one of: %s", tv.Str, strings.Join(taskTypes, ", "))
		}
		t.Type = norm
	}
	if ce := v.Get("on-child-error"); ce.IsString() && ce.Str != "" {
		norm := strings.ReplaceAll(strings.ToLower(ce.Str), "_", "-")
		if !containsStr(childErrors, norm) {
			b.r.errorf(ce.Pos, label+".on-child-error", "unknown on-child-error %q; use one of: %s", ce.Str, strings.Join(childErrors, ", "))
		}
		t.OnChildError = norm
	}
	for _, key := range []struct {
		k string
		p **int64
	}{{"execution-count", &t.ExecutionCount}, {"execution-batch-size", &t.ExecutionBatchSize}, {"maximum-queued-executions", &t.MaximumQueuedExecutions}} {
		if n := v.Get(key.k); n.IsNumber() {
			i := int64(n.Number())
			*key.p = &i
		}
	}
	if n := v.Get("optimization-target-value"); n.IsNumber() {
		f := n.Number()
		t.OptimizationTargetValue = &f
	}
	if ps := v.Get("parameters"); ps != nil {
		for _, pv := range ps.Items {
			t.Parameters = append(t.Parameters, &VariantParameter{Name: getStr(pv, "name"), Style: getStr(pv, "style"), Rules: pv.Get("rules"), Pos: pv.Pos, raw: pv})
		}
	}
	if sets := v.Get("parameter-sets"); sets != nil {
		for _, s := range sets.Items {
			if s.Truthy() {
				t.ParameterSets = append(t.ParameterSets, s)
			}
		}
	}
	return t
}

func (b *builder) endpoint(v *Value) *Endpoint {
	e := &Endpoint{Name: getStr(v, "name"), Image: getStr(v, "image"), Description: getStr(v, "description"),
		ServerCommand: strList(v.Get("server-command")), WSGI: getStr(v, "wsgi"), NodeSelector: getStr(v, "node-selector"),
		Resources: getResources(v.Get("resources")), Pos: v.Pos}
	if port := v.Get("port"); port.IsNumber() {
		f := port.Number()
		e.Port = &f
	}
	if files := v.Get("files"); files != nil {
		for _, f := range files.Items {
			e.Files = append(e.Files, EndpointFile{Name: getStr(f, "name"), Path: getStr(f, "path"), Description: getStr(f, "description")})
		}
	}
	if tol := v.Get("tolerations"); tol != nil {
		e.Tolerations = tol.Items
	}
	return e
}

func (b *builder) pipeline(v *Value, label string, short bool) *Pipeline {
	pl := &Pipeline{Name: getStr(v, "name"), Pos: v.Pos, ShortForm: short}
	if re := v.Get("reuse-executions"); re != nil && re.Kind == KindBool {
		pl.ReuseExecutions = &re.Bool
	}
	for i, nv := range v.Get("nodes").Items {
		if b.r.stopped() {
			return pl
		}
		pl.Nodes = append(pl.Nodes, b.node(nv, fmt.Sprintf("%s.nodes[%d]", label, i)))
	}
	for i, ev := range v.Get("edges").Items {
		if b.r.stopped() {
			return pl
		}
		path := fmt.Sprintf("%s.edges[%d]", label, i)
		var src, tgt *Value
		var conf *Value
		if ev.Kind == KindList {
			if len(ev.Items) != 2 {
				b.r.errorf(ev.Pos, path, "an edge written as a list needs exactly two sockets, [source, target], got %d: %s", len(ev.Items), ev.Repr())
				continue
			}
			src, tgt = ev.Items[0], ev.Items[1]
		} else {
			src, tgt, conf = ev.Get("source"), ev.Get("target"), ev.Get("configuration")
		}
		s, okS := b.socket(src, path+".source", "source")
		t, okT := b.socket(tgt, path+".target", "target")
		if okS && okT {
			pl.Edges = append(pl.Edges, &Edge{Source: s, Target: t, Configuration: conf, Pos: ev.Pos})
		}
	}
	if ps := v.Get("parameters"); ps != nil {
		for i, pv := range ps.Items {
			path := fmt.Sprintf("%s.parameters[%d]", label, i)
			pp := &PipelineParameter{Name: getStr(pv, "name"), Default: pv.Get("default"), Description: getStr(pv, "description"),
				Category: getStr(pv, "category"), Pos: pv.Pos, raw: pv}
			if !pv.Has("name") {
				b.r.errorf(pv.Pos, path, "a pipeline parameter needs a `name`")
			}
			if pv.Has("target") && pv.Has("targets") {
				b.r.errorf(pv.Get("target").Pos, path, "set either `target` or `targets`, not both")
			}
			var targets []*Value
			if tv := pv.Get("targets"); tv.IsString() {
				targets = append(targets, tv)
			} else if tv != nil {
				targets = append(targets, tv.Items...)
			}
			if tv := pv.Get("target"); tv.IsString() {
				targets = append(targets, tv)
			}
			for _, tv := range targets {
				if s, ok := b.socket(tv, path+".targets", "target"); ok {
					pp.Targets = append(pp.Targets, b.parameterTarget(tv, s, path+".targets"))
					pp.targetSrc = append(pp.targetSrc, tv)
				}
			}
			pl.Parameters = append(pl.Parameters, pp)
		}
	}
	return pl
}

// socket splits NODE.TYPE.KEY at the first two dots; KEY may hold more dots and slashes.
func (b *builder) socket(v *Value, path, what string) (Socket, bool) {
	if !v.IsString() {
		b.r.errorf(posOf(v, nil), path, "expected a socket NODE.TYPE.KEY, got %s", describeValue(v))
		return Socket{}, false
	}
	parts := strings.SplitN(v.Str, ".", 3)
	if len(parts) != 3 {
		b.r.errorf(v.Pos, path, "%s %q must have 3 parts, NODE.TYPE.KEY, like train.output.model.pkl (it has %d)", what, v.Str, len(parts))
		return Socket{}, false
	}
	return Socket{Node: parts[0], Type: parts[1], Key: parts[2]}, true
}

func (b *builder) node(v *Value, path string) *Node {
	n := &Node{
		Name: getStr(v, "name"), Type: NodeType(getStr(v, "type")), Step: getStr(v, "step"), Task: getStr(v, "task"),
		Deployment: getStr(v, "deployment"), Endpoints: strList(v.Get("endpoints")), Aliases: strList(v.Get("aliases")),
		OnError: getStr(v, "on-error"), EdgeMergeMode: getStr(v, "edge-merge-mode"), Commit: getStr(v, "commit"), Pos: v.Pos, fields: fieldsOf(v, nodeFields...),
	}
	if n.OnError == "" {
		n.OnError = defaultOnErrorVal
	}
	if n.EdgeMergeMode == "" {
		n.EdgeMergeMode = defaultEdgeMerge
	}
	if ov := v.Get("override"); ov != nil && ov.Kind == KindMap {
		n.Override = &Override{
			Command: strList(ov.Get("command")), Image: getStr(ov, "image"), Environment: getStr(ov, "environment"),
			RuntimeConfigPreset: getStr(ov, "runtime-config-preset"),
			Parameters:          b.parameters(ov.Get("parameters"), path+".override.parameters"),
			Inputs:              b.inputs(ov.Get("inputs"), path+".override.inputs"),
			EnvVars:             b.envVars(ov.Get("environment-variables"), path+".override.environment-variables"),
			Mounts:              b.mounts(ov.Get("mounts")), Pos: ov.Pos, raw: ov,
		}
	}
	if acts := v.Get("actions"); acts != nil {
		for _, av := range acts.Items {
			n.Actions = append(n.Actions, &Action{When: strList(av.Get("when")), If: strList(av.Get("if")), Then: strList(av.Get("then")), Pos: av.Pos, raw: av})
		}
	}
	return n
}
