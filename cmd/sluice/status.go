package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// liveStatus keeps one status line (running nodes and their elapsed time,
// how many are done) at the bottom of a terminal, below the log lines that
// scroll past. It is used only when stdout is a terminal.
type liveStatus struct {
	mu      sync.Mutex
	w       io.Writer
	now     func() time.Time
	total   int
	done    int
	running map[string]time.Time
	shown   bool
	stop    chan struct{}
	stopped chan struct{}
}

func newLiveStatus(w io.Writer, total int, now func() time.Time) *liveStatus {
	return &liveStatus{w: w, now: now, total: total, running: map[string]time.Time{}}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Write prints log output above the status line.
func (s *liveStatus) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	n, err := s.w.Write(p)
	s.draw()
	return n, err
}

// Node records a node's new status and redraws.
func (s *liveStatus) Node(name string, status store.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch status {
	case store.StatusRunning:
		if _, ok := s.running[name]; !ok {
			s.running[name] = s.now()
		}
	case store.StatusPending:
	default:
		delete(s.running, name)
		s.done++
	}
	s.clear()
	s.draw()
}

// Start redraws every second (for the elapsed times) until Stop.
func (s *liveStatus) Start() {
	s.stop, s.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.mu.Lock()
				s.clear()
				s.draw()
				s.mu.Unlock()
			}
		}
	}()
}

// Stop removes the status line for good.
func (s *liveStatus) Stop() {
	if s.stop != nil {
		close(s.stop)
		<-s.stopped
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	s.running = nil
}

func (s *liveStatus) clear() {
	if s.shown {
		io.WriteString(s.w, "\r\x1b[K")
		s.shown = false
	}
}

func (s *liveStatus) draw() {
	if s.running == nil {
		return
	}
	io.WriteString(s.w, s.line())
	s.shown = true
}

// line is the status text: "[3/7 done] running: train 12s, eval 3s".
func (s *liveStatus) line() string {
	names := make([]string, 0, len(s.running))
	for n := range s.running {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %s", n, s.now().Sub(s.running[n]).Round(time.Second))
	}
	text := fmt.Sprintf("[%d/%d done]", s.done, s.total)
	if len(parts) > 0 {
		text += " running: " + strings.Join(parts, ", ")
	}
	if len(text) > 160 {
		text = text[:157] + "..."
	}
	return text
}
