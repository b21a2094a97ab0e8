package contract

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runner"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func TestEnviron(t *testing.T) {
	job := runner.Job{
		RunID: "r1", Node: "train", Image: "python:3.12", Command: "python train.py && echo done",
		Env: map[string]string{"B": "2", "A": "1", "VH_INPUTS_DIR": "/x"},
	}
	env, warnings := Environ(job)
	wantEnv := []string{
		"VH_CONFIG_DIR=/valohai/config", "VH_INPUTS_DIR=/valohai/inputs", "VH_OUTPUTS_DIR=/valohai/outputs",
		"VH_REPOSITORY_DIR=/valohai/repository", "VH_JOB_ID=r1-train", "VH_EXECUTION_ID=r1-train",
		"VH_PIPELINE_ID=r1", "VH_PIPELINE_NODE_ID=train", "PYTHONUNBUFFERED=1", "A=1", "B=2",
	}
	if !slices.Equal(env, wantEnv) {
		t.Errorf("Env\n got %q\nwant %q", env, wantEnv)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "VH_INPUTS_DIR") {
		t.Errorf("warnings %q, want one about VH_INPUTS_DIR", warnings)
	}

	job.Env = map[string]string{"PYTHONUNBUFFERED": "0"}
	job.ProjectID = "p"
	env, warnings = Environ(job)
	if !slices.Contains(env, "PYTHONUNBUFFERED=0") || slices.Contains(env, "PYTHONUNBUFFERED=1") {
		t.Errorf("the step's PYTHONUNBUFFERED should win: %q", env)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %q, want none", warnings)
	}
	contract := Env(job)
	if last := contract[len(contract)-1]; last != [2]string{"VH_PROJECT_ID", "p"} {
		t.Errorf("Env ends with %q, want VH_PROJECT_ID=p", last)
	}
	for i, kv := range contract {
		if env[i] != kv[0]+"="+kv[1] {
			t.Errorf("Environ[%d] = %q, want Env's %q", i, env[i], kv)
		}
	}
}

func TestExecutionJSON(t *testing.T) {
	job := runner.Job{RunID: "r", Node: "n", Image: "img", Step: "train", Commit: "abc"}
	got := ExecutionJSON(job, time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)))
	want := map[string]any{
		"valohai.execution-id": "r-n", "valohai.execution-step": "train", "valohai.execution-image": "img",
		"valohai.execution-ctime": "2026-01-02T02:04:05.000000006Z", "valohai.execution-status": "started",
		"valohai.pipeline-id": "r", "valohai.pipeline-node-id": "n", "valohai.project-id": nil,
		"valohai.commit-identifier": "abc",
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if !bytes.Equal(a, b) {
		t.Errorf("execution.json\n got %s\nwant %s", a, b)
	}
}

// tarEntries reads a tar stream into name -> "type mode [-> link]", and
// name -> content for regular files.
func tarEntries(t *testing.T, r io.Reader) (map[string]string, map[string]string) {
	t.Helper()
	got, content := map[string]string{}, map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got, content
		}
		must(t, err)
		desc := string(h.Typeflag) + " " + os.FileMode(h.Mode).Perm().String()
		if h.Linkname != "" {
			desc += " -> " + h.Linkname
		}
		got[h.Name] = desc
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			content[h.Name] = string(b)
		}
	}
}

func TestWriteTar(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "pkg"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "pkg", "train.py"), []byte("print(1)\n"), 0o755))
	must(t, os.Symlink("pkg/train.py", filepath.Join(repo, "link.py")))
	job := runner.Job{
		RunID: "r", Node: "n", Image: "img", Command: "true", RepositoryDir: repo,
		Inputs: []runner.Input{{Name: "in", Files: []runner.InputFile{{
			Name: "a/b/c.txt", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil },
		}}}},
	}
	var buf bytes.Buffer
	must(t, WriteTar(&buf, job, time.Unix(0, 0)))
	got, content := tarEntries(t, &buf)
	for name, want := range map[string]string{
		"valohai/":                        "5 -rwxr-xr-x",
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
	var inputs map[string]struct {
		Files []struct {
			Name, Path string
			Size       int64
			Checksums  map[string]string
		}
	}
	must(t, json.Unmarshal([]byte(content["valohai/config/inputs.json"]), &inputs))
	if f := inputs["in"].Files; len(f) != 1 || f[0].Name != "c.txt" || f[0].Path != "/valohai/inputs/in/a/b/c.txt" ||
		f[0].Size != 3 || f[0].Checksums["sha256"] != sha("abc") {
		t.Errorf("inputs.json: %+v", inputs)
	}

	// A size that does not match the content is an error naming the input.
	job.Inputs[0].Files[0].Size = 4
	err := WriteTar(io.Discard, job, time.Now())
	if err == nil || !strings.Contains(err.Error(), "input in file a/b/c.txt") {
		t.Errorf("short content: %v", err)
	}
	job.Inputs[0].Files[0].Size = 3
	job.Inputs[0].Files[0].Digest = sha("xyz")
	if err := WriteTar(io.Discard, job, time.Now()); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("wrong digest: %v", err)
	}
}
