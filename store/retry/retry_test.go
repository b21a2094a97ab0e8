package retry_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/auth"
	"google.golang.org/api/googleapi"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/retry"
	"github.com/sluice-ci/sluice/store/storetest"
)

func newFile(t *testing.T) store.Store {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fast makes retries immediate.
var fast = retry.WithBackoff(0, 0)

// reset is a transient network error, as a backend would wrap it.
func reset(op string) error {
	return fmt.Errorf("%s: %w", op, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
}

func unavailable() error {
	return &googleapi.Error{Code: http.StatusServiceUnavailable, Message: "backend unavailable"}
}

// TestConformance runs the store conformance suite through the decorator:
// around the file backend as it is (which keeps its Stager), and around one
// that fails every third call of Put, Open, Stat, List, Delete, Touch and
// DeleteIfOlder with a
// transient error before doing anything, breaks reads of objects of 4 KiB
// or more halfway, and breaks listings after their first item. (PutIf is not made to fail here: the
// race tests would then meet ErrUnknownOutcome, by design; see
// TestPutIfOutcome.)
func TestConformance(t *testing.T) {
	t.Run("File", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			s := retry.New(newFile(t), fast)
			if _, ok := s.(store.Stager); !ok {
				t.Fatal("retry.New(file store) is not a store.Stager")
			}
			return s
		})
	})
	t.Run("Flaky", func(t *testing.T) {
		var injected atomic.Int64
		storetest.Run(t, func(t *testing.T) store.Store {
			f := &flaky{Store: newFile(t), calls: map[string]int{}, injected: &injected}
			return retry.New(f, fast, retry.WithMaxAttempts(20))
		})
		if injected.Load() == 0 {
			t.Error("no failure was injected; the test is broken")
		}
		t.Logf("%d failures injected", injected.Load())
	})
}

// flaky fails every third call of each operation with a transient error
// before doing anything; of the successful Opens of objects of 4 KiB or
// more, every other one gives a reader that breaks halfway, and every other
// listing breaks after its first item.
type flaky struct {
	store.Store
	mu       sync.Mutex
	calls    map[string]int
	injected *atomic.Int64
}

// call counts a call of op and returns its number, from 1.
func (f *flaky) call(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	return f.calls[op]
}

func (f *flaky) fail(ctx context.Context, op string) bool {
	if f.call(op)%3 == 1 && ctx.Err() == nil {
		f.injected.Add(1)
		return true
	}
	return false
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader) (store.Info, error) {
	if f.fail(ctx, "put") {
		return store.Info{}, reset("put " + key)
	}
	return f.Store.Put(ctx, key, r)
}

func (f *flaky) Stat(ctx context.Context, key string) (store.Info, error) {
	if f.fail(ctx, "stat") {
		return store.Info{}, unavailable()
	}
	return f.Store.Stat(ctx, key)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if f.fail(ctx, "delete") {
		return reset("delete " + key)
	}
	return f.Store.Delete(ctx, key)
}

func (f *flaky) Touch(ctx context.Context, key string) (store.Info, error) {
	if f.fail(ctx, "touch") {
		return store.Info{}, reset("touch " + key)
	}
	return f.Store.(store.Toucher).Touch(ctx, key)
}

func (f *flaky) DeleteIfOlder(ctx context.Context, key string, t time.Time) error {
	if f.fail(ctx, "deleteifolder") {
		return reset("delete " + key)
	}
	return f.Store.(store.Toucher).DeleteIfOlder(ctx, key, t)
}

func (f *flaky) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	if f.fail(ctx, "open") {
		return nil, store.Info{}, unavailable()
	}
	rc, info, err := f.Store.Open(ctx, key)
	// Small objects (the refs of the race tests) are not broken: a read
	// that breaks while the object is replaced cannot resume, by design.
	if err != nil || info.Size < 4096 || f.call("read")%2 == 0 {
		return rc, info, err
	}
	return &breakingReader{ReadCloser: rc, ctx: ctx, at: info.Size / 2, injected: f.injected}, info, nil
}

func (f *flaky) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	if f.fail(ctx, "list") {
		return func(yield func(store.Info, error) bool) { yield(store.Info{}, unavailable()) }
	}
	breaks := f.call("listing")%2 == 1
	return func(yield func(store.Info, error) bool) {
		for info, err := range f.Store.List(ctx, prefix) {
			if !yield(info, err) || err != nil {
				return
			}
			if breaks {
				f.injected.Add(1)
				yield(store.Info{}, reset("list "+prefix))
				return
			}
		}
	}
}

// breakingReader fails once with io.ErrUnexpectedEOF when it has read at
// bytes, unless its context is done.
type breakingReader struct {
	io.ReadCloser
	ctx      context.Context
	at, n    int64
	broken   bool
	injected *atomic.Int64
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.broken {
		return 0, errors.New("read after a failure")
	}
	if b.ctx.Err() == nil && b.n >= b.at {
		b.broken = true
		b.injected.Add(1)
		return 0, fmt.Errorf("read: %w", io.ErrUnexpectedEOF)
	}
	if rest := b.at - b.n; rest > 0 && int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func TestIsTransient(t *testing.T) {
	cert := &url.Error{Op: "Get", URL: "https://storage.googleapis.com/b", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", &googleapi.Error{Code: 429}, true},
		{"500", &googleapi.Error{Code: 500}, true},
		{"503 wrapped", fmt.Errorf("put %q: %w", "k", &googleapi.Error{Code: 503}), true},
		{"408", &googleapi.Error{Code: 408}, true},
		{"410 upload session expired", &googleapi.Error{Code: 410}, true},
		{"400", &googleapi.Error{Code: 400}, false},
		{"401", &googleapi.Error{Code: 401}, false},
		{"403", fmt.Errorf("permission denied on bucket: %w", &googleapi.Error{Code: 403}), false},
		{"404 bucket", &googleapi.Error{Code: 404}, false},
		{"412", &googleapi.Error{Code: 412}, false},
		{"library gave up on 503", fmt.Errorf("retry failed after 3 attempts; last error: %w", &googleapi.Error{Code: 503}), true},
		{"connection reset", reset("put"), true},
		{"connection refused", &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"broken pipe", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{"EOF in a request", &url.Error{Op: "Post", URL: "http://x", Err: io.EOF}, true},
		{"unexpected EOF", fmt.Errorf("read %q: %w", "k", io.ErrUnexpectedEOF), true},
		{"HTTP client timeout", &url.Error{Op: "Get", URL: "http://x", Err: timeoutErr{}}, true},
		{"deadline inside the backend", fmt.Errorf("attempt: %w", context.DeadlineExceeded), true},
		{"canceled", fmt.Errorf("put: %w", context.Canceled), false},
		{"canceled in a request", &url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, false},
		{"not found", fmt.Errorf("stat: %w", fs.ErrNotExist), false},
		{"precondition", fmt.Errorf("put: %w: want generation 3", store.ErrPrecondition), false},
		{"invalid key", &store.KeyError{Key: "a//b", Reason: "empty segment"}, false},
		{"digest mismatch", fmt.Errorf("blob: %w", store.ErrDigestMismatch), false},
		{"unknown outcome", fmt.Errorf("put: %w", retry.ErrUnknownOutcome), false},
		{"disk full", &fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, false},
		{"no such host", &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}}, false},
		{"DNS timeout", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "timeout", IsTimeout: true}}, true},
		{"bad certificate", cert, false},
		{"token endpoint 503", &url.Error{Op: "Get", URL: "http://x", Err: &auth.Error{Response: &http.Response{StatusCode: 503}}}, true},
		{"token refused", &url.Error{Op: "Get", URL: "http://x", Err: &auth.Error{Response: &http.Response{StatusCode: 400}}}, false},
		{"plain error", errors.New("something"), false},
		{"marked permanent", retry.Permanent(&googleapi.Error{Code: 503}), false},
		{"marked transient", retry.Transient(errors.New("flaky")), true},
		{"joined, canceled first", errors.Join(context.Canceled, &googleapi.Error{Code: 503}), false},
		{"joined, 503 first", errors.Join(&googleapi.Error{Code: 503}, errors.New("x")), true},
	}
	for _, tt := range tests {
		if got := retry.IsTransient(tt.err); got != tt.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if !errors.Is(retry.Permanent(fs.ErrNotExist), fs.ErrNotExist) || retry.Permanent(nil) != nil || retry.Transient(nil) != nil {
		t.Error("Permanent and Transient must wrap their error, and keep nil nil")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// clock is a fake clock whose sleeps advance it.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newClock() *clock { return &clock{now: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *clock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

func (c *clock) option() retry.Option { return retry.WithClock(c.Now, c.Sleep) }

// hooks is a store whose operations can be replaced one by one.
type hooks struct {
	store.Store
	put    func(ctx context.Context, n int, key string, r io.Reader) (store.Info, error)
	putIf  func(ctx context.Context, n int, key string, r io.Reader, gen int64) (store.Info, error)
	stat   func(ctx context.Context, n int, key string) (store.Info, error)
	open   func(ctx context.Context, n int, key string) (io.ReadCloser, store.Info, error)
	list   func(ctx context.Context, n int, prefix string) iter.Seq2[store.Info, error]
	calls  map[string]int
	callMu sync.Mutex
}

func (h *hooks) count(op string) int {
	h.callMu.Lock()
	defer h.callMu.Unlock()
	if h.calls == nil {
		h.calls = map[string]int{}
	}
	h.calls[op]++
	return h.calls[op]
}

func (h *hooks) Calls(op string) int {
	h.callMu.Lock()
	defer h.callMu.Unlock()
	return h.calls[op]
}

func (h *hooks) Put(ctx context.Context, key string, r io.Reader) (store.Info, error) {
	n := h.count("put")
	if h.put != nil {
		return h.put(ctx, n, key, r)
	}
	return h.Store.Put(ctx, key, r)
}

func (h *hooks) PutIf(ctx context.Context, key string, r io.Reader, gen int64) (store.Info, error) {
	n := h.count("putif")
	if h.putIf != nil {
		return h.putIf(ctx, n, key, r, gen)
	}
	return h.Store.PutIf(ctx, key, r, gen)
}

func (h *hooks) Stat(ctx context.Context, key string) (store.Info, error) {
	n := h.count("stat")
	if h.stat != nil {
		return h.stat(ctx, n, key)
	}
	return h.Store.Stat(ctx, key)
}

func (h *hooks) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	n := h.count("open")
	if h.open != nil {
		return h.open(ctx, n, key)
	}
	return h.Store.Open(ctx, key)
}

func (h *hooks) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	n := h.count("list")
	if h.list != nil {
		return h.list(ctx, n, prefix)
	}
	return h.Store.List(ctx, prefix)
}

// TestBackoff checks the delays (exponential, capped, jittered between half
// and all of the step) and both bounds: attempts and elapsed time.
func TestBackoff(t *testing.T) {
	always := func(ctx context.Context, n int, key string) (store.Info, error) {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, unavailable())
	}
	ms := time.Millisecond
	for _, tt := range []struct {
		name     string
		opts     []retry.Option
		sleeps   []time.Duration
		attempts int
	}{
		{"AttemptsNoJitter", []retry.Option{retry.WithMaxAttempts(6), retry.WithJitter(func() float64 { return 0 })},
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms}, 6},
		{"AttemptsFullJitter", []retry.Option{retry.WithMaxAttempts(4), retry.WithJitter(func() float64 { return 1 })},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms}, 4},
		// 50+100+200+400 = 750ms; the next delay (500ms) would end after 1s.
		{"Elapsed", []retry.Option{retry.WithMaxAttempts(100), retry.WithMaxElapsed(time.Second), retry.WithJitter(func() float64 { return 0 })},
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms}, 5},
		{"NoRetries", []retry.Option{retry.WithMaxAttempts(1)}, nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			h := &hooks{Store: newFile(t), stat: always}
			var notified []retry.Failure
			opts := append([]retry.Option{c.option(), retry.WithBackoff(100*ms, time.Second),
				retry.WithNotify(func(f retry.Failure) { notified = append(notified, f) })}, tt.opts...)
			s := retry.New(h, opts...)
			_, err := s.Stat(t.Context(), "k")
			var ge *googleapi.Error
			if !errors.As(err, &ge) || ge.Code != 503 {
				t.Fatalf("Stat error %v, want the 503", err)
			}
			if want := fmt.Sprintf("gave up after %d attempt", tt.attempts); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if n := h.Calls("stat"); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			if got := c.Sleeps(); !slices.Equal(got, tt.sleeps) {
				t.Errorf("sleeps %v, want %v", got, tt.sleeps)
			}
			for i, f := range notified {
				if f.Op != "stat" || f.Key != "k" || f.Attempt != i+1 || f.Wait != tt.sleeps[i] || !errors.As(f.Err, &ge) {
					t.Errorf("notification %d: %+v", i, f)
				}
			}
		})
	}
}

// TestPermanent checks that permanent errors are returned at once and
// unchanged, and that a done context stops retries.
func TestPermanent(t *testing.T) {
	ctx := t.Context()
	for _, perm := range []error{
		fmt.Errorf("permission denied on bucket %q: %w", "b", &googleapi.Error{Code: http.StatusForbidden}),
		fmt.Errorf("credentials refused: %w", &googleapi.Error{Code: http.StatusUnauthorized}),
		fmt.Errorf("bucket %q does not exist: %w", "b", &googleapi.Error{Code: http.StatusNotFound}),
		fmt.Errorf("stat: %w", fs.ErrNotExist),
		fmt.Errorf("put: %w", store.ErrPrecondition),
		&store.KeyError{Key: "a\nb", Reason: "control character"},
	} {
		c := newClock()
		h := &hooks{Store: newFile(t),
			stat: func(context.Context, int, string) (store.Info, error) { return store.Info{}, perm },
			putIf: func(context.Context, int, string, io.Reader, int64) (store.Info, error) {
				return store.Info{}, perm
			},
			open: func(context.Context, int, string) (io.ReadCloser, store.Info, error) { return nil, store.Info{}, perm },
			list: func(context.Context, int, string) iter.Seq2[store.Info, error] {
				return func(yield func(store.Info, error) bool) { yield(store.Info{}, perm) }
			},
		}
		s := retry.New(h, c.option())
		if _, err := s.Stat(ctx, "k"); err != perm {
			t.Errorf("Stat error %v, want %v unchanged", err, perm)
		}
		if _, err := s.PutIf(ctx, "k", strings.NewReader("x"), 3); err != perm {
			t.Errorf("PutIf error %v, want %v unchanged", err, perm)
		}
		if _, _, err := s.Open(ctx, "k"); err != perm {
			t.Errorf("Open error %v, want %v unchanged", err, perm)
		}
		for _, err := range s.List(ctx, "") {
			if err != perm {
				t.Errorf("List error %v, want %v unchanged", err, perm)
			}
		}
		for _, op := range []string{"stat", "putif", "open", "list"} {
			if n := h.Calls(op); n != 1 {
				t.Errorf("%v: %s made %d attempts, want 1", perm, op, n)
			}
		}
		if len(c.Sleeps()) != 0 {
			t.Errorf("%v: slept %v", perm, c.Sleeps())
		}
	}

	t.Run("ContextDone", func(t *testing.T) {
		// The backend fails with a transient error because ctx is done.
		ctx, cancel := context.WithCancel(t.Context())
		h := &hooks{Store: newFile(t), stat: func(context.Context, int, string) (store.Info, error) {
			cancel()
			return store.Info{}, unavailable()
		}}
		c := newClock()
		if _, err := retry.New(h, c.option()).Stat(ctx, "k"); err == nil || h.Calls("stat") != 1 || len(c.Sleeps()) != 0 {
			t.Errorf("Stat after cancel: %v, %d attempts, sleeps %v; want one attempt", err, h.Calls("stat"), c.Sleeps())
		}
	})

	t.Run("CanceledWhileWaiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		h := &hooks{Store: newFile(t), stat: func(context.Context, int, string) (store.Info, error) { return store.Info{}, unavailable() }}
		s := retry.New(h, retry.WithBackoff(time.Hour, time.Hour), retry.WithMaxElapsed(24*time.Hour), retry.WithNotify(func(retry.Failure) { cancel() }))
		_, err := s.Stat(ctx, "k")
		var ge *googleapi.Error
		if !errors.Is(err, context.Canceled) || !errors.As(err, &ge) {
			t.Errorf("Stat cancelled while waiting: %v, want context.Canceled and the last error", err)
		}
	})
}

// failAfterReading is a Put or PutIf that reads up to limit bytes of the
// content (all of it if limit < 0), records them, and fails with a transient
// error on the first fails calls.
type failAfterReading struct {
	fails int
	limit int
	got   [][]byte
}

func (f *failAfterReading) put(n int, r io.Reader) (store.Info, error) {
	var b []byte
	var err error
	if f.limit < 0 {
		b, err = io.ReadAll(r)
	} else {
		b, err = io.ReadAll(io.LimitReader(r, int64(f.limit)))
	}
	if err != nil {
		return store.Info{}, fmt.Errorf("put: %w", err)
	}
	f.got = append(f.got, b)
	if n <= f.fails {
		return store.Info{}, reset("put")
	}
	return store.Info{Key: "k", Size: int64(len(b)), Generation: int64(n)}, nil
}

// onlyReader hides every method but Read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPutReplay(t *testing.T) {
	ctx := t.Context()
	content := strings.Repeat("0123456789", 100) // 1000 bytes
	run := func(t *testing.T, f *failAfterReading, body io.Reader, opts ...retry.Option) (store.Info, error, *hooks) {
		h := &hooks{Store: newFile(t), put: func(_ context.Context, n int, _ string, r io.Reader) (store.Info, error) { return f.put(n, r) }}
		info, err := retry.New(h, append([]retry.Option{fast}, opts...)...).Put(ctx, "k", body)
		return info, err, h
	}
	t.Run("Seeker", func(t *testing.T) {
		f := &failAfterReading{fails: 2, limit: -1}
		r := strings.NewReader(content)
		if _, err := r.Seek(3, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err, _ := run(t, f, r, retry.WithBufferSize(0)); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != 3 {
			t.Fatalf("%d attempts, want 3", len(f.got))
		}
		for i, b := range f.got {
			if string(b) != content[3:] {
				t.Errorf("attempt %d sent %d bytes, want the content from offset 3", i+1, len(b))
			}
		}
	})
	t.Run("Buffered", func(t *testing.T) {
		f := &failAfterReading{fails: 2, limit: -1}
		if _, err, _ := run(t, f, onlyReader{strings.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != 3 || string(f.got[0]) != content || string(f.got[1]) != content || string(f.got[2]) != content {
			t.Errorf("attempts sent %d times, want the whole content 3 times", len(f.got))
		}
	})
	t.Run("PartlyRead", func(t *testing.T) {
		// The first attempt reads 100 bytes (kept), the second all of it.
		f := &failAfterReading{fails: 1, limit: 100}
		h := &hooks{Store: newFile(t), put: func(_ context.Context, n int, _ string, r io.Reader) (store.Info, error) {
			if n == 2 {
				f.limit = -1
			}
			return f.put(n, r)
		}}
		if _, err := retry.New(h, fast, retry.WithBufferSize(200)).Put(ctx, "k", onlyReader{strings.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != 2 || string(f.got[0]) != content[:100] || string(f.got[1]) != content {
			t.Errorf("attempts sent %d, %d bytes; want 100, then all 1000", len(f.got[0]), len(f.got[len(f.got)-1]))
		}
	})
	t.Run("TooLargeToReplay", func(t *testing.T) {
		f := &failAfterReading{fails: 1, limit: -1}
		_, err, _ := run(t, f, onlyReader{strings.NewReader(content)}, retry.WithBufferSize(999))
		if err == nil || !strings.Contains(err.Error(), "not retried") || !errors.Is(err, syscall.ECONNRESET) || len(f.got) != 1 {
			t.Errorf("Put of a body larger than the buffer: %v after %d attempts; want one attempt, and the error saying why", err, len(f.got))
		}
	})
	t.Run("NothingRead", func(t *testing.T) {
		f := &failAfterReading{fails: 2, limit: 0}
		h := &hooks{Store: newFile(t), put: func(_ context.Context, n int, _ string, r io.Reader) (store.Info, error) {
			if n == 3 {
				f.limit = -1
			}
			return f.put(n, r)
		}}
		if _, err := retry.New(h, fast, retry.WithBufferSize(0)).Put(ctx, "k", onlyReader{strings.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != 3 || string(f.got[2]) != content {
			t.Errorf("%d attempts; want 3, the last with the whole content", len(f.got))
		}
	})
	t.Run("ReaderFails", func(t *testing.T) {
		// The caller's reader fails with an error that looks transient: it
		// is the caller's, so it is returned, not retried.
		readerErr := fmt.Errorf("download input: %w", io.ErrUnexpectedEOF)
		h := &hooks{Store: newFile(t)}
		_, err := retry.New(h, fast).Put(ctx, "k", io.MultiReader(strings.NewReader("abc"), &errReader{readerErr}))
		if !errors.Is(err, readerErr) || h.Calls("put") != 1 {
			t.Errorf("Put with a failing reader: %v after %d attempts; want the reader's error after one", err, h.Calls("put"))
		}
		if _, err := h.Stat(ctx, "k"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat after the failed Put: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("Real", func(t *testing.T) {
		// Through the file backend: the content stored is the whole of it.
		var n atomic.Int32
		h := &hooks{Store: newFile(t)}
		h.put = func(ctx context.Context, _ int, key string, r io.Reader) (store.Info, error) {
			if n.Add(1) <= 2 {
				_, _ = io.CopyN(io.Discard, r, 10)
				return store.Info{}, unavailable()
			}
			return h.Store.Put(ctx, key, r)
		}
		s := retry.New(h, fast)
		if _, err := s.Put(ctx, "k", onlyReader{strings.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		rc, _, err := s.Open(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, err := io.ReadAll(rc); err != nil || string(b) != content {
			t.Errorf("stored %d bytes, %v; want the content", len(b), err)
		}
	})
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestPutIfOutcome checks the retries of conditional writes.
func TestPutIfOutcome(t *testing.T) {
	ctx := t.Context()
	t.Run("FailedBeforeWriting", func(t *testing.T) {
		h := &hooks{Store: newFile(t)}
		h.putIf = func(ctx context.Context, n int, key string, r io.Reader, gen int64) (store.Info, error) {
			if n == 1 {
				return store.Info{}, unavailable()
			}
			return h.Store.PutIf(ctx, key, r, gen)
		}
		info, err := retry.New(h, fast).PutIf(ctx, "ref", strings.NewReader("v1"), store.Absent)
		if err != nil || h.Calls("putif") != 2 {
			t.Fatalf("PutIf: %v after %d attempts, want success after 2", err, h.Calls("putif"))
		}
		if got, err := h.Stat(ctx, "ref"); err != nil || got.Generation != info.Generation {
			t.Errorf("Stat = %+v, %v; PutIf returned %+v", got, err, info)
		}
	})
	t.Run("ResponseLost", func(t *testing.T) {
		// The first attempt writes, but its answer is lost: the retry's
		// precondition fails on the caller's own write. That is not
		// ErrPrecondition (Update would apply its change twice) but
		// ErrUnknownOutcome.
		h := &hooks{Store: newFile(t)}
		h.putIf = func(ctx context.Context, n int, key string, r io.Reader, gen int64) (store.Info, error) {
			info, err := h.Store.PutIf(ctx, key, r, gen)
			if n == 1 && err == nil {
				return store.Info{}, fmt.Errorf("put %q: %w", key, unavailable())
			}
			return info, err
		}
		_, err := retry.New(h, fast).PutIf(ctx, "ref", strings.NewReader("mine"), store.Absent)
		if !errors.Is(err, retry.ErrUnknownOutcome) || errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("PutIf whose first answer was lost: %v; want ErrUnknownOutcome, not ErrPrecondition", err)
		}
		for _, want := range []string{`"ref"`, "precondition failed", "backend unavailable", "read it to find out"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		rc, _, err := h.Open(ctx, "ref")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, _ := io.ReadAll(rc); string(b) != "mine" {
			t.Errorf("ref holds %q, want %q", b, "mine")
		}
	})
	t.Run("PreconditionAtOnce", func(t *testing.T) {
		h := &hooks{Store: newFile(t)}
		s := retry.New(h, fast)
		if _, err := s.Put(ctx, "ref", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		_, err := s.PutIf(ctx, "ref", strings.NewReader("y"), store.Absent)
		if !errors.Is(err, store.ErrPrecondition) || errors.Is(err, retry.ErrUnknownOutcome) || h.Calls("putif") != 1 {
			t.Errorf("PutIf over an object: %v after %d attempts; want ErrPrecondition after one", err, h.Calls("putif"))
		}
	})
	t.Run("Update", func(t *testing.T) {
		// Update through the decorator, every first PutIf failing before it
		// writes: each Update increments once.
		h := &hooks{Store: newFile(t)}
		h.putIf = func(ctx context.Context, n int, key string, r io.Reader, gen int64) (store.Info, error) {
			if n%2 == 1 {
				return store.Info{}, reset("put")
			}
			return h.Store.PutIf(ctx, key, r, gen)
		}
		s := retry.New(h, fast)
		for range 5 {
			if _, err := store.Update(ctx, s, "counter", func(old []byte, _ bool) ([]byte, error) {
				return append(old, '+'), nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		rc, _, err := s.Open(ctx, "counter")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, _ := io.ReadAll(rc); string(b) != "+++++" {
			t.Errorf("counter %q after 5 updates", b)
		}
	})
	t.Run("Publish", func(t *testing.T) {
		// Staged.Publish follows the same rule.
		var lost atomic.Bool
		lost.Store(true)
		s := retry.New(&losingStager{Store: newFile(t), lost: &lost}, fast).(store.Stager)
		sd, err := s.Stage(ctx, strings.NewReader("staged"))
		if err != nil {
			t.Fatal(err)
		}
		defer sd.Discard()
		if _, err := sd.Publish(ctx, "k", store.Absent); !errors.Is(err, retry.ErrUnknownOutcome) {
			t.Errorf("Publish whose first answer was lost: %v, want ErrUnknownOutcome", err)
		}
	})
}

// losingStager is a file store whose first Publish is applied (the staged
// content is written under the key) but answered with a 503.
type losingStager struct {
	store.Store
	lost *atomic.Bool
}

func (l *losingStager) Stage(ctx context.Context, r io.Reader) (store.Staged, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	sd, err := l.Store.(store.Stager).Stage(ctx, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return &losingStaged{Staged: sd, s: l.Store, content: b, lost: l.lost}, nil
}

type losingStaged struct {
	store.Staged
	s       store.Store
	content []byte
	lost    *atomic.Bool
}

func (l *losingStaged) Publish(ctx context.Context, key string, gen int64) (store.Info, error) {
	if l.lost.Swap(false) {
		if _, err := l.s.PutIf(ctx, key, bytes.NewReader(l.content), gen); err != nil {
			return store.Info{}, err
		}
		return store.Info{}, unavailable()
	}
	return l.Staged.Publish(ctx, key, gen)
}

func TestListResume(t *testing.T) {
	ctx := t.Context()
	base := newFile(t)
	var want []string
	for i := range 6 {
		k := "runs/r" + strconv.Itoa(i)
		want = append(want, k)
		if _, err := base.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Listing n breaks after n items with a transient error; the fourth
	// and later ones complete.
	breaking := func(ctx context.Context, n int, prefix string) iter.Seq2[store.Info, error] {
		return func(yield func(store.Info, error) bool) {
			i := 0
			for info, err := range base.List(ctx, prefix) {
				if n < 4 && i == n {
					yield(store.Info{}, reset("list"))
					return
				}
				if !yield(info, err) {
					return
				}
				i++
			}
		}
	}
	h := &hooks{Store: base, list: breaking}
	var got []string
	for info, err := range retry.New(h, fast).List(ctx, "runs/") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	if !slices.Equal(got, want) || h.Calls("list") != 4 {
		t.Errorf("List = %q after %d listings, want %q after 4", got, h.Calls("list"), want)
	}

	// The consumer stops: no more listings.
	h = &hooks{Store: base, list: breaking}
	for info, err := range retry.New(h, fast).List(ctx, "runs/") {
		if err != nil || info.Key != want[0] {
			t.Fatalf("List: %+v, %v", info, err)
		}
		break
	}
	if n := h.Calls("list"); n != 1 {
		t.Errorf("%d listings after the consumer stopped at the first item, want 1", n)
	}

	// A permanent error after two items ends the listing with it.
	perm := fmt.Errorf("list: %w", &googleapi.Error{Code: 403})
	h = &hooks{Store: base, list: func(ctx context.Context, n int, prefix string) iter.Seq2[store.Info, error] {
		return func(yield func(store.Info, error) bool) {
			i := 0
			for info, err := range base.List(ctx, prefix) {
				if i == 2 {
					yield(store.Info{}, perm)
					return
				}
				if !yield(info, err) {
					return
				}
				i++
			}
		}
	}}
	got = nil
	var errs []error
	for info, err := range retry.New(h, fast).List(ctx, "runs/") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, info.Key)
	}
	if !slices.Equal(got, want[:2]) || len(errs) != 1 || errs[0] != perm || h.Calls("list") != 1 {
		t.Errorf("List with a permanent error: %q, %v, %d listings", got, errs, h.Calls("list"))
	}
}

func TestOpenResume(t *testing.T) {
	ctx := t.Context()
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	setup := func(t *testing.T) (*hooks, store.Info) {
		h := &hooks{Store: newFile(t)}
		info, err := h.Store.Put(ctx, "obj", bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return h, info
	}
	// breakAt makes opens 1 and 2 give readers that break after at bytes of
	// the stream (the first one fails to open at all if failOpen).
	breakAt := func(h *hooks, at int64, failOpen bool, readErr error) {
		h.open = func(ctx context.Context, n int, key string) (io.ReadCloser, store.Info, error) {
			if failOpen && n == 1 {
				return nil, store.Info{}, unavailable()
			}
			rc, info, err := h.Store.Open(ctx, key)
			if err != nil || n > 3 {
				return rc, info, err
			}
			return &failAt{ReadCloser: rc, at: at * int64(n), err: readErr}, info, nil
		}
	}
	t.Run("Resumes", func(t *testing.T) {
		h, _ := setup(t)
		breakAt(h, 10000, true, fmt.Errorf("read: %w", io.ErrUnexpectedEOF))
		rc, _, err := retry.New(h, fast).Open(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read %d bytes, %v; want the %d bytes of content", len(got), err, len(content))
		}
		if n := h.Calls("open"); n != 4 {
			t.Errorf("%d opens, want 4 (one fails, a reader breaks, a reopen breaks, the next completes)", n)
		}
	})
	t.Run("Replaced", func(t *testing.T) {
		h, _ := setup(t)
		breakAt(h, 10000, false, reset("read"))
		rc, _, err := retry.New(h, fast).Open(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := h.Store.Put(ctx, "obj", strings.NewReader("new")); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		if err == nil || !strings.Contains(err.Error(), "object was replaced") || !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read of a replaced object: %v, want it to say so", err)
		}
	})
	t.Run("PermanentReadError", func(t *testing.T) {
		h, _ := setup(t)
		perm := errors.New("read: corrupt")
		breakAt(h, 10000, false, perm)
		rc, _, err := retry.New(h, fast).Open(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != perm || len(got) != 10000 || h.Calls("open") != 1 {
			t.Errorf("read: %d bytes, %v, %d opens; want 10000 bytes, then the error unchanged, one open", len(got), err, h.Calls("open"))
		}
	})
	t.Run("Blob", func(t *testing.T) {
		// OpenBlob through the decorator verifies the resumed content.
		h := &hooks{Store: newFile(t)}
		d, _, err := store.PutBlob(ctx, h.Store, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		breakAt(h, 5000, true, reset("read"))
		rc, _, err := store.OpenBlob(ctx, retry.New(h, fast), d)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if n, err := io.Copy(io.Discard, rc); err != nil || n != int64(len(content)) {
			t.Errorf("blob read: %d bytes, %v", n, err)
		}
	})
}

// failAt fails with err once at bytes have been read.
type failAt struct {
	io.ReadCloser
	at, n int64
	err   error
}

func (f *failAt) Read(p []byte) (int, error) {
	if f.n >= f.at {
		return 0, f.err
	}
	if rest := f.at - f.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := f.ReadCloser.Read(p)
	f.n += int64(n)
	return n, err
}

// TestStager checks that the decorator is a Stager exactly when the
// backend is.
func TestStager(t *testing.T) {
	if _, ok := retry.New(newFile(t)).(store.Stager); !ok {
		t.Error("retry.New(file store) is not a store.Stager")
	}
	if _, ok := retry.New(&hooks{Store: newFile(t)}).(store.Stager); ok {
		t.Error("retry.New(a store without Stage) is a store.Stager")
	}
	s := retry.New(newFile(t))
	if u, ok := s.(interface{ Unwrap() store.Store }); !ok || u.Unwrap() == nil {
		t.Error("no Unwrap")
	}
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	h := &hooks{Store: newFile(t), stat: func(_ context.Context, n int, key string) (store.Info, error) {
		if n == 1 {
			return store.Info{}, fmt.Errorf("stat %q: %w", key, unavailable())
		}
		return store.Info{Key: key, Generation: 1}, nil
	}}
	s := retry.New(h, fast, retry.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if _, err := s.Stat(t.Context(), "runs/r1/run.json"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level=WARN", "store: retrying", "op=stat", "key=runs/r1/run.json", "attempt=1", "backend unavailable"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q does not say %q", buf.String(), want)
		}
	}
}
