package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Behaviours of the reference parser beyond the shared corpus, one file each
// in testdata/conformance/reference-cases. EXPECTED.json there is the
// reference's own output on every file (reference.py wrote it): verdict, lint
// messages, and for accepted files what it sends Valohai for each pipeline
// (node parameter values, pipeline parameters with their targets). The table
// below says what sluice answers, with the reference's message beside it.
const referenceCases = "testdata/conformance/reference-cases"

type referenceCase struct {
	Accepted  bool `json:"accepted"`
	Errors    int  `json:"errors"`
	Warnings  int  `json:"warnings"`
	Lint      []struct{ Type, Message string }
	Converted map[string]struct {
		Nodes      map[string]map[string]any `json:"nodes"`
		Parameters map[string]struct {
			Expression any      `json:"expression"`
			Targets    []string `json:"targets"`
		} `json:"parameters"`
	} `json:"converted"`
}

func TestConformanceReferenceCases(t *testing.T) {
	cases := []struct {
		file string
		// sluice's diagnostics, one substring each, in order.
		errors, warnings []string
		// commands the plan renders per pipeline node.
		commands map[string]string
		// ints are NODE.PARAMETER values the plan must hold as integers.
		ints []string
	}{
		{
			// reference: accepted, no message; the converted pipeline keeps
			// the targets as written and Valohai sets train's epochs to 3.
			file:     "pipeline-parameter-plural-target.yaml",
			commands: map[string]string{"train": "echo train --epochs=3 --learning-rate=0.5", "retrain": "echo train --epochs=3 --learning-rate=0.1"},
		},
		{
			// reference: accepted, no message.
			file:     "pipeline-parameter-prefixed-target.yaml",
			warnings: []string{`target "train.parameter-value.epochs": Valohai reads the socket type "parameter-value" as "parameter"; write train.parameter.epochs`},
			commands: map[string]string{"train": "echo train --epochs=4"},
		},
		{
			// reference: error `Pipeline "misspelt-target" parameter "epochs"
			// target "train.parametres.epochs": socket type "parametres" is not supported.`
			file:   "pipeline-parameter-misspelt-target.yaml",
			errors: []string{`target "train.parametres.epochs": a pipeline parameter can only set node parameters (NODE.parameter.NAME), not parametres`},
		},
		{
			// reference: error `Pipeline plural-edge target type parameters
			// (between first and second) not valid`: edges take no plural.
			file:   "edge-plural-socket-type.yaml",
			errors: []string{`"parameters" is not a socket type; use one of: output, input, parameter,`},
		},
		{
			// reference: accepted, 3 warnings `Deployment "no-defaults" has no
			// defaults.target set which is required for deployment auto-creation.`
			file: "deployment-without-target.yaml",
			warnings: []string{
				`deployment-without-target.yaml:4:5: warning: deployment "no-defaults".defaults.target: deployment "no-defaults" has no defaults.target set`,
				`deployment-without-target.yaml:7:15: warning: deployment "empty-defaults".defaults.target: deployment "empty-defaults" has no defaults.target set`,
				`deployment-without-target.yaml:11:15: warning: deployment "empty-target".defaults.target: deployment "empty-target" has no defaults.target set`,
			},
		},
		{
			// reference: accepted, 4 warnings `Deployment "null-target" has no
			// defaults.target set which is required for deployment
			// auto-creation.` (also false-target, null-defaults,
			// empty-list-defaults); number-target and list-target pass
			// without a message.
			file: "deployment-defaults-any-value.yaml",
			warnings: []string{
				`deployment-defaults-any-value.yaml:8:15: warning: deployment "null-target".defaults.target: deployment "null-target" has no defaults.target set`,
				`deployment-defaults-any-value.yaml:11:24: warning: deployment "false-target".defaults.target: deployment "false-target" has no defaults.target set`,
				`deployment-defaults-any-value.yaml:14:14: warning: deployment "null-defaults".defaults.target: deployment "null-defaults" has no defaults.target set`,
				`deployment-defaults-any-value.yaml:17:15: warning: deployment "empty-list-defaults".defaults.target: deployment "empty-list-defaults" has no defaults.target set`,
				`deployment-defaults-any-value.yaml:20:24: warning: deployment "number-target".defaults.target: the target is the name or UUID of a deployment target, a string; got an integer (5)`,
				`deployment-defaults-any-value.yaml:23:24: warning: deployment "list-target".defaults.target: the target is the name or UUID of a deployment target, a string; got a list of 1 items`,
			},
		},
		{
			// reference: error `could not parse YAML: 'str' object has no
			// attribute 'get'`.
			file:   "deployment-defaults-not-a-mapping.yaml",
			errors: []string{`deployment-defaults-not-a-mapping.yaml:5:15: error: deployment "string-defaults".defaults: expected a mapping such as`},
		},
		{
			// reference: accepted, no message; Valohai's templates for tune
			// and grid have no batch-size, so that target sets nothing.
			file: "pipeline-parameter-task-node-target.yaml",
			warnings: []string{
				`pipeline-parameter-task-node-target.yaml:28:19: warning: pipeline "task-targets".parameters[1].targets: target "tune.parameters.batch-size": step "train" of task node "tune" has no parameter "batch-size", so the target sets nothing`,
				`pipeline-parameter-task-node-target.yaml:28:47: warning: pipeline "task-targets".parameters[1].targets: target "grid.parameter.batch-size": step "train" of task node "grid" has no parameter "batch-size"`,
			},
			commands: map[string]string{"grid": "echo train --epochs=3 --learning-rate=0.1"},
		},
		{
			// reference: accepted, no message; train gets epochs 50 (an
			// integer), learning-rate 0.5 and verbose true, tune epochs 20.
			file:     "override-untyped-parameter.yaml",
			commands: map[string]string{"train": "echo train --epochs=50 --learning-rate=0.5 --verbose", "tune": "echo train --epochs=20 --learning-rate=0.1"},
			ints:     []string{"train.epochs", "tune.epochs"},
		},
		{
			// reference: accepted, no message (it does not check an override's
			// values); sluice checks the merged parameter.
			file:     "override-untyped-parameter-bad-value.yaml",
			warnings: []string{`nodes[0].override.parameters[0].default: default many is not an integer`},
		},
	}
	data, err := os.ReadFile(filepath.Join(referenceCases, "EXPECTED.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]referenceCase
	if err := json.Unmarshal(data, &expected); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(referenceCases, "*.yaml"))
	if len(files) != len(expected) || len(files) != len(cases) {
		t.Fatalf("%d files, %d in EXPECTED.json, %d cases: each file needs its reference verdict and a case", len(files), len(expected), len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			ref, ok := expected[tc.file]
			if !ok {
				t.Fatalf("no reference verdict for %s", tc.file)
			}
			cfg, diags := ParseFile(filepath.Join(referenceCases, tc.file))
			if accepted := !diags.HasErrors(); accepted != ref.Accepted {
				t.Fatalf("accepted = %v, reference says %v (%v); diagnostics:\n%v", accepted, ref.Accepted, ref.Lint, diagsText(diags))
			}
			if ref.Errors > 0 && len(tc.errors) == 0 || ref.Warnings > 0 && len(tc.warnings) < ref.Warnings {
				t.Fatalf("the case must say what sluice reports where the reference reports %d errors, %d warnings", ref.Errors, ref.Warnings)
			}
			for _, sev := range []struct {
				s    Severity
				want []string
			}{{SeverityError, tc.errors}, {SeverityWarning, tc.warnings}} {
				var got []string
				for _, d := range diags {
					if d.Severity == sev.s {
						got = append(got, d.String())
					}
				}
				if len(got) != len(sev.want) {
					t.Errorf("%d %ss, want %d:\n%s", len(got), sev.s, len(sev.want), strings.Join(got, "\n"))
					continue
				}
				for i, w := range sev.want {
					if !strings.Contains(got[i], w) {
						t.Errorf("%s %d:\n got %s\nwant %s", sev.s, i, got[i], w)
					}
				}
			}
			if !ref.Accepted {
				return
			}
			for name, conv := range ref.Converted {
				p := cfg.Pipeline(name)
				plans, err := cfg.Plan(p, nil)
				if err != nil {
					t.Fatalf("plan %s: %v", name, err)
				}
				// What Valohai runs: the node's converted parameters, then
				// each pipeline parameter at its targets (as the reference
				// reads them: NODE.TYPE.KEY, TYPE starting with "parameter")
				// that name a parameter of the node's template (it has one
				// for every parameter of the step, null when unset).
				// A task's variant parameter (a map of rules) is compared by
				// the task tests, not here.
				want, variants := map[string]map[string]any{}, map[string]bool{}
				for node, params := range conv.Nodes {
					want[node] = map[string]any{}
					for k, v := range params {
						if _, variant := v.(map[string]any); variant {
							variants[node+"."+k] = true
						} else if v != nil {
							want[node][k] = v
						}
					}
				}
				for _, pp := range conv.Parameters {
					for _, tgt := range pp.Targets {
						parts := strings.SplitN(tgt, ".", 3)
						if _, ok := conv.Nodes[parts[0]][parts[2]]; ok && strings.HasPrefix(parts[1], "parameter") && pp.Expression != "" {
							want[parts[0]][parts[2]] = pp.Expression
						}
					}
				}
				for _, np := range plans {
					got := map[string]any{}
					for k, v := range np.Params {
						if variants[np.Node.Name+"."+k] {
							continue
						}
						got[k] = jsonRoundTrip(t, v.Interface())
					}
					if !reflect.DeepEqual(got, want[np.Node.Name]) {
						t.Errorf("node %s: plan parameters %v, Valohai's %v", np.Node.Name, got, want[np.Node.Name])
					}
					for _, np2 := range tc.ints {
						if node, param, _ := strings.Cut(np2, "."); node == np.Node.Name && np.Params[param].Kind != KindInt {
							t.Errorf("node %s: %s is %s, want an integer", node, param, np.Params[param].Repr())
						}
					}
					if cmd, ok := tc.commands[np.Node.Name]; ok && np.Script != cmd {
						t.Errorf("node %s: command %q, want %q", np.Node.Name, np.Script, cmd)
					}
				}
				var names []string
				for _, np := range plans {
					names = append(names, np.Node.Name)
				}
				for node := range tc.commands {
					if !containsStr(names, node) {
						t.Errorf("no node %s in the plan (%s)", node, strings.Join(sorted(names), ", "))
					}
				}
			}
		})
	}
}

// jsonRoundTrip gives a value the shape encoding/json reads back (numbers as float64).
func jsonRoundTrip(t *testing.T, v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
