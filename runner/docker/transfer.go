package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// Transfer says how a job's files get into its container and its outputs
// out of it.
type Transfer string

const (
	// TransferAuto uses bind mounts when the daemon can see this process's
	// files, else the API (the default); see Executor for how it decides.
	TransferAuto Transfer = "auto"
	// TransferCopy always goes through the API: CopyToContainer before the
	// start, CopyFromContainer after the exit. It works with any daemon.
	TransferCopy Transfer = "copy"
	// TransferBind prepares the files in a host directory and bind-mounts it.
	// The daemon must run on this machine, see the same file system, and
	// sluice must be able to read and remove what the step writes (it runs
	// as root, or the daemon is rootless).
	TransferBind Transfer = "bind"
	// TransferStore sends the files through the store, as a remote backend
	// does: `sluice agent` fetches them into the container and puts the
	// outputs back (see AgentOptions). It needs a store the containers
	// reach (a bucket); this host never touches the outputs.
	TransferStore Transfer = "store"
)

// TransferEnv is the environment variable NewFromEnv reads the transfer
// from when Options.Transfer is empty.
const TransferEnv = "SLUICE_DOCKER_TRANSFER"

// ParseTransfer accepts "auto", "copy", "bind", "store" and "" (auto).
func ParseTransfer(s string) (Transfer, error) {
	switch t := Transfer(s); t {
	case "":
		return TransferAuto, nil
	case TransferAuto, TransferCopy, TransferBind, TransferStore:
		return t, nil
	}
	return "", fmt.Errorf("transfer %q: want auto, copy, bind or store", s)
}

// probeMount is where the probe container sees the probe directory.
const probeMount = "/sluice-probe"

// transfer returns the transfer for a job of run runID, whose image is on
// the daemon: Options.Transfer, or for auto what the probe decided. The
// probe runs once per Executor, on the first call; concurrent calls wait
// for it (or for their ctx). A probe cut short by ctx is not remembered.
func (e *Executor) transfer(ctx context.Context, image, runID string) (Transfer, error) {
	if e.opts.Transfer != TransferAuto {
		return e.opts.Transfer, nil
	}
	select {
	case e.probeSem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-e.probeSem }()
	if e.probed != "" {
		return e.probed, nil
	}
	start := time.Now()
	ok, why, err := e.probeBind(ctx, image, runID)
	if err != nil {
		return "", err
	}
	e.probed = TransferCopy
	if ok {
		e.probed = TransferBind
	}
	e.probeWhy = why
	e.log.Info("file transfer chosen", "transfer", e.probed, "why", why, "probe", time.Since(start).Round(time.Microsecond))
	return e.probed, nil
}

// probeBind decides whether bind mounts of this process's files work: the
// daemon must be on this machine (a unix socket; tcp:// and ssh:// never
// are), on Linux, without user namespaces, rootless mode or SELinux labels
// (they make the files the container writes unreadable for sluice, or
// sluice's files unreadable in the container); sluice must run as root (so
// it can read and remove what a step writes as root); the job directories'
// file system must allow execution (a bind mount of a noexec one is
// noexec: ./train.sh would fail); and a container
// created with a probe directory bind-mounted must show the random marker
// sluice wrote there. The last check catches the sibling container: sluice
// in a container, with the host's docker.sock mounted, where the daemon
// resolves paths on the host, not in sluice's container.
//
// It returns false with the reason when binds cannot be used, and an error
// only when ctx ended.
func (e *Executor) probeBind(ctx context.Context, image, runID string) (bool, string, error) {
	host := e.cli.DaemonHost()
	if u, err := url.Parse(host); err != nil || u.Scheme != "unix" {
		return false, fmt.Sprintf("the daemon at %s is not reached through a local socket", host), nil
	}
	if uid := e.geteuid(); uid != 0 {
		return false, fmt.Sprintf("sluice runs as uid %d, not root: it could not read or remove the files a step writes as root", uid), nil
	}
	info, err := e.cli.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
		return false, fmt.Sprintf("daemon info: %v", err), nil
	}
	if info.OSType != "" && info.OSType != "linux" {
		return false, "the daemon runs " + info.OSType + " containers", nil
	}
	for _, opt := range info.SecurityOptions {
		for _, name := range []string{"rootless", "userns", "selinux"} {
			if strings.Contains(opt, "name="+name) {
				return false, "the daemon runs with " + name, nil
			}
		}
	}

	dir, err := os.MkdirTemp(e.opts.TempDir, "sluice-probe-")
	if err != nil {
		return false, fmt.Sprintf("probe directory: %v", err), nil
	}
	defer os.RemoveAll(dir)
	if noexecFS(dir) {
		return false, fmt.Sprintf("%s is on a file system mounted noexec", filepath.Dir(dir)), nil
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	marker := []byte(hex.EncodeToString(b[:]))
	if err := os.WriteFile(filepath.Join(dir, "marker"), marker, 0o644); err != nil {
		return false, fmt.Sprintf("probe directory: %v", err), nil
	}
	created, err := e.cli.ContainerCreate(ctx,
		&container.Config{
			Image: image, Entrypoint: []string{}, Cmd: []string{"true"},
			Labels: map[string]string{LabelRun: runID, LabelNode: probeNode},
		},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: probeMount, ReadOnly: true}}},
		nil, nil, "")
	if err != nil {
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
		return false, fmt.Sprintf("the daemon refused to bind-mount %s: %v", dir, err), nil
	}
	defer func() {
		if err := e.remove(ctx, created.ID); err != nil {
			e.log.Warn("remove probe container", "container", shortID(created.ID), "err", err)
		}
	}()
	got, err := e.readContainerFile(ctx, created.ID, probeMount+"/marker")
	switch {
	case ctx.Err() != nil:
		return false, "", ctx.Err()
	case err != nil:
		return false, fmt.Sprintf("the daemon does not see %s: %v", dir, err), nil
	case !bytes.Equal(got, marker):
		return false, fmt.Sprintf("the daemon sees another %s than sluice does", dir), nil
	}
	return true, fmt.Sprintf("the daemon at %s sees sluice's files", host), nil
}

// probeNode is the node label of the probe container.
const probeNode = "sluice-transfer-probe"

// readContainerFile returns the content of a small regular file in the
// container, read through the API.
func (e *Executor) readContainerFile(ctx context.Context, id, p string) ([]byte, error) {
	rc, _, err := e.cli.CopyFromContainer(ctx, id, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("no regular file in the archive")
			}
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 1<<10))
		}
	}
}
