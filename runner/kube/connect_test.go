package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sluice-ci/sluice/internal/kubetest"
	"github.com/sluice-ci/sluice/spec"
)

// twoContexts is a kubeconfig with two clusters and contexts, "ml" current.
const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: ml
  cluster: {server: "https://ml.example.com:6443"}
- name: staging
  cluster: {server: "https://staging.example.com"}
users:
- name: ci
  user: {token: not-a-real-token}
contexts:
- name: ml
  context: {cluster: ml, user: ci, namespace: ml-ci}
- name: staging
  context: {cluster: staging, user: ci}
current-context: ml
`

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConnect(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"HOME": home}
	getenv := func(k string) string { return env[k] }
	connect := func(k spec.KubeEnvironment) (string, string, error) {
		t.Helper()
		cfg, name, err := Connect(k, getenv)
		if err != nil {
			return "", "", err
		}
		return cfg.Host, name, nil
	}
	wantErr := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", what, err, want)
		}
	}

	_, _, err := connect(spec.KubeEnvironment{})
	wantErr("nothing at all", err, "no kubeconfig: ~/.kube/config does not exist; set kubeconfig: in sluice.yaml, KUBECONFIG, or in-cluster: true")

	writeFile(t, home, ".kube/config", twoContexts)
	if host, name, err := connect(spec.KubeEnvironment{}); err != nil || host != "https://ml.example.com:6443" || name != "ml" {
		t.Errorf("~/.kube/config, current context: %s %s %v", host, name, err)
	}
	if host, name, err := connect(spec.KubeEnvironment{Context: "staging"}); err != nil || host != "https://staging.example.com" || name != "staging" {
		t.Errorf("context staging: %s %s %v", host, name, err)
	}
	_, _, err = connect(spec.KubeEnvironment{Context: "prod"})
	wantErr("unknown context", err, "context prod is not in kubeconfig "+filepath.Join(home, ".kube/config")+", which has the contexts ml, staging")
	_, _, err = connect(spec.KubeEnvironment{Context: "stagin"})
	wantErr("misspelt context", err, "context stagin is not in kubeconfig "+filepath.Join(home, ".kube/config")+` (did you mean "staging"?), which has the contexts ml, staging`)

	// ~/ is the home directory; a path that is not there says so.
	writeFile(t, home, "clusters/ml.yaml", strings.Replace(twoContexts, "current-context: ml", "current-context: staging", 1))
	if _, name, err := connect(spec.KubeEnvironment{Kubeconfig: "~/clusters/ml.yaml"}); err != nil || name != "staging" {
		t.Errorf("kubeconfig ~/clusters/ml.yaml: %s %v", name, err)
	}
	_, _, err = connect(spec.KubeEnvironment{Kubeconfig: "~/clusters/gone.yaml"})
	wantErr("missing kubeconfig:", err, "kubeconfig ~/clusters/gone.yaml (sluice.yaml's kubeconfig:) does not exist")

	// $KUBECONFIG is a list, merged as kubectl merges it: the first file
	// that sets current-context wins, missing files are passed over.
	other := writeFile(t, home, "other.yaml", `apiVersion: v1
kind: Config
clusters: [{name: gpu, cluster: {server: "https://gpu.example.com"}}]
users: [{name: ci, user: {token: x}}]
contexts: [{name: gpu, context: {cluster: gpu, user: ci}}]
current-context: gpu
`)
	env["KUBECONFIG"] = strings.Join([]string{filepath.Join(home, "missing.yaml"), other, filepath.Join(home, ".kube/config")}, string(filepath.ListSeparator))
	if host, name, err := connect(spec.KubeEnvironment{}); err != nil || name != "gpu" || host != "https://gpu.example.com" {
		t.Errorf("KUBECONFIG list: %s %s %v", host, name, err)
	}
	if _, name, err := connect(spec.KubeEnvironment{Context: "staging"}); err != nil || name != "staging" {
		t.Errorf("KUBECONFIG list, a context of its second file: %s %v", name, err)
	}
	env["KUBECONFIG"] = filepath.Join(home, "missing.yaml")
	_, _, err = connect(spec.KubeEnvironment{})
	wantErr("KUBECONFIG of missing files", err, "no kubeconfig: KUBECONFIG names "+filepath.Join(home, "missing.yaml")+", which does not exist")
	delete(env, "KUBECONFIG")

	broken := writeFile(t, home, "broken.yaml", "apiVersion: v1\nkind: Config\nclusters: {this is: [not a list\n")
	_, _, err = connect(spec.KubeEnvironment{Kubeconfig: broken})
	wantErr("broken file", err, "kubeconfig "+broken+" does not read:")

	noCurrent := writeFile(t, home, "no-current.yaml", strings.Replace(twoContexts, "current-context: ml", "", 1))
	_, _, err = connect(spec.KubeEnvironment{Kubeconfig: noCurrent})
	wantErr("no current context", err, "kubeconfig "+noCurrent+" has no current-context; name one with context: in sluice.yaml (it has the contexts ml, staging)")

	dangling := writeFile(t, home, "dangling.yaml", strings.Replace(twoContexts, "current-context: ml", "current-context: prod", 1))
	_, _, err = connect(spec.KubeEnvironment{Kubeconfig: dangling})
	wantErr("current context not in the file", err, "the current-context, prod, is not in kubeconfig "+dangling+", which has the contexts ml, staging")

	// Outside a pod there is no service account to use.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, _, err = connect(spec.KubeEnvironment{InCluster: true})
	wantErr("in-cluster outside a pod", err, "in-cluster: true, but unable to load in-cluster configuration")
}

func TestCheckStore(t *testing.T) {
	if err := CheckStore("gs://ml-ci/sluice"); err != nil {
		t.Errorf("gs://: %v", err)
	}
	for url, want := range map[string]string{
		"":                    "the default .sluice directory is on this host",
		"/srv/store":          "/srv/store is on this host (give --store gs://BUCKET/PREFIX)",
		"file:///srv/store":   "file:///srv/store is on this host",
		"s3://bucket/somedir": "s3://bucket/somedir is on this host",
	} {
		if err := CheckStore(url); err == nil || !strings.Contains(err.Error(), "a kubernetes environment needs a store its pods can reach, a gs:// bucket; "+want) {
			t.Errorf("%q: %v, want %q", url, err, want)
		}
	}
}

// Preflight against a real API server (kubetest): RBAC decides, and the
// error says which verb on which resource is missing, for whom.
func TestPreflight(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: []kubetest.Node{kubetest.CPUNode("kwok-cpu")}})
	ctx := context.Background()
	admin := c.Clientset
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml-ci"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	all := []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
	}
	noCreate := []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
	}
	grant(t, admin, "ml-ci", "alice", noCreate)
	grant(t, admin, "ml-ci", "bob", all)
	grantClusterWide(t, admin, "carol", all)
	// RBAC reads its rules through a cache: wait until the last grants count.
	waitAllowed(t, admin, "bob", "ml-ci")
	waitAllowed(t, admin, "carol", "elsewhere")

	user := func(name string) kubernetes.Interface {
		t.Helper()
		path, err := c.UserKubeconfig(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, cluster, err := Connect(spec.KubeEnvironment{Kubeconfig: path}, func(string) string { return "" })
		if err != nil || cluster != "kubetest" {
			t.Fatalf("connect as %s: %q %v", name, cluster, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// A service account (as in-cluster credentials are) is named as one.
	if _, err := admin.CoreV1().ServiceAccounts("ml-ci").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sluice-ci"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CoreV1().ServiceAccounts("ml-ci").CreateToken(ctx, "sluice-ci", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saCfg := &rest.Config{Host: c.RESTConfig.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: c.RESTConfig.CAData}}
	sa, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		client    kubernetes.Interface
		namespace string
		want      string // "" for none
	}{
		{"admin", admin, "ml-ci", ""},
		{"admin, no such namespace", admin, "ml-cj", "namespace ml-cj does not exist on the cluster; create it (kubectl create namespace ml-cj), or name another in sluice.yaml's namespace:"},
		{"a Role without create jobs", user("alice"), "ml-ci",
			`user "alice" may not create jobs.batch or get pods/log in namespace ml-ci (RBAC); sluice needs a Role there that grants create, get, list, watch, delete on jobs.batch; get, list, watch on pods; get on pods/log, bound to user "alice"`},
		{"a Role with everything, no right to read the namespace", user("bob"), "ml-ci", ""},
		{"a Role in another namespace", user("bob"), "default", `user "bob" may not create jobs.batch, get jobs.batch, list jobs.batch, watch jobs.batch, delete jobs.batch, get pods, list pods, watch pods or get pods/log in namespace default`},
		{"no such namespace, told by a dry run", user("carol"), "ml-cj", "namespace ml-cj does not exist on the cluster"},
		{"no rights at all", user("dave"), "ml-ci", `user "dave" may not create jobs.batch`},
		{"a service account", sa, "ml-ci", `service account "ml-ci:sluice-ci" may not create jobs.batch`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Preflight(ctx, tc.client, tc.namespace)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	// The dry run left nothing.
	if jobs, err := admin.BatchV1().Jobs("").List(ctx, metav1.ListOptions{}); err != nil || len(jobs.Items) != 0 {
		t.Errorf("jobs after preflight: %v %v", jobs, err)
	}
}

// waitAllowed waits until the authorizer lets user get pods/log in namespace.
func waitAllowed(t *testing.T, cs kubernetes.Interface, user, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authzv1.ResourceAttributes{Namespace: namespace, Verb: "get", Resource: "pods", Subresource: "log"}}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s is still not allowed to get pods/log in %s: %v", user, namespace, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// grant gives user the rules in namespace, by a Role and a RoleBinding.
func grant(t *testing.T, cs kubernetes.Interface, namespace, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	meta := metav1.ObjectMeta{Name: "sluice-" + user, Namespace: namespace}
	if _, err := cs.RbacV1().Roles(namespace).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meta.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// grantClusterWide gives user the rules in every namespace (a ClusterRole
// and a ClusterRoleBinding), still nothing on namespaces themselves.
func grantClusterWide(t *testing.T, cs kubernetes.Interface, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	meta := metav1.ObjectMeta{Name: "sluice-" + user}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: meta, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta,
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: meta.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
