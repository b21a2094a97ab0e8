package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BackendBatch runs each node execution as a Google Cloud Batch job: a VM
// per step, GPUs, spot provisioning with recovery.
const BackendBatch = "batch"

// Provisioning models of a Batch environment.
const (
	ProvisioningSpot     = "spot"
	ProvisioningStandard = "standard"
)

// BatchEnvironment holds the settings of `backend: batch`:
//
//	environments:
//	  gpu-l4:
//	    backend: batch
//	    project: my-project
//	    region: us-central1
//	    zones: [us-central1-a, us-central1-c]   # allowed zones, in order (default: any zone of the region)
//	    machine-type: g2-standard-8
//	    accelerator: {type: nvidia-l4, count: 1}
//	    boot-disk-gb: 100
//	    boot-image: batch-cos                   # optional
//	    provisioning: spot                      # spot (default) or standard
//	    spot-fallback-after: 2                  # preemptions before the node moves to standard VMs
//	    retries: 3                              # preemptions (and lost VMs) retried per node
//	    queue-timeout: 15m                      # how long a job may wait for capacity
//	    fallback:                               # tried in order when capacity runs out
//	      - {machine-type: a2-highgpu-1g, accelerator: {type: nvidia-tesla-a100, count: 1}}
//	    service-account: runner@my-project.iam.gserviceaccount.com
//	    network: projects/my-project/global/networks/default
//	    subnetwork: projects/my-project/regions/us-central1/subnetworks/default
//	    no-external-ip: true
//	    labels: {team: ml}
//	    max-run-duration: 6h
//	    hourly-price: 0.85                      # USD per VM hour, for the cost estimate and max-cost
//	    image: ghcr.io/sluice-ci/sluice:v1      # the sluice image of the agent's first runnable
type BatchEnvironment struct {
	Project string
	Region  string
	// Zones are the allowed zones, in order of preference; empty means any
	// zone of Region.
	Zones []string
	// Machine is the first choice of machine; Fallback the next ones, in
	// order, when Batch has no capacity for the one before.
	Machine  BatchMachine
	Fallback []BatchMachine
	// BootDiskGB is the boot disk's size (0: Batch's default); BootImage
	// its image (empty: Batch's default).
	BootDiskGB int
	BootImage  string
	// Provisioning is ProvisioningSpot (the default) or ProvisioningStandard.
	Provisioning string
	// SpotFallbackAfter is how many preemptions a node takes on spot VMs
	// before it moves to standard ones; 0 means it stays on spot.
	SpotFallbackAfter int
	// Retries is how many times a preempted node (or one whose VM stopped
	// reporting) is tried again; preemptions never count as the step's
	// failure. Nil means the default, 3.
	Retries *int
	// QueueTimeout is how long a job may wait in QUEUED or SCHEDULED for a
	// VM before the next fallback is tried. Default 15 minutes.
	QueueTimeout time.Duration
	// ServiceAccount is the VM's service account (empty: the project's
	// default compute service account).
	ServiceAccount string
	Network        string
	Subnetwork     string
	NoExternalIP   bool
	Labels         map[string]string
	// MaxRunDuration bounds a job's run (Batch's maxRunDuration): a VM
	// never outlives it, even when sluice is killed. Default 24 hours.
	MaxRunDuration time.Duration
	// HourlyPrice is the price of one VM hour in USD, for the cost estimate;
	// nil when not given.
	HourlyPrice *float64
	// Image is the sluice image of the agent's first runnable; empty means
	// the image of this sluice's version.
	Image string
}

// BatchMachine is a machine type with its GPUs.
type BatchMachine struct {
	MachineType string
	// Accelerator is the GPU type (Compute Engine's name, such as
	// nvidia-l4); empty for none.
	Accelerator      string
	AcceleratorCount int
}

// String names a machine and its GPUs: "g2-standard-8 with 1 x nvidia-l4".
func (m BatchMachine) String() string {
	if m.Accelerator == "" {
		return m.MachineType
	}
	return fmt.Sprintf("%s with %d x %s", m.MachineType, m.AcceleratorCount, m.Accelerator)
}

// Describe says where and on what a Batch environment runs, for people:
// "us-central1, g2-standard-8 with 1 x nvidia-l4, spot, 1 fallback".
func (b BatchEnvironment) Describe() string {
	where := b.Region
	if len(b.Zones) > 0 {
		where = strings.Join(b.Zones, "/")
	}
	s := fmt.Sprintf("%s, %s, %s", where, b.Machine, b.Provisioning)
	switch len(b.Fallback) {
	case 0:
	case 1:
		s += ", 1 fallback"
	default:
		s += fmt.Sprintf(", %d fallbacks", len(b.Fallback))
	}
	return s
}

// Default settings of a Batch environment.
const (
	DefaultBatchRetries        = 3
	DefaultBatchQueueTimeout   = 15 * time.Minute
	DefaultBatchMaxRunDuration = 24 * time.Hour
)

// RetriesOr is the environment's retries, or the default.
func (b BatchEnvironment) RetriesOr() int {
	if b.Retries == nil {
		return DefaultBatchRetries
	}
	return *b.Retries
}

// gpu is one of Compute Engine's GPU types (the accelerator type names of
// https://cloud.google.com/compute/docs/gpus): the machine families that
// take it and, for GPUs attached to N1 machines, the counts one VM takes.
type gpu struct {
	families []string // machine type prefixes, such as "a2-highgpu-"
	counts   []int    // attachable counts (N1); nil when the machine type fixes the count
	retired  string   // why the type can no longer be used
}

var gpus = map[string]gpu{
	"nvidia-tesla-t4":       {families: []string{"n1-"}, counts: []int{1, 2, 4}},
	"nvidia-tesla-v100":     {families: []string{"n1-"}, counts: []int{1, 2, 4, 8}},
	"nvidia-tesla-p100":     {families: []string{"n1-"}, counts: []int{1, 2, 4}},
	"nvidia-tesla-p4":       {families: []string{"n1-"}, counts: []int{1, 2, 4}},
	"nvidia-tesla-k80":      {retired: "Compute Engine retired K80 GPUs in 2024; nvidia-tesla-t4 on n1 or nvidia-l4 on g2 are the nearest"},
	"nvidia-tesla-a100":     {families: []string{"a2-highgpu-", "a2-megagpu-"}},
	"nvidia-a100-80gb":      {families: []string{"a2-ultragpu-"}},
	"nvidia-l4":             {families: []string{"g2-standard-"}},
	"nvidia-h100-80gb":      {families: []string{"a3-highgpu-", "a3-edgegpu-"}},
	"nvidia-h100-mega-80gb": {families: []string{"a3-megagpu-"}},
	"nvidia-h200-141gb":     {families: []string{"a3-ultragpu-"}},
	"nvidia-b200":           {families: []string{"a4-highgpu-"}},
	"nvidia-gb200":          {families: []string{"a4x-highgpu-"}},
	"nvidia-rtx-pro-6000":   {families: []string{"g4-standard-"}},
}

// gpuNames are the GPU types sluice knows, sorted, for messages.
func gpuNames() []string {
	var out []string
	for k, g := range gpus {
		if g.retired == "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// gpuDidYouMean suggests the GPU type a misspelt one meant: one it begins
// (nvidia-h100 for nvidia-h100-80gb), else the nearest by spelling.
func gpuDidYouMean(got string) string {
	for _, name := range gpuNames() {
		if strings.HasPrefix(name, got+"-") || strings.HasPrefix(name, "nvidia-"+got) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
	}
	return didYouMean(got, gpuNames())
}

// builtInGPUs says which GPU, and how many, a machine type comes with (the
// accelerator-optimized families: A2, A3, A4, G2, G4); ok is false for other
// machine types.
func builtInGPUs(machineType string) (typ string, count int, ok bool) {
	for name, g := range gpus {
		for _, f := range g.families {
			if f == "n1-" || !strings.HasPrefix(machineType, f) {
				continue
			}
			rest := strings.TrimPrefix(machineType, f)
			if n, found := strings.CutSuffix(rest, "g"); found { // a2-highgpu-4g: 4 GPUs
				c, err := strconv.Atoi(n)
				return name, c, err == nil && c > 0
			}
			vcpus, err := strconv.Atoi(rest) // g2-standard-24, g4-standard-96: by vCPUs
			if err != nil {
				return name, 0, false
			}
			switch f {
			case "g2-standard-":
				return name, map[int]int{4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}[vcpus], true
			case "g4-standard-":
				return name, map[int]int{48: 1, 96: 2, 192: 4, 384: 8}[vcpus], true
			}
		}
	}
	return "", 0, false
}

var (
	reRegion   = regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]+$`)
	reZone     = regexp.MustCompile(`^([a-z]+(?:-[a-z]+)+[0-9]+)-[a-z]$`)
	reLabelKey = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	reLabelVal = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)

	sMachineType = &schema{types: tStr, pattern: regexp.MustCompile(`^[a-z][a-z0-9]*-[a-z0-9-]+$`), patDesc: "a Compute Engine machine type, such as g2-standard-8"}
	schGPU       = obj("accelerator", []string{"type"},
		p("type", &schema{types: tStr, pattern: regexp.MustCompile(`^[a-z][a-z0-9-]*$`), patDesc: "a Compute Engine GPU type, such as nvidia-l4"}),
		p("count", &schema{types: tInt, min: fptr(1), max: fptr(16)}))
	schMachine = obj("fallback machine", []string{"machine-type"},
		p("machine-type", sMachineType), p("accelerator", schGPU))
	sBatchDuration = &schema{oneOf: []*schema{sInt, sStr}, desc: `a number of seconds or a duration such as "6h"`}
)

// labelsReserved is how many labels sluice adds to every job; Batch takes
// at most 64.
const labelsReserved = 6

var batchBackend = backendDef{
	name:     BackendBatch,
	required: []string{"project", "region", "machine-type"},
	props: []prop{
		p("project", &schema{types: tStr, pattern: regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]$`), patDesc: "a Google Cloud project ID, such as my-project"}),
		p("region", &schema{types: tStr, pattern: nonBlank, patDesc: "a Compute Engine region, such as us-central1"}),
		p("zones", &schema{types: tArr, items: &schema{types: tStr, pattern: nonBlank, patDesc: "a zone, such as us-central1-a"}, desc: "a list of zones of the region, in order of preference"}),
		p("machine-type", sMachineType),
		p("accelerator", schGPU),
		p("boot-disk-gb", &schema{types: tInt, min: fptr(10), max: fptr(65536)}),
		p("boot-image", &schema{types: tStr, pattern: nonBlank, patDesc: "a boot image, such as batch-cos or projects/P/global/images/NAME"}),
		p("provisioning", enum(ProvisioningSpot, ProvisioningStandard)),
		p("spot-fallback-after", &schema{types: tInt, min: fptr(0), max: fptr(1000)}),
		p("retries", &schema{types: tInt, min: fptr(0), max: fptr(100)}),
		p("queue-timeout", sBatchDuration),
		p("fallback", list(schMachine)),
		p("service-account", &schema{types: tStr, pattern: regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[a-z]+$`), patDesc: "a service account's email, such as runner@my-project.iam.gserviceaccount.com"}),
		p("network", &schema{types: tStr, pattern: regexp.MustCompile(`^(https://www\.googleapis\.com/compute/v1/)?(projects/[^/]+/)?global/networks/[^/]+$`), patDesc: "a VPC network, such as projects/my-project/global/networks/default"}),
		p("subnetwork", &schema{types: tStr, pattern: regexp.MustCompile(`^(https://www\.googleapis\.com/compute/v1/)?(projects/[^/]+/)?regions/[^/]+/subnetworks/[^/]+$`), patDesc: "a subnetwork, such as projects/my-project/regions/us-central1/subnetworks/default"}),
		p("no-external-ip", sBool),
		p("labels", &schema{types: tObj, anyKey: sStr, desc: "a mapping of label names to values"}),
		p("max-run-duration", sBatchDuration),
		p("hourly-price", sHourlyPrice),
		p("image", sAgentImage),
	},
	check: checkBatch,
	load:  loadBatch,
}

// checkBatch checks what the schema cannot say about a Batch environment:
// the zones are of its region, each machine can take its GPUs, the
// durations read, and the labels are Batch's.
func checkBatch(vd *validator, v *Value, pt path) {
	region := v.Get("region")
	if m := reZone.FindStringSubmatch(region.Str); m != nil {
		vd.fail(region, pt.with("region"), false, "%q is a zone; region takes its region, %s (and zones: [%s] keeps the VMs in that zone)", region.Str, m[1], region.Str)
	} else if !reRegion.MatchString(region.Str) {
		vd.fail(region, pt.with("region"), false, "%q is not a Compute Engine region: expected a name such as us-central1 or europe-west4", region.Str)
	}
	if zones := v.Get("zones"); zones != nil {
		if len(zones.Items) == 0 {
			vd.fail(zones, pt.with("zones"), false, "zones is empty: no zone could run a VM; list zones of %s, or leave zones out for any zone of it", region.Str)
		}
		seen := map[string]bool{}
		for i, z := range zones.Items {
			m := reZone.FindStringSubmatch(z.Str)
			switch {
			case m == nil:
				vd.fail(z, pt.with("zones").with(i), false, "%q is not a Compute Engine zone: expected a zone of %s such as %s-a", z.Str, region.Str, region.Str)
			case m[1] != region.Str:
				vd.fail(z, pt.with("zones").with(i), false, "zone %s is in region %s, not in this environment's region %s: a Batch job's VMs stay in one region; give another region its own environment", z.Str, m[1], region.Str)
			case seen[z.Str]:
				vd.fail(z, pt.with("zones").with(i), false, "zone %s is listed twice", z.Str)
			}
			seen[z.Str] = true
		}
	}
	checkMachine(vd, v, pt)
	if fb := v.Get("fallback"); fb != nil {
		for i, m := range fb.Items {
			checkMachine(vd, m, pt.with("fallback").with(i))
		}
	}
	for _, k := range []string{"queue-timeout", "max-run-duration"} {
		x := v.Get(k)
		if x == nil {
			continue
		}
		d, err := ParseDuration(x)
		switch {
		case err != nil:
			vd.fail(x, pt.with(k), false, "%s", err)
		case d <= 0:
			vd.fail(x, pt.with(k), false, "%s %s is no time at all; give a positive duration, or leave it out for the default", k, x.Repr())
		case d < time.Second || d%time.Second != 0:
			vd.fail(x, pt.with(k), false, "%s %s is not a whole number of seconds, which Batch needs", k, x.Repr())
		}
	}
	if sub := v.Get("subnetwork"); sub.IsString() {
		if _, rest, ok := strings.Cut(sub.Str, "regions/"); ok {
			if r, _, _ := strings.Cut(rest, "/"); r != region.Str {
				vd.fail(sub, pt.with("subnetwork"), false, "subnetwork %s is in region %s, not in this environment's region %s", sub.Str, r, region.Str)
			}
		}
	}
	if labels := v.Get("labels"); labels != nil {
		if n := len(labels.Pairs); n > 64-labelsReserved {
			vd.fail(labels, pt.with("labels"), false, "%d labels are too many: Batch takes 64 a job, and sluice adds %d of its own", n, labelsReserved)
		}
		for _, kv := range labels.Pairs {
			k := kv.Key.String()
			switch {
			case strings.HasPrefix(k, "sluice-"):
				vd.fail(kv.Key, pt.with("labels").with(k), false, "label %q: the sluice- prefix is sluice's own (sluice-run, sluice-ttl, ... find and delete its jobs); pick another name", k)
			case !reLabelKey.MatchString(k):
				vd.fail(kv.Key, pt.with("labels").with(k), false, "label name %q is not valid for Batch: lowercase letters, digits, _ and -, starting with a letter, at most 63", k)
			case kv.Value.IsString() && !reLabelVal.MatchString(kv.Value.Str):
				vd.fail(kv.Value, pt.with("labels").with(k), false, "label value %q is not valid for Batch: lowercase letters, digits, _ and -, at most 63", kv.Value.Str)
			}
		}
	}
	if n := v.Get("spot-fallback-after"); n != nil && getStr(v, "provisioning") == ProvisioningStandard {
		vd.fail(n, pt.with("spot-fallback-after"), false, "spot-fallback-after moves a node from spot to standard VMs, but this environment's provisioning is already standard")
	}
}

// checkMachine checks that the machine type m names (an environment, or an
// entry of its fallback list) can take its accelerator.
func checkMachine(vd *validator, m *Value, pt path) {
	mt := getStr(m, "machine-type")
	acc := m.Get("accelerator")
	builtIn, builtCount, isGPUMachine := builtInGPUs(mt)
	if acc == nil {
		if isGPUMachine && builtCount == 0 {
			vd.fail(m.Get("machine-type"), pt.with("machine-type"), false, "machine type %s is not one Compute Engine offers with %s GPUs", mt, builtIn)
		}
		return
	}
	at := pt.with("accelerator")
	typ := acc.Get("type")
	g, known := gpus[typ.Str]
	switch {
	case !known:
		vd.fail(typ, at.with("type"), false, "%q is not a Compute Engine GPU type%s; the types are: %s", typ.Str, gpuDidYouMean(typ.Str), strings.Join(gpuNames(), ", "))
		return
	case g.retired != "":
		vd.fail(typ, at.with("type"), false, "%s: %s", typ.Str, g.retired)
		return
	}
	count := 1
	cv := acc.Get("count")
	if cv.IsNumber() {
		count = int(cv.Number())
	}
	where := valueOr(cv, acc)
	fits := slices.ContainsFunc(g.families, func(f string) bool { return strings.HasPrefix(mt, f) })
	switch {
	case !fits:
		msg := fmt.Sprintf("%s GPUs need a machine type of %s, not %s", typ.Str, familyList(g.families), mt)
		if isGPUMachine {
			msg += fmt.Sprintf(" (which comes with %s GPUs; leave accelerator out to use them)", builtIn)
		}
		vd.fail(typ, at.with("type"), false, "%s", msg)
	case g.counts != nil && !slices.Contains(g.counts, count):
		vd.fail(where, at.with("count"), false, "an N1 machine takes %s GPUs in counts of %s, not %d", typ.Str, joinInts(g.counts), count)
	case isGPUMachine && builtCount == 0:
		vd.fail(m.Get("machine-type"), pt.with("machine-type"), false, "machine type %s is not one Compute Engine offers with %s GPUs", mt, builtIn)
	case isGPUMachine && cv != nil && count != builtCount:
		vd.fail(where, at.with("count"), false, "%s comes with %d %s GPUs, not %d: the machine type sets the count (leave count out, or pick the machine type with %d)", mt, builtCount, typ.Str, count, count)
	}
}

func familyList(families []string) string {
	out := make([]string, len(families))
	for i, f := range families {
		out[i] = strings.TrimSuffix(f, "-") + "-*"
	}
	return strings.Join(out, " or ")
}

func joinInts(ns []int) string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = strconv.Itoa(n)
	}
	return strings.Join(out, ", ")
}

// loadMachine reads a machine type and its GPUs; a machine type that comes
// with GPUs (g2-standard-8) has them without an accelerator: key.
func loadMachine(v *Value) BatchMachine {
	m := BatchMachine{MachineType: getStr(v, "machine-type")}
	if acc := v.Get("accelerator"); acc != nil {
		m.Accelerator, m.AcceleratorCount = getStr(acc, "type"), 1
		if c := acc.Get("count"); c.IsNumber() {
			m.AcceleratorCount = int(c.Number())
		}
	}
	if typ, n, ok := builtInGPUs(m.MachineType); ok && n > 0 {
		m.Accelerator, m.AcceleratorCount = typ, n
	}
	return m
}

func loadBatch(env *Environment, v *Value) {
	b := BatchEnvironment{
		Project: getStr(v, "project"), Region: getStr(v, "region"),
		Machine:        loadMachine(v),
		BootImage:      getStr(v, "boot-image"),
		Provisioning:   getStr(v, "provisioning"),
		ServiceAccount: getStr(v, "service-account"),
		Network:        getStr(v, "network"), Subnetwork: getStr(v, "subnetwork"),
		NoExternalIP:   getBool(v, "no-external-ip", false),
		Image:          getStr(v, "image"),
		QueueTimeout:   DefaultBatchQueueTimeout,
		MaxRunDuration: DefaultBatchMaxRunDuration,
	}
	if b.Provisioning == "" {
		b.Provisioning = ProvisioningSpot
	}
	if zones := v.Get("zones"); zones != nil {
		for _, z := range zones.Items {
			b.Zones = append(b.Zones, z.Str)
		}
	}
	if fb := v.Get("fallback"); fb != nil {
		for _, m := range fb.Items {
			b.Fallback = append(b.Fallback, loadMachine(m))
		}
	}
	num := func(key string) (float64, bool) {
		if x := v.Get(key); x.IsNumber() {
			return x.Number(), true
		}
		return 0, false
	}
	if n, ok := num("boot-disk-gb"); ok {
		b.BootDiskGB = int(n)
	}
	if n, ok := num("spot-fallback-after"); ok {
		b.SpotFallbackAfter = int(n)
	}
	if n, ok := num("retries"); ok {
		r := int(n)
		b.Retries = &r
	}
	if n, ok := num("hourly-price"); ok {
		b.HourlyPrice = &n
	}
	if x := v.Get("queue-timeout"); x != nil {
		b.QueueTimeout, _ = ParseDuration(x)
	}
	if x := v.Get("max-run-duration"); x != nil {
		b.MaxRunDuration, _ = ParseDuration(x)
	}
	if labels := v.Get("labels"); labels != nil {
		b.Labels = map[string]string{}
		for _, kv := range labels.Pairs {
			b.Labels[kv.Key.String()] = kv.Value.Str
		}
	}
	env.Batch = b
}
