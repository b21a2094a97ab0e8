package kube

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/agent"
	"github.com/sluice-ci/sluice/spec"
)

// The pod's containers and its volume.
const (
	FetchContainer = "sluice-fetch"
	StepContainer  = "step"
	volumeName     = "valohai"
	valohaiDir     = "/valohai"
	agentPath      = valohaiDir + "/.sluice/" + agent.BinaryName
	sluicePath     = "/usr/local/bin/sluice"
)

// Margins of the Job's bounds.
const (
	// deadlineMargin is added to a try's queue-timeout and time limit for
	// the Job's activeDeadlineSeconds: a backstop for a pod whose agent
	// cannot enforce the time limit (the agent enforces it, to the second).
	deadlineMargin = 10 * time.Minute
	// untimedTTL is what the sluice-ttl label counts for a node without a
	// time limit: how long `sluice gc --cloud` leaves such a Job alone.
	untimedTTL = 24 * time.Hour
	// gracePeriod is the pods' terminationGracePeriodSeconds: time for the
	// agent to put a cancelled step's outputs into the store.
	gracePeriod = 5
)

// The label Kubernetes gives an instance's machine type.
const instanceTypeLabel = "node.kubernetes.io/instance-type"

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// labelValue makes s a valid label value: letters, digits, '-', '_' and
// '.', at most 63 characters, starting and ending with a letter or digit.
func labelValue(s string) string {
	v := labelUnsafe.ReplaceAllString(s, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-_.")
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// jobName is sluice-<run>-<node>-<random>: a DNS label short enough that
// the Job controller's pod names (the Job's name and 6 characters) and the
// job-name label stay within 63 characters.
func jobName(runID, node string) string {
	clean := func(s string, n int) string {
		s = strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(s), "-"), "-")
		if len(s) > n {
			s = strings.Trim(s[:n], "-")
		}
		return s
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	parts := []string{"sluice"}
	for _, p := range []string{clean(runID, 20), clean(node, 16), hex.EncodeToString(b[:])} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "-")
}

// gpus is how many GPUs a node asks for: its step's, else the environment's.
func gpus(job runner.Job, cfg spec.KubeEnvironment) (int, error) {
	switch n := job.Resources.GPUs; {
	case n < 0:
		return 0, fmt.Errorf("node %s asks for all GPUs of the machine, which a Kubernetes pod cannot: give a count in resources.devices", job.Node)
	case n > 0:
		return n, nil
	}
	return max(cfg.GPUs, 0), nil
}

// resources maps the step's resources onto the step container's requests
// (cpu.min, memory.min) and limits (cpu.max, memory.max), with the GPUs as
// the environment's extended resource in both.
func resources(job runner.Job, cfg spec.KubeEnvironment, gpu int) (corev1.ResourceRequirements, error) {
	r := job.Resources
	var req corev1.ResourceRequirements
	set := func(list *corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
	}
	cpu := func(v float64) resource.Quantity {
		return *resource.NewMilliQuantity(int64(v*1000+0.5), resource.DecimalSI)
	}
	mem := func(mb int64) resource.Quantity { return *resource.NewQuantity(mb<<20, resource.BinarySI) }
	if r.CPURequest > 0 {
		set(&req.Requests, corev1.ResourceCPU, cpu(r.CPURequest))
	}
	if r.CPU > 0 {
		set(&req.Limits, corev1.ResourceCPU, cpu(r.CPU))
	}
	if r.MemoryRequestMB > 0 {
		set(&req.Requests, corev1.ResourceMemory, mem(r.MemoryRequestMB))
	}
	if r.MemoryMB > 0 {
		set(&req.Limits, corev1.ResourceMemory, mem(r.MemoryMB))
	}
	if r.CPU > 0 && r.CPURequest > r.CPU {
		return req, fmt.Errorf("node %s: cpu.min %g is more than cpu.max %g", job.Node, r.CPURequest, r.CPU)
	}
	if r.MemoryMB > 0 && r.MemoryRequestMB > r.MemoryMB {
		return req, fmt.Errorf("node %s: memory.min %d is more than memory.max %d", job.Node, r.MemoryRequestMB, r.MemoryMB)
	}
	if gpu > 0 {
		q := *resource.NewQuantity(int64(gpu), resource.DecimalSI)
		set(&req.Requests, corev1.ResourceName(cfg.GPUResource), q)
		set(&req.Limits, corev1.ResourceName(cfg.GPUResource), q)
	}
	return req, nil
}

// activeDeadline is the Job's activeDeadlineSeconds: every try's
// queue-timeout and time limit, and a margin; nil without a time limit
// (the deadline counts a pod's Pending time too, so it is no time limit).
func (e *Executor) activeDeadline(job runner.Job) *int64 {
	if job.TimeLimit <= 0 {
		return nil
	}
	tries := time.Duration(e.cfg.RetriesOr() + 1)
	d := tries*(e.cfg.QueueTimeout+job.TimeLimit) + deadlineMargin
	return new(int64(d / time.Second))
}

// ttl is the sluice-ttl label's value: how long after its creation a Job
// of this node may be deleted by `sluice gc --cloud`.
func (e *Executor) ttl(job runner.Job) time.Duration {
	if d := e.activeDeadline(job); d != nil {
		return time.Duration(*d)*time.Second + e.cfg.TTLAfterFinished
	}
	return untimedTTL + e.cfg.TTLAfterFinished
}

// jobObject is the Job of one node execution: an init container fetching
// /valohai from the store, the step's container running the agent, the
// failure policy that tells the step's failure from a disruption.
func (e *Executor) jobObject(job runner.Job, name, specKey string, now time.Time) (*batchv1.Job, error) {
	c := e.cfg
	gpu, err := gpus(job, c)
	if err != nil {
		return nil, err
	}
	res, err := resources(job, c, gpu)
	if err != nil {
		return nil, err
	}
	args := func(verb string) []string {
		return []string{"agent", verb, "--store", e.opts.StoreURL, "--job", specKey}
	}
	env := []corev1.EnvVar{{Name: agent.TryEnv, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}}}
	for _, k := range slices.Sorted(maps.Keys(e.opts.AgentEnv)) {
		env = append(env, corev1.EnvVar{Name: k, Value: e.opts.AgentEnv[k]})
	}
	mounts := []corev1.VolumeMount{{Name: volumeName, MountPath: valohaiDir}}

	labels := map[string]string{}
	maps.Copy(labels, c.Labels)
	labels[LabelRun] = labelValue(job.RunID)
	labels[LabelRepo] = labelValue(e.opts.Repository)
	labels[LabelNode] = labelValue(job.Node)
	labels[LabelCreated] = strconv.FormatInt(now.Unix(), 10)
	labels[LabelTTL] = strconv.FormatInt(int64(e.ttl(job)/time.Second), 10)
	labels[LabelTry] = strconv.Itoa(max(job.Attempt, 1))
	for k, v := range labels {
		if v == "" {
			delete(labels, k)
		}
	}
	var annotations map[string]string
	if len(c.Annotations) > 0 {
		annotations = maps.Clone(c.Annotations)
	}

	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: new(int64(gracePeriod)),
		ServiceAccountName:            c.ServiceAccount,
		AutomountServiceAccountToken:  new(c.ServiceAccount != ""),
		NodeSelector:                  maps.Clone(c.NodeSelector),
		PriorityClassName:             c.PriorityClass,
		Volumes: []corev1.Volume{{Name: volumeName,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		InitContainers: []corev1.Container{{
			Name: FetchContainer, Image: e.opts.AgentImage,
			Command: []string{sluicePath}, Args: args("fetch"),
			Env: env, VolumeMounts: mounts,
		}},
		Containers: []corev1.Container{{
			Name: StepContainer, Image: job.Image,
			Command: []string{agentPath}, Args: args("exec"),
			Env: env, VolumeMounts: mounts, Resources: res,
		}},
	}
	if len(pod.NodeSelector) == 0 {
		pod.NodeSelector = nil
	}
	for _, s := range c.ImagePullSecrets {
		pod.ImagePullSecrets = append(pod.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	for _, t := range c.Tolerations {
		pod.Tolerations = append(pod.Tolerations, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOperator(t.Operator),
			Value: t.Value, Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.Seconds})
	}

	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			// Counted failures: the step's own end fails the Job at once
			// (FailJob below); what is left is a pod that failed for other
			// reasons (its fetch, the agent itself).
			BackoffLimit:            new(int32(c.RetriesOr())),
			ActiveDeadlineSeconds:   e.activeDeadline(job),
			TTLSecondsAfterFinished: new(int32(c.TTLAfterFinished / time.Second)),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				{
					// An eviction, a preemption or a lost node is not the
					// step's doing: the Job controller makes a new pod
					// without counting it (sluice counts these against
					// retries itself).
					Action: batchv1.PodFailurePolicyActionIgnore,
					OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
						{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
				},
				{
					// The step's own non-zero exit: the agent passes the
					// command's exit code on; the node fails at once.
					Action: batchv1.PodFailurePolicyActionFailJob,
					OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: new(StepContainer),
						Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{0}},
				},
				{
					// The fetch failed: the agent's exit record says why; a
					// new pod would fail the same way.
					Action: batchv1.PodFailurePolicyActionFailJob,
					OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: new(FetchContainer),
						Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{0}},
				},
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels), Annotations: annotations},
				Spec:       pod,
			},
		},
	}, nil
}
