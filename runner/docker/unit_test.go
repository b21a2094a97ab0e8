package docker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// Tests of the parts that need no Docker daemon.

func TestContainerConfig(t *testing.T) {
	job := runner.Job{
		RunID: "r1", Node: "train", Image: "python:3.12", Command: "python train.py && echo done",
		Env:       map[string]string{"B": "2", "A": "1", "VH_INPUTS_DIR": "/x"},
		Resources: runner.Resources{CPU: 1.5, MemoryMB: 512, GPUs: -1},
	}
	cfg, host, warnings := containerConfig(job)
	if cfg.Entrypoint == nil || len(cfg.Entrypoint) != 0 {
		t.Errorf("Entrypoint %#v, want an empty non-nil slice", cfg.Entrypoint)
	}
	// nil would be left out of the JSON and the image's entrypoint kept.
	if b, _ := json.Marshal(cfg); !bytes.Contains(b, []byte(`"Entrypoint":[]`)) {
		t.Errorf("config JSON has no empty Entrypoint: %s", b)
	}
	if want := []string{"/bin/sh", "-c", job.Command}; !slices.Equal(cfg.Cmd, want) {
		t.Errorf("Cmd %q, want %q", cfg.Cmd, want)
	}
	if cfg.WorkingDir != "/valohai/repository" || cfg.Image != job.Image {
		t.Errorf("WorkingDir %q, Image %q", cfg.WorkingDir, cfg.Image)
	}
	// The environment is the contract's (tested in runner/contract).
	wantEnv, wantWarnings := contract.Environ(job)
	if !slices.Equal(cfg.Env, wantEnv) || !slices.Equal(warnings, wantWarnings) {
		t.Errorf("Env %q, warnings %q; want contract.Environ's %q, %q", cfg.Env, warnings, wantEnv, wantWarnings)
	}
	if len(warnings) != 1 {
		t.Errorf("warnings %q, want the one about VH_INPUTS_DIR", warnings)
	}
	if cfg.Labels[LabelRun] != "r1" || cfg.Labels[LabelNode] != "train" {
		t.Errorf("Labels %v", cfg.Labels)
	}
	r := host.Resources
	if r.NanoCPUs != 1_500_000_000 || r.Memory != 512<<20 {
		t.Errorf("NanoCPUs %d, Memory %d", r.NanoCPUs, r.Memory)
	}
	if len(r.DeviceRequests) != 1 || r.DeviceRequests[0].Driver != "nvidia" || r.DeviceRequests[0].Count != -1 ||
		!slices.Equal(r.DeviceRequests[0].Capabilities[0], []string{"gpu"}) {
		t.Errorf("DeviceRequests %+v", r.DeviceRequests)
	}
	if host.AutoRemove || len(host.Binds) > 0 || len(host.Mounts) > 0 {
		t.Errorf("host config uses AutoRemove or mounts: %+v", host)
	}

	job.Resources = runner.Resources{GPUs: 2}
	job.Env = map[string]string{"PYTHONUNBUFFERED": "0"}
	cfg, host, _ = containerConfig(job)
	if d := host.Resources.DeviceRequests; len(d) != 1 || d[0].Count != 2 {
		t.Errorf("2 GPUs: DeviceRequests %+v", d)
	}
	if host.Resources.NanoCPUs != 0 || host.Resources.Memory != 0 {
		t.Errorf("no limits asked, got %+v", host.Resources)
	}
	if want, _ := contract.Environ(job); !slices.Equal(cfg.Env, want) {
		t.Errorf("Env %q, want contract.Environ's %q", cfg.Env, want)
	}
	job.Resources = runner.Resources{}
	if _, host, _ = containerConfig(job); host.Resources.DeviceRequests != nil {
		t.Errorf("0 GPUs: DeviceRequests %+v, want none", host.Resources.DeviceRequests)
	}
}

// frame is one message of the multiplexed log stream.
func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

// logsClient serves ContainerLogs from canned streams: the followed one,
// then the catch-up one, recording the Since of each call.
type logsClient struct {
	client.APIClient
	streams [][]byte
	since   []string
}

func (c *logsClient) ContainerLogs(_ context.Context, _ string, o container.LogsOptions) (io.ReadCloser, error) {
	c.since = append(c.since, o.Since)
	s := c.streams[0]
	c.streams = c.streams[1:]
	return io.NopCloser(bytes.NewReader(s)), nil
}

func TestStreamLogsCatchesUp(t *testing.T) {
	const t1, t2 = "2026-01-02T03:04:05.000000001Z", "2026-01-02T03:04:05.000000002Z"
	follow := slices.Concat(
		frame(1, t1+" one\n"), frame(2, t1+" err\n"), frame(1, t2+" two\n"))
	// The catch-up read returns everything since t2: "two" again, and the
	// last message the follow missed.
	catchUp := slices.Concat(frame(1, t2+" two\n"), frame(1, t2+" tail"))
	fake := &logsClient{streams: [][]byte{follow, catchUp}}
	e, err := New(fake, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := e.streamLogs(context.Background(), "id", &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\ntail" || errb.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errb.String())
	}
	if want := []string{"", "2026-01-02T03:04:05.000000002Z"}; !slices.Equal(fake.since, want) {
		t.Errorf("since %q, want %q", fake.since, want)
	}
}

// imageClient fakes the image calls of the pull policy.
type imageClient struct {
	client.APIClient
	have   bool
	pulls  []string
	auth   []string
	stream string
}

func (c *imageClient) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if !c.have {
		return image.InspectResponse{}, fmt.Errorf("no such image: %s: %w", ref, cerrdefs.ErrNotFound)
	}
	return image.InspectResponse{ID: "sha256:abc", RepoDigests: []string{"repo@sha256:def"}}, nil
}

func (c *imageClient) ImagePull(_ context.Context, ref string, o image.PullOptions) (io.ReadCloser, error) {
	c.pulls = append(c.pulls, ref)
	c.auth = append(c.auth, o.RegistryAuth)
	if c.stream != "" {
		return io.NopCloser(strings.NewReader(c.stream)), nil
	}
	c.have = true
	return io.NopCloser(strings.NewReader(`{"status":"Pulling"}` + "\n" + `{"status":"Done"}`)), nil
}

func TestPullPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy    PullPolicy
		have      bool
		wantPulls int
		wantErr   error
	}{
		{PullMissing, true, 0, nil},
		{PullMissing, false, 1, nil},
		{PullAlways, true, 1, nil},
		{PullNever, true, 0, nil},
		{PullNever, false, 0, ErrImageNotFound},
	} {
		fake := &imageClient{have: tc.have}
		e, err := New(fake, Options{Pull: tc.policy})
		if err != nil {
			t.Fatal(err)
		}
		digest, _, err := e.ensureImage(context.Background(), "repo:tag", nil)
		if !errors.Is(err, tc.wantErr) || len(fake.pulls) != tc.wantPulls {
			t.Errorf("%s, have=%v: err %v, %d pulls; want %v, %d", tc.policy, tc.have, err, len(fake.pulls), tc.wantErr, tc.wantPulls)
		}
		if err == nil && digest != "repo@sha256:def" {
			t.Errorf("%s: digest %q", tc.policy, digest)
		}
	}
	if _, err := ParsePullPolicy("sometimes"); err == nil {
		t.Error("ParsePullPolicy(sometimes) did not fail")
	}
}

func TestPullAuthAndStreamError(t *testing.T) {
	fake := &imageClient{}
	e, _ := New(fake, Options{RegistryAuth: func(_ context.Context, ref string) (*registry.AuthConfig, error) {
		return &registry.AuthConfig{Username: "u", Password: "p", ServerAddress: "ghcr.io"}, nil
	}})
	if _, _, err := e.ensureImage(context.Background(), "ghcr.io/o/i:1", nil); err != nil {
		t.Fatal(err)
	}
	b, err := base64.URLEncoding.DecodeString(fake.auth[0])
	if err != nil || !strings.Contains(string(b), `"username":"u"`) {
		t.Errorf("RegistryAuth header %q (%s, %v)", fake.auth[0], b, err)
	}

	fake = &imageClient{stream: `{"status":"Pulling"}` + "\n" + `{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}`}
	e, _ = New(fake, Options{})
	_, _, err = e.ensureImage(context.Background(), "nope:1", nil)
	if err == nil || !strings.Contains(err.Error(), "pull image nope:1: manifest unknown") {
		t.Errorf("error in the pull stream: %v", err)
	}
}
