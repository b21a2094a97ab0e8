package docker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/runner"
)

// countingClient counts the containers created, the probe's apart, and can
// rewrite the probe's bind mount source, as a daemon that resolves paths
// elsewhere (on the host, when sluice runs in a container) would see it.
type countingClient struct {
	client.APIClient
	probes, jobs atomic.Int32
	probeSource  string // when set, the probe's mount source becomes this
}

func (c *countingClient) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig,
	net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if cfg.Labels[LabelNode] == probeNode {
		c.probes.Add(1)
		if c.probeSource != "" {
			h := *host
			h.Mounts = append(h.Mounts[:0:0], h.Mounts...)
			h.Mounts[0].Source = c.probeSource
			host = &h
		}
	} else {
		c.jobs.Add(1)
	}
	return c.APIClient.ContainerCreate(ctx, cfg, host, net, p, name)
}

// chainJob is a job that reads an input and writes an output, as the nodes
// of a pipeline do.
func chainJob(t *testing.T, v env) runner.Job {
	t.Helper()
	j := v.job(t, `cat /valohai/inputs/in/x.txt > /valohai/outputs/x.txt && echo 1 >> /valohai/outputs/x.txt`)
	j.Inputs = []runner.Input{{Name: "in", Files: []runner.InputFile{{
		Name: "x.txt", Size: 2, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("0\n")), nil },
	}}}}
	return j
}

func checkChainJob(t *testing.T, j runner.Job, res runner.Result, err error) {
	t.Helper()
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("Run: %v, %s", err, res.Reason)
	}
	if got := readFile(t, filepath.Join(j.OutputDir, "x.txt")); got != "0\n1\n" {
		t.Errorf("x.txt = %q", got)
	}
}

// On this machine (a local socket, sluice as root) auto picks bind mounts,
// with one probe for all the jobs, however many run at once.
func TestTransferAutoLocal(t *testing.T) {
	v := setup(t, Options{})
	if os.Geteuid() != 0 {
		dockertest.Unavailable(t, "auto picks bind mounts only when sluice runs as root (TestTransferAutoNotRoot covers the rest)")
	}
	if u, err := url.Parse(v.cli.DaemonHost()); err != nil || u.Scheme != "unix" {
		dockertest.Unavailable(t, "the test daemon is at "+v.cli.DaemonHost()+", not on a local socket")
	}
	cc := &countingClient{APIClient: v.cli}
	tmp := t.TempDir()
	e, err := New(cc, Options{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	defer waitRemoved(t, e)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := chainJob(t, v)
			res, err := e.Run(context.Background(), j)
			checkChainJob(t, j, res, err)
		}()
	}
	wg.Wait()
	waitRemoved(t, e)
	if e.probed != TransferBind {
		t.Errorf("auto chose %q (%s), want bind", e.probed, e.probeWhy)
	}
	if n := cc.probes.Load(); n != 1 {
		t.Errorf("%d probe containers, want 1", n)
	}
	if n := cc.jobs.Load(); n != 4 {
		t.Errorf("%d job containers, want 4", n)
	}
	assertEmpty(t, tmp)

	// The probe's cost, paid once per Executor.
	e2, _ := New(v.cli, Options{TempDir: tmp})
	start := time.Now()
	if tr, err := e2.transfer(context.Background(), v.img, "probe-"+t.Name()); err != nil || tr != TransferBind {
		t.Fatalf("transfer = %q, %v", tr, err)
	}
	t.Logf("probe: %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	_, _ = e2.transfer(context.Background(), v.img, "probe-"+t.Name())
	if took := time.Since(start); took > 10*time.Millisecond {
		t.Errorf("second transfer call took %s: not cached", took)
	}
	if n := v.containers(t, "probe-"+t.Name()); n != 0 {
		t.Errorf("%d probe containers left", n)
	}
}

// A daemon reached over TCP never gets bind mounts, even when it is this
// machine's (a proxy to the local socket here): no probe, files go through
// the API.
func TestTransferAutoOverTCP(t *testing.T) {
	v := setup(t, Options{})
	u, err := url.Parse(v.cli.DaemonHost())
	if err != nil || u.Scheme != "unix" {
		dockertest.Unavailable(t, "the test daemon is at "+v.cli.DaemonHost()+"; the proxy needs a unix socket")
	}
	addr, proxied := tcpProxy(t, u.Path)
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+addr), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	cc := &countingClient{APIClient: cli}
	e, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer waitRemoved(t, e)
	j := chainJob(t, v)
	res, err := e.Run(context.Background(), j)
	checkChainJob(t, j, res, err)
	if e.probed != TransferCopy || !strings.Contains(e.probeWhy, "tcp://") {
		t.Errorf("auto chose %q (%s), want copy because of tcp://", e.probed, e.probeWhy)
	}
	if n := cc.probes.Load(); n != 0 {
		t.Errorf("%d probe containers, want none", n)
	}
	if proxied.Load() == 0 {
		t.Error("no connection went through the proxy")
	}
}

// tcpProxy listens on 127.0.0.1 and forwards every connection to the unix
// socket sock; it returns its address and a count of connections.
func tcpProxy(t *testing.T, sock string) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		n     atomic.Int32
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			d, err := net.Dial("unix", sock)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, d)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(d, c); d.(*net.UnixConn).CloseWrite() }()
			go func() { defer wg.Done(); io.Copy(c, d); c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	return ln.Addr().String(), &n
}

// sluice in a container with the host's docker.sock: the daemon resolves the
// probe directory's path on its own file system, where it is missing or is
// another directory. Either way auto falls back to the API.
func TestTransferAutoSibling(t *testing.T) {
	v := setup(t, Options{})
	if os.Geteuid() != 0 {
		dockertest.Unavailable(t, "auto does not probe when sluice does not run as root")
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "marker"), []byte("another file system"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, source := range map[string]string{
		"missing": filepath.Join(other, "does-not-exist"),
		"other":   other,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cc := &countingClient{APIClient: v.cli, probeSource: source}
			tmp := t.TempDir()
			e, err := New(cc, Options{TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			defer waitRemoved(t, e)
			j := chainJob(t, v)
			res, err := e.Run(context.Background(), j)
			checkChainJob(t, j, res, err)
			waitRemoved(t, e)
			if e.probed != TransferCopy {
				t.Errorf("auto chose %q (%s), want copy", e.probed, e.probeWhy)
			}
			if n := cc.probes.Load(); n != 1 {
				t.Errorf("%d probe containers, want 1", n)
			}
			t.Logf("why: %s", e.probeWhy)
			assertEmpty(t, tmp)
		})
	}
}

// Not root: no probe, the API (a step's root-owned files would be unreadable).
func TestTransferAutoNotRoot(t *testing.T) {
	v := setup(t, Options{})
	cc := &countingClient{APIClient: v.cli}
	e, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.geteuid = func() int { return 1000 }
	defer waitRemoved(t, e)
	j := chainJob(t, v)
	res, err := e.Run(context.Background(), j)
	checkChainJob(t, j, res, err)
	if u, _ := url.Parse(v.cli.DaemonHost()); u.Scheme == "unix" && (e.probed != TransferCopy || !strings.Contains(e.probeWhy, "uid 1000")) {
		t.Errorf("auto chose %q (%s), want copy because of the uid", e.probed, e.probeWhy)
	}
	if n := cc.probes.Load(); n != 0 {
		t.Errorf("%d probe containers, want none", n)
	}
}

// A probe cut short by the context is not remembered; explicit transfers
// never probe.
func TestTransferNoProbe(t *testing.T) {
	e, err := New(&countingClient{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.probeSem <- struct{}{} // a probe in progress elsewhere
	if _, err := e.transfer(ctx, "img", "r"); !errors.Is(err, context.Canceled) {
		t.Errorf("transfer with a cancelled context: %v", err)
	}
	<-e.probeSem
	if e.probed != "" {
		t.Errorf("probed = %q after a cancelled probe", e.probed)
	}
	for _, tr := range []Transfer{TransferCopy, TransferBind} {
		e, _ := New(&countingClient{}, Options{Transfer: tr})
		if got, err := e.transfer(ctx, "img", "r"); got != tr || err != nil {
			t.Errorf("transfer %s = %q, %v", tr, got, err)
		}
	}
}

func TestParseTransfer(t *testing.T) {
	for in, want := range map[string]Transfer{"": TransferAuto, "auto": TransferAuto, "copy": TransferCopy, "bind": TransferBind} {
		if got, err := ParseTransfer(in); got != want || err != nil {
			t.Errorf("ParseTransfer(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseTransfer("volume"); err == nil {
		t.Error("ParseTransfer(volume) did not fail")
	}
	if _, err := New(&countingClient{}, Options{Transfer: "mount"}); err == nil {
		t.Error("New with transfer mount did not fail")
	}
}

func TestNewFromEnvTransfer(t *testing.T) {
	t.Setenv(TransferEnv, "copy")
	e, err := NewFromEnv(Options{})
	if err != nil || e.opts.Transfer != TransferCopy {
		t.Errorf("%s=copy: %v, %v", TransferEnv, e, err)
	}
	if e, err := NewFromEnv(Options{Transfer: TransferBind}); err != nil || e.opts.Transfer != TransferBind {
		t.Errorf("Options.Transfer bind with %s=copy: %v", TransferEnv, err)
	}
	t.Setenv(TransferEnv, "sometimes")
	if _, err := NewFromEnv(Options{}); err == nil || !strings.Contains(err.Error(), TransferEnv) {
		t.Errorf("%s=sometimes: %v", TransferEnv, err)
	}
}
