package kube

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/kubernetes"
)

// SKELETON: signatures the cmd wiring is written against.

// Swept is a sluice Job that Sweep found past its TTL.
type Swept struct {
	Name, Namespace, Run, Node string
	Created, Expired           time.Time
	Err                        error
}

// Sweep finds the Jobs in namespace that carry sluice's labels and are past
// their TTL, and deletes them (foreground) unless dryRun.
func Sweep(ctx context.Context, c kubernetes.Interface, namespace string, now time.Time, dryRun bool) ([]Swept, error) {
	return nil, errors.New("kube: not written yet")
}
