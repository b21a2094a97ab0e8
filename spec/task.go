package spec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// Variant is one set of parameter values of a task: one execution of its step.
type Variant map[string]*Value

// Label names a variant for people: "lr=0.1 epochs=3".
func (v Variant) Label() string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + v[k].String()
	}
	return strings.Join(parts, " ")
}

// maxVariants bounds how many executions one task may ask for.
const maxVariants = 10000

// Variants generates the parameter sets a task runs, as Valohai does:
// grid_search takes every combination of the parameters' values,
// random_search draws execution-count sets (seeded by the rules' seed, so a
// run is repeatable), manual_search takes parameter-sets as written.
// bayesian_tpe and distributed need Valohai's own services and are refused.
func (t *Task) Variants() ([]Variant, error) {
	switch t.Type {
	case "manual_search":
		var out []Variant
		for i, set := range t.ParameterSets {
			v := Variant{}
			for _, p := range set.Pairs {
				v[p.Key.String()] = p.Value
			}
			if len(v) == 0 {
				return nil, fmt.Errorf("task %q: parameter-sets[%d] sets nothing", t.Name, i)
			}
			out = append(out, v)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("task %q: a manual search needs parameter-sets", t.Name)
		}
		return out, nil
	case "grid_search", "":
		out := []Variant{{}}
		for _, vp := range t.Parameters {
			values, err := vp.Values(nil)
			if err != nil {
				return nil, fmt.Errorf("task %q: %w", t.Name, err)
			}
			if len(out)*len(values) > maxVariants {
				return nil, fmt.Errorf("task %q: the grid has more than %d combinations", t.Name, maxVariants)
			}
			next := make([]Variant, 0, len(out)*len(values))
			for _, base := range out {
				for _, val := range values {
					v := Variant{}
					for k, x := range base {
						v[k] = x
					}
					v[vp.Name] = val
					next = append(next, v)
				}
			}
			out = next
		}
		if len(t.Parameters) == 0 {
			return nil, fmt.Errorf("task %q has no parameters to vary", t.Name)
		}
		return out, nil
	case "random_search":
		count := int64(1)
		if t.ExecutionCount != nil {
			count = *t.ExecutionCount
		}
		if count < 1 || count > maxVariants {
			return nil, fmt.Errorf("task %q: execution-count %d must be between 1 and %d", t.Name, count, maxVariants)
		}
		seed := uint64(0)
		for _, vp := range t.Parameters {
			if s := vp.Rules.Get("seed"); s.IsNumber() {
				seed = uint64(s.Number())
			}
		}
		rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
		out := make([]Variant, count)
		for i := range out {
			out[i] = Variant{}
			for _, vp := range t.Parameters {
				values, err := vp.Values(rng)
				if err != nil {
					return nil, fmt.Errorf("task %q: %w", t.Name, err)
				}
				out[i][vp.Name] = values[rng.IntN(len(values))]
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("task %q: %s tasks need Valohai's own optimizer or cluster; sluice runs grid_search, random_search and manual_search", t.Name, t.Type)
}

// Values lists the values a variant parameter takes. For the random style it
// draws count values from rng (a fixed seed when rng is nil).
func (vp *VariantParameter) Values(rng *rand.Rand) ([]*Value, error) {
	num := func(key string) (float64, bool) {
		v := vp.Rules.Get(key)
		if !v.IsNumber() {
			return 0, false
		}
		return v.Number(), true
	}
	integerify := vp.Rules.Get("integerify").Truthy()
	number := func(f float64) *Value {
		if integerify {
			return NewInt(int64(math.Round(f)))
		}
		return NewFloat(f)
	}
	switch vp.Style {
	case "single":
		v := vp.Rules.Get("value")
		if v.IsNull() {
			return nil, fmt.Errorf("parameter %s: style single needs a value", vp.Name)
		}
		return []*Value{v}, nil
	case "multiple":
		items := vp.Rules.Get("items")
		if items == nil || len(items.Items) == 0 {
			return nil, fmt.Errorf("parameter %s: style multiple needs items", vp.Name)
		}
		return items.Items, nil
	case "linear":
		start, ok1 := num("start")
		end, ok2 := num("end")
		step, ok3 := num("step")
		if !ok1 || !ok2 || !ok3 || step <= 0 {
			return nil, fmt.Errorf("parameter %s: style linear needs start, end and a positive step", vp.Name)
		}
		if (end-start)/step > maxVariants {
			return nil, fmt.Errorf("parameter %s: more than %d values from %v to %v by %v", vp.Name, maxVariants, start, end, step)
		}
		var out []*Value
		for i := 0; ; i++ {
			x := start + float64(i)*step
			if x > end+step*1e-9 {
				break
			}
			out = append(out, linearValue(x, start, step, integerify))
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("parameter %s: no values from %v to %v", vp.Name, start, end)
		}
		return out, nil
	case "logspace":
		start, ok1 := num("start")
		end, ok2 := num("end")
		count, ok3 := num("count")
		base, ok4 := num("base")
		if !ok4 {
			base = 10
		}
		if !ok1 || !ok2 || !ok3 || count < 1 || count > maxVariants {
			return nil, fmt.Errorf("parameter %s: style logspace needs start, end and a count of 1 to %d", vp.Name, maxVariants)
		}
		out := make([]*Value, int(count))
		for i := range out {
			e := start
			if count > 1 {
				e = start + (end-start)*float64(i)/(count-1)
			}
			out[i] = number(math.Pow(base, e))
		}
		return out, nil
	case "random":
		lo, ok1 := num("min")
		hi, ok2 := num("max")
		count, ok3 := num("count")
		if !ok1 || !ok2 || !ok3 || count < 1 || count > maxVariants || hi < lo {
			return nil, fmt.Errorf("parameter %s: style random needs min <= max and a count of 1 to %d", vp.Name, maxVariants)
		}
		if rng == nil {
			seed := uint64(0)
			if s, ok := num("seed"); ok {
				seed = uint64(s)
			}
			rng = rand.New(rand.NewPCG(seed, seed^0x5eed))
		}
		dist := vp.Rules.Get("distribution").String()
		out := make([]*Value, int(count))
		for i := range out {
			var x float64
			switch dist {
			case "loguniform":
				if lo <= 0 {
					return nil, fmt.Errorf("parameter %s: a loguniform distribution needs min > 0", vp.Name)
				}
				x = math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
			case "uniform", "None", "":
				x = lo + rng.Float64()*(hi-lo)
			default:
				return nil, fmt.Errorf("parameter %s: unknown distribution %q; use uniform or loguniform", vp.Name, dist)
			}
			out[i] = number(x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("parameter %s: unknown style %q", vp.Name, vp.Style)
}

// linearValue keeps integers integers when the start and step are whole.
func linearValue(x, start, step float64, integerify bool) *Value {
	if integerify || start == math.Trunc(start) && step == math.Trunc(step) {
		return NewInt(int64(math.Round(x)))
	}
	return NewFloat(math.Round(x*1e12) / 1e12)
}
