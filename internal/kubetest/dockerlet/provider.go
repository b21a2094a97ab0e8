package dockerlet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels on every Docker container and volume the stand-in makes. The
// instance label tells apart stand-ins with the same node name on one
// daemon (the tests of several packages at once): each removes only its
// own.
const (
	labelNode     = "sluice.test/dockerlet-node"
	labelInstance = "sluice.test/dockerlet-instance"
	labelPodUID   = "sluice.test/dockerlet-pod-uid"
)

// maxStopGrace caps how long a deleted pod's containers get to stop.
const maxStopGrace = 30 * time.Second

// provider runs pods on Docker for virtual-kubelet's pod controller.
type provider struct {
	cli      client.APIClient
	nodeName string
	instance string // random, for labelInstance
	log      *slog.Logger

	mu     sync.Mutex
	pods   map[string]*podRun // by namespace/name
	notify func(*corev1.Pod)
	// removed, when set, is told of a deleted pod whose containers are
	// gone: a kubelet then deletes the pod object for good.
	removed func(ctx context.Context, pod *corev1.Pod)
}

var (
	_ node.PodLifecycleHandler = (*provider)(nil)
	_ node.PodNotifier         = (*provider)(nil)
)

// podRun is one pod on Docker: the pod as given, the status as run so far,
// and the Docker objects it made.
type podRun struct {
	pod        *corev1.Pod // status is ours, guarded by provider.mu
	containers map[string]string
	volumes    map[string]string // pod volume name -> Docker volume or host path
	bind       map[string]bool   // which volumes are host paths
	deleting   bool
	done       chan struct{} // closed when run returns
}

func newProvider(cli client.APIClient, nodeName string, log *slog.Logger) *provider {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &provider{cli: cli, nodeName: nodeName, instance: hex.EncodeToString(b[:]), log: log, pods: map[string]*podRun{},
		notify: func(*corev1.Pod) {}}
}

func key(namespace, name string) string { return namespace + "/" + name }

// NotifyPods registers the callback that carries status changes to the API
// server.
func (p *provider) NotifyPods(_ context.Context, f func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = f
	p.mu.Unlock()
}

// CreatePod starts running pod in the background and returns.
func (p *provider) CreatePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(pod.Namespace, pod.Name)
	if _, ok := p.pods[k]; ok {
		return nil
	}
	pod = pod.DeepCopy()
	now := metav1.Now()
	st := &pod.Status
	st.Phase = corev1.PodPending
	st.HostIP, st.PodIP = "127.0.0.1", "127.0.0.1"
	st.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	st.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	st.StartTime = &now
	setCondition(st, corev1.PodInitialized, len(pod.Spec.InitContainers) == 0, "")
	setCondition(st, corev1.ContainersReady, false, "ContainersNotReady")
	setCondition(st, corev1.PodReady, false, "ContainersNotReady")
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, waiting(c, "PodInitializing", ""))
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, waiting(c, "ContainerCreating", ""))
	}
	run := &podRun{pod: pod, containers: map[string]string{}, volumes: map[string]string{}, bind: map[string]bool{}, done: make(chan struct{})}
	p.pods[k] = run
	go func() {
		defer close(run.done)
		p.run(run)
	}()
	return nil
}

// UpdatePod takes nothing from an update: a running container keeps its spec.
func (p *provider) UpdatePod(context.Context, *corev1.Pod) error { return nil }

// DeletePod stops the pod's containers, reports the final status, and
// removes what it made. A pod it does not know is not found.
func (p *provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	run, ok := p.pods[key(pod.Namespace, pod.Name)]
	if ok && run.pod.UID != pod.UID {
		ok = false
	}
	if ok {
		run.deleting = true
	}
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on %s", pod.Namespace, pod.Name, p.nodeName)
	}
	grace := maxStopGrace
	if s := pod.DeletionGracePeriodSeconds; s != nil && time.Duration(*s)*time.Second < grace {
		grace = time.Duration(*s) * time.Second
	}
	p.stopContainers(ctx, run, grace)
	select {
	case <-run.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	// What never ran is over too.
	final := run.pod.Status.Phase != corev1.PodSucceeded && run.pod.Status.Phase != corev1.PodFailed
	if final {
		run.pod.Status.Phase = corev1.PodFailed
		for i := range run.pod.Status.ContainerStatuses {
			cs := &run.pod.Status.ContainerStatuses[i]
			if cs.State.Terminated == nil {
				cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "the pod was deleted before the container ran",
				}}
			}
		}
	}
	p.mu.Unlock()
	if final {
		p.publish(run)
	}
	p.remove(ctx, run)
	p.mu.Lock()
	delete(p.pods, key(pod.Namespace, pod.Name))
	p.mu.Unlock()
	if p.removed != nil {
		p.removed(ctx, pod)
	}
	return nil
}

// GetPod returns the pod as run, or nil if it is not here.
func (p *provider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	run, ok := p.pods[key(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on %s", namespace, name, p.nodeName)
	}
	return run.pod.DeepCopy(), nil
}

// GetPodStatus returns the pod's status as run.
func (p *provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod the provider runs.
func (p *provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pods := make([]*corev1.Pod, 0, len(p.pods))
	for _, run := range p.pods {
		pods = append(pods, run.pod.DeepCopy())
	}
	return pods, nil
}

// update changes the pod's status under the lock, then sends it on.
func (p *provider) update(run *podRun, change func(st *corev1.PodStatus)) {
	p.mu.Lock()
	change(&run.pod.Status)
	p.mu.Unlock()
	p.publish(run)
}

func (p *provider) publish(run *podRun) {
	p.mu.Lock()
	pod, notify := run.pod.DeepCopy(), p.notify
	p.mu.Unlock()
	notify(pod)
}

func (p *provider) deleting(run *podRun) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return run.deleting
}

// run takes the pod from Pending to its end: volumes, init containers in
// order, then the containers together.
func (p *provider) run(run *podRun) {
	ctx := context.Background()
	pod := run.pod.DeepCopy() // the spec does not change
	p.log.Info("running pod", "pod", key(pod.Namespace, pod.Name), "uid", pod.UID)
	if err := p.makeVolumes(ctx, run, pod); err != nil {
		p.fail(run, "VolumeError", err.Error())
		return
	}
	for i, c := range pod.Spec.InitContainers {
		if p.deleting(run) {
			return
		}
		if !p.ensureImage(ctx, run, c, func(st *corev1.PodStatus) *corev1.ContainerStatus { return &st.InitContainerStatuses[i] }) {
			return
		}
		term, err := p.runContainer(ctx, run, pod, c, false,
			func(st *corev1.PodStatus) *corev1.ContainerStatus { return &st.InitContainerStatuses[i] })
		if err != nil {
			p.fail(run, "InitContainerError", err.Error())
			return
		}
		if term.ExitCode != 0 {
			p.update(run, func(st *corev1.PodStatus) {
				st.Phase = corev1.PodFailed
				for j := range st.ContainerStatuses {
					st.ContainerStatuses[j] = waiting(pod.Spec.Containers[j], "PodInitializing", "")
				}
			})
			return
		}
	}
	if len(pod.Spec.InitContainers) > 0 {
		p.update(run, func(st *corev1.PodStatus) { setCondition(st, corev1.PodInitialized, true, "") })
	}
	for i, c := range pod.Spec.Containers {
		if !p.ensureImage(ctx, run, c, func(st *corev1.PodStatus) *corev1.ContainerStatus { return &st.ContainerStatuses[i] }) {
			return
		}
	}
	var wg sync.WaitGroup
	codes := make([]int32, len(pod.Spec.Containers))
	errs := make([]error, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		wg.Go(func() {
			term, err := p.runContainer(ctx, run, pod, c, true,
				func(st *corev1.PodStatus) *corev1.ContainerStatus { return &st.ContainerStatuses[i] })
			if err != nil {
				errs[i] = err
				codes[i] = 128
				return
			}
			codes[i] = term.ExitCode
		})
	}
	wg.Wait()
	phase := corev1.PodSucceeded
	var msgs []string
	for i, code := range codes {
		if code != 0 {
			phase = corev1.PodFailed
		}
		if errs[i] != nil {
			msgs = append(msgs, errs[i].Error())
		}
	}
	p.update(run, func(st *corev1.PodStatus) {
		st.Phase = phase
		st.Message = strings.Join(msgs, "; ")
		setCondition(st, corev1.ContainersReady, false, "Pod"+string(phase))
		setCondition(st, corev1.PodReady, false, "Pod"+string(phase))
	})
	p.log.Info("pod finished", "pod", key(pod.Namespace, pod.Name), "phase", phase)
}

func (p *provider) fail(run *podRun, reason, msg string) {
	p.log.Warn("pod failed", "pod", run.pod.Name, "reason", reason, "message", msg)
	p.update(run, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodFailed
		st.Reason, st.Message = reason, msg
	})
}

// ensureImage has the container's image on the daemon, pulling it if need
// be. If it cannot, the container waits in ImagePullBackOff and the pod
// stays Pending until it is deleted.
func (p *provider) ensureImage(ctx context.Context, run *podRun, c corev1.Container, status func(*corev1.PodStatus) *corev1.ContainerStatus) bool {
	if _, err := p.cli.ImageInspect(ctx, c.Image); err == nil {
		return true
	}
	err := func() error {
		if c.ImagePullPolicy == corev1.PullNever {
			return fmt.Errorf("image %q is not present with pull policy of Never", c.Image)
		}
		rc, err := p.cli.ImagePull(ctx, c.Image, image.PullOptions{})
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		if err != nil {
			return err
		}
		_, err = p.cli.ImageInspect(ctx, c.Image)
		return err
	}()
	if err == nil {
		return true
	}
	p.log.Warn("image pull failed", "image", c.Image, "err", err)
	p.update(run, func(st *corev1.PodStatus) {
		*status(st) = waiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %v", c.Image, err))
	})
	return false
}

// runContainer creates and starts one container, reports it running, waits
// for it to exit and reports how. A main container (not an init one) that
// starts makes the pod Running, and the last of them to start, Ready.
func (p *provider) runContainer(ctx context.Context, run *podRun, pod *corev1.Pod, c corev1.Container, main bool,
	status func(*corev1.PodStatus) *corev1.ContainerStatus) (*corev1.ContainerStateTerminated, error) {
	cfg, host := p.containerConfig(run, pod, c)
	name := dockerName(pod, c.Name)
	created, err := p.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", c.Name, err)
	}
	p.mu.Lock()
	run.containers[c.Name] = created.ID
	deleting := run.deleting
	p.mu.Unlock()
	if deleting {
		return nil, fmt.Errorf("container %s: the pod is being deleted", c.Name)
	}
	waitC, waitErrC := p.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := p.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.Name, err)
	}
	startedAt := metav1.Now()
	if info, err := p.cli.ContainerInspect(ctx, created.ID); err == nil {
		startedAt = parseTime(info.State.StartedAt, startedAt)
	}
	p.update(run, func(st *corev1.PodStatus) {
		cs := status(st)
		cs.ContainerID = "docker://" + created.ID
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
		cs.Started = new(true)
		cs.Ready = true
		if !main {
			return
		}
		if st.Phase == corev1.PodPending {
			st.Phase = corev1.PodRunning
		}
		if allRunning(st.ContainerStatuses) {
			setCondition(st, corev1.ContainersReady, true, "")
			setCondition(st, corev1.PodReady, true, "")
		}
	})
	select {
	case <-waitC:
	case err := <-waitErrC:
		return nil, fmt.Errorf("wait for container %s: %w", c.Name, err)
	}
	info, err := p.cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", c.Name, err)
	}
	term := &corev1.ContainerStateTerminated{
		ExitCode:    int32(info.State.ExitCode),
		Reason:      "Completed",
		StartedAt:   startedAt,
		FinishedAt:  parseTime(info.State.FinishedAt, metav1.Now()),
		ContainerID: "docker://" + created.ID,
	}
	switch {
	case info.State.OOMKilled:
		term.Reason = "OOMKilled"
	case term.ExitCode != 0:
		term.Reason = "Error"
	}
	p.update(run, func(st *corev1.PodStatus) {
		cs := status(st)
		cs.State = corev1.ContainerState{Terminated: term}
		cs.Started = new(false)
		cs.Ready = false
	})
	p.log.Info("container exited", "pod", pod.Name, "container", c.Name, "exit", term.ExitCode, "reason", term.Reason)
	return term, nil
}

// containerConfig turns a pod's container into Docker's terms.
func (p *provider) containerConfig(run *podRun, pod *corev1.Pod, c corev1.Container) (*container.Config, *container.HostConfig) {
	env := make([]string, 0, len(c.Env))
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	cfg := &container.Config{
		Image:      c.Image,
		Entrypoint: c.Command,
		Cmd:        c.Args,
		Env:        env,
		WorkingDir: c.WorkingDir,
		Labels: map[string]string{
			labelNode:                      p.nodeName,
			labelInstance:                  p.instance,
			labelPodUID:                    string(pod.UID),
			"io.kubernetes.pod.name":       pod.Name,
			"io.kubernetes.pod.namespace":  pod.Namespace,
			"io.kubernetes.container.name": c.Name,
		},
	}
	if sc := effectiveSecurity(pod, c); sc.user != "" {
		cfg.User = sc.user
	}
	host := &container.HostConfig{NetworkMode: "host"}
	p.mu.Lock()
	for _, vm := range c.VolumeMounts {
		src, ok := run.volumes[vm.Name]
		if !ok {
			continue // a projected volume, left out
		}
		typ := mount.TypeVolume
		if run.bind[vm.Name] {
			typ = mount.TypeBind
		}
		host.Mounts = append(host.Mounts, mount.Mount{Type: typ, Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	p.mu.Unlock()
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		host.Memory = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		host.NanoCPUs = q.MilliValue() * 1_000_000
	}
	return cfg, host
}

type security struct{ user string }

// effectiveSecurity is the container's runAsUser and runAsGroup, else the pod's.
func effectiveSecurity(pod *corev1.Pod, c corev1.Container) security {
	var uid, gid *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			gid = csc.RunAsGroup
		}
	}
	switch {
	case uid == nil:
		return security{}
	case gid == nil:
		return security{user: strconv.FormatInt(*uid, 10)}
	default:
		return security{user: strconv.FormatInt(*uid, 10) + ":" + strconv.FormatInt(*gid, 10)}
	}
}

// makeVolumes creates a Docker volume per emptyDir and notes hostPaths.
func (p *provider) makeVolumes(ctx context.Context, run *podRun, pod *corev1.Pod) error {
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil:
			vol, err := p.cli.VolumeCreate(ctx, volume.CreateOptions{
				Name:   dockerName(pod, v.Name),
				Labels: map[string]string{labelNode: p.nodeName, labelInstance: p.instance, labelPodUID: string(pod.UID)},
			})
			if err != nil {
				return fmt.Errorf("emptyDir %s: %w", v.Name, err)
			}
			p.mu.Lock()
			run.volumes[v.Name] = vol.Name
			p.mu.Unlock()
		case v.HostPath != nil:
			p.mu.Lock()
			run.volumes[v.Name] = v.HostPath.Path
			run.bind[v.Name] = true
			p.mu.Unlock()
		case v.Projected != nil:
			// The service-account token: nothing in a test reads it.
		default:
			return fmt.Errorf("volume %s: the Docker stand-in runs emptyDir and hostPath volumes only", v.Name)
		}
	}
	return nil
}

// stopContainers stops whatever of the pod runs, within grace.
func (p *provider) stopContainers(ctx context.Context, run *podRun, grace time.Duration) {
	p.mu.Lock()
	ids := make([]string, 0, len(run.containers))
	for _, id := range run.containers {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	secs := int(grace / time.Second)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if err := p.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
				p.log.Warn("stop container", "id", id, "err", err)
			}
		})
	}
	wg.Wait()
}

// remove deletes the pod's containers and volumes.
func (p *provider) remove(ctx context.Context, run *podRun) {
	p.mu.Lock()
	uid := string(run.pod.UID)
	p.mu.Unlock()
	p.removeLabeled(ctx, labelPodUID+"="+uid)
}

// removeAll deletes every container and volume this stand-in made, run or
// not (not those of another stand-in of the same node name).
func (p *provider) removeAll(ctx context.Context) {
	p.removeLabeled(ctx, labelInstance+"="+p.instance)
}

func (p *provider) removeLabeled(ctx context.Context, label string) {
	list, err := p.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		p.log.Warn("list containers", "label", label, "err", err)
	}
	for _, c := range list {
		if err := p.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			p.log.Warn("remove container", "id", c.ID, "err", err)
		}
	}
	vols, err := p.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		p.log.Warn("list volumes", "label", label, "err", err)
		return
	}
	for _, v := range vols.Volumes {
		if err := p.cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			p.log.Warn("remove volume", "name", v.Name, "err", err)
		}
	}
}

// dockerName names a pod's container or volume: unique per pod UID.
func dockerName(pod *corev1.Pod, name string) string {
	uid := string(pod.UID)
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return "dockerlet-" + pod.Namespace + "-" + pod.Name + "-" + uid + "-" + name
}

func allRunning(statuses []corev1.ContainerStatus) bool {
	for _, cs := range statuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

func waiting(c corev1.Container, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name:  c.Name,
		Image: c.Image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
	}
}

// setCondition sets the pod condition of type ct, keeping its transition
// time if the status did not change.
func setCondition(st *corev1.PodStatus, ct corev1.PodConditionType, ok bool, reason string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
		reason = ""
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type == ct {
			if st.Conditions[i].Status != status {
				st.Conditions[i].LastTransitionTime = metav1.Now()
			}
			st.Conditions[i].Status, st.Conditions[i].Reason = status, reason
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: ct, Status: status, Reason: reason, LastTransitionTime: metav1.Now()})
}

func parseTime(s string, fallback metav1.Time) metav1.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return fallback
	}
	return metav1.NewTime(t)
}
