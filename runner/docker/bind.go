package docker

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/api/types/mount"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
)

// The bind transfer: the executor builds the /valohai tree of a job in a
// private host directory (the job directory, mode 0700) and bind-mounts its
// parts into the container; the outputs are read back from it on the host.
//
//	<job dir>/valohai/repository  -> /valohai/repository  read-write, a copy
//	<job dir>/valohai/inputs      -> /valohai/inputs      read-only, hard links where possible
//	<job dir>/valohai/config      -> /valohai/config      read-only
//	<job dir>/valohai/outputs     -> /valohai/outputs     read-write, mode 0777
//
// The repository stays writable, as with the copy transfer: it is the
// working directory, and steps write there. Its files are therefore copies,
// never hard links: the run's snapshot is hard-linked to the user's work
// tree, and a step writing through a link would change the user's files.
// Inputs are mounted read-only, so they can be hard links to the files they
// come from. contract.WriteDir writes the tree; contract.FromDir reads the
// outputs back.

// bindMounts are the mounts of the job directory dir.
func bindMounts(dir string) []mount.Mount {
	v := filepath.Join(dir, "valohai")
	return []mount.Mount{
		{Type: mount.TypeBind, Source: filepath.Join(v, "repository"), Target: contract.RepositoryDir},
		{Type: mount.TypeBind, Source: filepath.Join(v, "inputs"), Target: contract.InputsDir, ReadOnly: true},
		{Type: mount.TypeBind, Source: filepath.Join(v, "config"), Target: contract.ConfigDir, ReadOnly: true},
		{Type: mount.TypeBind, Source: filepath.Join(v, "outputs"), Target: contract.OutputsDir},
	}
}

// prepareJobDir makes a job directory below base (os.TempDir() when empty)
// holding part of job's /valohai tree in valohai/, and returns its path. openAccess
// makes the repository writable by every user, for an image whose user is
// not root (the copy transfer gives the files to that user instead).
func prepareJobDir(base string, job runner.Job, openAccess bool, now time.Time, part contract.Part) (string, error) {
	dir, err := os.MkdirTemp(base, "sluice-job-")
	if err != nil {
		return "", fmt.Errorf("make the job directory: %w", err)
	}
	v := filepath.Join(dir, "valohai")
	if err := makeDir(v, 0o755); err != nil {
		_ = removeJobDir(dir)
		return "", fmt.Errorf("make the job directory: %w", err)
	}
	if err := contract.WriteDirPart(v, job, openAccess, now, part); err != nil {
		_ = removeJobDir(dir)
		return "", fmt.Errorf("prepare %s: %w", dir, err)
	}
	return dir, nil
}

// makeDir makes the directory p with exactly mode, whatever the umask.
func makeDir(p string, mode fs.FileMode) error {
	if err := os.Mkdir(p, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// readOutputs copies the outputs a step left in the host directory src into
// dst, under the contract's output rules (contract.FromDir).
func readOutputs(src, dst string) ([]runner.OutputFile, []string, error) {
	return intoDir(dst, func(sink contract.Sink) ([]runner.OutputFile, []string, error) {
		return contract.FromDir(src, sink)
	})
}

// removeJobDir removes a job directory and everything in it. A directory
// the step made read-only is opened up first (that matters when sluice does
// not run as root).
func removeJobDir(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	if root, rerr := os.OpenRoot(dir); rerr == nil {
		_ = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = root.Chmod(p, 0o700)
			}
			return nil
		})
		root.Close()
	}
	return os.RemoveAll(dir)
}
