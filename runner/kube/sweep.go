package kube

import (
	"context"
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes"
)

// This file finds and deletes the Jobs that sluice left: those past their
// TTL (sluice gc --cloud), and those of one run (the run's last sweep).

// Swept is a sluice Job that Sweep found past its TTL.
type Swept struct {
	Name, Namespace, Run, Node string
	Created, Expired           time.Time
	// Err is why it could not be deleted; nil when it was (or in a dry run).
	Err error
}

// Sweep finds the Jobs in namespace that carry sluice's labels (LabelRun,
// LabelCreated, LabelTTL) and are past their TTL, and deletes them with
// foreground propagation (their pods go first) unless dryRun. A Job with
// sluice's run label but no readable TTL is left alone, as is one already
// being deleted. It does not wait for the Jobs to go.
func Sweep(ctx context.Context, c kubernetes.Interface, namespace string, now time.Time, dryRun bool) ([]Swept, error) {
	has, err := labels.NewRequirement(LabelRun, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	jobs, err := listJobs(ctx, c, namespace, labels.NewSelector().Add(*has).String())
	if err != nil {
		return nil, err
	}
	var out []Swept
	for _, j := range jobs {
		l := j.Labels
		created, err1 := strconv.ParseInt(l[LabelCreated], 10, 64)
		ttl, err2 := strconv.ParseInt(l[LabelTTL], 10, 64)
		if err1 != nil || err2 != nil || j.DeletionTimestamp != nil {
			continue
		}
		s := Swept{Name: j.Name, Namespace: j.Namespace, Run: l[LabelRun], Node: l[LabelNode],
			Created: time.Unix(created, 0).UTC(), Expired: time.Unix(created+ttl, 0).UTC()}
		if !now.After(s.Expired) {
			continue
		}
		if !dryRun {
			s.Err = deleteJob(ctx, c, namespace, j.Name)
		}
		out = append(out, s)
	}
	return out, nil
}

// SweepRun deletes (foreground) every Job in namespace that carries the
// sluice-run label of run and has not finished, whatever its TTL: what a
// run's executors could not remove themselves, after a cancel. A finished
// Job holds no node and stays for its ttlSecondsAfterFinished, as the
// executor leaves it. It returns the names of the Jobs it deleted, and does
// not wait for them to go.
func SweepRun(ctx context.Context, c kubernetes.Interface, namespace, run string) ([]string, error) {
	if run == "" {
		return nil, fmt.Errorf("sweep the Jobs of a run: no run id")
	}
	jobs, err := listJobs(ctx, c, namespace, labels.Set{LabelRun: labelValue(run)}.String())
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, j := range jobs {
		if j.DeletionTimestamp != nil || finished(&j) != nil {
			continue
		}
		if err := deleteJob(ctx, c, namespace, j.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, j.Name)
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("delete the Jobs of run %s: %w", run, errs[0])
	}
	return deleted, nil
}

func listJobs(ctx context.Context, c kubernetes.Interface, namespace, selector string) ([]batchv1.Job, error) {
	var out []batchv1.Job
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		list, err := c.BatchV1().Jobs(namespace).List(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("list the Jobs of namespace %s: %w", namespace, err)
		}
		out = append(out, list.Items...)
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// deleteJob deletes a Job and, first, its pods; one already gone is no error.
func deleteJob(ctx context.Context, c kubernetes.Interface, namespace, name string) error {
	fg := metav1.DeletePropagationForeground
	err := c.BatchV1().Jobs(namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
