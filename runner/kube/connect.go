package kube

import (
	"context"
	"errors"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sluice-ci/sluice/spec"
)

// SKELETON: signatures the cmd wiring is written against.

// Connect makes the REST config of an environment's cluster: in-cluster, or
// from its kubeconfig (Kubeconfig, else $KUBECONFIG, else ~/.kube/config)
// and context. It returns the cluster's name for the report. A missing
// kubeconfig or an unknown context is an error that says so.
func Connect(env spec.KubeEnvironment, getenv func(string) string) (*rest.Config, string, error) {
	return nil, "", errors.New("kube: not written yet")
}

// CheckStore says why a store cannot serve a kubernetes environment.
func CheckStore(storeURL string) error { return errors.New("kube: not written yet") }

// Preflight checks, before any Job is created, that the namespace exists
// and that the credentials may do what Run does (create, get, watch,
// delete Jobs; get, list, watch pods; get pods/log), naming the verb and
// resource that is missing.
func Preflight(ctx context.Context, c kubernetes.Interface, namespace string) error {
	return errors.New("kube: not written yet")
}
