// Package dockertest gives tests a Docker client and the locally built test
// image. Without a reachable daemon (or without the image) a test is skipped,
// except in CI (CI=true), where a skipped Docker test would hide a broken
// setup: there it fails. .ci/run starts dockerd and builds the image
// (testdata/images/build.sh); locally, do the same by hand.
package dockertest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// BusyboxImage is the test image testdata/images/build.sh builds FROM
// scratch: a static busybox with /bin/sh, its applets and /tmp.
const BusyboxImage = "sluice-test/busybox:latest"

// pingTimeout bounds how long a test waits for an unresponsive daemon.
const pingTimeout = 10 * time.Second

// Client returns a client for the daemon DOCKER_HOST names (the local socket
// by default), with API version negotiation, after a ping. It is closed when
// the test ends.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		unavailable(t, os.Getenv, fmt.Sprintf("docker client: %v", err))
		return nil
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		unavailable(t, os.Getenv, fmt.Sprintf("docker daemon at %s does not answer: %v", cli.DaemonHost(), err))
		return nil
	}
	return cli
}

// Image returns BusyboxImage after checking that the daemon has it.
func Image(t testing.TB) string {
	t.Helper()
	return Require(t, BusyboxImage, "testdata/images/build.sh")
}

// DigitsImage is the scikit-learn image of examples/digits.
const DigitsImage = "sluice-test/digits:latest"

// Require returns image after checking that the daemon has it; script is
// what builds it, for the message when it does not.
func Require(t testing.TB, image, script string) string {
	t.Helper()
	cli := Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	_, err := cli.ImageInspect(ctx, image)
	switch {
	case cerrdefs.IsNotFound(err):
		unavailable(t, os.Getenv, fmt.Sprintf("test image %s is not built: run %s", image, script))
	case err != nil:
		unavailable(t, os.Getenv, fmt.Sprintf("inspect test image %s: %v", image, err))
	}
	return image
}

// InCI reports whether getenv says the tests run in CI (CI=true, or any
// value strconv.ParseBool takes as true).
func InCI(getenv func(string) string) bool {
	ci, _ := strconv.ParseBool(getenv("CI"))
	return ci
}

// Unavailable skips a test that cannot run here (no Docker, not root, no
// local socket), or fails it when CI=true: in CI every test must run.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	unavailable(t, os.Getenv, reason)
}

// unavailable skips the test, or fails it in CI.
func unavailable(t testing.TB, getenv func(string) string, reason string) {
	t.Helper()
	if InCI(getenv) {
		t.Fatalf("%s (CI=true: Docker tests may not skip; .ci/run starts dockerd and builds the test images)", reason)
		return
	}
	t.Skipf("%s (skipped; with CI=true this fails)", reason)
}

// SluiceImage returns the sluice image the agent tests run (SLUICE_IMAGE,
// default sluice:dev, which .ci/run builds from this checkout) after
// checking that the daemon has it.
func SluiceImage(t testing.TB) string {
	t.Helper()
	img := os.Getenv("SLUICE_IMAGE")
	if img == "" {
		img = "sluice:dev"
	}
	return Require(t, img, "docker build -t sluice:dev . (after testdata/images/go/build.sh where no registry answers)")
}
