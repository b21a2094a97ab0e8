package main

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/store"
)

// A daemon reached over TCP (as with docker:dind in GitLab CI) shares no
// file system with sluice: everything must go through the API. A proxy on
// 127.0.0.1 forwards to the local daemon's socket.
func TestRunOnRemoteDaemon(t *testing.T) {
	dockertest.Image(t)
	addr, proxied := dockerTCPProxy(t)

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "remote-daemon"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), os.Args[0], "run", "--pull", "never")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1", "DOCKER_HOST=tcp://"+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run over tcp: %v\n%s", err, out)
	}
	if proxied.Load() == 0 {
		t.Fatal("no connection went through the TCP proxy")
	}
	rec := binResult{dir: dir}.lastRun(t)
	if rec.Status != store.StatusSucceeded || rec.Node("join").Output("joined.txt") == nil {
		t.Fatalf("run %s: %s, join outputs %v\n%s", rec.ID, rec.Status, rec.Node("join").Outputs, out)
	}
	if !strings.Contains(string(out), "join | LEFT.txt RIGHT.txt") {
		t.Errorf("inputs did not arrive:\n%s", out)
	}
}

// dockerTCPProxy serves the local daemon's socket on a TCP port of
// 127.0.0.1, as docker:dind serves the daemon to a GitLab job: it returns
// the address and a count of the connections that went through.
func dockerTCPProxy(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	cli := dockertest.Client(t)
	host := cli.DaemonHost()
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		dockertest.Unavailable(t, "the test daemon is at "+host+"; the proxy needs a unix socket")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	var proxied atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			proxied.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				d, err := net.Dial("unix", u.Path)
				if err != nil {
					return
				}
				defer d.Close()
				go func() { io.Copy(d, c); d.(*net.UnixConn).CloseWrite() }()
				io.Copy(c, d)
			}()
		}
	}()
	return ln.Addr().String(), &proxied
}
