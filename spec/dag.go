package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Graph is a pipeline's DAG: which nodes each node waits for. It is pure data,
// built once; schedulers recompute what can run from what has finished.
type Graph struct {
	Nodes []*Node
	index map[string]int
	// deps[i] and dependents[i] hold node indexes, sorted and without repeats.
	deps       [][]int
	dependents [][]int
}

// Graph builds the pipeline's DAG from its edges. It fails on an edge that
// names an unknown node and on a cycle, naming the nodes in the cycle.
func (p *Pipeline) Graph() (*Graph, error) {
	g := &Graph{Nodes: p.Nodes, index: make(map[string]int, len(p.Nodes))}
	for i, n := range p.Nodes {
		if _, dup := g.index[n.Name]; dup {
			return nil, fmt.Errorf("pipeline %q has two nodes named %q", p.Name, n.Name)
		}
		g.index[n.Name] = i
	}
	g.deps = make([][]int, len(p.Nodes))
	g.dependents = make([][]int, len(p.Nodes))
	for _, e := range p.Edges {
		s, ok := g.index[e.Source.Node]
		if !ok {
			return nil, fmt.Errorf("edge %s -> %s: node %q does not exist", e.Source, e.Target, e.Source.Node)
		}
		t, ok := g.index[e.Target.Node]
		if !ok {
			return nil, fmt.Errorf("edge %s -> %s: node %q does not exist", e.Source, e.Target, e.Target.Node)
		}
		if s == t {
			return nil, fmt.Errorf("cycle: node %q depends on itself (edge %s -> %s)", e.Source.Node, e.Source, e.Target)
		}
		g.deps[t] = append(g.deps[t], s)
		g.dependents[s] = append(g.dependents[s], t)
	}
	for i := range g.deps {
		g.deps[i] = uniqueSorted(g.deps[i])
		g.dependents[i] = uniqueSorted(g.dependents[i])
	}
	if cycle := g.findCycle(); cycle != nil {
		names := make([]string, len(cycle))
		for i, c := range cycle {
			names[i] = fmt.Sprintf("%q", p.Nodes[c].Name)
		}
		return nil, fmt.Errorf("cycle between nodes: %s; a pipeline must be a DAG", strings.Join(names, " -> "))
	}
	return g, nil
}

func uniqueSorted(xs []int) []int {
	if len(xs) < 2 {
		return xs
	}
	sort.Ints(xs)
	out := xs[:1]
	for _, x := range xs[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// findCycle returns the nodes of one cycle (the first repeated at the end), or nil.
func (g *Graph) findCycle() []int {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(g.Nodes))
	parent := make([]int, len(g.Nodes))
	// Iterative DFS so that a 10,000-node chain does not recurse 10,000 deep.
	type frame struct{ node, next int }
	for start := range g.Nodes {
		if color[start] != white {
			continue
		}
		stack := []frame{{start, 0}}
		color[start] = grey
		parent[start] = -1
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next < len(g.dependents[top.node]) {
				nxt := g.dependents[top.node][top.next]
				top.next++
				switch color[nxt] {
				case white:
					color[nxt] = grey
					parent[nxt] = top.node
					stack = append(stack, frame{nxt, 0})
				case grey:
					// Walk back from top.node to nxt.
					cycle := []int{nxt}
					for c := top.node; c != nxt; c = parent[c] {
						cycle = append(cycle, c)
					}
					// cycle is nxt, top, ..., reversed order of traversal: reverse the tail.
					rest := cycle[1:]
					for i, j := 0, len(rest)-1; i < j; i, j = i+1, j-1 {
						rest[i], rest[j] = rest[j], rest[i]
					}
					return append(cycle, nxt)
				}
				continue
			}
			color[top.node] = black
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}

// Deps returns the nodes that a node waits for.
func (g *Graph) Deps(name string) []*Node { return g.nodes(g.deps, name) }

// Dependents returns the nodes that wait for a node.
func (g *Graph) Dependents(name string) []*Node { return g.nodes(g.dependents, name) }

func (g *Graph) nodes(adj [][]int, name string) []*Node {
	i, ok := g.index[name]
	if !ok {
		return nil
	}
	out := make([]*Node, len(adj[i]))
	for j, k := range adj[i] {
		out[j] = g.Nodes[k]
	}
	return out
}

// Ready returns, in pipeline order, the nodes not in done or started whose
// dependencies are all in done. It is a pure function of what has finished.
// A done set that no run can reach is an error: a node done while a node it
// waits for is not, or a name the graph does not have.
func (g *Graph) Ready(done, started map[string]bool) ([]*Node, error) {
	for name, ok := range done {
		if !ok {
			continue
		}
		i, known := g.index[name]
		if !known {
			return nil, fmt.Errorf("the done set names node %q, which the pipeline does not have", name)
		}
		for _, d := range g.deps[i] {
			if !done[g.Nodes[d].Name] {
				return nil, fmt.Errorf("node %q is done, but node %q, which it waits for, is not", name, g.Nodes[d].Name)
			}
		}
	}
	var out []*Node
	for i, n := range g.Nodes {
		if done[n.Name] || started[n.Name] {
			continue
		}
		ok := true
		for _, d := range g.deps[i] {
			if !done[g.Nodes[d].Name] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// Layers groups the nodes in topological layers: layer 0 needs nothing, and
// every node sits one layer after the last node it waits for. Nodes keep
// pipeline order within a layer.
func (g *Graph) Layers() [][]*Node {
	level := make([]int, len(g.Nodes))
	indeg := make([]int, len(g.Nodes))
	for i := range g.Nodes {
		indeg[i] = len(g.deps[i])
	}
	queue := make([]int, 0, len(g.Nodes))
	for i := range g.Nodes {
		if indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	maxLevel := 0
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, m := range g.dependents[n] {
			if level[n]+1 > level[m] {
				level[m] = level[n] + 1
			}
			indeg[m]--
			if indeg[m] == 0 {
				queue = append(queue, m)
				maxLevel = max(maxLevel, level[m])
			}
		}
	}
	if len(g.Nodes) == 0 {
		return nil
	}
	layers := make([][]*Node, maxLevel+1)
	for i, n := range g.Nodes {
		layers[level[i]] = append(layers[level[i]], n)
	}
	return layers
}
