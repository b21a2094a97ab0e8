package spec

import "time"

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
