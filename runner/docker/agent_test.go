package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// countingStore counts the bytes this process reads from the store's blobs.
type countingStore struct {
	store.Store
	blobBytes atomic.Int64
}

func (c *countingStore) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	rc, info, err := c.Store.Open(ctx, key)
	if err != nil || !strings.HasPrefix(key, "blobs/") {
		return rc, info, err
	}
	return &countingReader{rc, &c.blobBytes}, info, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

type agentEnv struct {
	exec  *Executor
	store *countingStore
	plain store.Store // the same bucket, not counted
	url   string
	image string
}

// storeTransfer is an executor with TransferStore against fake-gcs-server
// (the stand-in for Cloud Storage) on 127.0.0.1; the containers reach it
// through the host's network.
func storeTransfer(t *testing.T) agentEnv {
	t.Helper()
	dockertest.Client(t)
	image := dockertest.Image(t)
	sluiceImage := dockertest.SluiceImage(t)
	srv := gcstest.Start(t, "agent-runs")
	url := "gs://agent-runs/ci"
	st, err := gcs.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	e, err := NewFromEnv(Options{Pull: PullNever, Transfer: TransferStore, Network: "host",
		Agent: AgentOptions{Store: cs, StoreURL: url, Image: sluiceImage, Env: map[string]string{"STORAGE_EMULATOR_HOST": gcstest.Host(srv)}}})
	if err != nil {
		t.Fatal(err)
	}
	return agentEnv{exec: e, store: cs, plain: st, url: url, image: image}
}

func (v agentEnv) leftovers(t *testing.T, runID string) int {
	t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", LabelRun+"="+runID))
	cs, err := v.exec.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := v.exec.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs) + len(vs.Volumes)
}

type lineSink struct {
	mu    sync.Mutex
	lines []string
	on    func(string)
}

func (s *lineSink) writer() *runner.LineWriter {
	return runner.NewLineWriter(func(line string) {
		s.mu.Lock()
		s.lines = append(s.lines, line)
		on := s.on
		s.mu.Unlock()
		if on != nil {
			on(line)
		}
	})
}

func (s *lineSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// The inputs arrive from the store, and the outputs reach it without
// passing through this process: it reads no blob at all.
func TestStoreTransferOutputsBypassHost(t *testing.T) {
	v := storeTransfer(t)
	ctx := context.Background()
	data := make([]byte, 1<<20)
	rand.Read(data)
	in, size, err := store.PutBlob(ctx, v.plain, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "train.sh"), []byte("echo training\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(local, []byte("a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap := &sync.Once{}
	var snapFile store.File
	var snapErr error
	var out, errs lineSink
	job := runner.Job{
		RunID: "agent-" + randomSuffix(), Node: "train", Image: v.image, Attempt: 1,
		Command: "./train.sh && cp /valohai/inputs/data/blob.bin /valohai/outputs/copy.bin && " +
			"dd if=/dev/urandom of=/valohai/outputs/big.bin bs=1M count=4 2>/dev/null && " +
			"cat /valohai/inputs/labels/labels.csv && echo '{\"loss\": 0.5}' && echo oops >&2 && " +
			"echo '{\"kind\": \"model\"}' > /valohai/outputs/big.bin.metadata.json",
		Parameters: map[string]any{"epochs": 3},
		Inputs: []runner.Input{
			{Name: "data", Files: []runner.InputFile{{Name: "blob.bin", Blob: in, Size: size, Digest: in.Hex(),
				Open: func() (io.ReadCloser, error) { return nil, errors.New("the host must not read this input") }}}},
			{Name: "labels", Files: []runner.InputFile{{Name: "labels.csv", Path: local}}},
		},
		RepositoryDir: repo,
		RepositoryBlob: func(ctx context.Context) (store.File, error) {
			snap.Do(func() { snapFile, snapErr = tarBlob(ctx, v.plain, repo) })
			return snapFile, snapErr
		},
		Stdout: out.writer(), Stderr: errs.writer(),
	}
	res, err := v.exec.Run(ctx, job)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.text(), errs.text())
	}
	if res.Reason != runner.ReasonCompleted || res.ExitCode != 0 {
		t.Fatalf("reason %s, exit %d", res.Reason, res.ExitCode)
	}
	for _, want := range []string{"training", "a,b", `{"loss": 0.5}`} {
		if !strings.Contains(out.text(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.text())
		}
	}
	if errs.text() != "oops" {
		t.Errorf("stderr = %q, want oops", errs.text())
	}
	got := map[string]runner.OutputFile{}
	for _, f := range res.Outputs {
		if !f.Stored {
			t.Errorf("output %s is not Stored", f.Path)
		}
		got[f.Path] = f
	}
	if len(got) != 2 || got["copy.bin"].Digest != in.Hex() || got["big.bin"].Size != 4<<20 {
		t.Fatalf("outputs = %+v", res.Outputs)
	}
	if got["big.bin"].Properties["kind"] != "model" {
		t.Errorf("big.bin properties = %v, want the sidecar's", got["big.bin"].Properties)
	}
	d, _ := store.ParseDigest("sha256:" + got["big.bin"].Digest)
	if _, err := v.plain.Stat(ctx, store.BlobKey(d)); err != nil {
		t.Errorf("big.bin is not in the store: %v", err)
	}
	if n := v.store.blobBytes.Load(); n != 0 {
		t.Errorf("this process read %d bytes of blobs from the store; outputs and inputs must bypass it", n)
	}
	if n := v.leftovers(t, job.RunID); n != 0 {
		t.Errorf("%d containers or volumes left", n)
	}
}

// The log shows up while the step runs, and cancelling removes everything.
func TestStoreTransferLiveLogAndCancel(t *testing.T) {
	v := storeTransfer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lineSink
	seen := make(chan struct{})
	var once sync.Once
	out.on = func(line string) {
		if line == "first" {
			once.Do(func() { close(seen) })
		}
	}
	job := runner.Job{RunID: "agent-" + randomSuffix(), Node: "slow", Image: v.image, Attempt: 1,
		Command: "echo first; sleep 60; echo never", Stdout: out.writer()}
	type ran struct {
		res runner.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := v.exec.Run(ctx, job)
		done <- ran{res, err}
	}()
	select {
	case <-seen:
	case r := <-done:
		t.Fatalf("Run returned before the first line arrived: %v %v", r.res, r.err)
	case <-time.After(90 * time.Second):
		t.Fatal("the first line never arrived")
	}
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) || r.res.Reason != runner.ReasonCancelled {
		t.Errorf("after cancel: reason %s, err %v", r.res.Reason, r.err)
	}
	if strings.Contains(out.text(), "never") {
		t.Error("the command went on after the cancel")
	}
	if n := v.leftovers(t, job.RunID); n != 0 {
		t.Errorf("%d containers or volumes left after the cancel", n)
	}
}

// A step killed by its time limit still leaves its outputs and its log.
func TestStoreTransferTimeLimitKeepsOutputs(t *testing.T) {
	v := storeTransfer(t)
	var out lineSink
	job := runner.Job{RunID: "agent-" + randomSuffix(), Node: "limited", Image: v.image, Attempt: 1,
		Command:   "echo partial > /valohai/outputs/partial.txt; echo started; sleep 60",
		TimeLimit: 2 * time.Second, Stdout: out.writer()}
	res, err := v.exec.Run(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != runner.ReasonTimeLimit || res.ExitCode != 137 {
		t.Errorf("reason %s, exit %d; want time-limit, 137", res.Reason, res.ExitCode)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Path != "partial.txt" || !res.Outputs[0].Stored {
		t.Errorf("outputs = %+v, want partial.txt stored", res.Outputs)
	}
	if out.text() != "started" {
		t.Errorf("log = %q, want started", out.text())
	}
}

// A job spec the agent cannot read is a clear error, exit code 3.
func TestAgentBadSpec(t *testing.T) {
	v := storeTransfer(t)
	ctx := context.Background()
	key := "runs/bad/jobs/x/1/job.json"
	if _, err := v.plain.Put(ctx, key, strings.NewReader(`{"version": 1, "node": `)); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{Image: v.exec.opts.Agent.Image, Entrypoint: []string{},
		Cmd: []string{"/usr/local/bin/sluice", "agent", "exec", "--store", v.url, "--job", key},
		Env: []string{"STORAGE_EMULATOR_HOST=" + v.exec.opts.Agent.Env["STORAGE_EMULATOR_HOST"]}, Labels: map[string]string{LabelRun: "bad"}}
	code, tail, err := v.exec.runToEnd(ctx, cfg, &container.HostConfig{NetworkMode: "host"}, runner.Job{RunID: "bad", Node: "bad"}, "exec")
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 || !strings.Contains(tail, "job spec "+key+": not a valid job spec") {
		t.Errorf("exit %d, log %q; want 3 and a message naming the spec", code, tail)
	}
}

func TestStoreTransferNeedsBucket(t *testing.T) {
	_, err := New(nil, Options{Transfer: TransferStore, Agent: AgentOptions{Store: &countingStore{}, StoreURL: "/tmp/x/.sluice", Image: "sluice:dev"}})
	if err == nil || !strings.Contains(err.Error(), "gs://") {
		t.Errorf("err = %v, want one asking for a gs:// store", err)
	}
}

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tarBlob puts the directory dir into st as a tar blob, as the runner does
// with the repository snapshot.
func tarBlob(ctx context.Context, st store.Store, dir string) (store.File, error) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := runner.TarTree(tw, "", dir)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	d, size, err := store.PutBlob(ctx, st, pr)
	return store.File{Digest: d, Size: size}, err
}
