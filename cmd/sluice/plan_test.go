package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// dirState lists every path under dir with its mode, modification time and,
// for files, content: a directory in which anything was created, changed or
// removed (even created and removed again) lists differently.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A plan only reads: in a repository without a store it creates none and
// says that nothing can be reused, without asking Docker.
func TestPlanWritesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "run", "reuse"))); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "valohai.yaml")
	before := dirState(t, dir)
	for _, args := range [][]string{
		{"plan", file},
		{"plan", "--format", "json", file},
		{"plan", "--format", "mermaid", file},
		{"plan", "--store", "file://" + filepath.Join(dir, "elsewhere"), file},
		{"plan", "--store", filepath.Join(dir, "store"), "--step", "train", file},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut)
		}
		if args[1] != "--format" && !strings.Contains(out, "runs: no earlier result to reuse (there is no store at "+dir) {
			t.Errorf("%v does not say that nothing can be reused:\n%s", args, out)
		}
		if args[1] == "--format" && args[2] == "json" && !strings.Contains(out, `"why": "no earlier result to reuse`) {
			t.Errorf("%v does not say that nothing can be reused:\n%s", args, out)
		}
		if after := dirState(t, dir); !reflect.DeepEqual(before, after) {
			t.Fatalf("%v changed the repository:\nbefore %v\nafter  %v", args, before, after)
		}
	}
}

// The plan shows what a run with default values executes: a flag that
// defaults to true is passed (a run gets the default), though the reference
// parser's build_command({}) leaves it out (see the conformance corpus).
func TestPlanAppliesFlagDefaults(t *testing.T) {
	code, out, errOut := runCLI(t, "plan", "--reuse=false", "--step", "test", corpus+"examples/flag-param-example.yaml")
	if code != 0 || !strings.Contains(out, "command: foo --defaults-to-true\n") {
		t.Errorf("exit %d, want the command foo --defaults-to-true:\n%s%s", code, out, errOut)
	}
}
