package spec

import (
	"fmt"
	"strings"
)

// BuildCommand renders the step's command items with parameter values, the way
// Valohai's build_command does: the values given on top of the defaults of the
// non-flag parameters (flags only appear when given a value), then
// {parameters}/{params}, {parameter:NAME}, {parameter-value:NAME} and
// {source-path} interpolated into each item and every value shell-quoted.
// Any other {text} stays as it is. It returns one string per command item.
func (s *Step) BuildCommand(values map[string]*Value) ([]string, error) {
	return BuildCommand(s.Command, s.Parameters, s.parameterValues(values), s.specials())
}

// BuildCommandWith is BuildCommand with a replacement command (a node override).
func (s *Step) BuildCommandWith(command []string, values map[string]*Value) ([]string, error) {
	if len(command) == 0 {
		command = s.Command
	}
	return BuildCommand(command, s.Parameters, s.parameterValues(values), s.specials())
}

func (s *Step) specials() map[string]string {
	if !s.HasSourcePath {
		return nil
	}
	return map[string]string{"source-path": s.SourcePath}
}

// parameterValues overlays given values on the non-flag defaults.
func (s *Step) parameterValues(values map[string]*Value) map[string]*Value {
	out := make(map[string]*Value, len(s.Parameters)+len(values))
	for _, p := range s.Parameters {
		if p.Default != nil && p.Type != TypeFlag {
			out[p.Name] = p.Default
		}
	}
	for k, v := range values {
		out[k] = v
	}
	return out
}

// BuildCommand interpolates parameter values into command items (see Step.BuildCommand).
// values holds the final value of each parameter; a nil or null value leaves the
// parameter out.
func BuildCommand(command []string, params []*Parameter, values map[string]*Value, specials map[string]string) ([]string, error) {
	byName := make(map[string]*Parameter, len(params))
	for _, p := range params {
		byName[p.Name] = p
	}
	out := make([]string, 0, len(command))
	for _, item := range command {
		var firstErr error
		rendered := placeholderRe.ReplaceAllStringFunc(item, func(m string) string {
			key := m[1 : len(m)-1]
			if v, ok := specials[key]; ok {
				return ShellQuote(v)
			}
			switch {
			case key == "parameters" || key == "params":
				var args []string
				for _, p := range params {
					a, err := p.Args(values[p.Name])
					if err != nil && firstErr == nil {
						firstErr = err
					}
					args = append(args, a...)
				}
				return quoteAll(args)
			case strings.HasPrefix(key, "parameter:"):
				if p, ok := byName[key[len("parameter:"):]]; ok {
					a, err := p.Args(values[p.Name])
					if err != nil && firstErr == nil {
						firstErr = err
					}
					return quoteAll(a)
				}
			case strings.HasPrefix(key, "parameter-value:"):
				if v, ok := values[key[len("parameter-value:"):]]; ok {
					return ShellQuote(v.String())
				}
			}
			return m
		})
		if firstErr != nil {
			return nil, firstErr
		}
		out = append(out, strings.TrimSpace(rendered))
	}
	return out, nil
}

func quoteAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}

// Args renders one parameter's value as command-line words (not yet quoted),
// following pass-as / pass-true-as / pass-false-as and multiple. It returns
// nothing for a null value, a false flag without pass-false-as, or an empty
// list.
func (p *Parameter) Args(v *Value) ([]string, error) {
	if v.IsNull() {
		return nil, nil
	}
	var tmpl string
	if p.Type == TypeFlag {
		if p.PassTrueAs != "" || p.PassFalseAs != "" {
			if v.Truthy() {
				tmpl = p.PassTrueAs
			} else {
				tmpl = p.PassFalseAs
			}
			if tmpl == "" {
				return nil, nil
			}
		} else if !v.Truthy() {
			return nil, nil
		}
	}
	if tmpl == "" {
		tmpl = p.PassAs
	}
	if tmpl == "" {
		if p.Type == TypeFlag {
			tmpl = "--{name}"
		} else {
			tmpl = "--{name}={value}"
		}
	}
	bits := strings.Fields(tmpl)
	format := func(val string) []string {
		out := make([]string, len(bits))
		for i, b := range bits {
			out[i] = fillPassAs(b, p.Name, val)
		}
		return out
	}
	switch p.Multiple {
	case MultipleRepeat:
		var out []string
		for _, atom := range listOf(v) {
			if atom.Kind == KindList {
				return nil, fmt.Errorf("parameter %q: a nested list %s is not a value", p.Name, atom.Repr())
			}
			out = append(out, format(atom.String())...)
		}
		return out, nil
	case MultipleSeparate:
		atoms := listOf(v)
		if len(atoms) == 0 {
			return nil, nil
		}
		parts := make([]string, len(atoms))
		for i, a := range atoms {
			parts[i] = a.String()
		}
		return format(strings.Join(parts, p.Separator)), nil
	}
	if v.Kind == KindList {
		return nil, fmt.Errorf("parameter %q takes one value, got the list %s (set `multiple: repeat` or `multiple: separate` to pass several)", p.Name, v.Repr())
	}
	return format(v.String()), nil
}

func listOf(v *Value) []*Value {
	if v.IsNull() {
		return nil
	}
	if v.Kind == KindList {
		return v.Items
	}
	return []*Value{v}
}

// fillPassAs fills {name}, {value} and {v} in one word of a pass-as template.
func fillPassAs(word, name, value string) string {
	if !strings.Contains(word, "{") {
		return word
	}
	var b strings.Builder
	for i := 0; i < len(word); {
		if word[i] == '{' {
			if j := strings.IndexByte(word[i:], '}'); j > 0 {
				switch word[i+1 : i+j] {
				case "name":
					b.WriteString(name)
					i += j + 1
					continue
				case "value", "v":
					b.WriteString(value)
					i += j + 1
					continue
				}
			}
		}
		b.WriteByte(word[i])
		i++
	}
	return b.String()
}

// ShellQuote quotes a word for /bin/sh the way Python's shlex.quote does: words
// made only of letters, digits and @%+=:,./- stay as they are, the empty word
// is ”, anything else is put in single quotes.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_@%+=:,./-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// JoinCommand joins rendered command items into one shell script with " && ",
// keeping a leading #! line on its own line.
func JoinCommand(items []string) string {
	if len(items) > 0 && strings.HasPrefix(items[0], "#!") {
		if len(items) == 1 {
			return items[0]
		}
		return items[0] + "\n" + strings.Join(items[1:], " && ")
	}
	return strings.Join(items, " && ")
}
