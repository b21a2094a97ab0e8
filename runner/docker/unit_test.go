package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/runner"
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
	wantEnv := []string{
		"VH_CONFIG_DIR=/valohai/config", "VH_INPUTS_DIR=/valohai/inputs", "VH_OUTPUTS_DIR=/valohai/outputs",
		"VH_REPOSITORY_DIR=/valohai/repository", "VH_JOB_ID=r1-train", "VH_EXECUTION_ID=r1-train",
		"VH_PIPELINE_ID=r1", "VH_PIPELINE_NODE_ID=train", "PYTHONUNBUFFERED=1", "A=1", "B=2",
	}
	if !slices.Equal(cfg.Env, wantEnv) {
		t.Errorf("Env\n got %q\nwant %q", cfg.Env, wantEnv)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "VH_INPUTS_DIR") {
		t.Errorf("warnings %q, want one about VH_INPUTS_DIR", warnings)
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
	if !slices.Contains(cfg.Env, "PYTHONUNBUFFERED=0") || slices.Contains(cfg.Env, "PYTHONUNBUFFERED=1") {
		t.Errorf("the step's PYTHONUNBUFFERED should win: %q", cfg.Env)
	}
	job.Resources = runner.Resources{}
	if _, host, _ = containerConfig(job); host.Resources.DeviceRequests != nil {
		t.Errorf("0 GPUs: DeviceRequests %+v, want none", host.Resources.DeviceRequests)
	}
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarOf(t *testing.T, entries ...entry) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestExtractOutputs(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	// A file already in the output directory's parent, where an escape would land.
	if err := os.WriteFile(filepath.Join(parent, "victim"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := tarOf(t,
		entry{name: "outputs/", typ: tar.TypeDir},
		entry{name: "outputs/a.txt", typ: tar.TypeReg, body: "a"},
		entry{name: "outputs/sub/", typ: tar.TypeDir},
		entry{name: "outputs/sub/b.txt", typ: tar.TypeReg, body: "bb"},
		entry{name: "outputs/../victim", typ: tar.TypeReg, body: "pwned"},
		entry{name: "outputs/sub/../../victim", typ: tar.TypeReg, body: "pwned"},
		entry{name: "/etc/cron.d/x", typ: tar.TypeReg, body: "pwned"},
		entry{name: "elsewhere/x", typ: tar.TypeReg, body: "pwned"},
		entry{name: "outputs/abs", typ: tar.TypeSymlink, link: "/etc/passwd"},
		entry{name: "outputs/up", typ: tar.TypeSymlink, link: "../victim"},
		entry{name: "outputs/sub/up2", typ: tar.TypeSymlink, link: "../../victim"},
		entry{name: "outputs/sub/in", typ: tar.TypeSymlink, link: "../a.txt"},
		entry{name: "outputs/chain", typ: tar.TypeSymlink, link: "sub/in"},
		entry{name: "outputs/loop1", typ: tar.TypeSymlink, link: "loop2"},
		entry{name: "outputs/loop2", typ: tar.TypeSymlink, link: "loop1"},
		entry{name: "outputs/dirlink", typ: tar.TypeSymlink, link: "sub"},
		entry{name: "outputs/dangling", typ: tar.TypeSymlink, link: "nope"},
		entry{name: "outputs/hard", typ: tar.TypeLink, link: "outputs/sub/b.txt"},
		entry{name: "outputs/hardout", typ: tar.TypeLink, link: "etc/passwd"},
		entry{name: "outputs/fifo", typ: tar.TypeFifo},
	)
	outs, warnings, err := extractOutputs(r, dir)
	if err != nil {
		t.Fatalf("extractOutputs: %v", err)
	}
	want := []runner.OutputFile{
		{Path: "a.txt", Size: 1, Digest: sha("a")},
		{Path: "chain", Size: 1, Digest: sha("a")},
		{Path: "hard", Size: 2, Digest: sha("bb")},
		{Path: "sub/b.txt", Size: 2, Digest: sha("bb")},
		{Path: "sub/in", Size: 1, Digest: sha("a")},
	}
	if !slices.Equal(outs, want) {
		t.Errorf("outputs\n got %+v\nwant %+v", outs, want)
	}
	if got := readFile(t, filepath.Join(parent, "victim")); got != "untouched" {
		t.Errorf("victim = %q: an entry escaped", got)
	}
	for _, name := range []string{"abs", "up", "sub/up2", "loop1", "loop2", "dirlink", "dangling", "hardout", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v), want not written", name, err)
		}
	}
	var files []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
			if !info.Mode().IsRegular() {
				t.Errorf("%s is not a regular file: %v", rel, info.Mode())
			}
		}
		return nil
	})
	if wantFiles := []string{"a.txt", "chain", "hard", "sub/b.txt", "sub/in"}; !slices.Equal(files, wantFiles) {
		t.Errorf("on disk %q, want %q", files, wantFiles)
	}
	if len(warnings) != 13 {
		t.Errorf("%d warnings, want 13:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
}

func TestWriteContract(t *testing.T) {
	repo := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(os.WriteFile(filepath.Join(repo, "pkg", "train.py"), []byte("print(1)\n"), 0o755))
	must(os.Symlink("pkg/train.py", filepath.Join(repo, "link.py")))
	job := runner.Job{
		RunID: "r", Node: "n", Image: "img", Command: "true", RepositoryDir: repo,
		Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{{
			Name: "a/b/c.txt", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil },
		}}}},
	}
	var buf bytes.Buffer
	must(writeContract(&buf, job, time.Unix(0, 0)))
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		desc := string(h.Typeflag) + " " + os.FileMode(h.Mode).Perm().String()
		if h.Linkname != "" {
			desc += " -> " + h.Linkname
		}
		got[h.Name] = desc
	}
	for name, want := range map[string]string{
		"valohai/repository/":             "5 -rwxr-xr-x",
		"valohai/repository/pkg/":         "5 -rwxr-xr-x",
		"valohai/repository/pkg/train.py": "0 -rwxr-xr-x",
		"valohai/repository/link.py":      "2 -rwxrwxrwx -> pkg/train.py",
		"valohai/inputs/in/a/b/":          "5 -rwxr-xr-x",
		"valohai/inputs/in/a/b/c.txt":     "0 -r--r--r--",
		"valohai/outputs/":                "5 -rwxrwxrwx",
		"valohai/config/parameters.json":  "0 -rw-r--r--",
		"valohai/config/inputs.json":      "0 -rw-r--r--",
		"valohai/config/execution.json":   "0 -rw-r--r--",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}

	// A size that does not match the content is an error naming the input.
	job.Inputs[0].Files[0].Size = 4
	err := writeContract(io.Discard, job, time.Now())
	if err == nil || !strings.Contains(err.Error(), "input in file a/b/c.txt") {
		t.Errorf("short content: %v", err)
	}
	job.Inputs[0].Files[0].Size = 3
	job.Inputs[0].Files[0].Digest = sha("xyz")
	if err := writeContract(io.Discard, job, time.Now()); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("wrong digest: %v", err)
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
		digest, _, err := e.ensureImage(context.Background(), "repo:tag")
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
	if _, _, err := e.ensureImage(context.Background(), "ghcr.io/o/i:1"); err != nil {
		t.Fatal(err)
	}
	b, err := base64.URLEncoding.DecodeString(fake.auth[0])
	if err != nil || !strings.Contains(string(b), `"username":"u"`) {
		t.Errorf("RegistryAuth header %q (%s, %v)", fake.auth[0], b, err)
	}

	fake = &imageClient{stream: `{"status":"Pulling"}` + "\n" + `{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}`}
	e, _ = New(fake, Options{})
	_, _, err = e.ensureImage(context.Background(), "nope:1")
	if err == nil || !strings.Contains(err.Error(), "pull image nope:1: manifest unknown") {
		t.Errorf("error in the pull stream: %v", err)
	}
}
