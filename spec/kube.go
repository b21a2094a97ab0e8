package spec

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// BackendKubernetes runs each node execution as a batch/v1 Job on a
// Kubernetes cluster: GPUs by resource request, evictions retried.
const BackendKubernetes = "kubernetes"

// Defaults of a kubernetes environment.
const (
	DefaultKubeNamespace    = "default"
	DefaultKubeGPUResource  = "nvidia.com/gpu"
	DefaultKubeQueueTimeout = 10 * time.Minute
	DefaultKubeTTL          = time.Hour // ttl-after-finished
	DefaultKubeRetries      = 3
)

// KubeEnvironment holds the settings of `backend: kubernetes`:
//
//	environments:
//	  gke-gpu:
//	    backend: kubernetes
//	    kubeconfig: ~/.kube/config        # default: $KUBECONFIG, then ~/.kube/config
//	    context: gke_my-project_us-central1_ml   # default: the kubeconfig's current context
//	    in-cluster: false                 # true: the pod's service account (sluice itself runs in the cluster)
//	    namespace: ml-ci                  # default: default
//	    service-account: sluice-step      # the pods' service account
//	    image-pull-secrets: [ghcr]
//	    labels: {team: ml}                # on the Jobs and their pods
//	    annotations: {sidecar.istio.io/inject: "false"}   # on the pods
//	    node-selector: {cloud.google.com/gke-accelerator: nvidia-l4}
//	    tolerations:
//	      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
//	    priority-class: ci-low
//	    gpu-resource: nvidia.com/gpu      # the extended resource GPUs are requested by
//	    gpus: 1                           # per node, unless the step's resources.devices says
//	    queue-timeout: 10m                # how long a pod may stay Pending, apart from the step's time limit
//	    retries: 3                        # evictions, preemptions and lost nodes retried per node
//	    ttl-after-finished: 1h            # the Job's ttlSecondsAfterFinished, and the sluice-ttl label
//	    hourly-price: 0.70                # USD per node-hour, for the cost estimate and max-cost
//	    image: ghcr.io/sluice-ci/sluice:v1   # the sluice image of the init container
type KubeEnvironment struct {
	// Kubeconfig is the kubeconfig file's path ("~/" expanded); empty
	// means $KUBECONFIG, then ~/.kube/config. Context is the context to
	// use; empty means the file's current context. InCluster uses the
	// pod's service account instead of a file.
	Kubeconfig string
	Context    string
	InCluster  bool
	// Namespace of the Jobs; empty means DefaultKubeNamespace.
	Namespace        string
	ServiceAccount   string
	ImagePullSecrets []string
	Labels           map[string]string
	Annotations      map[string]string
	NodeSelector     map[string]string
	Tolerations      []KubeToleration
	PriorityClass    string
	// GPUResource is the extended resource name GPUs are requested by;
	// empty means DefaultKubeGPUResource. GPUs is the count per node when
	// the step's resources do not say.
	GPUResource string
	GPUs        int
	// QueueTimeout bounds how long a pod may stay Pending (unscheduled, or
	// pulling its image) before the node fails; it is not counted in the
	// step's time limit. Zero means DefaultKubeQueueTimeout.
	QueueTimeout time.Duration
	// Retries is how many evictions, preemptions and lost nodes a node
	// takes; nil means DefaultKubeRetries.
	Retries *int
	// TTLAfterFinished is the Job's ttlSecondsAfterFinished; zero means
	// DefaultKubeTTL.
	TTLAfterFinished time.Duration
	// HourlyPrice is the price of one node hour in USD; nil when not given.
	HourlyPrice *float64
	// Image is the sluice image of the init container; empty means the
	// image of this sluice's version.
	Image string
}

// KubeToleration is one toleration of the pods, as corev1.Toleration has it.
type KubeToleration struct {
	Key, Operator, Value, Effect string
	// Seconds is tolerationSeconds; nil means forever.
	Seconds *int64
}

// RetriesOr returns Retries, or DefaultKubeRetries when it is nil.
func (k KubeEnvironment) RetriesOr() int {
	if k.Retries == nil {
		return DefaultKubeRetries
	}
	return *k.Retries
}

var (
	// reDNSLabel is an RFC 1123 label, as a namespace name is.
	reDNSLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// reDNSSubdomain is an RFC 1123 subdomain, as most object names are
	// (service accounts, secrets, priority classes).
	reDNSSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// reQualifiedName is the name part of a label or annotation key.
	reQualifiedName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	// reKubeLabelValue is a label value (empty, or this).
	reKubeLabelValue = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

	sKubeName = func(what, example string) *schema {
		return &schema{types: tStr, pattern: reDNSSubdomain, maxLen: 253,
			patDesc: fmt.Sprintf("the name of a %s: lowercase letters, digits, - and ., such as %s", what, example)}
	}
	sKubeMap = func(what string) *schema {
		return &schema{types: tObj, anyKey: sStr, desc: "a mapping of " + what + " to strings"}
	}
	schKubeToleration = obj("toleration", nil,
		p("key", &schema{types: tStr}),
		p("operator", enum(TolerationExists, TolerationEqual)),
		p("value", &schema{types: tStr}),
		p("effect", enum(TaintNoSchedule, TaintPreferNoSchedule, TaintNoExecute)),
		p("toleration-seconds", &schema{types: tInt, min: fptr(0), max: fptr(math.MaxInt32)}))
)

// Toleration operators and taint effects, as corev1 spells them.
const (
	TolerationExists      = "Exists"
	TolerationEqual       = "Equal"
	TaintNoSchedule       = "NoSchedule"
	TaintPreferNoSchedule = "PreferNoSchedule"
	TaintNoExecute        = "NoExecute"
)

var kubeBackend = backendDef{
	name: BackendKubernetes,
	props: []prop{
		p("kubeconfig", &schema{types: tStr, pattern: nonBlank, patDesc: "a kubeconfig file's path, such as ~/.kube/config"}),
		p("context", &schema{types: tStr, pattern: nonBlank, patDesc: "a context of the kubeconfig, such as gke_my-project_us-central1_ml"}),
		p("in-cluster", sBool),
		p("namespace", &schema{types: tStr, pattern: reDNSLabel, maxLen: 63, patDesc: "a namespace name (an RFC 1123 label: lowercase letters, digits and -, starting and ending with a letter or digit), such as ml-ci"}),
		p("service-account", sKubeName("service account", "sluice-step")),
		p("image-pull-secrets", list(sKubeName("secret", "ghcr"))),
		p("labels", sKubeMap("label names")),
		p("annotations", sKubeMap("annotation names")),
		p("node-selector", sKubeMap("node label names")),
		p("tolerations", list(schKubeToleration)),
		p("priority-class", sKubeName("priority class", "ci-low")),
		p("gpu-resource", &schema{types: tStr | tNull, desc: "an extended resource name such as nvidia.com/gpu"}),
		p("gpus", &schema{types: tInt, min: fptr(0), max: fptr(1024)}),
		p("queue-timeout", sBatchDuration),
		p("retries", &schema{types: tInt, min: fptr(0), max: fptr(100)}),
		p("ttl-after-finished", sBatchDuration),
		p("hourly-price", sHourlyPrice),
		p("image", sAgentImage),
	},
	check: checkKube,
	load:  loadKube,
}

// checkKube checks what the schema cannot say about a kubernetes
// environment, as the API server would refuse it, but before any Job is
// made: keys and values of labels, tolerations, the GPU resource, the
// durations, and a cluster given twice.
func checkKube(vd *validator, v *Value, pt path) {
	if ic := v.Get("in-cluster"); ic != nil && ic.Kind == KindBool && ic.Bool {
		for _, k := range []string{"kubeconfig", "context"} {
			if x := v.Get(k); x != nil {
				vd.fail(x, pt.with(k), false, "%s and in-cluster: true (line %d) both say how to reach the cluster; in-cluster uses the pod's service account and reads no kubeconfig: keep one", k, ic.Pos.Line)
			}
		}
	}
	checkKubeKeys(vd, v.Get("labels"), pt.with("labels"), "label", true)
	checkKubeKeys(vd, v.Get("annotations"), pt.with("annotations"), "annotation", false)
	checkKubeKeys(vd, v.Get("node-selector"), pt.with("node-selector"), "node label", true)
	if tols := v.Get("tolerations"); tols != nil {
		for i, t := range tols.Items {
			checkToleration(vd, t, pt.with("tolerations").with(i))
		}
	}
	res := v.Get("gpu-resource")
	if res.IsString() && res.Str != "" {
		if msg := extendedResourceProblem(res.Str); msg != "" {
			vd.fail(res, pt.with("gpu-resource"), false, "%q is not an extended resource name: %s", res.Str, msg)
		}
	}
	if n := v.Get("gpus"); n.IsNumber() && n.Number() > 0 && res != nil && (res.IsNull() || res.IsString() && res.Str == "") {
		vd.fail(n, pt.with("gpus"), false, "gpus %s, but gpu-resource (line %d) is empty: a GPU count needs a GPU resource name such as %s (leave gpu-resource out for that one)", n.Repr(), valueOr(res, v).Pos.Line, DefaultKubeGPUResource)
	}
	for _, k := range []string{"queue-timeout", "ttl-after-finished"} {
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
		case k == "ttl-after-finished" && (d < time.Second || d%time.Second != 0):
			vd.fail(x, pt.with(k), false, "ttl-after-finished %s is not a whole number of seconds, which ttlSecondsAfterFinished needs", x.Repr())
		case k == "ttl-after-finished" && d > math.MaxInt32*time.Second:
			vd.fail(x, pt.with(k), false, "ttl-after-finished %s is longer than ttlSecondsAfterFinished takes (%d seconds, 68 years)", x.Repr(), math.MaxInt32)
		}
	}
}

// checkKubeKeys checks the keys of labels, annotations or a node selector
// (what: "label") as Kubernetes takes them, and, for labels (values), the
// values too. Label keys with the sluice- prefix are sluice's own.
func checkKubeKeys(vd *validator, m *Value, pt path, what string, values bool) {
	if m == nil {
		return
	}
	for _, kv := range m.Pairs {
		k := kv.Key.String()
		if msg := qualifiedNameProblem(k); msg != "" {
			vd.fail(kv.Key, pt.with(k), false, "%s key %q is not valid for Kubernetes: %s", what, k, msg)
			continue
		}
		if what == "label" && strings.HasPrefix(k, "sluice-") {
			vd.fail(kv.Key, pt.with(k), false, "label %q: the sluice- prefix is sluice's own (sluice-run, sluice-ttl, ... find and delete its Jobs); pick another name", k)
			continue
		}
		if values && kv.Value.IsString() {
			if val := kv.Value.Str; len(val) > 63 || val != "" && !reKubeLabelValue.MatchString(val) {
				vd.fail(kv.Value, pt.with(k), false, "%s value %q is not valid for Kubernetes: at most 63 letters, digits, -, _ and ., starting and ending with a letter or digit (or empty)", what, val)
			}
		}
	}
}

// qualifiedNameProblem says why k is not a Kubernetes qualified name (a
// label or annotation key: an optional DNS subdomain prefix and /, then a
// name of at most 63), or "".
func qualifiedNameProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = k
	}
	switch {
	case hasPrefix && (prefix == "" || len(prefix) > 253 || !reDNSSubdomain.MatchString(prefix)):
		return fmt.Sprintf("the prefix %q must be a DNS subdomain (lowercase letters, digits, - and ., such as example.com)", prefix)
	case strings.Contains(name, "/"):
		return "a key has at most one /, between its prefix and its name"
	case name == "" || len(name) > 63 || !reQualifiedName.MatchString(name):
		return fmt.Sprintf("the name %q must be at most 63 letters, digits, -, _ and ., starting and ending with a letter or digit", name)
	}
	return ""
}

// extendedResourceProblem says why name is not an extended resource name
// (domain/name, outside the kubernetes.io domain), or "".
func extendedResourceProblem(name string) string {
	domain, _, ok := strings.Cut(name, "/")
	if !ok {
		return fmt.Sprintf("it needs a domain, domain/name, such as %s or amd.com/gpu", DefaultKubeGPUResource)
	}
	if msg := qualifiedNameProblem(name); msg != "" {
		return msg
	}
	if domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return "the kubernetes.io domain is Kubernetes' own (cpu, memory, ...); GPUs come under their vendor's, such as " + DefaultKubeGPUResource
	}
	return ""
}

// checkToleration checks one toleration as the API server does: Exists
// takes no value, an empty key only Exists, toleration-seconds only
// NoExecute.
func checkToleration(vd *validator, t *Value, pt path) {
	key, op, val := t.Get("key"), getStr(t, "operator"), t.Get("value")
	if op == "" {
		op = TolerationEqual
	}
	if key.IsString() && key.Str != "" {
		if msg := qualifiedNameProblem(key.Str); msg != "" {
			vd.fail(key, pt.with("key"), false, "toleration key %q is not a valid taint key: %s", key.Str, msg)
		}
	} else if op != TolerationExists {
		vd.fail(valueOr(key, t), pt.with("key"), false, "a toleration with no key matches every taint, which only operator: Exists can say; give the taint's key, or operator: Exists")
	}
	switch {
	case op == TolerationExists && val.IsString() && val.Str != "":
		vd.fail(val, pt.with("value"), false, "value %q with operator: Exists: the API server refuses it (Exists matches a taint by its key alone); leave value out, or use operator: Equal", val.Str)
	case op == TolerationEqual && val.IsString() && val.Str != "" && (len(val.Str) > 63 || !reKubeLabelValue.MatchString(val.Str)):
		vd.fail(val, pt.with("value"), false, "toleration value %q is not a valid taint value: at most 63 letters, digits, -, _ and ., starting and ending with a letter or digit", val.Str)
	}
	if s := t.Get("toleration-seconds"); s != nil && getStr(t, "effect") != TaintNoExecute {
		vd.fail(s, pt.with("toleration-seconds"), false, "toleration-seconds is only for effect: NoExecute (how long a pod stays on a node after the taint appears); the API server refuses it otherwise")
	}
}

func loadKube(env *Environment, v *Value) {
	k := KubeEnvironment{
		Kubeconfig: getStr(v, "kubeconfig"), Context: getStr(v, "context"),
		InCluster:      getBool(v, "in-cluster", false),
		Namespace:      getStr(v, "namespace"),
		ServiceAccount: getStr(v, "service-account"),
		PriorityClass:  getStr(v, "priority-class"),
		GPUResource:    getStr(v, "gpu-resource"),
		Image:          getStr(v, "image"),
		QueueTimeout:   DefaultKubeQueueTimeout, TTLAfterFinished: DefaultKubeTTL,
	}
	if k.Namespace == "" {
		k.Namespace = DefaultKubeNamespace
	}
	if k.GPUResource == "" {
		k.GPUResource = DefaultKubeGPUResource
	}
	if secrets := v.Get("image-pull-secrets"); secrets != nil {
		for _, s := range secrets.Items {
			k.ImagePullSecrets = append(k.ImagePullSecrets, s.Str)
		}
	}
	strMap := func(key string) map[string]string {
		m := v.Get(key)
		if m == nil {
			return nil
		}
		out := make(map[string]string, len(m.Pairs))
		for _, kv := range m.Pairs {
			out[kv.Key.String()] = kv.Value.Str
		}
		return out
	}
	k.Labels, k.Annotations, k.NodeSelector = strMap("labels"), strMap("annotations"), strMap("node-selector")
	if tols := v.Get("tolerations"); tols != nil {
		for _, t := range tols.Items {
			tol := KubeToleration{Key: getStr(t, "key"), Operator: getStr(t, "operator"), Value: getStr(t, "value"), Effect: getStr(t, "effect")}
			if tol.Operator == "" {
				tol.Operator = TolerationEqual
			}
			if s := t.Get("toleration-seconds"); s.IsNumber() {
				n := int64(s.Number())
				tol.Seconds = &n
			}
			k.Tolerations = append(k.Tolerations, tol)
		}
	}
	if n := v.Get("gpus"); n.IsNumber() {
		k.GPUs = int(n.Number())
	}
	if n := v.Get("retries"); n.IsNumber() {
		r := int(n.Number())
		k.Retries = &r
	}
	if n := v.Get("hourly-price"); n.IsNumber() {
		f := n.Number()
		k.HourlyPrice = &f
	}
	if x := v.Get("queue-timeout"); x != nil {
		k.QueueTimeout, _ = ParseDuration(x)
	}
	if x := v.Get("ttl-after-finished"); x != nil {
		k.TTLAfterFinished, _ = ParseDuration(x)
	}
	env.Kube = k
}

// Describe says where and on what a kubernetes environment runs, for
// people: "context gke-ml, namespace ml-ci, 1 x nvidia.com/gpu, nodes
// cloud.google.com/gke-accelerator=nvidia-l4, priority ci-low".
func (k KubeEnvironment) Describe() string {
	var parts []string
	switch {
	case k.InCluster:
		parts = append(parts, "in-cluster")
	case k.Context != "":
		parts = append(parts, "context "+k.Context)
	default:
		parts = append(parts, "the kubeconfig's current context")
	}
	ns := k.Namespace
	if ns == "" {
		ns = DefaultKubeNamespace
	}
	parts = append(parts, "namespace "+ns)
	if k.GPUs > 0 {
		res := k.GPUResource
		if res == "" {
			res = DefaultKubeGPUResource
		}
		parts = append(parts, fmt.Sprintf("%d x %s", k.GPUs, res))
	}
	if len(k.NodeSelector) > 0 {
		var sel []string
		for _, key := range slices.Sorted(maps.Keys(k.NodeSelector)) {
			sel = append(sel, key+"="+k.NodeSelector[key])
		}
		parts = append(parts, "nodes "+strings.Join(sel, ","))
	}
	if k.PriorityClass != "" {
		parts = append(parts, "priority "+k.PriorityClass)
	}
	return strings.Join(parts, ", ")
}
