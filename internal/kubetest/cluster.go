package kubetest

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

//go:embed kwok.yaml
var kwokStages []byte

const (
	// serviceRange is the cluster's service CIDR; serviceIP, its first
	// address, is the kubernetes service (and a SAN of the serving cert).
	serviceRange = "10.96.0.0/16"
	serviceIP    = "10.96.0.1"
	// podRange is where kwok takes the IPs of the pods on its nodes.
	podRange = "10.244.0.1/16"
	// issuer is the service-account token issuer.
	issuer = "https://kubernetes.default.svc.cluster.local"

	// KwokNodeAnnotation marks the nodes kwok manages; kubetest's kwok
	// manages those with the value "fake", and no other.
	KwokNodeAnnotation = "kwok.x-k8s.io/node"

	// NodeTypeLabel is set on every node kubetest makes: "kwok" on kwok's,
	// "docker" on the Docker kubelet stand-in's.
	NodeTypeLabel = "sluice.test/node-type"

	// DefaultGPUResource is the extended resource GPU nodes offer.
	DefaultGPUResource corev1.ResourceName = "nvidia.com/gpu"
)

// Options says what Start sets up besides the control plane.
type Options struct {
	// Nodes are the kwok nodes to create and wait for. Nil means one node,
	// GPUNode("kwok-gpu", 4); an empty, non-nil slice means none.
	Nodes []Node

	// NodeLossTolerationSeconds is how long a pod stays on a node that is
	// lost or not ready before the taint manager evicts it (the API
	// server's default toleration for node.kubernetes.io/unreachable and
	// not-ready; 300 in a stock cluster). Zero means 2.
	NodeLossTolerationSeconds int

	// Args are extra flags per component ("kube-apiserver",
	// "kube-controller-manager", "kube-scheduler", "etcd", "kwok"), after
	// kubetest's own, so that they win.
	Args map[string][]string

	// Timeout bounds the whole start; zero means 3 minutes (a guard, not a
	// figure: the start takes seconds).
	Timeout time.Duration
}

// Node is a kwok node: capacity, labels and taints as a real one would
// report. GPUs is the count of GPUResource (DefaultGPUResource if empty).
type Node struct {
	Name        string
	CPU         string // default "32"
	Memory      string // default "128Gi"
	GPUs        int
	GPUResource corev1.ResourceName
	Labels      map[string]string
	Taints      []corev1.Taint
}

// GPUNode is a kwok node with gpus nvidia.com/gpu.
func GPUNode(name string, gpus int) Node { return Node{Name: name, GPUs: gpus} }

// CPUNode is a kwok node without GPUs.
func CPUNode(name string) Node { return Node{Name: name} }

// Cluster is a running control plane on 127.0.0.1. Kubeconfig and
// RESTConfig authenticate as an admin (group system:masters); everything
// stops when the test ends.
type Cluster struct {
	// Kubeconfig is a kubeconfig file for the admin, context "kubetest".
	Kubeconfig string
	RESTConfig *rest.Config
	Clientset  kubernetes.Interface
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// Dir holds the certificates, the kubeconfig, etcd's data and each
	// component's log (<name>.log).
	Dir string
	// StartupTime is how long Start took, from the first process to the
	// last node Ready.
	StartupTime time.Duration

	pki      *pki
	stopOnce sync.Once
	mu       sync.Mutex
	procs    []*process
}

// Start runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok from testdata/k8s/build.sh's cache, creates opts.Nodes and waits
// until they are Ready and the default service account exists. Without the
// binaries the test fails (it does not skip): build them first.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	dir, err := CacheDir(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := findBinaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	c := &Cluster{Dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			c.printLogs(t)
		}
		c.Stop()
	})
	if err := c.start(ctx, bins, opts); err != nil {
		t.Fatalf("kubetest: start the cluster: %v", err)
	}
	t.Logf("kubetest: Kubernetes %s up on %s in %s (logs in %s)", KubernetesVersion, c.Server,
		c.StartupTime.Round(time.Millisecond), c.Dir)
	return c
}

func (c *Cluster) start(ctx context.Context, bins map[string]string, opts Options) error {
	t0 := time.Now()
	var err error
	if c.pki, err = newPKI(c.Dir); err != nil {
		return err
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, cmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.RESTConfig = &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.RESTConfig); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.kubeconfig(c.pki.adminCertPEM, c.pki.adminKeyPEM), 0o600); err != nil {
		return err
	}
	extra := func(name string) []string { return opts.Args[name] }

	// etcd, plain HTTP on loopback, no fsync: its data dies with the test.
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.run(bins, "etcd", append([]string{
		"--name=kubetest",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=kubetest=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, extra("etcd")...)); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", nil); err != nil {
		return err
	}

	tolerate := opts.NodeLossTolerationSeconds
	if tolerate == 0 {
		tolerate = 2
	}
	if err := c.run(bins, "kube-apiserver", append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + c.Dir,
		"--tls-cert-file=" + c.pki.servingCert,
		"--tls-private-key-file=" + c.pki.servingKey,
		"--client-ca-file=" + c.pki.caFile,
		"--service-account-issuer=" + issuer,
		"--service-account-key-file=" + c.pki.saPub,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--service-cluster-ip-range=" + serviceRange,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// The kubernetes service would point at 127.0.0.1, which the
		// endpoint reconciler refuses; no pod here reaches it by service.
		"--endpoint-reconciler-type=none",
		"--default-not-ready-toleration-seconds=" + strconv.Itoa(tolerate),
		"--default-unreachable-toleration-seconds=" + strconv.Itoa(tolerate),
		"--profiling=false",
		"--v=1",
	}, extra("kube-apiserver")...)); err != nil {
		return err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return err
	}

	common := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--profiling=false",
	}
	if err := c.run(bins, "kube-controller-manager", append(append(common[:len(common):len(common)],
		"--secure-port="+strconv.Itoa(cmPort),
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+c.pki.saKey,
		"--root-ca-file="+c.pki.caFile,
		"--cluster-signing-cert-file="+c.pki.caFile,
		"--cluster-signing-key-file="+c.pki.caKeyFile,
		"--v=1",
	), extra("kube-controller-manager")...)); err != nil {
		return err
	}
	if err := c.run(bins, "kube-scheduler", append(append(common[:len(common):len(common)],
		"--secure-port="+strconv.Itoa(schedPort),
		"--v=1",
	), extra("kube-scheduler")...)); err != nil {
		return err
	}
	kwokConfig := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(kwokConfig, kwokStages, 0o644); err != nil {
		return err
	}
	if err := c.run(bins, "kwok", append([]string{
		"--kubeconfig=" + c.Kubeconfig,
		"--config=" + kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=fake",
		"--cidr=" + podRange,
		"--node-ip=127.0.0.1",
	}, extra("kwok")...)); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "kube-controller-manager", "https://127.0.0.1:"+strconv.Itoa(cmPort)+"/healthz", insecureTLS); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "kube-scheduler", "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", insecureTLS); err != nil {
		return err
	}

	nodes := opts.Nodes
	if nodes == nil {
		nodes = []Node{GPUNode("kwok-gpu", 4)}
	}
	for _, n := range nodes {
		if err := c.addNode(ctx, n); err != nil {
			return err
		}
	}
	// Pods need their service account, which the controller manager makes.
	if err := c.poll(ctx, "the default service account", func() (bool, error) {
		_, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return err
	}
	c.StartupTime = time.Since(t0)
	return nil
}

// run starts one component, its log in Dir/<name>.log.
func (c *Cluster) run(bins map[string]string, name string, args []string) error {
	p, err := startProcess(name, bins[name], filepath.Join(c.Dir, name+".log"), args)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return nil
}

// Stop stops every component, the last started first, and returns when all
// have exited. It is safe to call more than once; Start's cleanup calls it.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	})
}

// PIDs returns the process id of each component started, by name.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		pids[p.name] = p.cmd.Process.Pid
	}
	return pids
}

// Log returns the path of a component's log.
func (c *Cluster) Log(name string) string { return filepath.Join(c.Dir, name+".log") }

func (c *Cluster) printLogs(t testing.TB) {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		t.Logf("kubetest: last lines of %s (%s):\n%s", p.name, p.log, p.tail(60))
	}
}

// checkAlive fails when a component has exited: waiting on would only time out.
func (c *Cluster) checkAlive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s stopped (%v); its log: %s", p.name, err, p.log)
		}
	}
	return nil
}

// poll calls cond every 100 ms until it returns true, it errs, a component
// exits, or ctx ends; what names what is awaited, for the error.
func (c *Cluster) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		if err := c.checkAlive(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var insecureTLS = &tls.Config{InsecureSkipVerify: true} // loopback health checks only

// waitHTTP waits until url answers 200.
func (c *Cluster) waitHTTP(ctx context.Context, name, url string, tlsConf *tls.Config) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer hc.CloseIdleConnections()
	return c.poll(ctx, name+" at "+url, func() (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return true, nil
	})
}

// waitAPIServer waits for /readyz, through the admin's credentials.
func (c *Cluster) waitAPIServer(ctx context.Context) error {
	rc := c.Clientset.Discovery().RESTClient()
	return c.poll(ctx, "kube-apiserver /readyz", func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := rc.Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, body)
		}
		return true, nil
	})
}

// AddNode creates a kwok node and waits until it is Ready.
func (c *Cluster) AddNode(t testing.TB, n Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.addNode(ctx, n); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

func (c *Cluster) addNode(ctx context.Context, n Node) error {
	if n.Name == "" {
		return errors.New("a node needs a name")
	}
	cpu, mem := n.CPU, n.Memory
	if cpu == "" {
		cpu = "32"
	}
	if mem == "" {
		mem = "128Gi"
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	if n.GPUs > 0 {
		gpu := n.GPUResource
		if gpu == "" {
			gpu = DefaultGPUResource
		}
		capacity[gpu] = *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI)
	}
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		NodeTypeLabel:            "kwok",
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{Taints: n.Taints},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
		},
	}
	if _, err := c.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return c.WaitNodeReady(ctx, n.Name)
}

// WaitNodeReady waits until the node's Ready condition is True.
func (c *Cluster) WaitNodeReady(ctx context.Context, name string) error {
	return c.poll(ctx, "node "+name+" Ready", func() (bool, error) {
		node, err := c.Clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return NodeReady(node), nil
	})
}

// NodeReady reports whether node's Ready condition is True.
func NodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// LoseNode makes a kwok node act as if its machine went away: its kubelet
// stops posting, Ready turns Unknown, the node lifecycle controller taints it
// unreachable and, after Options.NodeLossTolerationSeconds, the taint
// manager evicts its pods (each gets a DisruptionTarget condition).
func (c *Cluster) LoseNode(ctx context.Context, name string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, NodeLostAnnotation)
	_, err := c.Clientset.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("kubetest: lose node %s: %w", name, err)
	}
	return nil
}

// UserConfig returns a REST config for user in groups, by a client
// certificate from the cluster's CA: what RBAC allows them is up to the
// test's Roles and bindings.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := c.pki.ClientCert(user, groups...)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(c.RESTConfig)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg, nil
}

// UserKubeconfig writes a kubeconfig for user in groups (context
// "kubetest") into Dir and returns its path.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, error) {
	certPEM, keyPEM, err := c.pki.ClientCert(user, groups...)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, "user-"+user+".kubeconfig")
	if err := os.WriteFile(path, c.kubeconfig(certPEM, keyPEM), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// kubeconfig renders a kubeconfig with one cluster, user and context, all
// named "kubetest", the credentials inline.
func (c *Cluster) kubeconfig(certPEM, keyPEM []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kubetest
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: kubetest
    namespace: default
current-context: kubetest
`, c.Server, b64(c.pki.caPEM), b64(certPEM), b64(keyPEM))
}
