package spec

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
)

// SluiceConfig is sluice.yaml: what valohai.yaml cannot say. It sits beside
// valohai.yaml and is optional; every key is optional.
type SluiceConfig struct {
	File string
	// Steps holds per-step settings by step name.
	Steps map[string]StepConfig
}

// StepConfig is the sluice.yaml section of one step.
type StepConfig struct {
	// Reuse, when false, makes the step run every time (say, it reads a
	// database whose changes sluice cannot see). Unset means reuse.
	Reuse *bool
}

// Reuses reports whether a step's results may be reused.
func (c *SluiceConfig) Reuses(step string) bool {
	if c == nil {
		return true
	}
	s, ok := c.Steps[step]
	return !ok || s.Reuse == nil || *s.Reuse
}

var schSluiceStep = obj("step setting", nil, p("reuse", sBool))

var schSluice = &schema{name: "sluice.yaml", types: tObj, closed: true, desc: "a mapping of settings", props: []prop{
	p("steps", &schema{name: "steps", types: tObj, anyKey: schSluiceStep, desc: "a mapping of step names to their settings"}),
}}

// LoadSluiceConfig reads sluice.yaml. A file that does not exist is no
// error: it returns nil. Unknown keys and wrong types are errors with file,
// line and column; step names that valohai.yaml does not define are errors
// too (a typo would silently change nothing).
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
	for _, e := range sortedErrs(vd.errs) {
		r.errorf(e.pos, renderSluicePath(e.path), "%s", e.msg)
	}
	if r.diags.HasErrors() {
		return nil, r.diags
	}
	out := &SluiceConfig{File: name, Steps: map[string]StepConfig{}}
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
			out.Steps[step] = sc
		}
	}
	if r.diags.HasErrors() {
		return nil, r.diags
	}
	return out, r.diags
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
