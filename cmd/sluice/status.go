package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"golang.org/x/term"

	"github.com/sluice-ci/sluice/store"
)

// liveStatus keeps, at the bottom of a terminal, one line per running node
// saying what it does and for how long ("train  running 1m12s"), under a
// count of the nodes done, below the log lines that scroll past. The
// terminal is bubbletea's (github.com/charmbracelet/bubbletea): the log
// lines go above its view (Program.Println), which it redraws in place. It
// is used only when stdout is a terminal and CI is not set (liveTerminal).
type liveStatus struct {
	w       io.Writer
	prog    *tea.Program
	ran     chan struct{}
	mu      sync.Mutex
	partial []byte // the start of a log line not ended yet
	stopped bool
}

// liveTerminal reports whether the live status belongs on w: a terminal,
// outside CI (CI=true, as CI services set it, keeps plain lines).
func liveTerminal(w io.Writer, getenv func(string) string) bool {
	if ci, _ := strconv.ParseBool(getenv("CI")); ci {
		return false
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a terminal (not merely a character
// device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newLiveStatus starts the status view of a run of total nodes on w.
func newLiveStatus(w io.Writer, total int, now func() time.Time) *liveStatus {
	m := &statusModel{now: now, total: total, running: map[string]*nodeState{}}
	// No input (sluice reads no keys, and leaves the terminal's mode
	// alone) and no signal handling (sluice's own stops the run).
	prog := tea.NewProgram(m, tea.WithOutput(w), tea.WithInput(nil), tea.WithoutSignalHandler())
	s := &liveStatus{w: w, prog: prog, ran: make(chan struct{})}
	go func() {
		defer close(s.ran)
		_, _ = prog.Run()
	}()
	return s
}

// Write prints log output above the status lines, a whole line at a time
// (after Stop, straight to the terminal).
func (s *liveStatus) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.w.Write(p)
	}
	s.partial = append(s.partial, p...)
	i := bytes.LastIndexByte(s.partial, '\n')
	if i < 0 {
		return len(p), nil
	}
	lines := string(s.partial[:i])
	s.partial = append(s.partial[:0], s.partial[i+1:]...)
	s.prog.Println(lines)
	return len(p), nil
}

// Node records a node's new status.
func (s *liveStatus) Node(name string, status store.Status) {
	s.prog.Send(statusMsg{name, status})
}

// Activity records what a running node does now.
func (s *liveStatus) Activity(name, what string) {
	s.prog.Send(activityMsg{name, what})
}

// Stop removes the status lines for good, after the last log line.
func (s *liveStatus) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	if len(s.partial) > 0 {
		s.prog.Println(string(s.partial))
		s.partial = nil
	}
	s.mu.Unlock()
	s.prog.Send(stopMsg{})
	<-s.ran
}

type (
	statusMsg struct {
		node   string
		status store.Status
	}
	activityMsg struct{ node, what string }
	tickMsg     struct{}
	stopMsg     struct{}
)

// nodeState is a running node: since when it runs, and what it does since
// when.
type nodeState struct {
	started time.Time
	what    string
	since   time.Time
}

// statusModel is the status view's state (a bubbletea model).
type statusModel struct {
	now     func() time.Time
	total   int
	done    int
	running map[string]*nodeState
	stopped bool
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m *statusModel) Init() tea.Cmd { return tick() }

func (m *statusModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case statusMsg:
		m.status(msg.node, msg.status)
	case activityMsg:
		m.activity(msg.node, msg.what)
	case tickMsg:
		return m, tick() // redraws the elapsed times
	case stopMsg:
		m.stopped = true
		return m, tea.Quit
	}
	return m, nil
}

func (m *statusModel) status(node string, status store.Status) {
	switch status {
	case store.StatusRunning:
		if _, ok := m.running[node]; !ok {
			now := m.now()
			m.running[node] = &nodeState{started: now, what: "starting", since: now}
		}
	case store.StatusPending:
	default:
		delete(m.running, node)
		m.done++
	}
}

// activity records what a node, or a task's execution (NODE[VARIANT]),
// does; an execution is shown under its node.
func (m *statusModel) activity(label, what string) {
	node, _, _ := strings.Cut(label, "[")
	st, ok := m.running[node]
	if !ok {
		return
	}
	if st.what != what {
		st.what, st.since = what, m.now()
	}
}

// maxStatusLines bounds the running nodes listed; the rest are counted.
const maxStatusLines = 12

// View is the status: "[3/7 done, 2 running]", then a line per running
// node: its name, what it does (for how long), and how long it has run.
func (m *statusModel) View() string {
	if m.stopped {
		return ""
	}
	names := make([]string, 0, len(m.running))
	width := 0
	for n := range m.running {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "[%d/%d done, %d running]", m.done, m.total, len(names))
	now := m.now()
	for i, n := range names {
		if i == maxStatusLines {
			fmt.Fprintf(&b, "\n  ... and %d more", len(names)-i)
			break
		}
		st := m.running[n]
		fmt.Fprintf(&b, "\n  %-*s  %s %s (%s in all)", width, n, st.what, elapsed(now.Sub(st.since)), elapsed(now.Sub(st.started)))
	}
	return b.String()
}

// elapsed is a duration to the second: 12s, 1m12s, 1h02m.
func elapsed(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
