package runner

import "bytes"

// MaxLineBytes is the longest line a LineWriter holds back; a longer one is
// delivered in pieces of this size.
const MaxLineBytes = 1 << 20

// LineWriter turns the chunks an executor writes into lines: it calls fn
// with each complete line, without its "\n" (or "\r\n"). Flush delivers the
// last line when it has no newline. Not safe for concurrent use; an
// executor writes to each sink from one goroutine at a time.
type LineWriter struct {
	fn  func(line string)
	buf []byte
}

// NewLineWriter returns a LineWriter that calls fn with each line.
func NewLineWriter(fn func(line string)) *LineWriter {
	return &LineWriter{fn: fn}
}

// Write implements io.Writer; it never fails.
func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) > MaxLineBytes {
				w.fn(string(w.buf[:MaxLineBytes]))
				w.buf = append(w.buf[:0], w.buf[MaxLineBytes:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		w.emit(line)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// Flush delivers a pending partial line, if any.
func (w *LineWriter) Flush() error {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	return nil
}

func (w *LineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	for len(line) > MaxLineBytes {
		w.fn(string(line[:MaxLineBytes]))
		line = line[MaxLineBytes:]
	}
	w.fn(string(line))
}
