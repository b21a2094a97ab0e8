package runner

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Sidecar files that carry output properties.
const (
	propertiesSuffix = ".metadata.json"
	propertiesFile   = "valohai.metadata.jsonl"
)

// OutputProperties reads the properties of outputs: <file>.metadata.json
// beside an output holds a JSON object of its properties, and
// valohai.metadata.jsonl holds lines {"file": "<path>", "metadata": {...}}.
// read returns the content of an output by its path. It returns the
// properties by output path and which files were sidecars (not outputs).
func OutputProperties(files []OutputFile, read func(rel string) ([]byte, error)) (map[string]map[string]any, map[string]bool, []error) {
	exists := map[string]bool{}
	for _, f := range files {
		exists[f.Path] = true
	}
	props := map[string]map[string]any{}
	sidecars := map[string]bool{}
	var errs []error
	merge := func(path string, m map[string]any) {
		if props[path] == nil {
			props[path] = map[string]any{}
		}
		for k, v := range m {
			props[path][k] = v
		}
	}
	for _, f := range files {
		target, ok := strings.CutSuffix(f.Path, propertiesSuffix)
		if !ok || !exists[target] {
			continue
		}
		sidecars[f.Path] = true
		data, err := read(f.Path)
		var m map[string]any
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("output properties %s: not a JSON object: %v", f.Path, err))
			continue
		}
		merge(target, m)
	}
	if exists[propertiesFile] {
		sidecars[propertiesFile] = true
		data, err := read(propertiesFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("output properties %s: %v", propertiesFile, err))
		}
		for i, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			var entry struct {
				File     string         `json:"file"`
				Metadata map[string]any `json:"metadata"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil || entry.File == "" {
				errs = append(errs, fmt.Errorf("output properties %s line %d: want {\"file\": ..., \"metadata\": {...}}", propertiesFile, i+1))
				continue
			}
			if !exists[entry.File] {
				errs = append(errs, fmt.Errorf("output properties %s line %d: no output %q", propertiesFile, i+1, entry.File))
				continue
			}
			merge(entry.File, entry.Metadata)
		}
	}
	return props, sidecars, errs
}
