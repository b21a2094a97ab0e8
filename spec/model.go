package spec

import "time"

// Config is a parsed valohai.yaml: its steps, pipelines, tasks, endpoints and
// deployments, in file order. Names are unique within each kind: when a file
// repeats a name, the later definition wins (as Valohai's parser does) and the
// linter warns.
type Config struct {
	File        string
	Steps       []*Step
	Pipelines   []*Pipeline
	Tasks       []*Task
	Endpoints   []*Endpoint
	Deployments []*Deployment

	steps, pipelines, tasks, endpoints map[string]int // name -> index, built by Parse
}

// Index builds name lookups; Parse calls it. Call it again after changing the
// lists: while the index holds as many names as a list has items, a name it
// lacks is taken to be in no item.
func (c *Config) Index() {
	c.steps, c.pipelines, c.tasks = map[string]int{}, map[string]int{}, map[string]int{}
	for i, s := range c.Steps {
		c.steps[s.Name] = i
	}
	for i, p := range c.Pipelines {
		c.pipelines[p.Name] = i
	}
	for i, t := range c.Tasks {
		c.tasks[t.Name] = i
	}
	c.endpoints = map[string]int{}
	for i, e := range c.Endpoints {
		c.endpoints[e.Name] = i
	}
	c.indexPipelines()
}

func (c *Config) indexPipelines() {
	for _, p := range c.Pipelines {
		p.Index()
	}
}

// Step returns the step with the given name, or nil.
func (c *Config) Step(name string) *Step {
	if i, ok := c.steps[name]; ok && i < len(c.Steps) && c.Steps[i].Name == name {
		return c.Steps[i]
	}
	if len(c.steps) == len(c.Steps) {
		return nil // the index is whole: no such name (see Index)
	}
	for _, s := range c.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Pipeline returns the pipeline with the given name, or nil.
func (c *Config) Pipeline(name string) *Pipeline {
	if i, ok := c.pipelines[name]; ok && i < len(c.Pipelines) && c.Pipelines[i].Name == name {
		return c.Pipelines[i]
	}
	if len(c.pipelines) == len(c.Pipelines) {
		return nil // the index is whole: no such name (see Index)
	}
	for _, p := range c.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Task returns the task with the given name, or nil.
func (c *Config) Task(name string) *Task {
	if i, ok := c.tasks[name]; ok && i < len(c.Tasks) && c.Tasks[i].Name == name {
		return c.Tasks[i]
	}
	if len(c.tasks) == len(c.Tasks) {
		return nil // the index is whole: no such name (see Index)
	}
	for _, t := range c.Tasks {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Endpoint returns the endpoint with the given name, or nil.
func (c *Config) Endpoint(name string) *Endpoint {
	if i, ok := c.endpoints[name]; ok && i < len(c.Endpoints) && c.Endpoints[i].Name == name {
		return c.Endpoints[i]
	}
	if len(c.endpoints) == len(c.Endpoints) {
		return nil
	}
	for _, e := range c.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Step is one runnable unit: an image and a command, with parameters, inputs and outputs.
type Step struct {
	Name  string
	Image string
	// Command holds the command items; a single string command is one item.
	Command             []string
	Parameters          []*Parameter
	Inputs              []*Input
	Outputs             []*Output
	EnvVars             []*EnvVar
	EnvVarGroups        []string
	Environment         string
	RuntimeConfigPreset string
	// TimeLimit and NoOutputTimeout are zero when not set.
	TimeLimit       time.Duration
	NoOutputTimeout time.Duration
	Mounts          []*Mount
	Resources       *Resources
	UploadStore     string
	SourcePath      string
	// HasSourcePath tells an empty source-path from none ({source-path} stays literal without one).
	HasSourcePath bool
	StopCondition string
	Description   string
	Icon          string
	Category      string
	CacheVolumes  []string
	Pos           Pos
	fields        fieldPos // where the fields of stepFields were written
	// params and inputs index Parameters and Inputs by name when the step
	// was read from a file.
	params, inputs map[string]int
}

// stepFields are the fields of a step that findings point at.
var stepFields = []string{"image", "command", "runtime-config-preset", "stop-condition", "environment"}

// fieldPos records where the value of each field of a mapping was written,
// so that a finding about a field points at it once the values read from
// the file are gone.
type fieldPos []keyPos

type keyPos struct {
	key string
	pos Pos
}

// fieldsOf records the positions of the fields of v named in keys (the ones
// findings are about), and only those.
func fieldsOf(v *Value, keys ...string) fieldPos {
	var f fieldPos
	for _, k := range keys {
		if x := v.Get(k); x != nil && x.Pos.Line > 0 {
			f = append(f, keyPos{k, x.Pos})
		}
	}
	return f
}

// at returns where the field key was written, or pos when it was not.
func (f fieldPos) at(pos Pos, key string) Pos {
	for _, kp := range f {
		if kp.key == key {
			return kp.pos
		}
	}
	return pos
}

// Parameter returns the step's parameter with the given name, or nil.
func (s *Step) Parameter(name string) *Parameter {
	if i, ok := s.params[name]; ok && i < len(s.Parameters) && s.Parameters[i].Name == name {
		return s.Parameters[i]
	}
	if s.params != nil && len(s.params) == len(s.Parameters) {
		return nil
	}
	for _, p := range s.Parameters {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Input returns the step's input with the given name, or nil.
func (s *Step) Input(name string) *Input {
	if i, ok := s.inputs[name]; ok && i < len(s.Inputs) && s.Inputs[i].Name == name {
		return s.Inputs[i]
	}
	if s.inputs != nil && len(s.inputs) == len(s.Inputs) {
		return nil
	}
	for _, in := range s.Inputs {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// ParamType is a parameter's type.
type ParamType string

// The four parameter types.
const (
	TypeString  ParamType = "string"
	TypeInteger ParamType = "integer"
	TypeFloat   ParamType = "float"
	TypeFlag    ParamType = "flag"
)

// Multiple says how a parameter with several values is passed.
type Multiple string

// Multiple modes; MultipleNone is a single value.
const (
	MultipleNone     Multiple = ""
	MultipleRepeat   Multiple = "repeat"
	MultipleSeparate Multiple = "separate"
)

// Parameter is a step parameter.
type Parameter struct {
	Name string
	Type ParamType
	// Default is nil when there is none. For a multiple parameter it is a list.
	Default *Value
	// Optional: flags are always optional.
	Optional bool
	Min, Max *Value
	// Choices is nil when any value is allowed; flags have [True, False].
	Choices     []*Value
	Multiple    Multiple
	Separator   string
	PassAs      string
	PassTrueAs  string
	PassFalseAs string
	Description string
	Category    string
	Widget      *Value
	Pos         Pos
	raw         *Value
}

// Input is a step input: files that land in /valohai/inputs/<name>/.
type Input struct {
	Name string
	// Default holds the default URLs or paths (a single string default is one item).
	Default     []string
	Optional    bool
	Description string
	Filename    string
	// KeepDirectories is "none", "full" or "suffix".
	KeepDirectories string
	// Download is "always" or "on-demand".
	Download string
	Pos      Pos
	// defaultPos holds where each of Default was written, when it was read
	// from a file.
	defaultPos []Pos
}

// Output is an informational declaration of an output file.
type Output struct {
	Name        string
	Description string
	Pos         Pos
}

// EnvVar is an environment variable a step declares.
type EnvVar struct {
	Name        string
	Default     string
	HasDefault  bool
	Optional    bool
	Description string
	Pos         Pos
}

// Mount is a host or network volume mounted into the container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	Type        string
	Options     *Value
	Pos         Pos
}

// Range is a minimum and maximum; nil means unset.
type Range struct {
	Min, Max *float64
}

// Device is a device request, e.g. {Name: "nvidia.com/gpu", Count: 1}.
type Device struct {
	Name  string
	Count float64
}

// Resources are what a step asks of the machine: CPUs, memory in MB, devices.
type Resources struct {
	CPU              *Range
	Memory           *Range
	EphemeralStorage *Range
	Devices          []Device
}

// GPUs returns the number of NVIDIA GPUs requested (0 if none).
func (r *Resources) GPUs() int {
	if r == nil {
		return 0
	}
	for _, d := range r.Devices {
		if d.Name == "nvidia.com/gpu" {
			return int(d.Count)
		}
	}
	return 0
}

// Task is a hyperparameter sweep: several executions of a step.
type Task struct {
	Name string
	Step string
	// Type is normalized: grid_search (the default), random_search, bayesian_tpe,
	// manual_search or distributed.
	Type string
	// OnChildError is normalized: continue-and-complete, continue-and-error,
	// stop-all-and-error, or "" when unset.
	OnChildError              string
	Parameters                []*VariantParameter
	ParameterSets             []*Value
	ExecutionCount            *int64
	ExecutionBatchSize        *int64
	MaximumQueuedExecutions   *int64
	OptimizationTargetMetric  string
	OptimizationTargetValue   *float64
	Engine                    string
	StopCondition             string
	ReuseChildren             bool
	Description               string
	Pos                       Pos
	hasOptimizationTargetMeta bool
	raw                       *Value // the source mapping, for positions of fields
}

// VariantParameter is a task parameter with the rules that generate its values.
type VariantParameter struct {
	Name  string
	Style string // linear, logspace, multiple, random, single
	Rules *Value
	Pos   Pos
	raw   *Value // the source mapping, for positions of fields
}

// Endpoint is a deployment endpoint. sluice parses and validates endpoints; it does not serve them.
type Endpoint struct {
	Name          string
	Image         string
	Description   string
	ServerCommand []string
	WSGI          string
	Port          *float64
	Files         []EndpointFile
	NodeSelector  string
	Resources     *Resources
	Tolerations   []*Value
	Pos           Pos
}

// EndpointFile is a file an endpoint loads.
type EndpointFile struct {
	Name        string
	Path        string
	Description string
}

// Deployment holds defaults for creating a deployment.
type Deployment struct {
	Name   string
	Target string // defaults.target when it is a string
	Pos    Pos
	// defaults is the source value of `defaults`, nil when absent: Valohai's
	// parser takes any value there (its schema does not cover deployments),
	// so lint judges it as that parser does.
	defaults *Value
}

// Pipeline is a DAG of nodes joined by edges.
type Pipeline struct {
	Name       string
	Nodes      []*Node
	Edges      []*Edge
	Parameters []*PipelineParameter
	// ReuseExecutions is nil when the file does not say; sluice then reuses
	// unchanged nodes. Set to false, every node runs.
	ReuseExecutions *bool
	// ShortForm is set when the pipeline was written as `connections:` between
	// steps, which Valohai itself does not accept.
	ShortForm bool
	Pos       Pos

	nodes   map[string]int
	indexed int // len(Nodes) when nodes was built
}

// Index builds the node lookup; Parse calls it.
func (p *Pipeline) Index() {
	p.nodes = make(map[string]int, len(p.Nodes))
	for i := len(p.Nodes) - 1; i >= 0; i-- {
		p.nodes[p.Nodes[i].Name] = i // the first node of a repeated name wins
	}
	p.indexed = len(p.Nodes)
}

// Node returns the node with the given name, or nil.
func (p *Pipeline) Node(name string) *Node {
	if i, ok := p.nodes[name]; ok && i < len(p.Nodes) && p.Nodes[i].Name == name {
		return p.Nodes[i]
	}
	if p.nodes != nil && p.indexed == len(p.Nodes) {
		return nil
	}
	for _, n := range p.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeType is the kind of a pipeline node.
type NodeType string

// Node types.
const (
	NodeExecution  NodeType = "execution"
	NodeTask       NodeType = "task"
	NodeDeployment NodeType = "deployment"
)

// On-error policies of a node.
const (
	OnErrorStopAll  = "stop-all"
	OnErrorStopNext = "stop-next"
	OnErrorContinue = "continue"
	OnErrorRetry    = "retry"
)

// Node is one node of a pipeline.
type Node struct {
	Name string
	Type NodeType
	// Step names the step of an execution or task node.
	Step string
	// Task names the task blueprint of a task node (instead of Step).
	Task string
	// Deployment, Endpoints and Aliases belong to deployment nodes.
	Deployment string
	Endpoints  []string
	Aliases    []string
	Override   *Override
	Actions    []*Action
	// OnError is stop-all (the default), stop-next, continue or retry.
	OnError string
	// EdgeMergeMode is replace (the default) or append.
	EdgeMergeMode string
	Commit        string
	Pos           Pos
	fields        fieldPos // where the fields of nodeFields were written
}

// nodeFields are the fields of a node that findings point at.
var nodeFields = []string{"name", "step", "task", "commit", "endpoints"}

// Override changes a step's definition for one node.
type Override struct {
	Command             []string
	Image               string
	Environment         string
	RuntimeConfigPreset string
	Parameters          []*Parameter
	Inputs              []*Input
	EnvVars             []*EnvVar
	Mounts              []*Mount
	Pos                 Pos
	raw                 *Value // the source mapping, for positions of fields
}

// Action is a node action: when an event happens and the conditions hold, do something.
type Action struct {
	When []string // node-starting, node-complete, node-error
	If   []string // conditions; all must hold
	Then []string // stop-pipeline, error-pipeline, noop, require-approval
	Pos  Pos
	raw  *Value // the source mapping, for positions of fields
}

// Edge types (socket types).
const (
	SocketOutput      = "output"
	SocketInput       = "input"
	SocketParameter   = "parameter"
	SocketMetadata    = "metadata"
	SocketEnvVar      = "environment-variable"
	SocketFile        = "file"
	SocketDependency  = "dependency"
	SocketDeployment  = "deployment"
	defaultEdgeMerge  = "replace"
	defaultOnErrorVal = OnErrorStopAll
)

// Socket is one end of an edge: NODE.TYPE.KEY.
type Socket struct {
	Node string
	Type string
	Key  string
}

// String joins the socket back into NODE.TYPE.KEY.
func (s Socket) String() string { return s.Node + "." + s.Type + "." + s.Key }

// Edge connects a source socket to a target socket.
type Edge struct {
	Source        Socket
	Target        Socket
	Configuration *Value
	Pos           Pos
}

// PipelineParameter is a pipeline-level parameter that sets node parameters.
type PipelineParameter struct {
	Name        string
	Default     *Value
	Targets     []Socket
	Description string
	Category    string
	Pos         Pos
	raw         *Value   // the source mapping, for positions of fields
	targetSrc   []*Value // each of Targets as written, for messages
}
