package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/runner/contract"
	"github.com/sluice-ci/sluice/store"
)

// BinaryName is the agent binary's name in contract.AgentDir.
const BinaryName = "sluice"

// Options tune Fetch and Exec; the zero value is what `sluice agent` uses.
type Options struct {
	// Root stands for /valohai; empty means contract.Root. Tests use a
	// temporary directory.
	Root string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Stdout and Stderr receive the command's output too, as it comes (the
	// container's own log: a fallback where the store cannot be read); nil
	// discards it.
	Stdout, Stderr io.Writer
	// Executable is the binary Fetch places for Exec; empty means this
	// process's own.
	Executable string
	// Shell runs the command; empty means /bin/sh.
	Shell string
}

func (o Options) root() string {
	if o.Root == "" {
		return contract.Root
	}
	return o.Root
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Fetch lays out the job's /valohai tree below opts.Root: the repository
// from its blob, every input from its blob (each checked against its
// digest), the config files and an empty outputs directory, all writable by
// whatever user the step's image runs as; and it places this sluice binary
// as contract.AgentDir/sluice for Exec. When it fails it leaves an exit
// record saying why, so the host need not guess from a container's log.
func Fetch(ctx context.Context, st store.Store, spec *Spec, opts Options) (err error) {
	defer func() {
		if err != nil {
			_ = PutExit(ctx, st, spec.Prefix, &Exit{ExitCode: -1, Reason: runner.ReasonError, Error: err.Error(), Phase: "fetch", Outputs: []runner.OutputFile{}})
		}
	}()
	job, err := spec.Job(st)
	if err != nil {
		return err
	}
	root := opts.root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := contract.WriteDir(root, job, true, opts.now()); err != nil {
		return fmt.Errorf("lay out %s: %w", root, err)
	}
	if spec.Repository != nil {
		d, _ := store.ParseDigest(spec.Repository.Digest)
		rc, _, err := store.OpenBlob(ctx, st, d)
		if err != nil {
			return fmt.Errorf("fetch the repository: %w", err)
		}
		err = runner.ExtractTree(rc, filepath.Join(root, "repository"))
		rc.Close()
		if err != nil {
			return fmt.Errorf("unpack the repository: %w", err)
		}
		// A step whose image runs as another user writes there too.
		if err := openUp(filepath.Join(root, "repository")); err != nil {
			return fmt.Errorf("unpack the repository: %w", err)
		}
	}
	if spec.Checkpoints != "" {
		n, err := restoreCheckpoints(ctx, st, spec.Checkpoints, filepath.Join(root, "outputs"))
		if err != nil {
			return err
		}
		if n > 0 && opts.Stderr != nil {
			fmt.Fprintf(opts.Stderr, "sluice agent: restored %d checkpoint files of an earlier try\n", n)
		}
	}
	return placeBinary(opts, filepath.Join(root, strings.TrimPrefix(contract.AgentDir, contract.Root+"/")))
}

// openUp makes the tree below dir writable by every user: directories
// 0777, files read-write for all (their execute bits kept). Symlinks are
// left alone.
func openUp(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o777)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, info.Mode().Perm()|0o666)
	})
}

// placeBinary copies the agent binary into dir, mode 0755.
func placeBinary(opts Options, dir string) error {
	src := opts.Executable
	if src == "" {
		var err error
		if src, err = os.Executable(); err != nil {
			return fmt.Errorf("find the sluice binary: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("place the agent: %w", err)
	}
	defer in.Close()
	dst := filepath.Join(dir, BinaryName)
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("place the agent: %w", err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return fmt.Errorf("place the agent: %w", err)
	}
	return nil
}

// privateEnv are variables of the agent's own that the step does not get.
var privateEnv = []string{"STORAGE_EMULATOR_HOST"}

// Exec runs the job's command in the tree Fetch laid out: `/bin/sh -c
// Command` in the repository, with the environment the container has plus
// the contract's and the job's; it enforces the time limit and the
// no-output timeout (killing the command's whole process group), streams
// the log into the store in chunks, and when the command has ended, however
// it ended, puts the outputs into the store and writes the exit record. It
// returns the exit record; the error is the agent's own failure. When ctx
// ends (the agent was told to stop), the command is killed and what it left
// is still uploaded, as far as time allows.
func Exec(ctx context.Context, st store.Store, spec *Spec, opts Options) (*Exit, error) {
	exit := &Exit{ExitCode: -1, Reason: runner.ReasonError, Phase: "exec", Outputs: []runner.OutputFile{}}
	fail := func(err error) (*Exit, error) {
		exit.Error = err.Error()
		exit.Finished = opts.now()
		_ = PutExit(ctx, st, spec.Prefix, exit)
		return exit, err
	}
	job, err := spec.Job(st)
	if err != nil {
		return fail(err)
	}
	root := opts.root()
	env, warnings := contract.Environ(job)
	exit.Warnings = append(exit.Warnings, warnings...)
	base := os.Environ()
	merged := make([]string, 0, len(base)+len(env))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !contains(privateEnv, name) {
			merged = append(merged, kv)
		}
	}
	// What the contract and the job set replaces the container's value.
	set := map[string]bool{}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	kept := merged[:0]
	for _, kv := range merged {
		if name, _, _ := strings.Cut(kv, "="); !set[name] {
			kept = append(kept, kv)
		}
	}
	merged = append(kept, env...)
	if root != contract.Root {
		merged = rewriteRoot(merged, root)
	}

	shell := opts.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	ship := newShipper(st, spec.Prefix)
	var ckpt *checkpointer
	if spec.Checkpoints != "" {
		ckpt = newCheckpointer(st, spec.Checkpoints, filepath.Join(root, "outputs"))
		ship.before = ckpt.sync
	}
	shipCtx, stopShip := context.WithCancel(context.WithoutCancel(ctx))
	var shipWG sync.WaitGroup
	shipWG.Go(func() { ship.run(shipCtx) })
	finishShip := func() {
		stopShip()
		shipWG.Wait()
	}

	var lastOutput atomic.Int64
	lastOutput.Store(time.Now().UnixNano())
	stdout := runner.NewLineWriter(func(line string) {
		lastOutput.Store(time.Now().UnixNano())
		ship.line('o', line)
		if opts.Stdout != nil {
			fmt.Fprintln(opts.Stdout, line)
		}
	})
	stderr := runner.NewLineWriter(func(line string) {
		lastOutput.Store(time.Now().UnixNano())
		ship.line('e', line)
		if opts.Stderr != nil {
			fmt.Fprintln(opts.Stderr, line)
		}
	})
	cmd := exec.Command(shell, "-c", job.Command)
	cmd.Dir = filepath.Join(root, "repository")
	cmd.Env = merged
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	exit.Started = opts.now()
	if err := cmd.Start(); err != nil {
		finishShip()
		return fail(fmt.Errorf("start %s: %w", shell, err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var killed runner.Reason
	kill := func(reason runner.Reason) {
		if killed == "" {
			killed = reason
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	var timeLimitC, noOutputC <-chan time.Time
	if job.TimeLimit > 0 {
		t := time.NewTimer(job.TimeLimit)
		defer t.Stop()
		timeLimitC = t.C
	}
	var noOutput *time.Timer
	if job.NoOutputTimeout > 0 {
		noOutput = time.NewTimer(job.NoOutputTimeout)
		defer noOutput.Stop()
		noOutputC = noOutput.C
	}
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-done:
			break wait
		case <-ctx.Done():
			kill(runner.ReasonCancelled)
			ctx = context.WithoutCancel(ctx)
		case <-timeLimitC:
			timeLimitC = nil
			kill(runner.ReasonTimeLimit)
		case <-noOutputC:
			idle := time.Since(time.Unix(0, lastOutput.Load()))
			if idle < job.NoOutputTimeout {
				noOutput.Reset(job.NoOutputTimeout - idle)
				continue
			}
			noOutputC = nil
			kill(runner.ReasonNoOutputTimeout)
		}
	}
	exit.Finished = opts.now()
	stdout.Flush()
	stderr.Flush()
	exit.ExitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		exit.ExitCode = 128 + int(ws.Signal())
	}
	var waitDelay *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &waitDelay) {
		exit.Warnings = append(exit.Warnings, fmt.Sprintf("the command's output did not close: %v", waitErr))
	}
	switch {
	case killed != "":
		exit.Reason = killed
	case exit.ExitCode == 0:
		exit.Reason = runner.ReasonCompleted
	default:
		exit.Reason = runner.ReasonFailed
	}

	ckpt.sync(ctx)
	if ckpt != nil && ckpt.err != nil {
		exit.Warnings = append(exit.Warnings, ckpt.err.Error())
	}
	outs, outWarnings, outErr := uploadOutputs(ctx, st, filepath.Join(root, "outputs"))
	exit.Outputs = outs
	exit.Warnings = append(exit.Warnings, outWarnings...)
	finishShip()
	chunks, logErr := ship.close(ctx)
	exit.LogChunks = chunks
	if err := errors.Join(outErr, logErr); err != nil {
		exit.Reason, exit.Error = runner.ReasonError, err.Error()
	}
	if err := PutExit(ctx, st, spec.Prefix, exit); err != nil {
		return exit, err
	}
	if exit.Error != "" {
		return exit, errors.New(exit.Error)
	}
	return exit, nil
}

// rewriteRoot points the contract's /valohai paths at root (tests lay the
// tree out in a temporary directory).
func rewriteRoot(env []string, root string) []string {
	for i, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VH_") && strings.HasPrefix(val, contract.Root) {
			env[i] = name + "=" + root + strings.TrimPrefix(val, contract.Root)
		}
	}
	return env
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// storeSink puts each output into the store as a blob while reading it; a
// link is recorded with its target's blob, not stored again.
type storeSink struct {
	ctx context.Context
	st  store.Store
}

func (s storeSink) File(rel string, _ fs.FileMode, r io.Reader) (runner.OutputFile, error) {
	d, size, err := store.PutBlob(s.ctx, s.st, r)
	if err != nil {
		return runner.OutputFile{}, fmt.Errorf("store output %s: %w", rel, err)
	}
	return runner.OutputFile{Path: rel, Size: size, Digest: d.Hex(), Stored: true}, nil
}

func (s storeSink) Link(rel string, target runner.OutputFile) (runner.OutputFile, error) {
	target.Path = rel
	return target, nil
}

// uploadOutputs puts the outputs the step left in dir into the store under
// the contract's rules, applies their sidecar properties and leaves the
// sidecars out.
func uploadOutputs(ctx context.Context, st store.Store, dir string) ([]runner.OutputFile, []string, error) {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return []runner.OutputFile{}, []string{contract.OutputsDir + " was removed by the step; no outputs"}, nil
	}
	files, warnings, err := contract.FromDir(dir, storeSink{ctx: context.WithoutCancel(ctx), st: st})
	props, sidecars, propErrs := runner.OutputProperties(files, func(rel string) ([]byte, error) {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return root.ReadFile(path.Clean(rel))
	})
	for _, e := range propErrs {
		warnings = append(warnings, e.Error())
	}
	out := []runner.OutputFile{}
	for _, f := range files {
		if sidecars[f.Path] {
			continue
		}
		f.Stored, f.Properties = true, props[f.Path]
		out = append(out, f)
	}
	return out, warnings, err
}
