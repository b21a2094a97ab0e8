package spec

import (
	"strings"
	"testing"
)

func parseOK(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, diags := Parse("test.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	return cfg
}

const taskStep = `
- step:
    name: train
    image: busybox
    command: train {parameters}
    parameters:
      - {name: lr, type: float}
      - {name: epochs, type: integer}
      - {name: opt, type: string}
`

func TestTaskVariants(t *testing.T) {
	cases := []struct {
		name, task string
		want       []string // variant labels, in order
		err        string
	}{
		{"grid", `
- task:
    name: t
    step: train
    parameters:
      - {name: lr, style: multiple, rules: {items: [0.1, 0.01]}}
      - {name: epochs, style: linear, rules: {start: 1, end: 3, step: 1}}`,
			[]string{"epochs=1 lr=0.1", "epochs=2 lr=0.1", "epochs=3 lr=0.1", "epochs=1 lr=0.01", "epochs=2 lr=0.01", "epochs=3 lr=0.01"}, ""},
		{"single and logspace", `
- task:
    name: t
    step: train
    parameters:
      - {name: epochs, style: single, rules: {value: 5}}
      - {name: lr, style: logspace, rules: {start: -3, end: -1, count: 3, base: 10}}`,
			[]string{"epochs=5 lr=0.001", "epochs=5 lr=0.01", "epochs=5 lr=0.1"}, ""},
		{"linear floats", `
- task:
    name: t
    step: train
    parameters:
      - {name: lr, style: linear, rules: {start: 0.1, end: 0.3, step: 0.1}}`,
			[]string{"lr=0.1", "lr=0.2", "lr=0.3"}, ""},
		{"manual", `
- task:
    name: t
    step: train
    type: manual_search
    parameter-sets:
      - {lr: 0.5, epochs: 2}
      - {lr: 0.25, epochs: 4}`,
			[]string{"epochs=2 lr=0.5", "epochs=4 lr=0.25"}, ""},
		{"bayesian refused", `
- task:
    name: t
    step: train
    type: bayesian_tpe
    parameters:
      - {name: lr, style: single, rules: {value: 1}}`,
			nil, "need Valohai's own optimizer"},
		{"huge grid refused", `
- task:
    name: t
    step: train
    parameters:
      - {name: lr, style: linear, rules: {start: 0, end: 200, step: 1}}
      - {name: epochs, style: linear, rules: {start: 0, end: 200, step: 1}}`,
			nil, "more than 10000 combinations"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := parseOK(t, taskStep+c.task)
			vs, err := cfg.Task("t").Variants()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.Label())
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("variants\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// A random search with a seed draws the same values every time.
func TestRandomSearchIsSeeded(t *testing.T) {
	cfg := parseOK(t, taskStep+`
- task:
    name: t
    step: train
    type: random_search
    execution-count: 5
    parameters:
      - {name: lr, style: random, rules: {min: 0.001, max: 0.1, count: 20, seed: 7, distribution: loguniform}}
      - {name: epochs, style: random, rules: {min: 1, max: 10, count: 10, integerify: true}}`)
	a, err := cfg.Task("t").Variants()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cfg.Task("t").Variants()
	if len(a) != 5 {
		t.Fatalf("%d variants, want 5", len(a))
	}
	for i := range a {
		if a[i].Label() != b[i].Label() {
			t.Fatalf("not repeatable: %s vs %s", a[i].Label(), b[i].Label())
		}
		lr := a[i]["lr"].Number()
		if lr < 0.001 || lr > 0.1 || a[i]["epochs"].Kind != KindInt {
			t.Errorf("variant %s out of its rules", a[i].Label())
		}
	}
}
