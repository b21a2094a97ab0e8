package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/runner"
	"github.com/sluice-ci/sluice/store"
)

// The log of an attempt is a sequence of chunks, objects LogKey(prefix, 1),
// LogKey(prefix, 2), ..., each a run of lines. A line is its stream's
// letter ('o' stdout, 'e' stderr), a space, the text without its newline,
// and "\n". The agent writes a chunk at most every ChunkInterval, or sooner
// when ChunkBytes are waiting; the host reads them in order.
const (
	ChunkInterval = time.Second
	ChunkBytes    = 1 << 20
)

// shipper collects the command's lines and puts them into the store in
// chunks. It is safe for concurrent use.
type shipper struct {
	st     store.Store
	prefix string

	mu   sync.Mutex
	buf  bytes.Buffer
	n    int   // chunks written
	err  error // the first failed put
	wake chan struct{}
	// before, when set, runs before each chunk is put (the checkpoints'
	// sync, so they are in the store before the lines that follow them).
	before func(ctx context.Context)
}

func newShipper(st store.Store, prefix string) *shipper {
	return &shipper{st: st, prefix: prefix, wake: make(chan struct{}, 1)}
}

// line adds one line of stream ('o' or 'e').
func (s *shipper) line(stream byte, text string) {
	s.mu.Lock()
	s.buf.WriteByte(stream)
	s.buf.WriteByte(' ')
	s.buf.WriteString(text)
	s.buf.WriteByte('\n')
	full := s.buf.Len() >= ChunkBytes
	s.mu.Unlock()
	if full {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run flushes every ChunkInterval (or when a chunk is full) until ctx ends.
func (s *shipper) run(ctx context.Context) {
	t := time.NewTicker(ChunkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		s.flush(ctx)
	}
}

// flush puts what is waiting as the next chunk. A failed put keeps the
// lines for the next try.
func (s *shipper) flush(ctx context.Context) {
	if s.before != nil {
		s.before(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() == 0 {
		return
	}
	key := LogKey(s.prefix, s.n+1)
	if _, err := s.st.Put(context.WithoutCancel(ctx), key, bytes.NewReader(s.buf.Bytes())); err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("put log chunk %s: %w", key, err)
		}
		return
	}
	s.n++
	s.buf.Reset()
}

// close flushes the rest and returns how many chunks there are and the
// first error, if a chunk could never be written.
func (s *shipper) close(ctx context.Context) (int, error) {
	s.flush(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() > 0 {
		return s.n, s.err
	}
	return s.n, nil
}

// Follower reads an attempt's log chunks as they appear and writes their
// lines to Stdout and Stderr, each line with its "\n", in order. Not safe
// for concurrent use.
type Follower struct {
	Store  store.Store
	Prefix string
	Stdout io.Writer
	Stderr io.Writer
	// Lines, when set, is told of every line as it is delivered (for the
	// no-output clock of a host that watches).
	Lines func()

	next int // the next chunk to read, from 1
}

// Poll reads every chunk that is there, from the next unread one on, and
// returns how many it read.
func (f *Follower) Poll(ctx context.Context) (int, error) {
	if f.next == 0 {
		f.next = 1
	}
	read := 0
	for {
		ok, err := f.readChunk(ctx, f.next)
		if err != nil || !ok {
			return read, err
		}
		f.next++
		read++
	}
}

// Drain reads the chunks up to n, waiting a little for one that is not yet
// visible (a store may show a new object late), until ctx ends.
func (f *Follower) Drain(ctx context.Context, n int) error {
	if f.next == 0 {
		f.next = 1
	}
	wait := 50 * time.Millisecond
	for f.next <= n {
		ok, err := f.readChunk(ctx, f.next)
		if err != nil {
			return err
		}
		if ok {
			f.next++
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("log chunk %d of %d never appeared: %w", f.next, n, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	return nil
}

func (f *Follower) readChunk(ctx context.Context, n int) (bool, error) {
	rc, _, err := f.Store.Open(ctx, LogKey(f.Prefix, n))
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read log chunk %d: %w", n, err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), runner.MaxLineBytes+16)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) < 2 || line[1] != ' ' {
			continue
		}
		w := f.Stdout
		if line[0] == 'e' {
			w = f.Stderr
		}
		if w != nil {
			w.Write(append(line[2:len(line):len(line)], '\n'))
		}
		if f.Lines != nil {
			f.Lines()
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read log chunk %d: %w", n, err)
	}
	return true, nil
}
