package ci

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Annotation is a message attached to a place in a file: a validation error
// in valohai.yaml, a failed gate. Line and Col start at 1; zero means
// unknown, and so does an empty File.
type Annotation struct {
	File           string
	Line, EndLine  int
	Col, EndColumn int
	Title          string
	Message        string
}

// Log writes a CI job's log: GitHub workflow commands, GitLab collapsible
// sections, or plain text on Local.
//
// A Log is safe for concurrent use. Untrusted output from several callers is
// interleaved line by line, and every line of it is written while GitHub's
// command processing is stopped; a Log's own commands (groups, annotations,
// masks) resume it first. Write errors of the methods that return nothing
// are kept, and Err reports the first.
type Log struct {
	platform Platform
	w        io.Writer
	random   io.Reader
	now      func() time.Time

	mu       sync.Mutex
	stopped  string   // GitHub: the stop-commands token in force, "" when commands run
	midline  int      // the Untrusted call whose last line is unfinished, 0 for none
	sections []string // GitLab: open section names, innermost last
	seq      int      // sections opened, for unique names
	calls    int      // Untrusted calls started, for their ids
	err      error
}

// NewLog returns a Log for platform p that writes to w. Stop-commands tokens
// are read from random; nil means crypto/rand.
func NewLog(p Platform, w io.Writer, random io.Reader) *Log {
	if random == nil {
		random = rand.Reader
	}
	return &Log{platform: p, w: w, random: random, now: time.Now}
}

// Err returns the first error met writing the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// write writes s, keeping the first error. The caller holds l.mu.
func (l *Log) write(s string) error {
	if _, err := io.WriteString(l.w, s); err != nil {
		err = fmt.Errorf("write ci log: %w", err)
		if l.err == nil {
			l.err = err
		}
		return err
	}
	return nil
}

// lineStart makes sure the next write starts a line: if another Untrusted
// call than owner left a line unfinished, it is ended here. The caller holds
// l.mu.
func (l *Log) lineStart(owner int) error {
	if l.midline == 0 || l.midline == owner {
		return nil
	}
	l.midline = 0
	return l.write("\n")
}

// command prepares for one of the Log's own commands: at the start of a line,
// with GitHub's command processing running. The caller holds l.mu.
func (l *Log) command() error {
	if err := l.lineStart(0); err != nil {
		return err
	}
	if l.stopped == "" {
		return nil
	}
	tok := l.stopped
	l.stopped = ""
	return l.write("::" + tok + "::\n")
}

// Group starts a collapsible group titled title: "::group::" on GitHub, a
// collapsed section on GitLab (named after the title, and unique to this
// call), a header line on Local.
func (l *Log) Group(title string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.command() != nil {
		return
	}
	switch l.platform {
	case GitHub:
		_ = l.write("::group::" + escapeData(title) + "\n")
	case GitLab:
		l.seq++
		name := "sluice_" + strconv.Itoa(l.seq) + "_" + sectionName(title)
		l.sections = append(l.sections, name)
		_ = l.write(fmt.Sprintf("\x1b[0Ksection_start:%d:%s[collapsed=true]\r\x1b[0K%s\n",
			l.now().Unix(), name, oneLine(neutralise(title))))
	default:
		_ = l.write("== " + oneLine(title) + " ==\n")
	}
}

// EndGroup ends the innermost group that Group started. On GitLab, with no
// section open, it writes nothing.
func (l *Log) EndGroup() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.command() != nil {
		return
	}
	switch l.platform {
	case GitHub:
		_ = l.write("::endgroup::\n")
	case GitLab:
		if len(l.sections) == 0 {
			return
		}
		name := l.sections[len(l.sections)-1]
		l.sections = l.sections[:len(l.sections)-1]
		_ = l.write(fmt.Sprintf("\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", l.now().Unix(), name))
	}
}

// sectionName turns a title into a GitLab section name: lowercase, and
// [a-z0-9_.-] only, at most 48 bytes.
func sectionName(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		if b.Len() >= 48 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// oneLine replaces line breaks with spaces.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// Error writes an error annotation.
func (l *Log) Error(a Annotation) { l.annotate("error", a) }

// Warning writes a warning annotation.
func (l *Log) Warning(a Annotation) { l.annotate("warning", a) }

// Notice writes a notice annotation.
func (l *Log) Notice(a Annotation) { l.annotate("notice", a) }

// annotate writes "::error file=F,line=L,...::msg" on GitHub, with the
// workflow command escaping, and "F:L:C: error: msg" (the compiler style)
// elsewhere, where a title comes before the message as "title: msg".
func (l *Log) annotate(level string, a Annotation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.command() != nil {
		return
	}
	if l.platform == GitHub {
		_ = l.write(annotationCommand(level, a))
		return
	}
	var b strings.Builder
	if a.File != "" {
		b.WriteString(a.File + ":")
		if a.Line > 0 {
			b.WriteString(strconv.Itoa(a.Line) + ":")
			if a.Col > 0 {
				b.WriteString(strconv.Itoa(a.Col) + ":")
			}
		}
		b.WriteString(" ")
	}
	b.WriteString(level + ": ")
	if a.Title != "" {
		b.WriteString(a.Title + ": ")
	}
	b.WriteString(a.Message)
	s := b.String()
	if l.platform == GitLab {
		s = neutralise(s)
	}
	_ = l.write(s + "\n")
}

// annotationCommand renders a GitHub annotation command, with only the
// properties that are set.
func annotationCommand(level string, a Annotation) string {
	var props []string
	add := func(k, v string) { props = append(props, k+"="+escapeProperty(v)) }
	if a.File != "" {
		add("file", a.File)
	}
	for _, p := range []struct {
		k string
		v int
	}{{"line", a.Line}, {"endLine", a.EndLine}, {"col", a.Col}, {"endColumn", a.EndColumn}} {
		if p.v > 0 {
			add(p.k, strconv.Itoa(p.v))
		}
	}
	if a.Title != "" {
		add("title", a.Title)
	}
	s := "::" + level
	if len(props) > 0 {
		s += " " + strings.Join(props, ",")
	}
	return s + "::" + escapeData(a.Message) + "\n"
}

// escapeData escapes a workflow command's message: %, CR and LF.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a workflow command property's value: as
// escapeData, and also ':' and ','.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// Mask tells GitHub to hide secret in the rest of the job's log, one
// "::add-mask::" per line of it, as GitHub masks line by line. Empty lines
// are skipped. Elsewhere Mask does nothing: GitLab masks only the variables
// declared masked in its settings.
func (l *Log) Mask(secret string) {
	if l.platform != GitHub || secret == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.command() != nil {
		return
	}
	for line := range strings.SplitSeq(secret, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if l.write("::add-mask::"+escapeData(line)+"\n") != nil {
			return
		}
	}
}

// untrustedBuffer is the longest piece of one line Untrusted holds in
// memory; longer lines are written in pieces of this size.
const untrustedBuffer = 32 << 10

// Untrusted copies output a step printed (untrusted: the step may be a pull
// request's code) to the log, so that it cannot issue commands.
//
// On GitHub the output is written between "::stop-commands::TOKEN" and
// "::TOKEN::", with a TOKEN of 32 hex digits read from the Log's random
// source for each call. On GitLab every ESC byte becomes "␛" and the text
// "section_start:" and "section_end:" becomes "section-start:" and
// "section-end:", so the step can neither open or close sections nor send
// terminal escapes. On Local the output is copied unchanged.
//
// Output is handled a line at a time with bounded memory: a line longer than
// 32 KiB is written in pieces. An unfinished last line is ended with a
// newline. Untrusted returns the error of the reader or the writer; it then
// stops reading r, and the caller closes it. On GitHub, when no token can be
// read, it writes nothing and fails.
func (l *Log) Untrusted(r io.Reader) error {
	l.mu.Lock()
	l.calls++
	id := l.calls
	l.mu.Unlock()

	br := bufio.NewReaderSize(r, untrustedBuffer)
	var (
		carry []byte // GitLab: the end of a piece that may begin a marker
		buf   []byte
	)
	for {
		chunk, rerr := br.ReadSlice('\n')
		full := errors.Is(rerr, bufio.ErrBufferFull)
		if len(chunk) > 0 {
			out := chunk
			if l.platform == GitLab {
				buf = append(append(buf[:0], carry...), chunk...)
				carry = carry[:0]
				if full {
					// Mid-line: hold back what may be the start of a
					// marker that the next piece completes.
					k := markerPrefixLen(buf)
					carry = append(carry, buf[len(buf)-k:]...)
					buf = buf[:len(buf)-k]
				}
				out = neutraliseBytes(buf)
			}
			if err := l.writeUntrusted(id, out); err != nil {
				return err
			}
		}
		if rerr == nil || full {
			continue
		}
		err := l.endUntrusted(id, carry)
		if errors.Is(rerr, io.EOF) {
			return err
		}
		return errors.Join(fmt.Errorf("read step output: %w", rerr), err)
	}
}

// writeUntrusted writes a piece of untrusted output for call id: on a line of
// its own, with GitHub's commands stopped.
func (l *Log) writeUntrusted(id int, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lineStart(id); err != nil {
		return err
	}
	if l.platform == GitHub && l.stopped == "" {
		// l.midline is not id here: a line of ours is only left unfinished
		// while commands are stopped, and resuming them ends it.
		tok, err := l.token()
		if err != nil {
			return err
		}
		if err := l.write("::stop-commands::" + tok + "\n"); err != nil {
			return err
		}
		l.stopped = tok
	}
	if _, err := l.w.Write(p); err != nil {
		err = fmt.Errorf("write ci log: %w", err)
		if l.err == nil {
			l.err = err
		}
		return err
	}
	if p[len(p)-1] == '\n' {
		l.midline = 0
	} else {
		l.midline = id
	}
	return nil
}

// endUntrusted finishes call id: writes what it held back, ends its last
// line, and resumes GitHub's commands.
func (l *Log) endUntrusted(id int, carry []byte) error {
	if len(carry) > 0 {
		if err := l.writeUntrusted(id, neutraliseBytes(carry)); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.midline == id {
		l.midline = 0
		if err := l.write("\n"); err != nil {
			return err
		}
	}
	return l.command()
}

// token reads a new stop-commands token. The caller holds l.mu.
func (l *Log) token() (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(l.random, b); err != nil {
		return "", fmt.Errorf("stop-commands token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// The GitLab log markers Untrusted breaks.
var (
	sectionMarkers = [][]byte{[]byte("section_start:"), []byte("section_end:")}
	markerFixes    = [][]byte{[]byte("section-start:"), []byte("section-end:")}
)

// neutraliseBytes returns p with every ESC replaced by "␛" and the section
// markers broken. It may return p itself when there is nothing to change.
func neutraliseBytes(p []byte) []byte {
	if bytes.IndexByte(p, 0x1b) < 0 && !bytes.Contains(p, []byte("section_")) {
		return p
	}
	out := bytes.ReplaceAll(p, []byte{0x1b}, []byte("␛"))
	for i, m := range sectionMarkers {
		out = bytes.ReplaceAll(out, m, markerFixes[i])
	}
	return out
}

// neutralise is neutraliseBytes for strings.
func neutralise(s string) string { return string(neutraliseBytes([]byte(s))) }

// markerPrefixLen returns the length of the longest suffix of p that is a
// proper prefix of a section marker.
func markerPrefixLen(p []byte) int {
	best := 0
	for _, m := range sectionMarkers {
		for k := min(len(m)-1, len(p)); k > best; k-- {
			if bytes.Equal(p[len(p)-k:], m[:k]) {
				best = k
				break
			}
		}
	}
	return best
}
