package docker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/sluice-ci/sluice/internal/dockertest"
	"github.com/sluice-ci/sluice/runner"
)

// These tests run real containers on the local Docker (busybox, a second or
// less each); they skip without Docker, and fail in CI (see dockertest).

type env struct {
	exec *Executor
	cli  *client.Client
	img  string
}

func setup(t *testing.T, opts Options) env {
	t.Helper()
	t.Parallel()
	cli := dockertest.Client(t)
	img := dockertest.Image(t)
	e, err := New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	return env{exec: e, cli: cli, img: img}
}

// transfers are the transfers the tests that depend on them run with.
var transfers = []Transfer{TransferCopy, TransferBind}

// forTransfers runs test as parallel subtests, one per transfer, each with an
// executor of opts and that transfer, whose job directories go to a
// temporary directory that must be empty when the subtest ends.
func forTransfers(t *testing.T, opts Options, test func(t *testing.T, v env, tr Transfer)) {
	t.Parallel()
	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			o := opts
			o.Transfer = tr
			o.TempDir = t.TempDir()
			t.Cleanup(func() { assertEmpty(t, o.TempDir) })
			test(t, setup(t, o), tr)
		})
	}
}

// assertEmpty fails the test if dir has anything in it.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in %s", e.Name(), dir)
	}
}

// job returns a job with a run id of its own, whose outputs go to a
// temporary directory, and checks when the test ends that no container of
// that run is left.
func (v env) job(t *testing.T, command string) runner.Job {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	j := runner.Job{
		RunID:     "test-" + hex.EncodeToString(b[:]),
		Node:      strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		Image:     v.img,
		Command:   command,
		OutputDir: filepath.Join(t.TempDir(), "outputs"),
	}
	t.Cleanup(func() {
		if n := v.containers(t, j.RunID); n != 0 {
			t.Errorf("%d containers of run %s left on the Docker host", n, j.RunID)
			_, _ = v.exec.Cleanup(context.Background(), j.RunID)
		}
	})
	return j
}

func (v env) containers(t *testing.T, runID string) int {
	t.Helper()
	list, err := v.cli.ContainerList(context.Background(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelRun+"="+runID)),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return len(list)
}

// lines collects what a sink receives, line by line.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) writer(then func(string)) *runner.LineWriter {
	return runner.NewLineWriter(func(s string) {
		l.mu.Lock()
		l.l = append(l.l, s)
		l.mu.Unlock()
		if then != nil {
			then(s)
		}
	})
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.l)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunContract(t *testing.T) {
	forTransfers(t, Options{}, testRunContract)
}

func testRunContract(t *testing.T, v env, tr Transfer) {
	repo := t.TempDir()
	script := `set -e
in=$(cat "$VH_INPUTS_DIR/data/sub/in.txt")
greeting=$(sed -n 's/.*"greeting": *"\([^"]*\)".*/\1/p' "$VH_CONFIG_DIR/parameters.json")
mkdir -p "$VH_OUTPUTS_DIR/result"
printf '%s %s' "$greeting" "$in" > "$VH_OUTPUTS_DIR/result/out.txt"
cp "$VH_CONFIG_DIR/parameters.json" "$VH_CONFIG_DIR/inputs.json" "$VH_CONFIG_DIR/execution.json" "$VH_OUTPUTS_DIR/"
{ pwd; echo "$VH_EXECUTION_ID $VH_PIPELINE_NODE_ID $PYTHONUNBUFFERED $STEP_VAR"; cat /valohai/inputs/blob/b.bin; } > "$VH_OUTPUTS_DIR/env.txt"
echo scratch > scratch.txt && echo tampered >> notes.txt && echo repository-writable > "$VH_OUTPUTS_DIR/checks.txt"
if (echo tampered >> "$VH_INPUTS_DIR/data/sub/in.txt") 2>/dev/null; then echo inputs-writable >> "$VH_OUTPUTS_DIR/checks.txt"; fi
echo done
`
	if err := os.WriteFile(filepath.Join(repo, "train.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "notes.txt"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inFile := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(inFile, []byte("world"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := v.job(t, "sh train.sh")
	j.RepositoryDir = repo
	j.Env = map[string]string{"STEP_VAR": "from-step", "VH_OUTPUTS_DIR": "/elsewhere"}
	j.Parameters = map[string]any{"greeting": "hello", "epochs": 3, "lr": 0.5, "flag": true}
	j.Inputs = []runner.Input{
		{Name: "data", Files: []runner.InputFile{{Name: "sub/in.txt", Path: inFile, URI: "file:///in.txt"}}},
		{Name: "blob", Files: []runner.InputFile{{
			Name: "b.bin", Size: 4, Digest: sha("blob"),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("blob")), nil },
		}}},
	}
	var stdout lines
	j.Stdout = stdout.writer(nil)

	res, err := v.exec.Run(context.Background(), j)
	if err != nil {
		t.Fatalf("Run: %v (result %+v)", err, res)
	}
	if res.Reason != runner.ReasonCompleted || res.ExitCode != 0 {
		t.Fatalf("Reason %s, ExitCode %d, want completed, 0", res.Reason, res.ExitCode)
	}
	if got := stdout.get(); !slices.Equal(got, []string{"done"}) {
		t.Errorf("stdout %q, want [done]", got)
	}
	if res.Started.IsZero() || res.Finished.Before(res.Started) {
		t.Errorf("Started %v, Finished %v", res.Started, res.Finished)
	}
	if !strings.HasPrefix(res.ImageDigest, "sha256:") {
		t.Errorf("ImageDigest %q, want sha256:...", res.ImageDigest)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "VH_OUTPUTS_DIR") }) {
		t.Errorf("no warning about the step's VH_OUTPUTS_DIR in %q", res.Warnings)
	}

	out := readFile(t, filepath.Join(j.OutputDir, "result", "out.txt"))
	if out != "hello world" {
		t.Errorf("result/out.txt = %q, want %q", out, "hello world")
	}
	i := slices.IndexFunc(res.Outputs, func(o runner.OutputFile) bool { return o.Path == "result/out.txt" })
	if i < 0 {
		t.Fatalf("result/out.txt not in Outputs %+v", res.Outputs)
	}
	if o := res.Outputs[i]; o.Digest != sha("hello world") || o.Size != int64(len("hello world")) {
		t.Errorf("Outputs[%d] = %+v, want digest %s size %d", i, o, sha("hello world"), len("hello world"))
	}
	var paths []string
	for _, o := range res.Outputs {
		paths = append(paths, o.Path)
	}
	if want := []string{"checks.txt", "env.txt", "execution.json", "inputs.json", "parameters.json", "result/out.txt"}; !slices.Equal(paths, want) {
		t.Errorf("output paths %q, want %q", paths, want)
	}

	// The working directory is writable; inputs are read-only with bind
	// mounts (root in the container writes to a copied 0444 file). Either
	// way, nothing the step does reaches the host's files.
	wantChecks := "repository-writable\ninputs-writable\n"
	if tr == TransferBind {
		wantChecks = "repository-writable\n"
	}
	if got := readFile(t, filepath.Join(j.OutputDir, "checks.txt")); got != wantChecks {
		t.Errorf("checks.txt = %q, want %q", got, wantChecks)
	}
	if got := readFile(t, filepath.Join(repo, "notes.txt")); got != "notes\n" {
		t.Errorf("the step changed the host's notes.txt: %q", got)
	}
	if got := readFile(t, inFile); got != "world" {
		t.Errorf("the step changed the host's input file: %q", got)
	}

	wantEnv := "/valohai/repository\n" + j.RunID + "-" + j.Node + " " + j.Node + " 1 from-step\nblob"
	if got := readFile(t, filepath.Join(j.OutputDir, "env.txt")); got != wantEnv {
		t.Errorf("env.txt = %q, want %q", got, wantEnv)
	}

	var params map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(j.OutputDir, "parameters.json"))), &params); err != nil {
		t.Fatal(err)
	}
	if params["greeting"] != "hello" || params["epochs"] != 3.0 || params["lr"] != 0.5 || params["flag"] != true {
		t.Errorf("parameters.json = %v", params)
	}

	var inputs map[string]struct {
		Files []struct {
			Name, Path string
			URI        *string
			Size       int64
			Checksums  map[string]string
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(j.OutputDir, "inputs.json"))), &inputs); err != nil {
		t.Fatal(err)
	}
	f := inputs["data"].Files
	if len(f) != 1 || f[0].Name != "in.txt" || f[0].Path != "/valohai/inputs/data/sub/in.txt" || f[0].Size != 5 ||
		f[0].Checksums["sha256"] != sha("world") || f[0].URI == nil || *f[0].URI != "file:///in.txt" {
		t.Errorf("inputs.json data = %+v", f)
	}
	if b := inputs["blob"].Files; len(b) != 1 || b[0].URI != nil || b[0].Checksums["sha256"] != sha("blob") {
		t.Errorf("inputs.json blob = %+v", b)
	}

	var execution map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(j.OutputDir, "execution.json"))), &execution); err != nil {
		t.Fatal(err)
	}
	if execution["valohai.pipeline-id"] != j.RunID || execution["valohai.execution-image"] != v.img {
		t.Errorf("execution.json = %v", execution)
	}
}

func TestRunNonZeroExit(t *testing.T) {
	v := setup(t, Options{})
	j := v.job(t, "echo something went wrong >&2; exit 3")
	var stderr lines
	j.Stderr = stderr.writer(nil)
	res, err := v.exec.Run(context.Background(), j)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.ExitCode != 3 || res.Reason != runner.ReasonFailed {
		t.Errorf("ExitCode %d, Reason %s, want 3, failed", res.ExitCode, res.Reason)
	}
	if got := stderr.get(); !slices.Equal(got, []string{"something went wrong"}) {
		t.Errorf("stderr %q", got)
	}
}

func TestRunStreamsInOrder(t *testing.T) {
	v := setup(t, Options{})
	j := v.job(t, `i=1; while [ $i -le 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf 'no newline'`)
	var stdout, stderr lines
	j.Stdout, j.Stderr = stdout.writer(nil), stderr.writer(nil)
	res, err := v.exec.Run(context.Background(), j)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("Run: %v, %s", err, res.Reason)
	}
	var wantOut, wantErr []string
	for i := 1; i <= 200; i++ {
		wantOut = append(wantOut, "out "+strconv.Itoa(i))
		wantErr = append(wantErr, "err "+strconv.Itoa(i))
	}
	wantOut = append(wantOut, "no newline")
	if got := stdout.get(); !slices.Equal(got, wantOut) {
		t.Errorf("stdout: %d lines, want %d in order; first %q", len(got), len(wantOut), got[:min(3, len(got))])
	}
	if got := stderr.get(); !slices.Equal(got, wantErr) {
		t.Errorf("stderr: %d lines, want %d in order", len(got), len(wantErr))
	}
}

func TestRunTimeLimit(t *testing.T) {
	v := setup(t, Options{})
	j := v.job(t, "echo started; sleep 30")
	j.TimeLimit = time.Second
	start := time.Now()
	res, err := v.exec.Run(context.Background(), j)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Run took %s with a 1s time limit", took)
	}
	if res.Reason != runner.ReasonTimeLimit || res.ExitCode != 137 {
		t.Errorf("Reason %s, ExitCode %d, want time-limit, 137", res.Reason, res.ExitCode)
	}
	if n := v.containers(t, j.RunID); n != 0 {
		t.Errorf("%d containers left after the time limit", n)
	}
}

func TestRunNoOutputTimeout(t *testing.T) {
	v := setup(t, Options{})

	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		j := v.job(t, "echo started; sleep 30")
		j.NoOutputTimeout = time.Second
		var stdout lines
		j.Stdout = stdout.writer(nil)
		res, err := v.exec.Run(context.Background(), j)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Reason != runner.ReasonNoOutputTimeout {
			t.Errorf("Reason %s, want no-output-timeout", res.Reason)
		}
		if got := stdout.get(); !slices.Equal(got, []string{"started"}) {
			t.Errorf("stdout %q", got)
		}
	})

	// Output every 0.3s keeps a 1s no-output timeout away, over 1.5s in all.
	t.Run("chatty", func(t *testing.T) {
		t.Parallel()
		j := v.job(t, "for i in 1 2 3 4 5; do echo $i; sleep 0.3; done")
		j.NoOutputTimeout = time.Second
		res, err := v.exec.Run(context.Background(), j)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Reason != runner.ReasonCompleted {
			t.Errorf("Reason %s, want completed", res.Reason)
		}
	})
}

func TestRunCancel(t *testing.T) {
	forTransfers(t, Options{}, func(t *testing.T, v env, _ Transfer) { testRunCancel(t, v) })
}

func testRunCancel(t *testing.T, v env) {
	j := v.job(t, "echo started; sleep 30")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout lines
	var cancelled time.Time
	j.Stdout = stdout.writer(func(string) {
		cancelled = time.Now()
		cancel() // the container is running: it printed
	})
	res, err := v.exec.Run(ctx, j)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error %v, want context.Canceled", err)
	}
	if took := time.Since(cancelled); took > 5*time.Second {
		t.Errorf("Run returned %s after the cancel", took)
	}
	if res.Reason != runner.ReasonCancelled {
		t.Errorf("Reason %s, want cancelled", res.Reason)
	}
	if n := v.containers(t, j.RunID); n != 0 {
		t.Errorf("%d containers left after cancel", n)
	}
}

// Links the step makes in /valohai/outputs are never followed out of it, nor
// into a directory, with either transfer: with bind mounts sluice reads them
// on the host, where /etc/passwd is the host's.
func TestRunOutputLinks(t *testing.T) {
	forTransfers(t, Options{}, func(t *testing.T, v env, _ Transfer) { testRunOutputLinks(t, v) })
}

func testRunOutputLinks(t *testing.T, v env) {
	j := v.job(t, `cd /valohai/outputs
echo fine > ok.txt
ln -s /etc/passwd passwd
ln -s ../../etc/passwd relative
ln -s ok.txt alias.txt
mkdir d && ln -s ../ok.txt d/up.txt && ln -s ../../ok.txt d/out.txt
ln ok.txt hard.txt
mkdir real && echo fine > real/f.txt
ln -s real dirlink
ln -s dirlink/f.txt via.txt
ln -s /etc etc
ln -s .. up
ln -s ../.. d/top
mkfifo pipe`)
	res, err := v.exec.Run(context.Background(), j)
	if err != nil || res.Reason != runner.ReasonCompleted {
		t.Fatalf("Run: %v, %s", err, res.Reason)
	}
	for _, name := range []string{"passwd", "relative", "d/out.txt", "dirlink", "via.txt", "etc", "up", "d/top", "pipe"} {
		if _, err := os.Lstat(filepath.Join(j.OutputDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written (%v), want refused", name, err)
		}
	}
	// The same warnings, word for word, with either transfer.
	wantWarnings := []string{
		`output "d/out.txt" refused: symlink to ../../ok.txt, outside /valohai/outputs`,
		`output "d/top" refused: symlink to ../.., outside /valohai/outputs`,
		`output "etc" refused: symlink to /etc, outside /valohai/outputs`,
		`output "passwd" refused: symlink to /etc/passwd, outside /valohai/outputs`,
		`output "pipe" skipped: not a regular file, directory or link (a named pipe)`,
		`output "relative" refused: symlink to ../../etc/passwd, outside /valohai/outputs`,
		`output "up" refused: symlink to .., outside /valohai/outputs`,
		`output "dirlink" refused: link target real is not a regular file in /valohai/outputs`,
		`output "via.txt" refused: link target dirlink/f.txt is not a regular file in /valohai/outputs`,
	}
	if !slices.Equal(res.Warnings, wantWarnings) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(res.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	var got []string
	for _, o := range res.Outputs {
		if o.Digest != sha("fine\n") {
			t.Errorf("output %s digest %s, want that of ok.txt", o.Path, o.Digest)
		}
		got = append(got, o.Path)
		st, err := os.Lstat(filepath.Join(j.OutputDir, o.Path))
		if err != nil || !st.Mode().IsRegular() {
			t.Errorf("output %s on disk: %v, %v; want a regular file", o.Path, st, err)
		}
	}
	if want := []string{"alias.txt", "d/up.txt", "hard.txt", "ok.txt", "real/f.txt"}; !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

func TestRunImageMissingPullNever(t *testing.T) {
	v := setup(t, Options{Pull: PullNever})
	j := v.job(t, "true")
	j.Image = "sluice-test/does-not-exist:never"
	res, err := v.exec.Run(context.Background(), j)
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("Run error %v, want ErrImageNotFound", err)
	}
	for _, want := range []string{j.Node, j.Image, "pull policy is never"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if res.Reason != runner.ReasonError {
		t.Errorf("Reason %s, want error", res.Reason)
	}
}

// The image's entrypoint must not wrap the command, and its non-root user
// can write outputs and in the working directory, with either transfer.
func TestRunClearsEntrypoint(t *testing.T) {
	v := setup(t, Options{})
	ctx := context.Background()
	c, err := v.cli.ContainerCreate(ctx, &container.Config{Image: v.img, Cmd: []string{"true"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	img, err := v.cli.ContainerCommit(ctx, c.ID, container.CommitOptions{
		Reference: "sluice-test/entrypoint:" + sha(t.Name() + c.ID)[:12],
		Changes:   []string{`ENTRYPOINT ["/bin/echo", "entrypoint was not cleared"]`, `USER nobody`},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = v.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}) })

	for _, tr := range transfers {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			t.Cleanup(func() { assertEmpty(t, tmp) })
			e, err := New(v.cli, Options{Transfer: tr, TempDir: tmp})
			if err != nil {
				t.Fatal(err)
			}
			j := v.job(t, `echo $(id -u) > /valohai/outputs/uid && mkdir /valohai/outputs/sub && echo x > /valohai/outputs/sub/x &&
chmod 600 /valohai/outputs/sub/x && echo w > w.txt && echo cleared`)
			j.Image = img.ID
			j.RepositoryDir = t.TempDir()
			if err := os.WriteFile(filepath.Join(j.RepositoryDir, "code.sh"), []byte("true\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout lines
			j.Stdout = stdout.writer(nil)
			res, err := e.Run(ctx, j)
			if err != nil || res.Reason != runner.ReasonCompleted {
				t.Fatalf("Run: %v, %s, %q", err, res.Reason, res.Warnings)
			}
			if got := stdout.get(); !slices.Equal(got, []string{"cleared"}) {
				t.Errorf("stdout %q, want [cleared]", got)
			}
			// USER nobody could write to /valohai/outputs and /valohai/repository.
			if got := readFile(t, filepath.Join(j.OutputDir, "uid")); got != "65534\n" {
				t.Errorf("uid %q, want 65534", got)
			}
			if got := readFile(t, filepath.Join(j.OutputDir, "sub", "x")); got != "x\n" {
				t.Errorf("sub/x %q, want x", got)
			}
		})
	}
}

func TestCleanup(t *testing.T) {
	v := setup(t, Options{})
	ctx := context.Background()
	j := v.job(t, "true")
	other := v.job(t, "true")
	for _, run := range []string{j.RunID, j.RunID, other.RunID} {
		_, err := v.cli.ContainerCreate(ctx, &container.Config{
			Image: v.img, Cmd: []string{"sleep", "30"},
			Labels: map[string]string{LabelRun: run, LabelNode: "leftover"},
		}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := v.exec.Cleanup(ctx, j.RunID)
	if err != nil || n != 2 {
		t.Fatalf("Cleanup = %d, %v; want 2, nil", n, err)
	}
	if got := v.containers(t, other.RunID); got != 1 {
		t.Errorf("the other run has %d containers, want 1 (untouched)", got)
	}
	if n, err := v.exec.Cleanup(ctx, other.RunID); err != nil || n != 1 {
		t.Errorf("Cleanup(other) = %d, %v", n, err)
	}
}
