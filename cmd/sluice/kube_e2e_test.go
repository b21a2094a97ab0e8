package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/internal/kubetest"
	"github.com/sluice-ci/sluice/internal/kubetest/dockerlet"
	"github.com/sluice-ci/sluice/runner/kube"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// kubeRig is a kubernetes pipeline's world: a real control plane on
// 127.0.0.1 (internal/kubetest: kube-apiserver with RBAC, the controller
// manager's Job controller, the scheduler), fake-gcs-server as the gs://
// store, and the pipeline's directory (testdata/run/kube: prepare and
// evaluate on the local Docker, train on the kubernetes environment
// gke-gpu, namespace ml-ci).
type kubeRig struct {
	c   *kubetest.Cluster
	st  store.Store
	url string
	dir string
	env []string
}

func newKubeRig(t *testing.T, bucket string, opts kubetest.Options) *kubeRig {
	t.Helper()
	dockertest.Client(t)
	dockertest.Image(t)
	c := kubetest.Start(t, opts)
	gcstest.Start(t, bucket)
	url := "gs://" + bucket + "/ci"
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "kube"))); err != nil {
		t.Fatal(err)
	}
	return &kubeRig{c: c, st: st, url: url, dir: dir,
		env: append(os.Environ(), "SLUICE_TEST_MAIN=1", "HOME="+t.TempDir(), "KUBECONFIG="+c.Kubeconfig)}
}

// setenv sets one variable of the binary's environment.
func (r *kubeRig) setenv(key, value string) {
	r.env = append(r.env, key+"="+value)
}

func (r *kubeRig) namespace(t *testing.T, name string) {
	t.Helper()
	if _, err := r.c.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (r *kubeRig) edit(t *testing.T, file, old, new string) {
	t.Helper()
	(&batchRig{dir: r.dir}).edit(t, file, old, new)
}

func (r *kubeRig) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir, cmd.Env = r.dir, r.env
	return cmd
}

func (r *kubeRig) sluice(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := r.command(ctx, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return string(out), code
}

// jobsAndPods lists every Job and pod of the cluster, in every namespace.
func (r *kubeRig) jobsAndPods(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	jobs, err := r.c.Clientset.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := r.c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs.Items {
		out = append(out, "job "+j.Namespace+"/"+j.Name)
	}
	for _, p := range pods.Items {
		out = append(out, "pod "+p.Namespace+"/"+p.Name)
	}
	return out
}

// noRuns fails when the store holds a run.
func (r *kubeRig) noRuns(t *testing.T) {
	t.Helper()
	if ids, err := store.ListRuns(context.Background(), r.st); err != nil || len(ids) > 0 {
		t.Errorf("runs recorded: %v %v", ids, err)
	}
}

// Each bad input is a clear error at the environment's line in sluice.yaml,
// with exit code 2, before any Job (or pod) exists and before a run is
// recorded.
func TestKubeBadInputFailsBeforeAnyJob(t *testing.T) {
	r := newKubeRig(t, "kube-bad", kubetest.Options{Nodes: []kubetest.Node{kubetest.CPUNode("kwok-cpu")}})
	base := append([]string(nil), r.env...)
	orig, err := os.ReadFile(filepath.Join(r.dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	alice, err := r.c.UserKubeconfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T)
		args  []string // besides run --pull never
		want  string
	}{
		{"no kubeconfig", func(t *testing.T) { r.setenv("KUBECONFIG", "") }, nil,
			`sluice.yaml:2:3: environment "gke-gpu": no kubeconfig: ~/.kube/config does not exist; set kubeconfig: in sluice.yaml, KUBECONFIG, or in-cluster: true`},
		{"unknown context", func(t *testing.T) {
			r.edit(t, "sluice.yaml", "namespace: ml-ci", "namespace: ml-ci\n    context: gke-prod")
		}, nil,
			`sluice.yaml:2:3: environment "gke-gpu": context gke-prod is not in kubeconfig $KUBECONFIG (` + r.c.Kubeconfig + `), which has one context, kubetest`},
		{"missing namespace", func(t *testing.T) {}, nil,
			`sluice.yaml:2:3: environment "gke-gpu": cluster kubetest: namespace ml-ci does not exist on the cluster; create it (kubectl create namespace ml-ci)`},
		{"GPU count without a resource name", func(t *testing.T) {
			r.edit(t, "sluice.yaml", "gpu-resource: nvidia.com/gpu", "gpu-resource: null")
		}, nil, `sluice.yaml:6:11: error: environments.gke-gpu.gpus: gpus 1, but gpu-resource (line 5) is empty: a GPU count needs a GPU resource name such as nvidia.com/gpu`},
		{"local store", func(t *testing.T) {}, []string{"--store", "local-store"},
			`sluice.yaml:2:3: environment "gke-gpu": a kubernetes environment needs a store its pods can reach, a gs:// bucket; local-store is on this host (give --store gs://BUCKET/PREFIX)`},
		{"RBAC forbids creating Jobs", func(t *testing.T) {
			r.namespace(t, "ml-ci")
			r.bindRole(t, "ml-ci", "alice", []rbacv1.PolicyRule{
				{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "delete"}},
				{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list", "watch"}},
			})
			r.setenv("KUBECONFIG", alice)
		}, nil, `sluice.yaml:2:3: environment "gke-gpu": cluster kubetest: user "alice" may not create jobs.batch in namespace ml-ci (RBAC); sluice needs a Role there that grants create, get, list, watch, delete on jobs.batch`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.env = append([]string(nil), base...)
			if err := os.WriteFile(filepath.Join(r.dir, "sluice.yaml"), orig, 0o644); err != nil {
				t.Fatal(err)
			}
			c.setup(t)
			args := append([]string{"run", "--pull", "never"}, c.args...)
			if c.args == nil {
				args = append(args, "--store", r.url)
			}
			start := time.Now()
			out, code := r.sluice(t, args...)
			t.Logf("failed in %s", time.Since(start).Round(time.Millisecond))
			if code != exitUsage || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, want %d and\n%s\nin\n%s", code, exitUsage, c.want, out)
			}
			if left := r.jobsAndPods(t); len(left) > 0 {
				t.Errorf("made before the error: %v", left)
			}
			r.noRuns(t)
			if _, err := os.Stat(filepath.Join(r.dir, "local-store", "runs")); err == nil {
				t.Error("a run was recorded in the local store")
			}
		})
	}
}

// waitRBAC waits until RBAC's cache knows what user may do in namespace:
// get jobs there.
func waitRBAC(t *testing.T, cs kubernetes.Interface, user, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authzv1.ResourceAttributes{Namespace: namespace, Verb: "get", Group: "batch", Resource: "jobs"}}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s may still not get jobs in %s: %v", user, namespace, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gc --cloud deletes, with their pods, the Jobs a killed CI job left in the
// namespace of a kubernetes environment once they are past their TTL, and
// keeps a young one and one that is not sluice's; --dry-run only lists.
func TestKubeGCCloud(t *testing.T) {
	r := newKubeRig(t, "kube-gc", kubetest.Options{Nodes: []kubetest.Node{kubetest.CPUNode("kwok-cpu")}})
	r.namespace(t, "ml-ci")
	ctx := context.Background()
	cs := r.c.Clientset
	now := time.Now()
	create := func(name string, labels map[string]string) {
		t.Helper()
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{kubetest.DurationAnnotation: "1h"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "step", Image: "busybox", Command: []string{"sleep", "3600"}}}},
			}},
		}
		if _, err := cs.BatchV1().Jobs("ml-ci").Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	old := func(created time.Time) map[string]string {
		return map[string]string{kube.LabelRun: "r1", kube.LabelNode: "train", kube.LabelRepo: "ml-team.digits",
			kube.LabelCreated: strconv.FormatInt(created.Unix(), 10), kube.LabelTTL: "3600"}
	}
	create("sluice-old-train", old(now.Add(-2*time.Hour)))
	create("sluice-young-train", old(now.Add(-10*time.Minute)))
	create("someone-else", map[string]string{"app": "web"})
	names := func() []string {
		jobs, err := cs.BatchV1().Jobs("ml-ci").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range jobs.Items {
			out = append(out, j.Name)
		}
		slices.Sort(out)
		return out
	}

	out, code := r.sluice(t, "gc", "--cloud", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete Job ml-ci/sluice-old-train on kubetest (run r1, node train,") ||
		!strings.Contains(out, "gc --cloud: kubetest/ml-ci: would delete 1 Job past their TTL") ||
		strings.Contains(out, "sluice-young") || len(names()) != 3 {
		t.Fatalf("dry run: exit %d, jobs %v\n%s", code, names(), out)
	}
	out, code = r.sluice(t, "gc", "--cloud")
	if code != 0 || !strings.Contains(out, "deleted Job ml-ci/sluice-old-train on kubetest (run r1, node train,") ||
		!strings.Contains(out, "gc --cloud: kubetest/ml-ci: deleted 1 Job past their TTL") {
		t.Fatalf("gc --cloud: exit %d\n%s", code, out)
	}
	// The Job goes once its pod has (foreground propagation).
	for deadline := time.Now().Add(60 * time.Second); len(names()) == 3 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := strings.Join(names(), " "); got != "sluice-young-train someone-else" {
		t.Errorf("Jobs after gc --cloud: %s, want the young one and the one that is not sluice's", got)
	}
	pods, err := cs.CoreV1().Pods("ml-ci").List(ctx, metav1.ListOptions{LabelSelector: "job-name=sluice-old-train"})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("the old Job's pods are left: %v %v", pods, err)
	}
	// A cluster it cannot reach is an error at the environment's line.
	r.setenv("KUBECONFIG", "")
	out, code = r.sluice(t, "gc", "--cloud")
	if want := `sluice.yaml:2:3: environment "gke-gpu": no kubeconfig: ~/.kube/config does not exist`; code != exitFailed || !strings.Contains(out, want) {
		t.Errorf("gc --cloud without a kubeconfig: exit %d, want %d and %q in\n%s", code, exitFailed, want, out)
	}
}

// newKubeGPURig is a kubeRig whose only node is the Docker node stand-in
// (internal/kubetest/dockerlet), with one nvidia.com/gpu of capacity: the
// scheduler puts train's pod there, and its containers run on the local
// Docker, reaching fake-gcs-server on 127.0.0.1.
func newKubeGPURig(t *testing.T, bucket string) *kubeRig {
	t.Helper()
	r := newKubeRig(t, bucket, kubetest.Options{Nodes: []kubetest.Node{}})
	dockerlet.Start(t, r.c.Clientset, dockerlet.Options{Docker: dockertest.Client(t),
		Capacity: corev1.ResourceList{kubetest.DefaultGPUResource: resource.MustParse("1")}})
	r.namespace(t, "ml-ci")
	r.setenv("SLUICE_IMAGE", dockertest.SluiceImage(t))
	return r
}

// runJobs lists the Jobs of the cluster that carry a sluice-run label.
func (r *kubeRig) runJobs(t *testing.T) []batchv1.Job {
	t.Helper()
	jobs, err := r.c.Clientset.BatchV1().Jobs("").List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelRun})
	if err != nil {
		t.Fatal(err)
	}
	return jobs.Items
}

func (r *kubeRig) lastRun(t *testing.T) *store.Run {
	t.Helper()
	return (&batchRig{st: r.st}).lastRun(t)
}

// readmeRole is the Role the README gives a CI's credentials, no more.
var readmeRole = []rbacv1.PolicyRule{
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
}

// bindRole gives user the rules in namespace, by a Role and a RoleBinding,
// and waits until RBAC knows.
func (r *kubeRig) bindRole(t *testing.T, namespace, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	meta := metav1.ObjectMeta{Name: "sluice-" + user, Namespace: namespace}
	if _, err := r.c.Clientset.RbacV1().Roles(namespace).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Clientset.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meta.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRBAC(t, r.c.Clientset, user, namespace)
}

// The headline: train runs as a Job on the cluster, asking for one
// nvidia.com/gpu, while prepare and evaluate run on the local Docker host;
// files and metadata go both ways through the bucket. sluice runs as a user
// with the README's Role in the namespace and nothing else.
func TestKubeRunPassesFilesBothWays(t *testing.T) {
	r := newKubeGPURig(t, "kube-e2e")
	r.bindRole(t, "ml-ci", "ci", readmeRole)
	kubeconfig, err := r.c.UserKubeconfig("ci")
	if err != nil {
		t.Fatal(err)
	}
	r.setenv("KUBECONFIG", kubeconfig)
	out, code := r.sluice(t, "run", "--pull", "never", "--store", r.url)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"train | epoch 3",         // the step's log, followed from the store
		"evaluate | {\"sum\": 6}", // evaluate read train's model
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	rec := r.lastRun(t)
	train, eval := rec.Node("train"), rec.Node("evaluate")
	if rec.Status != store.StatusSucceeded || train.Status != store.StatusSucceeded {
		t.Fatalf("run %s, train %s\n%s", rec.Status, train.Status, out)
	}
	if train.Metadata["accuracy"] != 0.93 {
		t.Errorf("train's metadata %v, want accuracy 0.93", train.Metadata)
	}
	if train.Output("model.txt") == nil {
		t.Errorf("train's outputs %+v lack model.txt", train.Outputs)
	}
	if eval.Metadata["sum"] != 6.0 {
		t.Errorf("evaluate's metadata %v, want sum 6 from train's model", eval.Metadata)
	}
	pl := train.Placement
	if pl == nil || pl.Backend != "kubernetes" || pl.Environment != "gke-gpu" || pl.Location != "kubetest/"+dockerlet.DefaultNodeName ||
		pl.Accelerator != "nvidia.com/gpu" || pl.AcceleratorCount != 1 || len(pl.Tries) != 1 {
		t.Fatalf("train's placement: %+v", pl)
	}
	if rec.Node("prepare").Placement != nil || eval.Placement != nil {
		t.Error("a local node has a remote placement")
	}
	// One Job, for train, asking for the GPU, run on the Docker node.
	jobs := r.runJobs(t)
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs of the run, want train's", len(jobs))
	}
	job := jobs[0]
	if job.Namespace != "ml-ci" || job.Labels[kube.LabelNode] != "train" || job.Labels[kube.LabelRun] == "" {
		t.Errorf("Job %s/%s, labels %v", job.Namespace, job.Name, job.Labels)
	}
	var gpu resource.Quantity
	for _, c := range job.Spec.Template.Spec.Containers {
		if q, ok := c.Resources.Limits[kubetest.DefaultGPUResource]; ok {
			gpu = q
		}
	}
	if gpu.Value() != 1 {
		t.Errorf("the Job's containers ask for %s %s, want 1", gpu.String(), kubetest.DefaultGPUResource)
	}
	pods, err := r.c.Clientset.CoreV1().Pods("ml-ci").List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != dockerlet.DefaultNodeName {
		t.Errorf("train's pods: %v %v", pods, err)
	}
}

// SIGTERM (a cancelled CI job) while train runs in its pod: sluice deletes
// the Job, and no Job or pod of the run is left, within 7 s.
func TestKubeSIGTERMDeletesJobs(t *testing.T) {
	r := newKubeGPURig(t, "kube-sigterm")
	r.edit(t, "valohai.yaml", "default: 0.2", "default: 60")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := r.command(ctx, "run", "--pull", "never", "--store", r.url)
	seen, stdout := startUntil(t, cmd, "train | epoch 1")
	if len(r.runJobs(t)) != 1 {
		t.Fatalf("want train's Job running; output:\n%s", strings.Join(seen, "\n"))
	}
	signalled, exited, tail, err := sigterm(t, cmd, stdout)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want code 1\n%s", err, tail)
	}
	// sluice waits for the foreground deletion; whatever is left when it
	// exits is polled until gone, to measure.
	var left []string
	for {
		left = r.jobsAndPods(t)
		if len(left) == 0 || time.Since(signalled) > 30*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	gone := time.Since(signalled)
	t.Logf("sluice exited %s after SIGTERM; no Job or pod left %s after it; its last words:\n%s", exited.Round(time.Millisecond), gone.Round(time.Millisecond), tail)
	if len(left) > 0 {
		t.Errorf("left after SIGTERM: %v\n%s", left, tail)
	}
	// The bound, as a guard; bench/kube-cancel.sh measures.
	if gone > 7*time.Second {
		t.Errorf("the Job and its pod took %s to go after SIGTERM, more than 7 s\n%s", gone, tail)
	}
	if rec := r.lastRun(t); rec.Status != store.StatusCancelled || rec.Node("train").Status != store.StatusCancelled {
		t.Errorf("run %s, train %s; want both cancelled", rec.Status, rec.Node("train").Status)
	}
}
