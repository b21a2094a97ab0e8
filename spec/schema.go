package spec

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds the structure of valohai.yaml as Valohai's own JSON Schema
// describes it (the same keys, types, enums, patterns and limits, so that a file
// is accepted or rejected for the same reasons), and a validator for it that
// reports every problem with its position and what would be valid.

// jtype is a set of JSON Schema types.
type jtype uint8

const (
	tNull jtype = 1 << iota
	tBool
	tInt // "integer": an integer, or a float with no fractional part
	tNum // "number": any integer or float (never a boolean)
	tStr
	tArr
	tObj
)

type schema struct {
	name     string // what the value is, for messages ("step", "parameter")
	types    jtype  // 0: any type
	desc     string // how to describe the expected value, overriding the type names
	props    []prop
	closed   bool    // no keys besides props
	anyKey   *schema // every key's value (patternProperties "^.+$")
	required []string
	enum     []string
	cnst     string
	pattern  *regexp.Regexp
	patDesc  string
	maxLen   int
	min, max *float64
	items    *schema
	tuple    []*schema // prefixItems, and no more items than these
	oneOf    []*schema
	anyOf    []*schema
	// alt describes the alternatives of oneOf/anyOf when none matches by required keys.
	alt string
	// notBoth lists keys that may not appear together.
	notBoth []string
	// never fails whenever the value is present (JSON Schema `not: {}`).
	never bool
}

type prop struct {
	key string
	s   *schema
}

func (s *schema) prop(key string) *schema {
	for _, p := range s.props {
		if p.key == key {
			return p.s
		}
	}
	return nil
}

func (s *schema) keys() []string {
	out := make([]string, len(s.props))
	for i, p := range s.props {
		out[i] = p.key
	}
	return out
}

func fptr(f float64) *float64 { return &f }

var (
	sStr      = &schema{types: tStr}
	sBool     = &schema{types: tBool}
	sInt      = &schema{types: tInt}
	sNum      = &schema{types: tNum}
	sAny      = &schema{}
	sObj      = &schema{types: tObj}
	sArr      = &schema{types: tArr}
	sStrList  = &schema{types: tArr, items: sStr, desc: "a list of strings"}
	sStrOrArr = &schema{oneOf: []*schema{sStr, sStrList}, desc: "a string or a list of strings"}
	sDuration = &schema{oneOf: []*schema{sInt, sStr}, desc: `a number of seconds or a duration such as "1h 30m"`}
)

func obj(name string, required []string, props ...prop) *schema {
	return &schema{name: name, types: tObj, closed: true, props: props, required: required}
}

func p(key string, s *schema) prop { return prop{key, s} }

func list(item *schema) *schema {
	d := "a list"
	if item.name != "" {
		d = "a list of " + item.name + "s"
	}
	return &schema{types: tArr, items: item, desc: d}
}

func enum(values ...string) *schema { return &schema{types: tStr, enum: values} }

var (
	schEnvVar = obj("environment variable", []string{"name"},
		p("default", sStr), p("description", sStr), p("name", sStr), p("optional", sBool))
	schInput = obj("input", []string{"name"},
		p("default", sStrOrArr), p("description", sStr), p("download", enum("always", "on-demand")),
		p("filename", sStr),
		p("keep-directories", &schema{oneOf: []*schema{sBool, enum("none", "full", "suffix")}, desc: "true, false, none, full or suffix"}),
		p("name", &schema{types: tStr, maxLen: 64}), p("optional", sBool))
	schMount = &schema{name: "mount", desc: `"/source:/destination" or a mapping with source and destination`, anyOf: []*schema{
		{types: tStr, pattern: regexp.MustCompile(`^/.+:/.+$`), patDesc: `"/absolute/source:/absolute/destination"`},
		obj("mount", []string{"source", "destination"},
			p("destination", &schema{types: tStr, pattern: regexp.MustCompile(`^/.+$`), patDesc: "an absolute path"}),
			p("options", sObj), p("readonly", sBool), p("source", sStr), p("type", sStr)),
	}}
	schOutput = obj("output", []string{"name"}, p("description", sStr), p("name", sStr))
	schParam  = obj("parameter", []string{"name"},
		p("category", sStr), p("choices", sArr), p("default", sAny), p("description", sStr),
		p("max", sNum), p("min", sNum), p("multiple", enum("none", "repeat", "separate")),
		p("multiple-separator", sStr), p("name", sStr), p("optional", sBool),
		p("pass-as", sStr), p("pass-false-as", sStr), p("pass-true-as", sStr),
		p("type", enum("flag", "float", "integer", "string")),
		p("widget", &schema{desc: "a widget name or a mapping with a type", oneOf: []*schema{
			{name: "widget", types: tObj, props: []prop{p("settings", sObj), p("type", sStr)}, required: []string{"type"}},
			sStr,
		}}))
	schMinMax   = obj("resource", nil, p("max", sNum), p("min", sNum))
	schMinMaxMB = obj("resource", nil, p("max", sInt), p("min", sInt))
	schDevices  = &schema{name: "devices", types: tObj, anyKey: &schema{types: tNum, min: fptr(1)}}
	schStep     = obj("step", []string{"command", "name", "image"},
		p("category", sStr), p("command", sStrOrArr), p("description", sStr), p("environment", sStr),
		p("environment-variable-groups", sStrList), p("environment-variables", list(schEnvVar)),
		p("icon", sStr), p("image", sStr), p("inputs", list(schInput)), p("mounts", list(schMount)),
		p("cache-volumes", sStrList), p("name", sStr), p("no-output-timeout", sDuration),
		p("outputs", list(schOutput)), p("parameters", list(schParam)),
		p("resources", obj("resources", nil, p("cpu", schMinMax), p("devices", schDevices), p("memory", schMinMax))),
		p("runtime-config-preset", sStr), p("source-path", sStr), p("stop-condition", sStr),
		p("time-limit", sDuration), p("upload-store", &schema{types: tStr, maxLen: 64}))

	schRule = obj("rule", nil,
		p("base", sNum), p("count", sNum), p("distribution", sStr), p("end", sNum), p("integerify", sBool),
		p("items", &schema{types: tArr, items: &schema{types: tNum | tStr | tBool}, desc: "a list of numbers, strings or booleans"}),
		p("max", sNum), p("min", sNum), p("numberify", sBool), p("seed", sNum), p("start", sNum),
		p("step", sNum), p("value", sNum))
	schVariantParam = obj("task parameter", []string{"name", "rules", "style"},
		p("name", sStr), p("rules", schRule), p("style", enum("linear", "logspace", "multiple", "random", "single")))
	schTask = func() *schema {
		s := obj("task", []string{"name", "step"},
			p("description", sStr), p("engine", sStr), p("execution-batch-size", sInt), p("execution-count", sInt),
			p("maximum-queued-executions", sInt), p("name", sStr), p("on-child-error", sStr),
			p("optimization-target-metric", sStr), p("optimization-target-value", sNum),
			p("parameter-sets", &schema{types: tArr, items: sObj, desc: "a list of mappings of parameter values"}),
			p("parameters", list(schVariantParam)), p("reuse-children", sBool), p("step", sStr),
			p("stop-condition", sStr), p("type", sStr))
		s.anyOf = []*schema{{required: []string{"parameters"}}, {required: []string{"parameter-sets"}}}
		s.alt = "a task needs `parameters` (variant parameters) or `parameter-sets`"
		return s
	}()

	schToleration = func() *schema {
		s := obj("toleration", nil,
			p("effect", enum("PreferNoSchedule", "NoSchedule", "NoExecute")), p("key", sStr),
			p("operator", enum("Exists", "Equal")), p("value", sStr))
		s.oneOf = []*schema{
			{required: []string{"key"}},
			{props: []prop{p("key", &schema{never: true}), p("operator", &schema{cnst: "Exists"})}},
		}
		s.alt = "a toleration needs a `key`, unless its operator is Exists"
		return s
	}()
	schEndpoint = func() *schema {
		s := obj("endpoint", []string{"name", "image"},
			p("description", sStr), p("files", list(obj("file", []string{"name", "path"}, p("description", sStr), p("name", sStr), p("path", sStr)))),
			p("image", sStr),
			p("name", &schema{types: tStr, pattern: regexp.MustCompile(`^[a-z][a-z0-9-]+$`), patDesc: "lowercase letters, digits and dashes, starting with a letter (at least 2 characters)"}),
			p("node-selector", &schema{types: tStr, pattern: regexp.MustCompile(`=`), patDesc: "label=value"}),
			p("port", &schema{types: tNum, min: fptr(1025), max: fptr(65535)}),
			p("resources", obj("resources", nil, p("cpu", schMinMax), p("devices", schDevices), p("ephemeral-storage", schMinMaxMB), p("memory", schMinMax))),
			p("server-command", sStrOrArr), p("tolerations", list(schToleration)), p("wsgi", sStr))
		s.oneOf = []*schema{{required: []string{"server-command"}}, {required: []string{"wsgi"}}}
		s.alt = "an endpoint needs exactly one of `server-command` or `wsgi`"
		return s
	}()

	schAction   = obj("action", []string{"when", "then"}, p("if", sStrOrArr), p("then", sStrOrArr), p("when", sStrOrArr))
	schMerge    = enum("replace", "append")
	schOverride = obj("override", nil,
		p("command", sStrOrArr), p("environment", sStr), p("environment-variables", list(schEnvVar)),
		p("image", sStr), p("inputs", list(schInput)), p("mounts", list(schMount)),
		p("parameters", list(schParam)), p("runtime-config-preset", sStr))
	schExecNode = obj("execution node", []string{"name", "step", "type"},
		p("actions", list(schAction)), p("commit", sStr), p("edge-merge-mode", schMerge), p("name", sStr),
		p("on-error", enum("stop-all", "stop-next", "continue", "retry")), p("override", schOverride),
		p("step", sStr), p("type", &schema{types: tStr, cnst: "execution"}))
	schDeployNode = obj("deployment node", []string{"name", "deployment", "type"},
		p("actions", list(schAction)), p("aliases", sStrList), p("deployment", sStr), p("endpoints", sStrList),
		p("name", sStr), p("on-error", enum("stop-all", "stop-next", "continue")),
		p("type", &schema{types: tStr, cnst: "deployment"}))
	schTaskNode = func() *schema {
		s := obj("task node", []string{"name", "type"},
			p("actions", list(schAction)), p("commit", sStr), p("edge-merge-mode", schMerge), p("name", sStr),
			p("on-error", enum("stop-all", "stop-next", "continue", "retry")), p("override", schOverride),
			p("step", sStr), p("type", &schema{types: tStr, cnst: "task"}), p("task", sStr))
		s.oneOf = []*schema{{required: []string{"step"}}, {required: []string{"task"}}}
		s.alt = "a task node needs either `step` or `task` (a task blueprint)"
		s.notBoth = []string{"step", "task"}
		return s
	}()
	schNode = &schema{name: "node", types: tObj, desc: "a node (type execution, task or deployment)",
		anyOf: []*schema{schExecNode, schDeployNode, schTaskNode}}
	schEdge = &schema{name: "edge", desc: "an edge: [source, target] or {source: ..., target: ...}", anyOf: []*schema{
		{name: "edge", types: tArr, tuple: []*schema{sStr, sStr}},
		obj("edge", []string{"source", "target"}, p("configuration", sObj), p("source", sStr), p("target", sStr)),
	}}
	schPipelineParam = obj("pipeline parameter", nil,
		p("category", sStr), p("default", sAny), p("description", sStr), p("name", sStr),
		p("target", sStr), p("targets", sStrOrArr))
	schPipeline = obj("pipeline", []string{"edges", "name", "nodes"},
		p("edges", list(schEdge)), p("name", sStr), p("nodes", list(schNode)),
		p("parameters", list(schPipelineParam)), p("reuse-executions", sBool))

	// Deployments are not in Valohai's schema, but its parser refuses unknown
	// keys. It takes any value as `defaults`: lintDeployment judges it.
	schDeployment = obj("deployment", []string{"name"}, p("name", sStr), p("defaults", sAny))

	schItem = &schema{name: "item", types: tObj, desc: "a mapping such as `step: {...}`", props: []prop{
		p("endpoint", schEndpoint), p("pipeline", schPipeline), p("step", schStep), p("task", schTask),
		p("blueprint", schPipeline), p("deployment", schDeployment),
	}}
	schFile = &schema{types: tArr, items: schItem, desc: "a list of steps, pipelines, tasks and endpoints (each item `- step: ...`)"}
)

// path is the location of a value inside the document: map keys and list indexes.
type path []any

func (pt path) with(el any) path {
	out := make(path, len(pt)+1)
	copy(out, pt)
	out[len(pt)] = el
	return out
}

// verr is one schema violation.
type verr struct {
	pos      Pos
	path     path
	rendered string // the path for people, once the value it names may be gone
	msg      string
	badType  bool // the value at path has the wrong type (used to pick among alternatives)
}

type validator struct {
	errs []verr
	r    *reporter // its context stops the walk; nil: never stopped
}

func (vd *validator) fail(v *Value, pt path, badType bool, format string, args ...any) {
	vd.errs = append(vd.errs, verr{pos: posOf(v, nil), path: pt, msg: fmt.Sprintf(format, safeArgs(args)...), badType: badType})
}

// check validates v against s, recording violations.
func (vd *validator) check(s *schema, v *Value, pt path, parent *Value) {
	if s.never {
		vd.fail(v, pt, false, "must not be set here")
		return
	}
	if s.types != 0 && !typeMatches(s.types, v) {
		hint := quoteHint(s.types, v)
		if v.IsNull() && s.types&(tObj|tArr) != 0 && len(pt) > 0 {
			hint = fmt.Sprintf("; nothing is indented under `%v:`: if the lines below belong to it, indent them further", pt[len(pt)-1])
		}
		vd.fail(valueOr(v, parent), pt, true, "expected %s, got %s%s", describe(s), describeValue(v), hint)
		return
	}
	if s.cnst != "" && !(v.IsString() && v.Str == s.cnst) {
		vd.fail(v, pt, false, "must be %q, not %s", s.cnst, describeValue(v))
	}
	if len(s.enum) > 0 && v.IsString() && !containsStr(s.enum, v.Str) {
		vd.fail(v, pt, false, "%q is not valid here; use one of: %s%s", v.Str, strings.Join(s.enum, ", "), didYouMean(v.Str, s.enum))
	}
	if v.IsString() {
		if s.maxLen > 0 && utf8.RuneCountInString(v.Str) > s.maxLen {
			vd.fail(v, pt, false, "%q is %d characters long; at most %d are allowed", v.Str, utf8.RuneCountInString(v.Str), s.maxLen)
		}
		if s.pattern != nil && !s.pattern.MatchString(v.Str) {
			vd.fail(v, pt, false, "%q is not valid: expected %s", v.Str, s.patDesc)
		}
	}
	if v.IsNumber() {
		if s.min != nil && v.Number() < *s.min {
			vd.fail(v, pt, false, "%s is less than the minimum %s", v.Repr(), PyFloatOrInt(*s.min))
		}
		if s.max != nil && v.Number() > *s.max {
			vd.fail(v, pt, false, "%s is greater than the maximum %s", v.Repr(), PyFloatOrInt(*s.max))
		}
	}
	if v != nil && v.Kind == KindMap {
		vd.checkMap(s, v, pt)
	}
	if v != nil && v.Kind == KindList {
		if s.items != nil {
			for i, it := range v.Items {
				if vd.r != nil && vd.r.stopped() {
					return
				}
				vd.check(s.items, it, pt.with(i), v)
			}
		}
		if s.tuple != nil {
			for i, it := range v.Items {
				if i < len(s.tuple) {
					vd.check(s.tuple[i], it, pt.with(i), v)
				}
			}
			if len(v.Items) > len(s.tuple) {
				vd.fail(v.Items[len(s.tuple)], pt.with(len(s.tuple)), false, "%s has %d items; it takes at most %d", describe(s), len(v.Items), len(s.tuple))
			}
		}
	}
	if len(s.oneOf) > 0 {
		vd.alternatives(s, s.oneOf, true, v, pt, parent)
	}
	if len(s.anyOf) > 0 {
		vd.alternatives(s, s.anyOf, false, v, pt, parent)
	}
}

func (vd *validator) checkMap(s *schema, v *Value, pt path) {
	for _, r := range s.required {
		if !v.Has(r) {
			what := "a mapping"
			if s.name != "" {
				what = article(s.name) + " " + s.name
			}
			vd.fail(v, pt, false, "missing required key %q (%s needs %s)", r, what, quoteList(s.required))
		}
	}
	if len(s.notBoth) > 0 {
		all := true
		for _, k := range s.notBoth {
			all = all && v.Has(k)
		}
		if all {
			vd.fail(v, pt, false, "set only one of %s", quoteList(s.notBoth))
		}
	}
	for _, pr := range v.Pairs {
		key := pr.Key
		var sub *schema
		if key.IsString() {
			sub = s.prop(key.Str)
		}
		switch {
		case sub != nil:
			vd.check(sub, pr.Value, pt.with(key.Str), v)
		case s.anyKey != nil && key.String() != "":
			vd.check(s.anyKey, pr.Value, pt.with(key.String()), v)
		case s.closed:
			what := "here"
			if s.name != "" {
				what = "in " + article(s.name) + " " + s.name
			}
			name := key.String()
			if !key.IsString() {
				name = key.Repr()
			}
			vd.fail(key, pt.with(name), false, "unknown key %q %s%s; valid keys: %s", name, what, didYouMean(name, s.keys()), strings.Join(s.keys(), ", "))
		}
	}
}

// alternatives checks oneOf/anyOf and, when nothing matches, reports the errors
// of the alternative the value most likely meant.
func (vd *validator) alternatives(s *schema, alts []*schema, exactlyOne bool, v *Value, pt path, parent *Value) {
	results := make([][]verr, len(alts))
	matched := 0
	// The alternative a map's `type` selects goes first: for anyOf, a match
	// there ends the search without checking (and describing) the others.
	order := make([]int, 0, len(alts))
	for i, a := range alts {
		if discriminates(a, v) {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	for _, i := range order {
		sub := &validator{r: vd.r}
		sub.check(alts[i], v, pt, parent)
		results[i] = sub.errs
		if len(sub.errs) == 0 {
			matched++
			if !exactlyOne {
				return
			}
		}
	}
	if matched == 1 || (matched > 1 && !exactlyOne) {
		return
	}
	if matched > 1 {
		msg := "matches more than one alternative"
		if s.alt != "" {
			msg = s.alt
		}
		vd.fail(valueOr(v, parent), pt, false, "%s", msg)
		return
	}
	// Alternatives that are only about which keys are present (required-only).
	if s.alt != "" && allRequiredOnly(alts) {
		vd.fail(valueOr(v, parent), pt, false, "%s", s.alt)
		return
	}
	var candidates []int
	for i, errs := range results {
		if !(len(errs) == 1 && errs[0].badType && len(errs[0].path) == len(pt)) {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		d := s.desc
		if d == "" {
			var ds []string
			for _, a := range alts {
				ds = append(ds, describe(a))
			}
			d = strings.Join(ds, " or ")
		}
		vd.fail(valueOr(v, parent), pt, true, "expected %s, got %s%s", d, describeValue(v), quoteHint(tStr, v))
		return
	}
	best := candidates[0]
	for _, i := range candidates {
		if discriminates(alts[i], v) {
			best = i
			break
		}
		if len(results[i]) < len(results[best]) {
			best = i
		}
	}
	if v != nil && v.Kind == KindMap && alts[best].name != "" && !discriminates(alts[best], v) && len(candidates) > 1 {
		if t := v.Get("type"); t != nil {
			var types []string
			for _, a := range alts {
				if tp := a.prop("type"); tp != nil && tp.cnst != "" {
					types = append(types, tp.cnst)
				}
			}
			if len(types) > 0 {
				vd.fail(t, pt.with("type"), false, "%s is not a node type; use one of: %s%s", t.Repr(), strings.Join(types, ", "), didYouMean(t.String(), types))
				return
			}
		}
	}
	vd.errs = append(vd.errs, results[best]...)
}

func allRequiredOnly(alts []*schema) bool {
	for _, a := range alts {
		if len(a.required) == 0 || a.types != 0 || len(a.props) > 0 && !(len(a.props) > 0 && a.required == nil) {
			if len(a.required) == 0 && len(a.props) > 0 {
				continue // toleration's "key absent, operator Exists" branch
			}
			if len(a.required) == 0 {
				return false
			}
		}
	}
	return true
}

// discriminates reports whether a map's `type` key selects this alternative.
func discriminates(s *schema, v *Value) bool {
	tp := s.prop("type")
	if tp == nil || tp.cnst == "" || v == nil || v.Kind != KindMap {
		return false
	}
	t := v.Get("type")
	return t.IsString() && t.Str == tp.cnst
}

func valueOr(v, parent *Value) *Value {
	if v != nil && v.Pos.Line > 0 {
		return v
	}
	return parent
}

func typeMatches(t jtype, v *Value) bool {
	if v == nil {
		return t&tNull != 0
	}
	switch v.Kind {
	case KindNull:
		return t&tNull != 0
	case KindBool:
		return t&tBool != 0
	case KindInt:
		return t&(tInt|tNum) != 0
	case KindFloat:
		if t&tNum != 0 {
			return true
		}
		return t&tInt != 0 && !math.IsInf(v.Float, 0) && v.Float == math.Trunc(v.Float)
	case KindString:
		return t&tStr != 0
	case KindList:
		return t&tArr != 0
	case KindMap:
		return t&tObj != 0
	}
	return false // timestamps match no JSON type
}

func describe(s *schema) string {
	if s.desc != "" {
		return s.desc
	}
	if s.name != "" && s.types == tObj {
		return "a " + s.name + " (a mapping)"
	}
	var out []string
	for _, t := range []struct {
		t jtype
		d string
	}{{tNull, "null"}, {tBool, "true or false"}, {tInt, "an integer"}, {tNum, "a number"}, {tStr, "a string"}, {tArr, "a list"}, {tObj, "a mapping"}} {
		if s.types&t.t != 0 {
			out = append(out, t.d)
		}
	}
	if len(out) == 0 {
		return "a value"
	}
	return strings.Join(out, " or ")
}

func describeValue(v *Value) string {
	if v.IsNull() {
		return "nothing (null)"
	}
	switch v.Kind {
	case KindList:
		return fmt.Sprintf("a list of %d items", len(v.Items))
	case KindMap:
		return "a mapping"
	case KindString:
		s := v.Str
		if len(s) > 60 {
			s = s[:57] + "..."
		}
		return fmt.Sprintf("a string (%q)", s)
	}
	text := v.Text
	if text == "" {
		text = v.Repr()
	}
	article := "a "
	if strings.HasPrefix(v.TypeName(), "i") {
		article = "an "
	}
	return fmt.Sprintf("%s%s (%s)", article, v.TypeName(), text)
}

// quoteHint explains YAML 1.1 typing when a string was expected and an
// unquoted scalar was read as something else.
func quoteHint(want jtype, v *Value) string {
	if want&tStr == 0 || v == nil || !v.Plain || v.Kind == KindString || v.Kind == KindList || v.Kind == KindMap {
		return ""
	}
	if v.Kind == KindNull {
		if v.Text == "" {
			return ""
		}
	}
	return fmt.Sprintf("; YAML reads the unquoted %s as %s: write %q in quotes if you mean the text", v.Text, articleType(v), v.Text)
}

// PyFloatOrInt prints a bound the way it was most likely written.
func PyFloatOrInt(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return PyFloat(f)
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteList(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = "`" + k + "`"
	}
	switch len(q) {
	case 0:
		return "nothing"
	case 1:
		return q[0]
	case 2:
		return q[0] + " and " + q[1]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// DidYouMean suggests the closest of valid for a likely typo of got, as
// sluice's messages put it (` (did you mean "gke-prod"?)`), or "".
func DidYouMean(got string, valid []string) string { return didYouMean(got, valid) }

// didYouMean suggests the closest valid word for a likely typo.
func didYouMean(got string, valid []string) string {
	if len(valid) > maxSuggest {
		return ""
	}
	best, bestD := "", 1<<30
	for _, v := range valid {
		d := editDistance(strings.ToLower(got), strings.ToLower(v))
		if d < bestD {
			best, bestD = v, d
		}
	}
	if best != "" && len(got) > 2 && bestD <= max(2, len(got)/3) && best != got {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	prev2 := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1) // a transposition
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// sortedErrs orders schema errors by position.
func sortedErrs(errs []verr) []verr {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].pos.Line != errs[j].pos.Line {
			return errs[i].pos.Line < errs[j].pos.Line
		}
		return errs[i].pos.Col < errs[j].pos.Col
	})
	return errs
}

func init() {
	schRule.desc = "a mapping of rules (such as start, end, step or items)"
}

func article(word string) string {
	if word != "" && strings.IndexByte("aeiou", word[0]) >= 0 {
		return "an"
	}
	return "a"
}
