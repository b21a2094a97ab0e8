package runner

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Validate reports everything in j that no executor can run, each error
// naming the node and the field.
func (j Job) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("node %s: "+format, append([]any{j.Node}, args...)...))
	}
	if j.Node == "" {
		bad("no node name")
	}
	if j.RunID == "" {
		bad("no run id")
	}
	if j.Image == "" {
		bad("no image")
	}
	if strings.TrimSpace(j.Command) == "" {
		bad("no command")
	}
	if j.TimeLimit < 0 {
		bad("negative time limit %s", j.TimeLimit)
	}
	if j.NoOutputTimeout < 0 {
		bad("negative no-output timeout %s", j.NoOutputTimeout)
	}
	if r := j.Resources; r.CPU < 0 || r.MemoryMB < 0 || r.GPUs < -1 {
		bad("bad resources: cpu %g, memory %d MB, gpus %d", r.CPU, r.MemoryMB, r.GPUs)
	}
	for k := range j.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			bad("bad environment variable name %q", k)
		}
	}
	seen := map[string]bool{}
	for _, in := range j.Inputs {
		if in.Name == "" || strings.ContainsAny(in.Name, `/\`) || in.Name == "." || in.Name == ".." {
			bad("bad input name %q", in.Name)
			continue
		}
		if seen[in.Name] {
			bad("input %s given twice", in.Name)
		}
		seen[in.Name] = true
		files := map[string]bool{}
		for _, f := range in.Files {
			switch {
			case !LocalPath(f.Name):
				bad("input %s: bad file name %q", in.Name, f.Name)
			case files[path.Clean(f.Name)]:
				bad("input %s: file %s given twice", in.Name, f.Name)
			case (f.Path == "") == (f.Open == nil):
				bad("input %s: file %s needs exactly one of Path and Open", in.Name, f.Name)
			case f.Open != nil && f.Size < 0:
				bad("input %s: file %s has negative size %d", in.Name, f.Name, f.Size)
			}
			files[path.Clean(f.Name)] = true
		}
	}
	return errors.Join(errs...)
}

// LocalPath reports whether p is a relative slash-separated path that stays
// below the directory it is relative to: not empty, not absolute, no ".."
// element, no backslash, no NUL.
func LocalPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	c := path.Clean(p)
	if c == "." {
		return false
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return false
		}
	}
	return true
}
