package runner

// This file keeps a node's log: live lines to the run's output, the
// metadata and series its JSON lines carry, the log blob in the store.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/sluice-ci/sluice/internal/printable"
	"github.com/sluice-ci/sluice/store"
)

// nodeLog receives a node's output: it prefixes each line with the node name
// on the live log, keeps the whole log in a file for the store, and reads
// every stdout line that is a JSON object as metadata.
type nodeLog struct {
	node     string
	prefix   string // the node's name as the live log prints it
	live     io.Writer
	mu       *sync.Mutex
	file     *os.File
	metadata map[string]any
	points   map[string][]any
	lw       [2]*LineWriter
}

func newNodeLog(dir, node string, live io.Writer, mu *sync.Mutex) (*nodeLog, error) {
	f, err := os.CreateTemp(dir, "log-*")
	if err != nil {
		return nil, fmt.Errorf("make a log file: %w", err)
	}
	l := &nodeLog{node: node, prefix: printable.Name(node), live: live, mu: mu, file: f, metadata: map[string]any{}, points: map[string][]any{}}
	l.lw[0] = NewLineWriter(func(line string) { l.line(line, false) })
	l.lw[1] = NewLineWriter(func(line string) { l.line(line, true) })
	return l, nil
}

func (l *nodeLog) writer(stderr bool) io.Writer {
	if stderr {
		return l.lw[1]
	}
	return l.lw[0]
}

func (l *nodeLog) line(line string, stderr bool) {
	l.mu.Lock()
	sep := " | "
	if stderr {
		sep = " ! "
	}
	// The live log is a terminal or a CI log: the line cannot move the
	// cursor or overwrite the prefix. The stored log keeps the bytes.
	fmt.Fprintf(l.live, "%s%s%s\n", l.prefix, sep, printable.Line(line))
	l.mu.Unlock()
	fmt.Fprintln(l.file, line)
	if stderr {
		return
	}
	t := strings.TrimSpace(line)
	if len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' || len(t) > maxMetadataLine {
		return
	}
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber() // keep 1.0 a float and 10 an integer, as Python's json module does
	if err := dec.Decode(&obj); err != nil || dec.More() {
		return
	}
	for k, v := range obj {
		l.metadata[k] = v
		l.points[k] = append(l.points[k], v)
	}
}

func (l *nodeLog) flush() {
	l.lw[0].Flush()
	l.lw[1].Flush()
}

// series returns the keys printed more than once with all their values.
func (l *nodeLog) series() map[string][]any {
	var out map[string][]any
	for k, pts := range l.points {
		if len(pts) > 1 {
			if out == nil {
				out = map[string][]any{}
			}
			out[k] = plainNumbers(pts).([]any)
		}
	}
	return out
}

// plainNumbers turns json.Numbers into float64s, all the way down, as
// encoding/json reads numbers back from a record.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainNumbers(e)
		}
		return out
	}
	return v
}

func (l *nodeLog) store(ctx context.Context, s store.Store) (store.Digest, error) {
	if _, err := l.file.Seek(0, io.SeekStart); err != nil {
		return store.Digest{}, err
	}
	d, _, err := store.PutBlob(ctx, s, l.file)
	if err != nil {
		return store.Digest{}, fmt.Errorf("store the log: %w", err)
	}
	return d, nil
}

func (l *nodeLog) close() {
	if l == nil || l.file == nil {
		return
	}
	name := l.file.Name()
	l.file.Close()
	os.Remove(name)
	l.file = nil
}
