package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	batchapi "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Swept is a sluice job that Sweep found past its TTL.
type Swept struct {
	Name    string
	Run     string // the sluice-run label
	Node    string
	State   string
	Created time.Time
	Expired time.Time // created + TTL
	// Err is why it could not be deleted; nil when it was (or in a dry run).
	Err error
}

// Sweep finds the jobs in parent (projects/P/locations/R) that sluice made
// (they carry its labels) and whose TTL has passed, and deletes them unless
// dryRun. A job with sluice's labels but no readable TTL is left alone.
// Jobs are deleted without waiting for Batch to finish taking them away.
func Sweep(ctx context.Context, c *batchapi.Client, parent string, now time.Time, dryRun bool) ([]Swept, error) {
	var out []Swept
	it := c.ListJobs(ctx, &batchpb.ListJobsRequest{Parent: parent})
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("list the Batch jobs of %s: %w", parent, err)
		}
		l := j.GetLabels()
		created, err1 := strconv.ParseInt(l[LabelCreated], 10, 64)
		ttl, err2 := strconv.ParseInt(l[LabelTTL], 10, 64)
		if l[LabelRun] == "" || err1 != nil || err2 != nil {
			continue
		}
		s := Swept{Name: j.GetName(), Run: l[LabelRun], Node: l[LabelNode], State: j.GetStatus().GetState().String(),
			Created: time.Unix(created, 0).UTC(), Expired: time.Unix(created+ttl, 0).UTC()}
		if !now.After(s.Expired) || j.GetStatus().GetState() == batchpb.JobStatus_DELETION_IN_PROGRESS {
			continue
		}
		if !dryRun {
			if _, err := c.DeleteJob(ctx, &batchpb.DeleteJobRequest{Name: j.GetName(), Reason: "sluice gc --cloud: past its TTL"}); err != nil && status.Code(err) != codes.NotFound {
				s.Err = err
			}
		}
		out = append(out, s)
	}
	return out, nil
}
