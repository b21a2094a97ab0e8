package spec

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// A valohai.yaml is a list at the top level, one item per step, pipeline or
// task. When the file has the plain shape (`- ` items at column 0, nothing
// else at column 0 but comments), sluice reads it a few items at a time:
// each piece is read as YAML, turned into values, checked and built into the
// model, and the YAML tree and the values are dropped before the next piece
// is read. Memory then holds the model and one piece, not three copies of
// the whole file.
//
// A piece that does not read on its own (an alias of an anchor in an earlier
// piece, a quoted string that spans pieces, anything that fails) sends the
// whole file through the one-document reader, which gives the same result as
// this reader would have, findings included: streaming only ever changes how
// much memory reading takes.

// chunkSize is about how many bytes of the file are read as YAML at once.
var chunkSize = 64 << 10

// quickReader says whether chunks are first tried with the quick reader
// (fastyaml.go); tests turn it off to compare.
var quickReader = true

// chunk is a run of whole top-level items: data[start:end], starting at
// 1-based line line of the file.
type chunk struct {
	start, end, line int
}

// splitItems cuts data into chunks of whole top-level items of about size
// bytes. It returns nil when the file does not have the plain shape that
// makes the cut safe.
func splitItems(data []byte, size int) []chunk {
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) || hasUTF16BOM(data) {
		return nil
	}
	// Line breaks other than \n (a lone \r, NEL, LS, PS) would make YAML count
	// lines differently from the cut.
	if loneCR(data) || bytes.Contains(data, []byte("\u0085")) || bytes.Contains(data, []byte("\u2028")) || bytes.Contains(data, []byte("\u2029")) {
		return nil
	}
	var chunks []chunk
	cur := chunk{start: 0, line: 1}
	seen := false
	line := 1
	for i := 0; i < len(data); line++ {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		switch c := data[i]; {
		case c == '\n' || c == '\r' || c == '#':
			// blank line or a comment
		case c == ' ' || c == '\t':
			if !seen && !blankOrComment(data[i:next]) {
				return nil // content before the first item
			}
		case c == '-' && (i+1 == len(data) || isBlank(data[i+1])):
			if !seen {
				seen = true
			} else if i-cur.start >= size {
				cur.end = i
				chunks = append(chunks, cur)
				cur = chunk{start: i, line: line}
			}
		default:
			return nil // ---, ..., %, a key, a flow collection or a continued scalar at column 0
		}
		i = next
	}
	if !seen {
		return nil
	}
	cur.end = len(data)
	return append(chunks, cur)
}

// loneCR reports whether data has a \r that is not part of a \r\n.
func loneCR(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\r')
		if j < 0 {
			return false
		}
		i += j + 1
		if i == len(data) || data[i] != '\n' {
			return true
		}
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func blankOrComment(line []byte) bool {
	t := bytes.TrimLeft(line, " \t")
	return len(t) == 0 || t[0] == '#' || t[0] == '\r' || t[0] == '\n'
}

// decodeChunk reads a chunk as YAML: the top-level list of its items, or
// nil when it does not read on its own as one.
func decodeChunk(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || seq.Style != 0 || seq.Tag != "!!seq" || seq.Anchor != "" || len(seq.Content) == 0 {
		return nil
	}
	return seq
}

// errNotStreamable says a piece of the file did not read on its own.
var errNotStreamable = errors.New("the file does not read a piece at a time")

// streamItems reads the chunks one after the other and hands each top-level
// item to ip. The findings of reading go to r. It fails with
// errNotStreamable when a chunk does not read on its own or its values fail
// to convert (the whole-file reader then gives the exact finding), and with
// the context's error when the caller gave up.
func streamItems(r *reporter, data []byte, chunks []chunk, ip *itemParser) error {
	c := newConverter(r, 0)
	idx := 0
	for ci, ch := range chunks {
		if r.stopped() {
			return r.ctx.Err()
		}
		if quickReader {
			if items, pos, ok := quickItems(c, data[ch.start:ch.end], ch.line); ok {
				if ci == 0 {
					ip.rootPos = pos
				}
				for _, v := range items {
					ip.add(idx, v)
					idx++
					if r.stopped() {
						return r.ctx.Err()
					}
				}
				continue
			}
		}
		seq := decodeChunk(data[ch.start:ch.end])
		if seq == nil {
			return errNotStreamable
		}
		// Anchors belong to the piece that defines them.
		c.memo, c.sizes, c.lineOff = map[*yaml.Node]*Value{}, map[*Value]int{}, ch.line-1
		if ci == 0 {
			ip.rootPos = c.pos(seq)
		}
		for i, n := range seq.Content {
			v := c.convert(n, 1)
			if c.failed {
				return errNotStreamable
			}
			seq.Content[i] = nil // the tree of items already read can go
			ip.add(idx, v)
			idx++
			if r.stopped() {
				return r.ctx.Err()
			}
		}
	}
	c.total++ // the top-level list itself, as the whole-file reader counts it
	if c.total > maxValues {
		return errNotStreamable
	}
	return nil
}
