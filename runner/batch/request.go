package batch

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/spec"
)

// Labels every Batch job of sluice carries; `sluice gc --cloud` finds the
// jobs a killed CI job left by them.
const (
	LabelRun     = "sluice-run"
	LabelRepo    = "sluice-repo"
	LabelNode    = "sluice-node"
	LabelCreated = "sluice-created" // unix seconds
	LabelTTL     = "sluice-ttl"     // seconds after LabelCreated when the job may be deleted
	LabelTry     = "sluice-try"
)

// HostDir is where the job's /valohai lives on the VM: on its boot disk, in
// a directory that both Container-Optimized OS and Debian images let
// containers write.
const HostDir = "/var/lib/sluice/valohai"

// try is one attempt at running a node on Batch: the machine, how it is
// bought, and where the agent's files go.
type try struct {
	n            int // from 1
	machine      spec.BatchMachine
	provisioning string
	prefix       string // the agent's files of this try
	jobID        string
}

var labelUnsafe = regexp.MustCompile(`[^a-z0-9_-]+`)

// labelValue makes s a valid label value: lowercase letters, digits, _ and
// -, at most 63 characters.
func labelValue(s string) string {
	v := labelUnsafe.ReplaceAllString(strings.ToLower(s), "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return v
}

var idUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// jobID is sluice-<run>-<node>-<try>-<random>, within Batch's job id rules
// (^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$).
func jobID(runID, node string, n int) string {
	clean := func(s string, max int) string {
		s = strings.Trim(idUnsafe.ReplaceAllString(strings.ToLower(s), "-"), "-")
		if len(s) > max {
			s = strings.Trim(s[:max], "-")
		}
		return s
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("sluice-%s-%s-%d-%s", clean(runID, 24), clean(node, 16), n, hex.EncodeToString(b[:]))
}

// request is the CreateJobRequest of one try of job.
func (e *Executor) request(job runner.Job, t try, specKey string, now time.Time) *batchpb.CreateJobRequest {
	c := e.cfg
	args := []string{"agent", "", "--store", e.opts.StoreURL, "--job", specKey}
	with := func(verb string) []string {
		a := append([]string(nil), args...)
		a[1] = verb
		return a
	}
	volumes := []string{HostDir + ":" + "/valohai"}
	fetch := &batchpb.Runnable{
		DisplayName: "sluice-fetch",
		Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
			ImageUri: e.agentImage(), Entrypoint: "/usr/local/bin/sluice", Commands: with("fetch"), Volumes: volumes}},
	}
	step := &batchpb.Runnable{
		DisplayName: "step",
		Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
			ImageUri: job.Image, Entrypoint: "/valohai/.sluice/" + agent.BinaryName, Commands: with("exec"), Volumes: volumes}},
	}
	finish := &batchpb.Runnable{
		DisplayName: "sluice-finish",
		AlwaysRun:   true,
		Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
			ImageUri: e.agentImage(), Entrypoint: "/usr/local/bin/sluice", Commands: with("finish"), Volumes: volumes}},
	}
	task := &batchpb.TaskSpec{
		Runnables:      []*batchpb.Runnable{fetch, step, finish},
		MaxRunDuration: durationpb.New(c.MaxRunDuration),
		MaxRetryCount:  0, // sluice retries, one fresh job per try
	}
	if len(e.opts.AgentEnv) > 0 {
		task.Environment = &batchpb.Environment{Variables: e.opts.AgentEnv}
	}
	if r := job.Resources; r.CPU > 0 || r.MemoryMB > 0 {
		task.ComputeResource = &batchpb.ComputeResource{CpuMilli: int64(r.CPU * 1000), MemoryMib: r.MemoryMB}
	}

	policy := &batchpb.AllocationPolicy_InstancePolicy{MachineType: t.machine.MachineType,
		ProvisioningModel: batchpb.AllocationPolicy_STANDARD}
	if t.provisioning == spec.ProvisioningSpot {
		policy.ProvisioningModel = batchpb.AllocationPolicy_SPOT
	}
	if t.machine.Accelerator != "" {
		policy.Accelerators = []*batchpb.AllocationPolicy_Accelerator{{Type: t.machine.Accelerator, Count: int64(t.machine.AcceleratorCount)}}
	}
	if c.BootDiskGB > 0 || c.BootImage != "" {
		policy.BootDisk = &batchpb.AllocationPolicy_Disk{SizeGb: int64(c.BootDiskGB)}
		if c.BootImage != "" {
			policy.BootDisk.DataSource = &batchpb.AllocationPolicy_Disk_Image{Image: c.BootImage}
		}
	}
	locations := []string{"regions/" + c.Region}
	if len(c.Zones) > 0 {
		locations = locations[:0]
		for _, z := range c.Zones {
			locations = append(locations, "zones/"+z)
		}
	}
	alloc := &batchpb.AllocationPolicy{
		Location: &batchpb.AllocationPolicy_LocationPolicy{AllowedLocations: locations},
		Instances: []*batchpb.AllocationPolicy_InstancePolicyOrTemplate{{
			PolicyTemplate:    &batchpb.AllocationPolicy_InstancePolicyOrTemplate_Policy{Policy: policy},
			InstallGpuDrivers: t.machine.Accelerator != "",
		}},
	}
	if c.ServiceAccount != "" {
		alloc.ServiceAccount = &batchpb.ServiceAccount{Email: c.ServiceAccount}
	}
	if c.Network != "" || c.Subnetwork != "" || c.NoExternalIP {
		alloc.Network = &batchpb.AllocationPolicy_NetworkPolicy{NetworkInterfaces: []*batchpb.AllocationPolicy_NetworkInterface{{
			Network: c.Network, Subnetwork: c.Subnetwork, NoExternalIpAddress: c.NoExternalIP}}}
	}

	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	ttl := c.MaxRunDuration + c.QueueTimeout + time.Hour
	labels[LabelRun] = labelValue(job.RunID)
	labels[LabelRepo] = labelValue(e.opts.Repository)
	labels[LabelNode] = labelValue(job.Node)
	labels[LabelCreated] = strconv.FormatInt(now.Unix(), 10)
	labels[LabelTTL] = strconv.FormatInt(int64(ttl/time.Second), 10)
	labels[LabelTry] = strconv.Itoa(t.n)

	return &batchpb.CreateJobRequest{
		Parent: fmt.Sprintf("projects/%s/locations/%s", c.Project, c.Region),
		JobId:  t.jobID,
		Job: &batchpb.Job{
			TaskGroups:       []*batchpb.TaskGroup{{TaskSpec: task, TaskCount: 1, Parallelism: 1}},
			AllocationPolicy: alloc,
			Labels:           labels,
			LogsPolicy:       &batchpb.LogsPolicy{Destination: batchpb.LogsPolicy_CLOUD_LOGGING},
		},
	}
}
