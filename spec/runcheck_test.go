package spec

import (
	"strings"
	"testing"
)

// LintRun flags what the run refuses, where it is written, and nothing the
// run accepts.
func TestLintRun(t *testing.T) {
	data := `- step:
    name: s
    image: x
    command: y
    inputs:
      - {name: ok, default: [data/*.csv, ./models/m.pkl, "https://example.com/a", "gs://b/o", "s3://b/o"]}
      - {name: bad, default: /abs/path, optional: true}
- pipeline:
    name: p
    nodes:
      - name: n
        type: execution
        step: s
        override:
          inputs:
            - {name: ok, default: data/../../up}
    edges:
      - [n.output.model/*.pkl, m.input.ok]
      - [n.output./etc/passwd, m.input.ok]
      - [n.output.a//b, m.input.ok]
      - [n.output.**/x, m.input.ok]
      - [n.output.., m.input.ok]
`
	data = strings.ReplaceAll(data, "m.input", "n2.input")
	data = strings.Replace(data, "    edges:", "      - {name: n2, type: execution, step: s}\n    edges:", 1)
	cfg, diags := Parse("f.yaml", []byte(data))
	if cfg == nil {
		t.Fatalf("rejected: %v", diags)
	}
	var got []string
	for _, d := range LintRun(cfg) {
		got = append(got, d.String())
	}
	want := []string{
		`f.yaml:7:30: error: step "s".inputs[1].default: input "bad": default "/abs/path"`,
		`f.yaml:16:35: error: pipeline "p".nodes[0].override.inputs[0].default: node "n": input "ok": default "data/../../up"`,
		`f.yaml:20:9: error: pipeline "p".edges[1]: edge n.output./etc/passwd -> n2.input.ok: output glob "/etc/passwd"`,
		`f.yaml:21:9: error: pipeline "p".edges[2]: edge n.output.a//b -> n2.input.ok: output glob "a//b"`,
		`f.yaml:23:9: error: pipeline "p".edges[4]: edge n.output.. -> n2.input.ok: output glob "."`,
	}
	if len(got) != len(want) {
		t.Fatalf("findings:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("finding %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
}
