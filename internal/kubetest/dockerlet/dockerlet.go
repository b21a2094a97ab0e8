// Package dockerlet is a kubelet stand-in for tests: it registers a node
// with a kubetest cluster and runs the pods bound to it on the local Docker
// daemon, so that a test can see a step's files really move through a pod.
// It is not a kubelet: no pod sandbox, no probes, no restarts, no logs or
// exec through the API server. It is built on virtual-kubelet's node
// library, which keeps the node, its lease and the pods' status in the API
// server; this package is the provider that runs them.
//
// What a pod gets:
//   - init containers one after another, then the containers together, each
//     a Docker container with the pod's image, command, args, env (with
//     valueFrom and envFrom resolved), workingDir, securityContext.runAsUser
//     and runAsGroup, and memory and CPU limits;
//   - the host's network (the pod IP is 127.0.0.1), so that a container
//     reaches the stand-ins a test serves on loopback;
//   - emptyDir volumes as Docker volumes, hostPath as bind mounts; projected
//     volumes (the service-account token) are left out, with their mounts;
//   - images from the local daemon, pulled if missing: a failed pull leaves
//     the pod Pending in ImagePullBackOff;
//   - the pod's status written back: phase, conditions, init container and
//     container states with exit codes (OOMKilled when Docker says so);
//   - on deletion, its containers stopped (the pod's grace period, at most
//     30 s), then removed with its volumes.
//
// Options.Capacity adds extended resources (nvidia.com/gpu) to the node,
// with nothing behind them.
//
// restartPolicy is taken as Never whatever it says: a container that exits
// stays exited.
package dockerlet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/client"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vkslog "github.com/virtual-kubelet/virtual-kubelet/log/slog"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sluice-ci/sluice/internal/kubetest"
)

// DefaultNodeName is the node's name when Options.NodeName is empty.
const DefaultNodeName = "docker"

// Options configures the stand-in's node.
type Options struct {
	NodeName string            // default DefaultNodeName
	Labels   map[string]string // added to the node's own
	Taints   []corev1.Taint
	// Docker is the daemon's client; nil means one from the environment
	// (DOCKER_HOST, else the local socket).
	Docker client.APIClient
	// Capacity is added to the node's capacity and allocatable (the host's
	// CPUs and memory): extended resources such as nvidia.com/gpu, so that
	// a pod asking for a GPU can be scheduled here. Nothing backs them; the
	// containers run as they would without.
	Capacity corev1.ResourceList
	// LogDir, if set, receives the stand-in's log (dockerlet-<node>.log);
	// by default it goes to the test's temp dir.
	LogDir string
}

// Kubelet is a running stand-in.
type Kubelet struct {
	NodeName string
	// Log is the path of the node library's and the provider's log.
	Log string

	provider *provider
	cancel   context.CancelFunc
	done     chan struct{}
}

// Start registers the node, waits until it is Ready and the pod controller
// has synced, and runs pods until the test ends; then it stops, and removes
// every container and volume it made.
func Start(t testing.TB, cs kubernetes.Interface, opts Options) *Kubelet {
	t.Helper()
	name := opts.NodeName
	if name == "" {
		name = DefaultNodeName
	}
	cli := opts.Docker
	if cli == nil {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatalf("dockerlet: docker client: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cli = c
	}
	logDir := opts.LogDir
	if logDir == "" {
		logDir = t.TempDir()
	}
	logPath := filepath.Join(logDir, "dockerlet-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("dockerlet: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ctx, cancel := context.WithCancel(context.Background())
	ctx = vklog.WithLogger(ctx, vkslog.FromSlog(logger))
	k := &Kubelet{NodeName: name, Log: logPath, cancel: cancel, done: make(chan struct{})}
	k.provider = newProvider(cli, name, logger)
	// Once a deleted pod's containers are gone, the pod object goes too, at
	// once, as a kubelet's status manager does it (the node library alone
	// would wait out the pod's whole grace period first).
	k.provider.removed = func(ctx context.Context, pod *corev1.Pod) {
		err := cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: new(int64(0)), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			logger.Warn("delete the removed pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}

	nodeObj, err := k.node(ctx, cli, opts)
	if err != nil {
		cancel()
		t.Fatalf("dockerlet: %v", err)
	}
	nc, err := node.NewNodeController(node.NaiveNodeProvider{}, nodeObj, cs.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(cs.CoordinationV1().Leases(corev1.NamespaceNodeLease), 40))
	if err != nil {
		cancel()
		t.Fatalf("dockerlet: node controller: %v", err)
	}

	podInformers := informers.NewSharedInformerFactoryWithOptions(cs, time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=" + name }))
	others := informers.NewSharedInformerFactory(cs, time.Minute)
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dockerlet", Host: name})
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:         cs.CoreV1(),
		PodInformer:       podInformers.Core().V1().Pods(),
		EventRecorder:     recorder,
		Provider:          k.provider,
		ConfigMapInformer: others.Core().V1().ConfigMaps(),
		SecretInformer:    others.Core().V1().Secrets(),
		ServiceInformer:   others.Core().V1().Services(),
	})
	if err != nil {
		cancel()
		t.Fatalf("dockerlet: pod controller: %v", err)
	}
	podInformers.Start(ctx.Done())
	others.Start(ctx.Done())

	ncDone, pcDone := make(chan error, 1), make(chan error, 1)
	go func() { ncDone <- nc.Run(ctx) }()
	go func() { pcDone <- pc.Run(ctx, 4) }()
	go func() {
		<-ncDone
		<-pcDone
		podInformers.Shutdown()
		others.Shutdown()
		broadcaster.Shutdown()
		close(k.done)
	}()
	t.Cleanup(func() {
		k.stop()
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("dockerlet %s log (%s), last lines:\n%s", name, logPath, lastLines(data, 60))
			}
		}
	})

	wait := time.NewTimer(time.Minute)
	defer wait.Stop()
	for _, ready := range []struct {
		what string
		ch   <-chan struct{}
	}{{"node", nc.Ready()}, {"pod controller", pc.Ready()}} {
		select {
		case <-ready.ch:
		case <-pc.Done():
			t.Fatalf("dockerlet: pod controller stopped: %v", pc.Err())
		case <-nc.Done():
			t.Fatalf("dockerlet: node controller stopped: %v", nc.Err())
		case <-wait.C:
			t.Fatalf("dockerlet: the %s was not ready within a minute (log: %s)", ready.what, logPath)
		}
	}
	return k
}

// stop ends the controllers, then removes what the provider ran.
func (k *Kubelet) stop() {
	k.cancel()
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k.provider.removeAll(ctx)
}

// node is the Node object the controller registers: the host's CPUs and
// memory as capacity, Ready, at 127.0.0.1.
func (k *Kubelet) node(ctx context.Context, cli client.APIClient, opts Options) (*corev1.Node, error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker info: %w", err)
	}
	labels := map[string]string{
		"kubernetes.io/hostname": k.NodeName,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
		kubetest.NodeTypeLabel:   "docker",
	}
	for key, v := range opts.Labels {
		labels[key] = v
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(info.NCPU), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(info.MemTotal, resource.BinarySI),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	for name, q := range opts.Capacity {
		capacity[name] = q
	}
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.NodeName, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: opts.Taints},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
				{Type: corev1.NodeHostName, Address: k.NodeName},
			},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:            runtime.GOARCH,
				OperatingSystem:         "linux",
				KubeletVersion:          "dockerlet (sluice test stand-in)",
				ContainerRuntimeVersion: "docker://" + info.ServerVersion,
				KernelVersion:           info.KernelVersion,
				OSImage:                 info.OperatingSystem,
			},
		},
	}, nil
}

func lastLines(data []byte, n int) string {
	end := len(data)
	for end > 0 && data[end-1] == '\n' {
		end--
	}
	start := end
	for count := 0; start > 0; start-- {
		if data[start-1] == '\n' {
			if count++; count == n {
				break
			}
		}
	}
	return string(data[start:end])
}
