package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/spec"
)

// This file reaches the cluster of a kubernetes environment and checks,
// before any Job exists, that sluice may do there what Run does.

// Connect makes the REST config of an environment's cluster: in-cluster
// (the pod's service account), or from a kubeconfig and a context. The
// kubeconfig is env.Kubeconfig ("~/" is the home directory), else the files
// $KUBECONFIG lists (merged, as kubectl merges them), else ~/.kube/config;
// the context is env.Context, else the file's current context. It returns
// the cluster's name for the report: the context's name, or the API
// server's host in-cluster. A missing kubeconfig, an unknown context and a
// file that does not read are errors that say which and what to do.
func Connect(env spec.KubeEnvironment, getenv func(string) string) (*rest.Config, string, error) {
	if env.InCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("in-cluster: true, but %w; in-cluster is for a sluice that runs in a pod of the cluster, with a service account token: elsewhere, give a kubeconfig and a context", err)
		}
		return tune(cfg), hostOf(cfg.Host), nil
	}
	home := getenv("HOME")
	rules := &clientcmd.ClientConfigLoadingRules{}
	var from string // where the kubeconfig came from, for messages
	switch {
	case env.Kubeconfig != "":
		path := expandHome(env.Kubeconfig, home)
		if _, err := os.Stat(path); err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s (sluice.yaml's kubeconfig:) does not exist; give the path of a kubeconfig file, or leave kubeconfig out for $KUBECONFIG, then ~/.kube/config", env.Kubeconfig)
		}
		rules.ExplicitPath, from = path, path
	case getenv("KUBECONFIG") != "":
		var paths, missing []string
		for _, p := range filepath.SplitList(getenv("KUBECONFIG")) {
			if p == "" {
				continue
			}
			if _, err := os.Stat(p); err != nil {
				missing = append(missing, p)
				continue
			}
			paths = append(paths, p)
		}
		if len(paths) == 0 {
			return nil, "", fmt.Errorf("no kubeconfig: KUBECONFIG names %s, which does not exist; set kubeconfig: in sluice.yaml, KUBECONFIG, or in-cluster: true", strings.Join(missing, ", "))
		}
		rules.Precedence, from = paths, "$KUBECONFIG ("+strings.Join(paths, string(filepath.ListSeparator))+")"
	default:
		if home == "" {
			return nil, "", errors.New("no kubeconfig: $HOME is not set, so there is no ~/.kube/config; set kubeconfig: in sluice.yaml, KUBECONFIG, or in-cluster: true")
		}
		path := filepath.Join(home, ".kube", "config")
		if _, err := os.Stat(path); err != nil {
			return nil, "", errors.New("no kubeconfig: ~/.kube/config does not exist; set kubeconfig: in sluice.yaml, KUBECONFIG, or in-cluster: true")
		}
		rules.ExplicitPath, from = path, path
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s does not read: %w", from, err)
	}
	name := env.Context
	if name == "" {
		name = raw.CurrentContext
		if name == "" {
			return nil, "", fmt.Errorf("kubeconfig %s has no current-context; name one with context: in sluice.yaml (it has %s)", from, contextList(raw))
		}
	}
	if _, ok := raw.Contexts[name]; !ok {
		who := "context " + name
		if env.Context == "" {
			who = "the current-context, " + name + ","
		}
		names := slices.Sorted(maps.Keys(raw.Contexts))
		return nil, "", fmt.Errorf("%s is not in kubeconfig %s%s, which has %s", who, from, spec.DidYouMean(name, names), contextList(raw))
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s, context %s: %w", from, name, err)
	}
	return tune(cfg), name, nil
}

// tune sets what sluice wants of every client: its name, and enough
// requests a second for a run of many nodes.
func tune(cfg *rest.Config) *rest.Config {
	cfg.UserAgent = "sluice"
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	return cfg
}

func expandHome(path, home string) string {
	if path == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(path, "~/"); ok && home != "" {
		return filepath.Join(home, rest)
	}
	return path
}

func hostOf(server string) string {
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		return u.Host
	}
	return server
}

// contextList names the contexts of a kubeconfig, for messages.
func contextList(raw *clientcmdapi.Config) string {
	var names []string
	for k := range raw.Contexts {
		names = append(names, k)
	}
	switch len(names) {
	case 0:
		return "no context"
	case 1:
		return "one context, " + names[0]
	}
	slices.Sort(names)
	return "the contexts " + strings.Join(names, ", ")
}

// CheckStore says why a store cannot serve a kubernetes environment: the
// pods read their inputs from the store and write their outputs there
// themselves, so it must be one they reach, a gs:// bucket.
func CheckStore(storeURL string) error {
	return runner.CheckRemoteStore(storeURL, "kubernetes", "pods")
}

// Permission is one thing Run does on the cluster: a verb on a resource
// (of a group, "" for the core group; Subresource as pods/log has it).
type Permission struct {
	Verb, Group, Resource, Subresource string
}

// String names it as RBAC rules and kubectl auth can-i do: "create
// jobs.batch", "get pods/log".
func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions are what Run does in an environment's namespace, and what
// Preflight asks the cluster for.
var Permissions = []Permission{
	{Verb: "create", Group: "batch", Resource: "jobs"},
	{Verb: "get", Group: "batch", Resource: "jobs"},
	{Verb: "list", Group: "batch", Resource: "jobs"},
	{Verb: "watch", Group: "batch", Resource: "jobs"},
	{Verb: "delete", Group: "batch", Resource: "jobs"},
	{Verb: "get", Resource: "pods"},
	{Verb: "list", Resource: "pods"},
	{Verb: "watch", Resource: "pods"},
	{Verb: "get", Resource: "pods", Subresource: "log"},
}

// Preflight checks, before any Job is created, that the cluster answers
// and takes the credentials, that the namespace exists, and that the
// credentials may do there what Run does (Permissions): the error names
// each verb and resource that is missing and the user the cluster sees.
func Preflight(ctx context.Context, c kubernetes.Interface, namespace string) error {
	_, nsErr := c.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case nsErr == nil:
	case apierrors.IsNotFound(nsErr):
		return missingNamespace(namespace)
	case apierrors.IsUnauthorized(nsErr):
		return fmt.Errorf("the cluster refused the credentials: %w; renew them (a token that expired, a certificate of another cluster) or name another context", nsErr)
	case apierrors.IsForbidden(nsErr):
		// A Role gives nothing on namespaces: the dry run below tells.
	default:
		return fmt.Errorf("reach the cluster: %w", nsErr)
	}
	user := whoAmI(ctx, c)
	var missing []string
	for _, p := range Permissions {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: namespace, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("ask the cluster whether %s may %s in namespace %s: %w", user, p, namespace, err)
		}
		if !r.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s may not %s in namespace %s (RBAC); sluice needs a Role there that grants %s, bound to %s (the README's Kubernetes section has one)",
			user, joinAnd(missing), namespace, needed(), user)
	}
	if apierrors.IsForbidden(nsErr) {
		// The credentials may not read the namespace; a Job created as a
		// dry run tells whether it exists, and creates nothing.
		if err := dryRunJob(ctx, c, namespace); apierrors.IsNotFound(err) {
			return missingNamespace(namespace)
		} else if err != nil {
			return fmt.Errorf("a dry run of a Job in namespace %s: %w", namespace, err)
		}
	}
	return nil
}

func missingNamespace(namespace string) error {
	return fmt.Errorf("namespace %s does not exist on the cluster; create it (kubectl create namespace %s), or name another in sluice.yaml's namespace:", namespace, namespace)
}

// whoAmI names the user the cluster sees behind the credentials ("user
// \"alice\""), or "these credentials" when it does not say.
func whoAmI(ctx context.Context, c kubernetes.Interface) string {
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r.Status.UserInfo.Username == "" {
		return "these credentials"
	}
	if sa, ok := strings.CutPrefix(r.Status.UserInfo.Username, "system:serviceaccount:"); ok {
		return fmt.Sprintf("service account %q", sa)
	}
	return fmt.Sprintf("user %q", r.Status.UserInfo.Username)
}

// needed says what Permissions grant, per resource: "create, get, list,
// watch, delete on jobs.batch; get, list, watch on pods; get on pods/log".
func needed() string {
	var order []string
	verbs := map[string][]string{}
	for _, p := range Permissions {
		r := strings.TrimPrefix(p.String(), p.Verb+" ")
		if verbs[r] == nil {
			order = append(order, r)
		}
		verbs[r] = append(verbs[r], p.Verb)
	}
	var out []string
	for _, r := range order {
		out = append(out, strings.Join(verbs[r], ", ")+" on "+r)
	}
	return strings.Join(out, "; ")
}

func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// dryRunJob asks the API server to admit a Job in namespace without
// keeping it (dryRun=All): NotFound when the namespace does not exist.
func dryRunJob(ctx context.Context, c kubernetes.Interface, namespace string) error {
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sluice-preflight-", Namespace: namespace},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "preflight", Image: "sluice-preflight"}},
		}}},
	}
	_, err := c.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}
