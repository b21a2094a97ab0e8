package spec

import (
	"strconv"
	"strings"
	"testing"
)

// dagPipeline builds a pipeline of the named nodes and edges "a->b" (b waits
// for a), each edge from a's output to b's input.
func dagPipeline(nodes string, edges ...string) *Pipeline {
	p := &Pipeline{Name: "p"}
	for _, n := range strings.Fields(nodes) {
		p.Nodes = append(p.Nodes, &Node{Name: n, Type: NodeExecution, Step: n})
	}
	for _, e := range edges {
		from, to, _ := strings.Cut(e, "->")
		p.Edges = append(p.Edges, &Edge{Source: Socket{Node: from, Type: "output", Key: "f"}, Target: Socket{Node: to, Type: "input", Key: "f"}})
	}
	return p
}

func names(ns []*Node) string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return strings.Join(out, " ")
}

func layerNames(ls [][]*Node) string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = names(l)
	}
	return strings.Join(out, " | ")
}

func set(s string) map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(s) {
		m[n] = true
	}
	return m
}

func TestGraphShapes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nodes      string
		edges      []string
		layers     string
		deps       map[string]string // node: what it waits for
		dependents map[string]string
		// ready: done set -> what is ready (nothing started)
		ready map[string]string
	}{
		{
			name: "diamond", nodes: "a b c d", edges: []string{"a->b", "a->c", "b->d", "c->d"},
			layers:     "a | b c | d",
			deps:       map[string]string{"a": "", "b": "a", "c": "a", "d": "b c"},
			dependents: map[string]string{"a": "b c", "d": ""},
			ready:      map[string]string{"": "a", "a": "b c", "a b": "c", "a b c": "d", "a b c d": ""},
		},
		{
			name: "fan-in", nodes: "x y z sink", edges: []string{"x->sink", "y->sink", "z->sink"},
			layers: "x y z | sink",
			deps:   map[string]string{"sink": "x y z"},
			ready:  map[string]string{"": "x y z", "x y": "z", "x y z": "sink"},
		},
		{
			name: "fan-out", nodes: "src p q r", edges: []string{"src->p", "src->q", "src->r"},
			layers:     "src | p q r",
			dependents: map[string]string{"src": "p q r", "p": ""},
			ready:      map[string]string{"": "src", "src": "p q r", "src q": "p r"},
		},
		{
			name: "disconnected parts", nodes: "a1 a2 b1 b2 lone", edges: []string{"a1->a2", "b1->b2"},
			layers: "a1 b1 lone | a2 b2",
			ready:  map[string]string{"": "a1 b1 lone", "a1": "a2 b1 lone", "b1 lone": "a1 b2"},
		},
		{
			// Layers put a node after the longest path to it, not the shortest.
			name: "a shortcut edge", nodes: "a b c", edges: []string{"a->b", "b->c", "a->c"},
			layers: "a | b | c",
			deps:   map[string]string{"c": "a b"},
			ready:  map[string]string{"a": "b", "a b": "c"},
		},
		{
			// Several edges between two nodes are one dependency.
			name: "repeated edges", nodes: "a b", edges: []string{"a->b", "a->b", "a->b"},
			layers:     "a | b",
			deps:       map[string]string{"b": "a"},
			dependents: map[string]string{"a": "b"},
		},
		{
			// Pipeline order within a layer, whatever the edges' order.
			name: "order kept", nodes: "z y x w", edges: []string{"x->w", "z->w"},
			layers: "z y x | w",
			ready:  map[string]string{"": "z y x"},
		},
		{name: "empty", nodes: "", layers: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := dagPipeline(tc.nodes, tc.edges...).Graph()
			if err != nil {
				t.Fatal(err)
			}
			if got := layerNames(g.Layers()); got != tc.layers {
				t.Errorf("layers %q, want %q", got, tc.layers)
			}
			for n, want := range tc.deps {
				if got := names(g.Deps(n)); got != want {
					t.Errorf("deps of %s: %q, want %q", n, got, want)
				}
			}
			for n, want := range tc.dependents {
				if got := names(g.Dependents(n)); got != want {
					t.Errorf("dependents of %s: %q, want %q", n, got, want)
				}
			}
			for done, want := range tc.ready {
				got, err := g.Ready(set(done), nil)
				if err != nil {
					t.Errorf("ready after %q: %v", done, err)
				} else if names(got) != want {
					t.Errorf("ready after %q: %q, want %q", done, names(got), want)
				}
			}
		})
	}
}

func TestGraphReadySkipsStarted(t *testing.T) {
	g, err := dagPipeline("a b c d", "a->b", "a->c", "b->d", "c->d").Graph()
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Ready(set("a"), set("b"))
	if err != nil || names(got) != "c" {
		t.Errorf("ready with b started: %q, %v; want c", names(got), err)
	}
	// A node both done and started is done: not ready again.
	got, err = g.Ready(set("a b c"), set("b c"))
	if err != nil || names(got) != "d" {
		t.Errorf("ready: %q, %v; want d", names(got), err)
	}
	// A false entry counts as not done.
	got, err = g.Ready(map[string]bool{"a": true, "d": false}, nil)
	if err != nil || names(got) != "b c" {
		t.Errorf("ready: %q, %v; want b c", names(got), err)
	}
}

func TestGraphReadyRejectsInconsistentDone(t *testing.T) {
	g, err := dagPipeline("a b c d", "a->b", "a->c", "b->d", "c->d").Graph()
	if err != nil {
		t.Fatal(err)
	}
	for done, want := range map[string]string{
		"d":     `node "d" is done, but node "b", which it waits for, is not`,
		"a b d": `node "d" is done, but node "c", which it waits for, is not`,
		"b":     `node "b" is done, but node "a", which it waits for, is not`,
		"a e":   `the done set names node "e", which the pipeline does not have`,
	} {
		got, err := g.Ready(set(done), nil)
		if err == nil || err.Error() != want {
			t.Errorf("done %q: ready %q, error %v; want %q", done, names(got), err, want)
		}
	}
}

func TestGraphErrors(t *testing.T) {
	for _, tc := range []struct {
		name, nodes string
		edges       []string
		want        string
	}{
		{"self edge", "a b", []string{"a->a"}, `cycle: node "a" depends on itself (edge a.output.f -> a.input.f)`},
		{"two-node cycle", "a b", []string{"a->b", "b->a"}, `cycle between nodes: "a" -> "b" -> "a"; a pipeline must be a DAG`},
		{"cycle behind a chain", "s a b c", []string{"s->a", "a->b", "b->c", "c->a"}, `cycle between nodes: "a" -> "b" -> "c" -> "a"`},
		{"unknown source", "a", []string{"x->a"}, `edge x.output.f -> a.input.f: node "x" does not exist`},
		{"unknown target", "a", []string{"a->y"}, `edge a.output.f -> y.input.f: node "y" does not exist`},
		{"duplicate node", "a a", nil, `pipeline "p" has two nodes named "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dagPipeline(tc.nodes, tc.edges...).Graph()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// A long chain neither recurses deeply nor takes quadratic time to lay out.
func TestGraphLongChain(t *testing.T) {
	const n = 20000
	var nodes strings.Builder
	var edges []string
	for i := range n {
		nodes.WriteString(" n" + itoa(i))
		if i > 0 {
			edges = append(edges, "n"+itoa(i-1)+"->n"+itoa(i))
		}
	}
	g, err := dagPipeline(nodes.String(), edges...).Graph()
	if err != nil {
		t.Fatal(err)
	}
	if ls := g.Layers(); len(ls) != n || ls[n-1][0].Name != "n"+itoa(n-1) {
		t.Errorf("%d layers, want %d", len(ls), n)
	}
	cyc := append(edges, "n"+itoa(n-1)+"->n0")
	if _, err := dagPipeline(nodes.String(), cyc...).Graph(); err == nil || !strings.Contains(err.Error(), "cycle between nodes") {
		t.Errorf("a 20,000-node cycle: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
