package executortest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/runner"
)

// writeTree writes files (slash paths, content) below dir, creating
// directories.
func writeTree(t *testing.T, dir string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// filesScript runs in the repository: it records what the step sees of the
// repository and the inputs, then tries to change both.
const filesScript = `set -e
o=/valohai/outputs
{
pwd
find . | sort
echo "notes: $(cat notes.txt)"
echo "deep: $(cat pkg/deep/module.py)"
[ -x run.sh ] && echo "run.sh is executable"
[ -L link.txt ] && echo "link.txt -> $(readlink link.txt): $(cat link.txt)"
[ -d empty ] && echo "empty is a directory"
cd "$VH_INPUTS_DIR" && find . | sort && cd "$VH_REPOSITORY_DIR"
echo "data: $(cat /valohai/inputs/data/sub/in.txt) $(cat /valohai/inputs/data/top.txt)"
echo "opened: $(cat /valohai/inputs/opened/o.txt)"
echo "blob: $(cat /valohai/inputs/blob/b.bin)"
} > $o/seen.txt
echo scratch > scratch.txt && echo tampered >> notes.txt && echo repository-writable > $o/checks.txt
if (echo tampered >> /valohai/inputs/data/sub/in.txt) 2>/dev/null; then echo inputs-writable >> $o/checks.txt; fi
(echo tampered >> /valohai/inputs/blob/b.bin) 2>/dev/null || true
echo done
`

const filesSeen = `/valohai/repository
.
./empty
./link.txt
./notes.txt
./pkg
./pkg/deep
./pkg/deep/module.py
./run.sh
./train.sh
notes: notes
deep: print(1)
run.sh is executable
link.txt -> notes.txt: notes
empty is a directory
.
./blob
./blob/b.bin
./data
./data/sub
./data/sub/in.txt
./data/top.txt
./opened
./opened/o.txt
data: world top
opened: opened
blob: blob
`

// The repository snapshot (from RepositoryDir, or RepositoryBlob) and the
// inputs, by host path, by Open and by blob, land where the contract says,
// and nothing the step does to them reaches their sources.
func testFiles(t *testing.T, s *suite) {
	type source struct {
		name      string
		dir, blob bool
	}
	sources := []source{
		{"RepositoryDir", true, false},
		// What the runner gives when the run has a store-native executor.
		{"RepositoryBlob", true, true},
	}
	if s.h.StoreNative {
		sources = []source{{"RepositoryBlob", false, true}}
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			t.Parallel()
			repo := t.TempDir()
			writeTree(t, repo, map[string]string{
				"train.sh":           filesScript,
				"notes.txt":          "notes\n",
				"pkg/deep/module.py": "print(1)\n",
			}, 0o644)
			writeTree(t, repo, map[string]string{"run.sh": "#!/bin/sh\ntrue\n"}, 0o755)
			if err := os.Symlink("notes.txt", filepath.Join(repo, "link.txt")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(repo, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}

			e := s.newExecutor(t)
			j := s.job(t, "sh train.sh")
			var blobCalls interface{ Load() int64 }
			if src.dir {
				j.RepositoryDir = repo
			}
			if src.blob {
				j.RepositoryBlob, blobCalls = s.repositoryBlob(repo)
			}
			in := pathInput(t, "sub/in.txt", "world")
			blob := s.blobInput(t, "b.bin", "blob")
			j.Inputs = []runner.Input{
				{Name: "data", Files: []runner.InputFile{in, pathInput(t, "top.txt", "top")}},
				{Name: "opened", Files: []runner.InputFile{openInput("o.txt", "opened")}},
				{Name: "blob", Files: []runner.InputFile{blob}},
			}
			r := s.mustRun(t, e, j)
			if got := r.stdout.get(); !slices.Equal(got, []string{"done"}) {
				t.Errorf("stdout %q, want [done]", got)
			}
			if !src.dir && blobCalls.Load() == 0 {
				t.Errorf("RepositoryBlob never called")
			}
			outs := s.outputs(t, j, r.res)
			if got := readOutput(t, outs, "seen.txt"); got != filesSeen {
				t.Errorf("the step saw\n%s\nwant\n%s", got, filesSeen)
			}
			// The working directory is writable. Inputs may be read-only
			// (bind mounts) or not (copies); either way, nothing the step
			// does reaches the host's files or the store.
			if got := readOutput(t, outs, "checks.txt"); got != "repository-writable\n" && got != "repository-writable\ninputs-writable\n" {
				t.Errorf("checks.txt = %q, want the repository writable", got)
			}
			if b, err := os.ReadFile(filepath.Join(repo, "notes.txt")); err != nil || string(b) != "notes\n" {
				t.Errorf("the step changed the host's notes.txt: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(repo, "scratch.txt")); err == nil {
				t.Errorf("the step's scratch.txt reached the host's repository")
			}
			if b, err := os.ReadFile(in.Path); err != nil || string(b) != "world" {
				t.Errorf("the step changed the host's input file: %q, %v", b, err)
			}
			if b, err := s.readBlob(t, blob.Digest); err != nil || string(b) != "blob" {
				t.Errorf("the step changed the input's blob in the store: %q, %v", b, err)
			}
		})
	}
}

// contractScript writes what the step sees of the runtime contract to
// /valohai/outputs: its command line, the environment, the working
// directory and the config files.
const contractScript = `set -e
o=/valohai/outputs
cat /proc/$$/cmdline > $o/cmdline
for v in VH_CONFIG_DIR VH_INPUTS_DIR VH_OUTPUTS_DIR VH_REPOSITORY_DIR VH_JOB_ID VH_EXECUTION_ID VH_PIPELINE_ID VH_PIPELINE_NODE_ID VH_PROJECT_ID PYTHONUNBUFFERED STEP_VAR WITH_EQ; do
  eval "x=\${$v-<unset>}"
  printf '%s=%s\n' "$v" "$x"
done > $o/env.txt
pwd > $o/pwd.txt
cp /valohai/config/parameters.json /valohai/config/inputs.json /valohai/config/execution.json $o/
echo done`

type inputsJSON map[string]struct {
	Files []struct {
		Name, Path string
		URI        *string
		Size       int64
		Checksums  map[string]string
	}
}

// The environment, the command line and the three config files.
func testContract(t *testing.T, s *suite) {
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		e := s.newExecutor(t)
		j := s.job(t, contractScript)
		j.Env = map[string]string{"STEP_VAR": "from-step", "WITH_EQ": "a=b c", "VH_OUTPUTS_DIR": "/elsewhere"}
		x := openInput("x.txt", "some data")
		x.URI = "https://example.com/x.txt"
		j.Inputs = []runner.Input{
			{Name: "data", Files: []runner.InputFile{x}},
			{Name: "none"},
		}
		r := s.mustRun(t, e, j)
		if !slices.ContainsFunc(r.res.Warnings, func(w string) bool { return strings.Contains(w, "VH_OUTPUTS_DIR") }) {
			t.Errorf("no warning about the step's VH_OUTPUTS_DIR in %q", r.res.Warnings)
		}
		outs := s.outputs(t, j, r.res)
		checkContract(t, j, outs, map[string]string{
			"VH_JOB_ID": j.RunID + "-" + j.Node, "VH_EXECUTION_ID": j.RunID + "-" + j.Node,
			"VH_PROJECT_ID": "<unset>", "STEP_VAR": "from-step", "WITH_EQ": "a=b c",
		})
		var params map[string]any
		if err := json.Unmarshal([]byte(readOutput(t, outs, "parameters.json")), &params); err != nil || len(params) != 0 {
			t.Errorf("parameters.json = %v, %v; want {}", params, err)
		}
		var inputs inputsJSON
		if err := json.Unmarshal([]byte(readOutput(t, outs, "inputs.json")), &inputs); err != nil {
			t.Fatalf("inputs.json: %v", err)
		}
		f := inputs["data"].Files
		if len(f) != 1 || f[0].Name != "x.txt" || f[0].Path != "/valohai/inputs/data/x.txt" || f[0].Size != 9 ||
			f[0].Checksums["sha256"] != sha("some data") || f[0].URI == nil || *f[0].URI != x.URI {
			t.Errorf("inputs.json data = %+v", f)
		}
		if none, ok := inputs["none"]; !ok || len(none.Files) != 0 {
			t.Errorf("inputs.json none = %+v, %v; want no files", none, ok)
		}
		execution := executionJSON(t, outs)
		for k, want := range map[string]any{
			"valohai.execution-id":      j.RunID + "-" + j.Node,
			"valohai.execution-image":   j.Image,
			"valohai.pipeline-id":       j.RunID,
			"valohai.pipeline-node-id":  j.Node,
			"valohai.execution-step":    nil,
			"valohai.project-id":        nil,
			"valohai.commit-identifier": nil,
		} {
			if execution[k] != want {
				t.Errorf("execution.json %s = %v, want %v", k, execution[k], want)
			}
		}
	})

	t.Run("set", func(t *testing.T) {
		t.Parallel()
		e := s.newExecutor(t)
		j := s.job(t, contractScript)
		j.ExecutionID, j.Step, j.ProjectID, j.Commit = "exec-7", "train", "proj-1", "0123abcd"
		j.Parameters = map[string]any{"greeting": "hello", "epochs": 3, "lr": 0.5, "flag": true, "layers": []any{1, 2}}
		a := pathInput(t, "a.txt", "aaa")
		a.URI = "file:///a.txt"
		j.Inputs = []runner.Input{{Name: "data", Files: []runner.InputFile{a, s.blobInput(t, "nested/b.txt", "bb")}}}
		r := s.mustRun(t, e, j)
		outs := s.outputs(t, j, r.res)
		checkContract(t, j, outs, map[string]string{
			"VH_JOB_ID": "exec-7", "VH_EXECUTION_ID": "exec-7", "VH_PROJECT_ID": "proj-1",
			"STEP_VAR": "<unset>", "WITH_EQ": "<unset>",
		})
		var params map[string]any
		if err := json.Unmarshal([]byte(readOutput(t, outs, "parameters.json")), &params); err != nil {
			t.Fatalf("parameters.json: %v", err)
		}
		want := map[string]any{"greeting": "hello", "epochs": 3.0, "lr": 0.5, "flag": true, "layers": []any{1.0, 2.0}}
		if !reflect.DeepEqual(params, want) {
			t.Errorf("parameters.json = %v, want %v", params, want)
		}
		var inputs inputsJSON
		if err := json.Unmarshal([]byte(readOutput(t, outs, "inputs.json")), &inputs); err != nil {
			t.Fatalf("inputs.json: %v", err)
		}
		f := inputs["data"].Files
		if len(f) != 2 || f[0].Name != "a.txt" || f[0].Path != "/valohai/inputs/data/a.txt" || f[0].Size != 3 ||
			f[0].Checksums["sha256"] != sha("aaa") || f[0].URI == nil || *f[0].URI != a.URI ||
			f[1].Name != "b.txt" || f[1].Path != "/valohai/inputs/data/nested/b.txt" || f[1].Size != 2 ||
			f[1].Checksums["sha256"] != sha("bb") || f[1].URI != nil {
			t.Errorf("inputs.json data = %+v", f)
		}
		execution := executionJSON(t, outs)
		for k, want := range map[string]any{
			"valohai.execution-id":      "exec-7",
			"valohai.execution-image":   j.Image,
			"valohai.pipeline-id":       j.RunID,
			"valohai.pipeline-node-id":  j.Node,
			"valohai.execution-step":    "train",
			"valohai.project-id":        "proj-1",
			"valohai.commit-identifier": "0123abcd",
		} {
			if execution[k] != want {
				t.Errorf("execution.json %s = %v, want %v", k, execution[k], want)
			}
		}
	})
}

// checkContract checks the command line, working directory and environment
// the step saw; vars holds the variables that differ between jobs.
func checkContract(t *testing.T, j runner.Job, outs map[string]output, vars map[string]string) {
	t.Helper()
	// The image's entrypoint is cleared: the shell runs the command itself.
	if got, want := readOutput(t, outs, "cmdline"), "/bin/sh\x00-c\x00"+j.Command+"\x00"; got != want {
		t.Errorf("the command ran as %q, want %q", strings.Split(got, "\x00"), strings.Split(want, "\x00"))
	}
	if got := readOutput(t, outs, "pwd.txt"); got != "/valohai/repository\n" {
		t.Errorf("working directory %q, want /valohai/repository", got)
	}
	want := ""
	for _, kv := range [][2]string{
		{"VH_CONFIG_DIR", "/valohai/config"},
		{"VH_INPUTS_DIR", "/valohai/inputs"},
		{"VH_OUTPUTS_DIR", "/valohai/outputs"},
		{"VH_REPOSITORY_DIR", "/valohai/repository"},
		{"VH_JOB_ID", vars["VH_JOB_ID"]},
		{"VH_EXECUTION_ID", vars["VH_EXECUTION_ID"]},
		{"VH_PIPELINE_ID", j.RunID},
		{"VH_PIPELINE_NODE_ID", j.Node},
		{"VH_PROJECT_ID", vars["VH_PROJECT_ID"]},
		{"PYTHONUNBUFFERED", "1"},
		{"STEP_VAR", vars["STEP_VAR"]},
		{"WITH_EQ", vars["WITH_EQ"]},
	} {
		want += kv[0] + "=" + kv[1] + "\n"
	}
	if got := readOutput(t, outs, "env.txt"); got != want {
		t.Errorf("environment\n%s\nwant\n%s", got, want)
	}
}

func executionJSON(t *testing.T, outs map[string]output) map[string]any {
	t.Helper()
	var execution map[string]any
	if err := json.Unmarshal([]byte(readOutput(t, outs, "execution.json")), &execution); err != nil {
		t.Fatalf("execution.json: %v", err)
	}
	return execution
}

// Regular files at any depth, whatever their modes, empty and large, with
// their content; directories are not outputs.
func testOutputs(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, `cd /valohai/outputs
echo top > top.txt
mkdir -p a/b/c && echo deep > a/b/c/deep.txt
printf '#!/bin/sh\ntrue\n' > run.sh && chmod 755 run.sh
echo private > private.txt && chmod 600 private.txt
mkdir ro && echo ro > ro/f.txt && chmod 444 ro/f.txt && chmod 555 ro
echo spaced > 'with space.txt'
: > empty.txt
head -c 1048576 /dev/zero > big.bin
mkdir -p emptydir/sub`)
	r := s.mustRun(t, e, j)
	outs := s.outputs(t, j, r.res)
	wantOutputs(t, outs, map[string]output{
		"top.txt":        {content: "top\n"},
		"a/b/c/deep.txt": {content: "deep\n"},
		"run.sh":         {content: "#!/bin/sh\ntrue\n"},
		"private.txt":    {content: "private\n"},
		"ro/f.txt":       {content: "ro\n"},
		"with space.txt": {content: "spaced\n"},
		"empty.txt":      {content: ""},
		"big.bin":        {content: strings.Repeat("\x00", 1<<20)},
	})
}

// Links the step makes in /valohai/outputs are never followed out of it,
// nor into a directory: a link to a regular file inside becomes a copy of
// it, a hard link too; anything else is refused or skipped, with the same
// warnings, word for word, from every executor. (With bind mounts sluice
// reads the links on the host, where /etc/passwd is the host's.)
func testOutputLinks(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, `cd /valohai/outputs
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
	r := s.mustRun(t, e, j)
	for _, name := range []string{"passwd", "relative", "d/out.txt", "dirlink", "via.txt", "etc", "up", "d/top", "pipe"} {
		lstatAbsent(t, j.OutputDir, name)
	}
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
	if !slices.Equal(r.res.Warnings, wantWarnings) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(r.res.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	fine := output{content: "fine\n"}
	wantOutputs(t, s.outputs(t, j, r.res), map[string]output{
		"alias.txt": fine, "d/up.txt": fine, "hard.txt": fine, "ok.txt": fine, "real/f.txt": fine,
	})
}

// Sidecar files give outputs their properties: <file>.metadata.json beside
// an output, and valohai.metadata.jsonl; they are not outputs themselves.
// An executor that stores outputs applies them; for outputs in OutputDir
// the runner does, and the result must be the same.
func testOutputProperties(t *testing.T, s *suite) {
	e := s.newExecutor(t)
	j := s.job(t, `cd /valohai/outputs
echo model > model.bin
echo '{"accuracy": 0.9, "tags": ["a", "b"]}' > model.bin.metadata.json
mkdir sub && echo data > sub/data.csv
echo '{"rows": 2}' > sub/data.csv.metadata.json
printf '%s\n' '{"file": "sub/data.csv", "metadata": {"source": "generated"}}' '{"file": "model.bin", "metadata": {"stage": "final"}}' > valohai.metadata.jsonl
echo orphan > orphan.metadata.json
echo plain > plain.txt`)
	r := s.mustRun(t, e, j)
	wantOutputs(t, s.outputs(t, j, r.res), map[string]output{
		"model.bin":    {content: "model\n", props: map[string]any{"accuracy": 0.9, "tags": []any{"a", "b"}, "stage": "final"}},
		"sub/data.csv": {content: "data\n", props: map[string]any{"rows": 2.0, "source": "generated"}},
		// A sidecar of no output is an output itself.
		"orphan.metadata.json": {content: "orphan\n"},
		"plain.txt":            {content: "plain\n"},
	})
}

// ctxRun is run with a background context; for tests that read Result only.
func (s *suite) ctxRun(t *testing.T, e runner.Executor, j runner.Job) ran {
	t.Helper()
	r := s.run(t, context.Background(), e, j)
	t.Cleanup(func() { r.checkLate(t) })
	return r
}
