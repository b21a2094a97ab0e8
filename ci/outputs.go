package ci

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// GitLab's limits on a dotenv report: the file's size and the number of
// variables (the default "dotenv_variables" limit of a self-managed
// instance). A larger report fails the job's artifact upload.
const (
	DotenvMaxBytes = 5 * 1024
	DotenvMaxVars  = 20
)

// SetOutputs hands outputs (name -> value) to later steps or jobs.
//
// On GitHub they are appended to the file at $GITHUB_OUTPUT, in name order,
// each as "name<<DELIMITER", the value, "DELIMITER", with a random
// ghadelimiter_<hex> delimiter that does not occur in the value. Names are
// [A-Za-z0-9_-].
//
// On GitLab they go to the dotenv file at $SLUICE_DOTENV, which the job
// declares under artifacts:reports:dotenv; with SLUICE_DOTENV unset
// SetOutputs does nothing. A name becomes "SLUICE_" and the name uppercased,
// with each character outside [A-Za-z0-9_] replaced by "_": "run-id" is
// SLUICE_RUN_ID. Variables already in the file are kept, and replaced when
// set again. A value with a line break is an error (dotenv has no multi-line
// values), as is a file over DotenvMaxBytes or DotenvMaxVars variables.
//
// Outputs are readable by anyone who can read the job, so a value that
// contains ctx.Token is refused on every platform. On Local SetOutputs does
// nothing.
func SetOutputs(ctx *Context, getenv func(string) string, random io.Reader, outputs map[string]string) error {
	if ctx == nil {
		return errors.New("set outputs: no ci context")
	}
	if ctx.Platform != GitHub && ctx.Platform != GitLab {
		return nil
	}
	names := make([]string, 0, len(outputs))
	for name, value := range outputs {
		if ctx.Token != "" && strings.Contains(value, ctx.Token) {
			return fmt.Errorf("set output %s: the value contains the ci token", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	if ctx.Platform == GitHub {
		return setGitHubOutputs(getenv, random, names, outputs)
	}
	return setGitLabOutputs(getenv, names, outputs)
}

func setGitHubOutputs(getenv func(string) string, random io.Reader, names []string, outputs map[string]string) error {
	path := getenv("GITHUB_OUTPUT")
	if path == "" {
		return errors.New("set outputs: GITHUB_OUTPUT is not set")
	}
	if random == nil {
		return errors.New("set outputs: no random source for delimiters")
	}
	var b bytes.Buffer
	for _, name := range names {
		if !validOutputName(name) {
			return fmt.Errorf("set output %q: a name is letters, digits, '_' and '-'", name)
		}
		value := outputs[name]
		delim, err := heredocDelimiter(random, value)
		if err != nil {
			return fmt.Errorf("set output %s: %w", name, err)
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", name, delim, value, delim)
	}
	if len(names) == 0 {
		return nil
	}
	if err := appendFile(path, b.Bytes()); err != nil {
		return fmt.Errorf("set outputs: %w", err)
	}
	return nil
}

func validOutputName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !isAlnum(r) && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// heredocDelimiter returns a random delimiter that does not occur in value.
func heredocDelimiter(random io.Reader, value string) (string, error) {
	b := make([]byte, 16)
	for range 8 {
		if _, err := io.ReadFull(random, b); err != nil {
			return "", fmt.Errorf("delimiter: %w", err)
		}
		d := "ghadelimiter_" + hex.EncodeToString(b)
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
	return "", errors.New("no delimiter found that is not in the value")
}

// appendFile appends data to the file at path, creating it if need be.
func appendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// DotenvKey returns the dotenv variable SetOutputs writes output name to on
// GitLab: "SLUICE_" and the name uppercased, every character outside
// [A-Za-z0-9_] replaced by "_".
func DotenvKey(name string) string {
	var b strings.Builder
	b.WriteString("SLUICE_")
	for _, r := range strings.ToUpper(name) {
		if isAlnum(r) || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func setGitLabOutputs(getenv func(string) string, names []string, outputs map[string]string) error {
	path := getenv("SLUICE_DOTENV")
	if path == "" || len(names) == 0 {
		return nil
	}
	// The variables already in the file, in their order.
	var keys []string
	vars := map[string]string{}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set outputs: %w", err)
	}
	for line := range strings.SplitSeq(string(old), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if _, seen := vars[k]; !seen {
			keys = append(keys, k)
		}
		vars[k] = v
	}

	from := map[string]string{} // dotenv key -> output name, to catch collisions
	for _, name := range names {
		if name == "" {
			return errors.New("set outputs: an output has no name")
		}
		value := outputs[name]
		if strings.ContainsAny(value, "\r\n") {
			return fmt.Errorf("set output %s: dotenv %s: the value has a line break", name, path)
		}
		key := DotenvKey(name)
		if other, dup := from[key]; dup {
			return fmt.Errorf("set outputs: %q and %q are both dotenv variable %s", other, name, key)
		}
		from[key] = name
		if _, seen := vars[key]; !seen {
			keys = append(keys, key)
		}
		vars[key] = value
	}

	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k + "=" + vars[k] + "\n")
	}
	if len(keys) > DotenvMaxVars {
		return fmt.Errorf("set outputs: dotenv %s would hold %d variables, over GitLab's limit of %d", path, len(keys), DotenvMaxVars)
	}
	if b.Len() > DotenvMaxBytes {
		return fmt.Errorf("set outputs: dotenv %s would be %d bytes, over GitLab's limit of %d bytes (5 KB)", path, b.Len(), DotenvMaxBytes)
	}
	if err := writeFileAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("set outputs: %w", err)
	}
	return nil
}

// writeFileAtomic replaces the file at path with data through a temporary
// file in the same directory.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".sluice-dotenv-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
