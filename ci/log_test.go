package ci

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// A step's output that tries every way of issuing commands.
const hostileOutput = "training...\n" +
	"::add-mask::x\n" +
	"::set-output name=a::b\n" +
	"::error::boom\n" +
	"::stop-commands::guess\n" +
	"::guess::\n" +
	"\x1b[0Ksection_end:1:x\r\x1b[0K\n" +
	"\x1b[0Ksection_start:1:evil[collapsed=true]\r\x1b[0Kfake\n" +
	"\x1b[31mred\x1b[0m no newline at the end"

// seq is a random source that counts up, so that each token differs and is
// known.
type seq struct{ n byte }

func (s *seq) Read(p []byte) (int, error) {
	for i := range p {
		s.n++
		p[i] = s.n
	}
	return len(p), nil
}

func tokens(n int) []string {
	r := &seq{}
	var out []string
	for range n {
		b := make([]byte, 16)
		_, _ = r.Read(b)
		out = append(out, hex.EncodeToString(b))
	}
	return out
}

func TestUntrustedGitHub(t *testing.T) {
	var out bytes.Buffer
	l := NewLog(GitHub, &out, &seq{})
	if err := l.Untrusted(strings.NewReader(hostileOutput)); err != nil {
		t.Fatal(err)
	}
	tok := tokens(1)[0]
	if len(tok) < 32 {
		t.Fatalf("token %q is shorter than 32 characters", tok)
	}
	want := "::stop-commands::" + tok + "\n" + hostileOutput + "\n" + "::" + tok + "::\n"
	if got := out.String(); got != want {
		t.Fatalf("output:\n%q\nwant\n%q", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != "::stop-commands::"+tok {
		t.Errorf("first line %q does not stop commands", lines[0])
	}
	resume := "::" + tok + "::"
	if lines[len(lines)-1] != resume || strings.Count(out.String(), resume) != 1 {
		t.Errorf("the resume line is not last, or appears more than once")
	}

	// A second call uses a new token.
	out.Reset()
	if err := l.Untrusted(strings.NewReader("::error::again\n")); err != nil {
		t.Fatal(err)
	}
	tok2 := tokens(2)[1]
	if want := "::stop-commands::" + tok2 + "\n::error::again\n::" + tok2 + "::\n"; out.String() != want {
		t.Errorf("second call: %q, want %q", out.String(), want)
	}
}

func TestUntrustedGitLab(t *testing.T) {
	var out bytes.Buffer
	l := NewLog(GitLab, &out, nil)
	if err := l.Untrusted(strings.NewReader(hostileOutput)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.IndexByte(got, 0x1b) >= 0 {
		t.Errorf("output has an ESC byte: %q", got)
	}
	for _, m := range []string{"section_start:", "section_end:"} {
		if strings.Contains(got, m) {
			t.Errorf("output has the marker %q: %q", m, got)
		}
	}
	if !strings.Contains(got, "␛[0Ksection-end:1:x\r␛[0K\n") || !strings.Contains(got, "::error::boom\n") {
		t.Errorf("output lost the step's text: %q", got)
	}
	if !strings.HasSuffix(got, "no newline at the end\n") {
		t.Errorf("the last line is not ended: %q", got)
	}
}

func TestUntrustedLocalUnchanged(t *testing.T) {
	var out bytes.Buffer
	if err := NewLog(Local, &out, nil).Untrusted(strings.NewReader(hostileOutput)); err != nil {
		t.Fatal(err)
	}
	if out.String() != hostileOutput+"\n" {
		t.Errorf("output %q", out.String())
	}
}

// chunkWriter records the size of every write.
type chunkWriter struct {
	buf     bytes.Buffer
	largest int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.buf.Write(p)
}

func (w *chunkWriter) String() string { return w.buf.String() }

func TestUntrustedLongLineStreamed(t *testing.T) {
	// A 1 MiB line is written in pieces, and a marker that straddles two
	// pieces is still broken on GitLab.
	line := strings.Repeat("a", untrustedBuffer-5) + "\x1b[0Ksection_start:1:x[collapsed=true]\r" + strings.Repeat("b", 1<<20)
	for _, p := range []Platform{GitHub, GitLab} {
		t.Run(string(p), func(t *testing.T) {
			w := &chunkWriter{}
			if err := NewLog(p, w, &seq{}).Untrusted(strings.NewReader(line + "\nnext\n")); err != nil {
				t.Fatal(err)
			}
			if w.largest > 2*untrustedBuffer {
				t.Errorf("largest write %d bytes: the line was buffered whole", w.largest)
			}
			got := w.String()
			if p == GitLab && (strings.Contains(got, "section_start:") || strings.IndexByte(got, 0x1b) >= 0) {
				t.Errorf("a marker across pieces got through")
			}
			if p == GitHub && !strings.Contains(got, line+"\nnext\n") {
				t.Errorf("the line was changed")
			}
			if !strings.Contains(got, strings.Repeat("b", 1<<20)+"\nnext\n") {
				t.Errorf("the line's end is missing")
			}
		})
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestUntrustedNoTokenWritesNothing(t *testing.T) {
	var out bytes.Buffer
	err := NewLog(GitHub, &out, failReader{}).Untrusted(strings.NewReader("::error::boom\n"))
	if err == nil || out.Len() != 0 {
		t.Errorf("err %v, output %q: want an error and no output", err, out.String())
	}
}

func TestUntrustedReadError(t *testing.T) {
	var out bytes.Buffer
	r := io.MultiReader(strings.NewReader("half a li"), failReader{})
	err := NewLog(GitHub, &out, &seq{}).Untrusted(r)
	if err == nil || !strings.Contains(err.Error(), "no entropy") {
		t.Fatalf("err %v, want the reader's", err)
	}
	tok := tokens(1)[0]
	if !strings.HasSuffix(out.String(), "\n::"+tok+"::\n") {
		t.Errorf("commands not resumed after a read error: %q", out.String())
	}
}

// stepReader hands out the chunks it receives, then EOF when closed.
type stepReader struct{ ch chan string }

func (r stepReader) Read(p []byte) (int, error) {
	s, ok := <-r.ch
	if !ok {
		return 0, io.EOF
	}
	return copy(p, s), nil
}

// notifyWriter signals each write.
type notifyWriter struct {
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
	w.wrote <- struct{}{}
	return n, err
}

func (w *notifyWriter) String() string { return w.buf.String() }

func TestUntrustedInterleavedWithCommand(t *testing.T) {
	// A command written while a step's long line is unfinished: the line is
	// ended, commands resume for the annotation, and stop again with a new
	// token for the rest of the step's output.
	w := &notifyWriter{wrote: make(chan struct{}, 100)}
	l := NewLog(GitHub, w, &seq{})
	r := stepReader{ch: make(chan string)}
	done := make(chan error)
	go func() { done <- l.Untrusted(r) }()

	long := strings.Repeat("a", untrustedBuffer)
	r.ch <- long // fills the buffer: written as an unfinished line
	<-w.wrote    // the stop-commands line
	<-w.wrote    // the piece
	l.Error(Annotation{Message: "boom"})
	r.ch <- "::add-mask::x\n"
	close(r.ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tok := tokens(2)
	want := "::stop-commands::" + tok[0] + "\n" + long + "\n" +
		"::" + tok[0] + "::\n" + "::error::boom\n" +
		"::stop-commands::" + tok[1] + "\n" + "::add-mask::x\n" + "::" + tok[1] + "::\n"
	if w.String() != want {
		t.Errorf("output:\n%q\nwant\n%q", w.String(), want)
	}
}

func TestGroup(t *testing.T) {
	clock := func() time.Time { return time.Unix(1700000000, 0) }
	tests := []struct {
		p    Platform
		want string
	}{
		{GitHub, "::group::train: model %25 1%0A\n::group::train: model %25 1%0A\n::endgroup::\n::endgroup::\n"},
		{GitLab, "\x1b[0Ksection_start:1700000000:sluice_1_train__model___1_[collapsed=true]\r\x1b[0Ktrain: model % 1 \n" +
			"\x1b[0Ksection_start:1700000000:sluice_2_train__model___1_[collapsed=true]\r\x1b[0Ktrain: model % 1 \n" +
			"\x1b[0Ksection_end:1700000000:sluice_2_train__model___1_\r\x1b[0K\n" +
			"\x1b[0Ksection_end:1700000000:sluice_1_train__model___1_\r\x1b[0K\n"},
		{Local, "== train: model % 1  ==\n== train: model % 1  ==\n"},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			var out bytes.Buffer
			l := NewLog(tt.p, &out, &seq{})
			l.now = clock
			l.Group("train: model % 1\n")
			l.Group("train: model % 1\n")
			l.EndGroup()
			l.EndGroup()
			l.EndGroup() // nothing open: nothing on GitLab
			want := tt.want
			if tt.p == GitHub {
				want += "::endgroup::\n"
			}
			if out.String() != want {
				t.Errorf("output:\n%q\nwant\n%q", out.String(), want)
			}
			if err := l.Err(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestAnnotations(t *testing.T) {
	tests := []struct {
		name   string
		a      Annotation
		level  func(*Log, Annotation)
		github string
		gitlab string
	}{{
		name:   "message only",
		a:      Annotation{Message: "boom"},
		level:  (*Log).Error,
		github: "::error::boom\n",
		gitlab: "error: boom\n",
	}, {
		name:   "all properties",
		a:      Annotation{File: "valohai.yaml", Line: 3, EndLine: 4, Col: 5, EndColumn: 9, Title: "bad step", Message: "unknown key"},
		level:  (*Log).Warning,
		github: "::warning file=valohai.yaml,line=3,endLine=4,col=5,endColumn=9,title=bad step::unknown key\n",
		gitlab: "valohai.yaml:3:5: warning: bad step: unknown key\n",
	}, {
		name:   "data escaping",
		a:      Annotation{File: "f", Line: 1, Message: "100% done\r\nnext: a,b"},
		level:  (*Log).Notice,
		github: "::notice file=f,line=1::100%25 done%0D%0Anext: a,b\n",
		gitlab: "f:1: notice: 100% done\r\nnext: a,b\n",
	}, {
		name:   "property escaping",
		a:      Annotation{File: "dir,x/a:b.yaml", Title: "50%: a,b\nc\r", Message: "m"},
		level:  (*Log).Error,
		github: "::error file=dir%2Cx/a%3Ab.yaml,title=50%25%3A a%2Cb%0Ac%0D::m\n",
		gitlab: "dir,x/a:b.yaml: error: 50%: a,b\nc\r: m\n",
	}, {
		name:   "escape sequences are neutralised on GitLab",
		a:      Annotation{Message: "\x1b[0Ksection_end:1:x\r\x1b[0K"},
		level:  (*Log).Error,
		github: "::error::\x1b[0Ksection_end:1:x%0D\x1b[0K\n",
		gitlab: "error: ␛[0Ksection-end:1:x\r␛[0K\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for p, want := range map[Platform]string{GitHub: tt.github, GitLab: tt.gitlab} {
				var out bytes.Buffer
				tt.level(NewLog(p, &out, nil), tt.a)
				if out.String() != want {
					t.Errorf("%s: %q, want %q", p, out.String(), want)
				}
			}
		})
	}
}

func TestMask(t *testing.T) {
	var out bytes.Buffer
	l := NewLog(GitHub, &out, nil)
	l.Mask("")
	l.Mask("line1\r\nline2\n\n100%\n")
	if want := "::add-mask::line1\n::add-mask::line2\n::add-mask::100%25\n"; out.String() != want {
		t.Errorf("GitHub: %q, want %q", out.String(), want)
	}
	out.Reset()
	NewLog(GitLab, &out, nil).Mask("secret")
	if out.Len() != 0 {
		t.Errorf("GitLab: %q, want nothing", out.String())
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLogErr(t *testing.T) {
	l := NewLog(GitHub, brokenWriter{}, nil)
	l.Group("x")
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Err() = %v, want the write error", err)
	}
}
