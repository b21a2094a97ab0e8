// Package kubetest starts a real Kubernetes control plane for a test, on
// 127.0.0.1: etcd, kube-apiserver (RBAC on, the stock admission plugins),
// kube-controller-manager (every default controller: the Job controller,
// pod GC, the node lifecycle and taint managers), kube-scheduler, and kwok,
// which plays the kubelet of fake nodes. Nothing is stubbed: a Job is
// admitted, scheduled, run and counted by the same code as in a cluster.
//
// The binaries come from testdata/k8s/build.sh, which builds them from the
// Go module proxy into ${SLUICE_K8S_CACHE:-~/.cache/sluice/k8s}/<version>;
// .ci/run calls it. Without them Start fails the test, never skips it.
//
// # Fake nodes (kwok)
//
// Start creates kwok nodes with the capacity they are given: by default
// one, "kwok-gpu", with 4 nvidia.com/gpu. Pods bound to them run nothing;
// kwok moves them through their phases, as a kubelet would report them
// (kwok.yaml holds the stages). Pod annotations say how:
//
//   - none: the pod runs, then every container exits 0 and it succeeds
//     (restartPolicy Never or OnFailure; with Always it runs on).
//   - sluice.test/duration: "5s": how long the containers run first
//     (a Go duration; default: no time at all).
//   - sluice.test/exit-code: "42": every container exits 42 and the pod
//     fails (restartPolicy Never). sluice.test/reason sets the containers'
//     reason: "Error" by default; "OOMKilled" with 137 is an OOM kill.
//   - sluice.test/evict: "true" on a running pod (at creation, or added
//     later, say to one try of a Job): the kubelet evicts it. The pod fails
//     with reason Evicted and a DisruptionTarget condition, its containers
//     exit 137. (The Job controller replaces a failed pod after its
//     back-off: 10 s for the first, even when the pod failure policy
//     ignores the failure.)
//   - sluice.test/image-pull-error: "true": the image cannot be pulled;
//     the pod stays Pending, its containers waiting in ImagePullBackOff.
//
// A pod being deleted is stopped (its containers exit 143, the pod fails)
// and then removed once no finalizer holds it.
//
// The node annotation sluice.test/node-lost (Cluster.LoseNode) makes a
// node's kubelet stop posting: Ready turns Unknown, the node lifecycle
// controller taints the node unreachable, and the taint manager evicts its
// pods after Options.NodeLossTolerationSeconds (2 s by default instead of
// the stock 300 s), each with a DisruptionTarget condition.
//
// # A node that runs containers
//
// Package kubetest/dockerlet is a kubelet stand-in that runs the pods bound
// to its node on the local Docker daemon, for the tests that need a step's
// files to really move.
package kubetest

// The annotations that steer kwok's stages (see the package doc).
const (
	DurationAnnotation       = "sluice.test/duration"
	ExitCodeAnnotation       = "sluice.test/exit-code"
	ReasonAnnotation         = "sluice.test/reason"
	EvictAnnotation          = "sluice.test/evict"
	ImagePullErrorAnnotation = "sluice.test/image-pull-error"
	NodeLostAnnotation       = "sluice.test/node-lost"
)
