package fakebatch

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// batchService answers google.cloud.batch.v1.BatchService.
type batchService struct {
	batchpb.UnimplementedBatchServiceServer
	s *Server
}

// opsService answers google.longrunning.Operations (GetOperation only).
type opsService struct {
	longrunningpb.UnimplementedOperationsServer
	s *Server
}

var (
	_ batchpb.BatchServiceServer     = (*batchService)(nil)
	_ longrunningpb.OperationsServer = (*opsService)(nil)
)

// Batch's resource name rules.
var (
	jobIDRe  = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	parentRe = regexp.MustCompile(`^projects/([^/]+)/locations/([^/]+)$`)
	jobRe    = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/jobs/[^/]+$`)
	zoneRe   = regexp.MustCompile(`^([a-z]+-[a-z]+[0-9]+)-[a-z]$`)
	regionRe = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
)

// defaultPageSize is ListJobs' and ListTasks' page when the request says
// none.
const defaultPageSize = 100

func (b *batchService) CreateJob(ctx context.Context, req *batchpb.CreateJobRequest) (*batchpb.Job, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.Clone(req).(*batchpb.CreateJobRequest))
	zones, err := validate(req)
	if err != nil {
		return nil, err
	}
	id := req.GetJobId()
	if id == "" {
		id = "job-" + randomHex(8)
	}
	name := req.GetParent() + "/jobs/" + id
	if _, ok := s.jobs[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Resource %q already exists", name)
	}
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the Batch stand-in is stopping")
	}
	now := timestamppb.New(s.opts.Now())
	pb := proto.Clone(req.GetJob()).(*batchpb.Job)
	pb.Name, pb.Uid = name, uid(id)
	pb.CreateTime, pb.UpdateTime = now, now
	pb.Status = &batchpb.JobStatus{State: batchpb.JobStatus_QUEUED}
	tg := pb.TaskGroups[0]
	tg.Name = name + "/taskGroups/group0"
	if tg.TaskCount == 0 {
		tg.TaskCount = 1
	}
	if tg.Parallelism == 0 {
		tg.Parallelism = 1
	}
	task := &batchpb.Task{Name: tg.Name + "/tasks/0", Status: &batchpb.TaskStatus{State: batchpb.TaskStatus_PENDING}}
	ctx, cancel := context.WithCancel(s.rootCtx)
	j := &job{id: id, pb: pb, task: task, zones: zones, cancel: cancel, done: make(chan struct{})}
	s.jobs[name] = j
	s.notifyLocked()
	s.wg.Add(1)
	go s.run(ctx, j)
	s.log.Debug("fakebatch: job created", "job", name)
	return proto.Clone(pb).(*batchpb.Job), nil
}

// uid is a job's uid, shaped like Batch's: j-, then a UUID-like hex string.
func uid(id string) string {
	h := randomHex(16)
	return fmt.Sprintf("%s-%s-%s-%s-%s-%s", "j", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// validate checks a request as Batch does, as far as the stand-in can run
// the job, and returns the zones the job may run in, in order.
func validate(req *batchpb.CreateJobRequest) ([]string, error) {
	bad := func(format string, args ...any) ([]string, error) {
		return nil, status.Errorf(codes.InvalidArgument, format, args...)
	}
	unsupported := func(what string) ([]string, error) {
		return nil, status.Errorf(codes.Unimplemented, "the Batch stand-in does not run %s", what)
	}
	m := parentRe.FindStringSubmatch(req.GetParent())
	if m == nil {
		return bad("parent %q: want projects/PROJECT/locations/REGION", req.GetParent())
	}
	if id := req.GetJobId(); id != "" && !jobIDRe.MatchString(id) {
		return bad("job_id %q: it must match %s", id, jobIDRe)
	}
	pbj := req.GetJob()
	if pbj == nil {
		return bad("no job")
	}
	if n := len(pbj.GetTaskGroups()); n != 1 {
		return bad("job has %d task groups: Batch takes exactly one", n)
	}
	tg := pbj.GetTaskGroups()[0]
	if tg.GetTaskCount() > 1 {
		return unsupported(fmt.Sprintf("a task group of %d tasks (only one task per job)", tg.GetTaskCount()))
	}
	ts := tg.GetTaskSpec()
	if len(ts.GetRunnables()) == 0 {
		return bad("task_groups[0].task_spec.runnables: a task needs at least one runnable")
	}
	for i, r := range ts.GetRunnables() {
		c := r.GetContainer()
		switch {
		case c == nil:
			return unsupported(fmt.Sprintf("runnables[%d]: a script or barrier runnable (only containers)", i))
		case c.GetImageUri() == "":
			return bad("task_groups[0].task_spec.runnables[%d].container.image_uri is empty", i)
		case r.GetBackground():
			return unsupported(fmt.Sprintf("runnables[%d]: a background runnable", i))
		case len(r.GetEnvironment().GetSecretVariables()) > 0 || r.GetEnvironment().GetEncryptedVariables() != nil:
			return unsupported(fmt.Sprintf("runnables[%d]: secret or encrypted variables", i))
		}
	}
	if len(ts.GetVolumes()) > 0 {
		return unsupported("task volumes (GCS, NFS, disks)")
	}
	if len(ts.GetEnvironment().GetSecretVariables()) > 0 || ts.GetEnvironment().GetEncryptedVariables() != nil {
		return unsupported("secret or encrypted variables")
	}
	return allowedZones(m[2], pbj.GetAllocationPolicy().GetLocation().GetAllowedLocations())
}

// allowedZones turns allowedLocations into zones: Batch takes one region,
// or zones of one region (the region itself may be listed with them).
func allowedZones(jobRegion string, locs []string) ([]string, error) {
	if len(locs) == 0 {
		locs = []string{"regions/" + jobRegion}
	}
	var zones []string
	region := ""
	regionOnly := false
	for _, l := range locs {
		var r string
		switch {
		case strings.HasPrefix(l, "zones/") && zoneRe.MatchString(strings.TrimPrefix(l, "zones/")):
			z := strings.TrimPrefix(l, "zones/")
			r = zoneRe.FindStringSubmatch(z)[1]
			zones = append(zones, z)
		case strings.HasPrefix(l, "regions/") && regionRe.MatchString(strings.TrimPrefix(l, "regions/")):
			r = strings.TrimPrefix(l, "regions/")
			regionOnly = true
		default:
			return nil, status.Errorf(codes.InvalidArgument, "allowed_locations: %q is neither regions/REGION nor zones/ZONE", l)
		}
		if region != "" && r != region {
			return nil, status.Errorf(codes.InvalidArgument, "allowed_locations %v: locations of more than one region (%s, %s); Batch takes one region, or zones of one region", locs, region, r)
		}
		region = r
	}
	if len(zones) == 0 && regionOnly {
		for _, suffix := range []string{"a", "b", "c"} {
			zones = append(zones, region+"-"+suffix)
		}
	}
	return zones, nil
}

// jobLocked finds a job by its name, with Batch's errors for a malformed
// name and a missing job. s.mu is held.
func (s *Server) jobLocked(name string) (*job, error) {
	if !jobRe.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "name %q: want projects/P/locations/R/jobs/ID", name)
	}
	j, ok := s.jobs[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Job not found: %s", name)
	}
	return j, nil
}

func (b *batchService) GetJob(ctx context.Context, req *batchpb.GetJobRequest) (*batchpb.Job, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.jobLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.Clone(j.pb).(*batchpb.Job), nil
}

func (b *batchService) ListJobs(ctx context.Context, req *batchpb.ListJobsRequest) (*batchpb.ListJobsResponse, error) {
	s := b.s
	if !parentRe.MatchString(req.GetParent()) {
		return nil, status.Errorf(codes.InvalidArgument, "parent %q: want projects/PROJECT/locations/REGION (or -)", req.GetParent())
	}
	match, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q: %v", req.GetFilter(), err)
	}
	after, err := decodeToken(req.GetPageToken())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "page_token: %v", err)
	}
	size := int(req.GetPageSize())
	if size <= 0 {
		size = defaultPageSize
	}
	s.mu.Lock()
	all := s.sortedLocked(req.GetParent())
	s.mu.Unlock()
	resp := &batchpb.ListJobsResponse{}
	for _, j := range all {
		if after != nil && !after.before(j) {
			continue
		}
		if !match(j) {
			continue
		}
		if len(resp.Jobs) == size {
			last := resp.Jobs[len(resp.Jobs)-1]
			resp.NextPageToken = encodeToken(last)
			break
		}
		resp.Jobs = append(resp.Jobs, j)
	}
	return resp, nil
}

// pageToken is where a page ended: the last job's create time and name.
type pageToken struct {
	created time.Time
	name    string
}

// before reports whether the token's job sorts before j.
func (p *pageToken) before(j *batchpb.Job) bool {
	if c := p.created.Compare(j.GetCreateTime().AsTime()); c != 0 {
		return c < 0
	}
	return p.name < j.GetName()
}

func encodeToken(j *batchpb.Job) string {
	raw := strconv.FormatInt(j.GetCreateTime().AsTime().UnixNano(), 10) + " " + j.GetName()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeToken(tok string) (*pageToken, error) {
	if tok == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("not a token of this server")
	}
	ns, name, ok := strings.Cut(string(raw), " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("not a token of this server")
	}
	return &pageToken{created: time.Unix(0, n), name: name}, nil
}

// inParent reports whether job name is in parent (projects/P/locations/R,
// or projects/P/locations/- for every location).
func inParent(name, parent string) bool {
	if loc, ok := strings.CutSuffix(parent, "/locations/-"); ok {
		return strings.HasPrefix(name, loc+"/locations/")
	}
	return strings.HasPrefix(name, parent+"/jobs/")
}

func (b *batchService) DeleteJob(ctx context.Context, req *batchpb.DeleteJobRequest) (*longrunningpb.Operation, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.jobLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if j.deleteOp != "" {
		return proto.Clone(s.ops[j.deleteOp]).(*longrunningpb.Operation), nil
	}
	loc, _, _ := strings.Cut(j.pb.GetName(), "/jobs/")
	now := s.opts.Now()
	opName := fmt.Sprintf("%s/operations/operation-%d-%s", loc, now.UnixMilli(), randomHex(8))
	meta, err := anypb.New(&batchpb.OperationMetadata{CreateTime: timestamppb.New(now), Target: j.pb.GetName(),
		Verb: "delete", ApiVersion: "v1"})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "operation metadata: %v", err)
	}
	op := &longrunningpb.Operation{Name: opName, Metadata: meta}
	s.ops[opName] = op
	j.deleteOp = opName
	s.transitionLocked(j, batchpb.JobStatus_DELETION_IN_PROGRESS, "", nil)
	j.cancel()
	s.log.Debug("fakebatch: deleting job", "job", j.pb.GetName(), "reason", req.GetReason())
	s.wg.Add(1)
	go s.finishDelete(j, opName)
	return proto.Clone(op).(*longrunningpb.Operation), nil
}

// finishDelete waits for the job's containers and volumes to be gone, then
// takes the job away and completes its operation.
func (s *Server) finishDelete(j *job, opName string) {
	defer s.wg.Done()
	<-j.done
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, j.pb.GetName())
	op := s.ops[opName]
	resp, _ := anypb.New(&emptypb.Empty{})
	op.Done, op.Result = true, &longrunningpb.Operation_Response{Response: resp}
	if meta := new(batchpb.OperationMetadata); op.GetMetadata().UnmarshalTo(meta) == nil {
		meta.EndTime = timestamppb.New(s.opts.Now())
		op.Metadata, _ = anypb.New(meta)
	}
	s.notifyLocked()
	s.log.Debug("fakebatch: job deleted", "job", j.pb.GetName())
}

func (o *opsService) GetOperation(ctx context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	s := o.s
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.ops[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Operation not found: %s", req.GetName())
	}
	return proto.Clone(op).(*longrunningpb.Operation), nil
}

func (b *batchService) GetTask(ctx context.Context, req *batchpb.GetTaskRequest) (*batchpb.Task, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	jobName, _, _ := strings.Cut(req.GetName(), "/taskGroups/")
	j, ok := s.jobs[jobName]
	if !ok || j.task.GetName() != req.GetName() {
		return nil, status.Errorf(codes.NotFound, "Task not found: %s", req.GetName())
	}
	return proto.Clone(j.task).(*batchpb.Task), nil
}

func (b *batchService) ListTasks(ctx context.Context, req *batchpb.ListTasksRequest) (*batchpb.ListTasksResponse, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	jobName, group, ok := strings.Cut(req.GetParent(), "/taskGroups/")
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "parent %q: want projects/P/locations/R/jobs/ID/taskGroups/GROUP", req.GetParent())
	}
	j, ok := s.jobs[jobName]
	if !ok || (group != "group0" && group != "-") {
		return nil, status.Errorf(codes.NotFound, "Task group not found: %s", req.GetParent())
	}
	if req.GetFilter() != "" {
		return nil, status.Error(codes.Unimplemented, "the Batch stand-in does not filter tasks")
	}
	return &batchpb.ListTasksResponse{Tasks: []*batchpb.Task{proto.Clone(j.task).(*batchpb.Task)}}, nil
}

// filterTerm is one comparison of a ListJobs filter.
var filterTerm = regexp.MustCompile(`^\s*(labels\.(?:"[^"]*"|[A-Za-z0-9_-]+)|status\.state|name|uid)\s*(!=|=)\s*("[^"]*"|[^\s"]+)\s*$`)

// parseFilter turns a ListJobs filter into a predicate. It takes
// comparisons of labels.KEY (or labels."KEY"), status.state, name and uid
// with = or !=, joined by AND; an empty filter matches every job.
func parseFilter(f string) (func(*batchpb.Job) bool, error) {
	if strings.TrimSpace(f) == "" {
		return func(*batchpb.Job) bool { return true }, nil
	}
	var preds []func(*batchpb.Job) bool
	for _, term := range regexp.MustCompile(`\s+AND\s+`).Split(strings.TrimSpace(f), -1) {
		m := filterTerm.FindStringSubmatch(term)
		if m == nil {
			return nil, fmt.Errorf("cannot read %q: the stand-in takes labels.KEY, status.state, name and uid compared with = or !=, joined by AND", term)
		}
		field, op, want := m[1], m[2], strings.Trim(m[3], `"`)
		var get func(*batchpb.Job) (string, bool)
		switch {
		case strings.HasPrefix(field, "labels."):
			key := strings.Trim(strings.TrimPrefix(field, "labels."), `"`)
			get = func(j *batchpb.Job) (string, bool) { v, ok := j.GetLabels()[key]; return v, ok }
		case field == "status.state":
			if _, ok := batchpb.JobStatus_State_value[want]; !ok {
				return nil, fmt.Errorf("status.state %q is not a job state", want)
			}
			get = func(j *batchpb.Job) (string, bool) { return j.GetStatus().GetState().String(), true }
		case field == "name":
			get = func(j *batchpb.Job) (string, bool) { return j.GetName(), true }
		default:
			get = func(j *batchpb.Job) (string, bool) { return j.GetUid(), true }
		}
		eq := op == "="
		preds = append(preds, func(j *batchpb.Job) bool {
			v, ok := get(j)
			return (ok && v == want) == eq
		})
	}
	return func(j *batchpb.Job) bool {
		for _, p := range preds {
			if !p(j) {
				return false
			}
		}
		return true
	}, nil
}
