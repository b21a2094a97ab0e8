// Package retry is a store.Store decorator that retries failed operations
// with exponential backoff and jitter, around any backend:
//
//	s, err := gcs.New(ctx, "gs://bucket/ci")
//	...
//	st := retry.New(s) // a store.Store
//
// It retries transient failures (HTTP 408, 410, 429 and 5xx, connection
// resets and refusals, unexpected EOF, timeouts) and gives up at once on
// permanent ones (HTTP 401, 403, 404 and the other 4xx, invalid keys,
// store.ErrPrecondition, fs.ErrNotExist, cancellation), which it returns
// unchanged. IsTransient lists the rules. A retried operation is bounded by a
// number of attempts and by the time since it began (WithMaxAttempts,
// WithMaxElapsed); when it gives up, its error wraps the last attempt's
// error, and says how many attempts were made.
//
// # What is retried, and how it is made safe
//
// The store contract says which operations may be repeated (see
// store.Store); the decorator follows it.
//
//   - Stat and Delete are retried as they are. A retried Delete whose first
//     attempt removed the object reports fs.ErrNotExist, as the contract
//     allows.
//   - Open is retried until the object is open. A read that then fails with
//     a transient error reopens the object, checks that it is still the
//     generation first opened, skips the bytes already read and goes on; if
//     the object was replaced meanwhile, the read fails (the content would
//     no longer be one version). The store interface has no ranged read, so
//     the bytes already read are downloaded again and discarded: this is a
//     fallback. The gcs backend's client resumes broken downloads itself,
//     with a ranged read of the same generation.
//   - List is retried from the start, and the items already yielded (keys up
//     to the last one yielded, since keys come in increasing order) are
//     skipped: nothing is yielded twice, nothing is lost.
//   - Put is retried only if the content can be sent again: if the reader is
//     an io.Seeker (a file, a bytes.Reader), it is rewound to where it was
//     when Put was called; otherwise what Put reads is kept in memory, up to
//     the buffer size (WithBufferSize, 1 MiB by default), and replayed. A
//     larger body from a reader that cannot seek is not retried once more
//     than the buffer has been read; the error says so. (An io.ReaderAt
//     alone does not say where the content begins, so it is not used.) An
//     error from the caller's reader is never retried: Put returns it.
//   - PutIf is not retried blindly. A conditional write whose attempt failed
//     with a transient error may have taken effect all the same (the
//     response was lost); if it did, a retry is refused with a precondition
//     failure, which would tell the caller that someone else won although
//     the object holds the caller's content, and a compare-and-swap loop
//     such as store.Update would apply its change twice. So PutIf is retried
//     (with a rewound body, as Put), and a retry that succeeds is reported as
//     success (its condition held, so the earlier attempt did not write; if
//     that one lands later, its condition fails), but a precondition failure
//     after an attempt whose outcome is unknown is reported as
//     ErrUnknownOutcome, which does not wrap store.ErrPrecondition: the
//     caller must read the object to learn what happened. A precondition
//     failure on the first attempt is returned unchanged. The gcs backend
//     resolves most of these cases itself: its client retries conditional
//     uploads and recognises its own write by a write id it stores in the
//     object's metadata, but a new PutIf call makes a new write id, so this
//     decorator cannot lean on it.
//   - Stager: if the wrapped store is a store.Stager, so is the decorator.
//     Stage is retried as Put, Staged.Publish as PutIf.
//   - Toucher: the decorator always implements store.Toucher. If the wrapped
//     store is one, Touch is retried as Stat (it can be repeated) and
//     DeleteIfOlder as Delete (a retry whose first attempt deleted reports
//     fs.ErrNotExist); if not, both return an error wrapping
//     errors.ErrUnsupported.
//   - Anything else the wrapped store can do (a gcs store's SignedURL, for
//     example) is reached with store.As, through Unwrap.
//
// The waiting between attempts is internal/backoff's, which the report
// clients use too.
//
// A stalled request is bounded by the backend's timeouts (for GCS, the HTTP
// client's); the timeout error it produces is transient.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sluice-ci/sluice/internal/backoff"
	"github.com/sluice-ci/sluice/store"
)

// Defaults of the options.
const (
	DefaultMaxAttempts  = 8
	DefaultMaxElapsed   = 2 * time.Minute
	DefaultInitialDelay = 250 * time.Millisecond
	DefaultMaxDelay     = 15 * time.Second
	DefaultBufferSize   = 1 << 20
)

// ErrUnknownOutcome is wrapped by the error of a PutIf (or Staged.Publish)
// whose condition failed after an earlier attempt had failed in a way that
// leaves open whether it wrote: the object may hold the caller's content.
// It does not wrap store.ErrPrecondition; the caller must read the object
// and decide.
var ErrUnknownOutcome = errors.New("outcome of conditional write unknown")

// Failure describes a failed attempt that is about to be retried.
type Failure struct {
	Op      string        // "put", "putif", "open", "read", "stat", "list", "delete", "stage", "publish", "touch"
	Key     string        // the key, or the prefix of a List
	Attempt int           // the attempts that have failed in a row, from 1
	Err     error         // the attempt's error
	Wait    time.Duration // the delay before the next attempt
}

// Option configures New.
type Option func(*config)

type config struct {
	maxAttempts  int
	maxElapsed   time.Duration
	initialDelay time.Duration
	maxDelay     time.Duration
	bufferSize   int
	now          func() time.Time
	sleep        func(context.Context, time.Duration) error
	jitter       func() float64
	log          *slog.Logger
	notify       func(Failure)
}

// WithMaxAttempts bounds the attempts of one operation, the first included
// (DefaultMaxAttempts; 1 disables retries). For a read or a List, the count
// starts again after progress: a byte read, an item yielded.
func WithMaxAttempts(n int) Option {
	return func(c *config) { c.maxAttempts = max(n, 1) }
}

// WithMaxElapsed bounds the time an operation may spend retrying, from its
// start (for a read or a List, from its last progress): no attempt is
// begun whose delay would end after it (DefaultMaxElapsed; 0 or less: no
// bound but the attempts).
func WithMaxElapsed(d time.Duration) Option {
	return func(c *config) { c.maxElapsed = d }
}

// WithBackoff sets the delay before the first retry, which doubles for each
// further one up to maxDelay (DefaultInitialDelay, DefaultMaxDelay). Each
// delay is jittered: it is drawn between half of it and all of it.
func WithBackoff(initial, maxDelay time.Duration) Option {
	return func(c *config) { c.initialDelay, c.maxDelay = max(initial, 0), max(maxDelay, initial, 0) }
}

// WithBufferSize sets how much of a Put's content is kept in memory to be
// sent again when the reader cannot seek (DefaultBufferSize). Each such Put
// in progress holds up to this much.
func WithBufferSize(n int) Option {
	return func(c *config) { c.bufferSize = max(n, 0) }
}

// WithClock replaces the clock and the wait between attempts (tests): sleep
// must return early with ctx.Err() once ctx is done.
func WithClock(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *config) { c.now, c.sleep = now, sleep }
}

// WithJitter replaces the source of jitter, a function returning numbers in
// [0, 1) (tests: a constant).
func WithJitter(f func() float64) Option {
	return func(c *config) { c.jitter = f }
}

// WithLogger logs each retry at level Warn (no logging by default).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// WithNotify calls fn before each wait for a retry, on the goroutine of the
// operation.
func WithNotify(fn func(Failure)) Option {
	return func(c *config) { c.notify = fn }
}

// New returns s with retries. The result is safe for concurrent use if s is.
// If s implements store.Stager, so does the result.
func New(s store.Store, opts ...Option) store.Store {
	c := config{
		maxAttempts:  DefaultMaxAttempts,
		maxElapsed:   DefaultMaxElapsed,
		initialDelay: DefaultInitialDelay,
		maxDelay:     DefaultMaxDelay,
		bufferSize:   DefaultBufferSize,
		now:          time.Now,
		sleep:        backoff.Sleep,
		jitter:       rand.Float64,
	}
	for _, opt := range opts {
		opt(&c)
	}
	r := &retrier{inner: s, config: c}
	if st, ok := s.(store.Stager); ok {
		return &stagingRetrier{retrier: r, stager: st}
	}
	return r
}

var (
	_ store.Store   = (*retrier)(nil)
	_ store.Toucher = (*retrier)(nil)
	_ store.Wrapper = (*retrier)(nil)
	_ store.Stager  = (*stagingRetrier)(nil)
)

// retrier is the decorator.
type retrier struct {
	inner store.Store
	config
}

// stagingRetrier is the decorator of a store.Stager.
type stagingRetrier struct {
	*retrier
	stager store.Stager
}

// Unwrap returns the wrapped store: store.As reaches through it the
// capabilities that the decorator does not have itself (a gcs store's
// SignedURL, Bucket and Close; a file store's Dir).
func (r *retrier) Unwrap() store.Store { return r.inner }

// String returns the wrapped store's String, if it has one.
func (r *retrier) String() string {
	if s, ok := r.inner.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", r.inner)
}

// policy is the backoff of one operation.
func (r *retrier) policy() backoff.Policy {
	return backoff.Policy{Initial: r.initialDelay, Max: r.maxDelay, Jitter: r.jitter,
		MaxAttempts: r.maxAttempts, MaxElapsed: r.maxElapsed, Now: r.now, Sleep: r.sleep}
}

// final returns nil if err, from an attempt under ctx, is worth retrying,
// and otherwise the error to return: err itself if it is permanent, or, if
// ctx is done, an error that wraps ctx.Err() (as the store contract wants)
// and err.
func final(ctx context.Context, err error) error {
	if !IsTransient(err) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(err, cerr) {
			return err
		}
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return nil
}

// verdictOn is final as a backoff verdict.
func verdictOn(ctx context.Context) func(error) backoff.Verdict {
	return func(err error) backoff.Verdict {
		if ferr := final(ctx, err); ferr != nil {
			return backoff.Stop(ferr)
		}
		return backoff.Retry()
	}
}

// attempts counts the failures of one operation in a row, and waits
// between them.
type attempts struct {
	r       *retrier
	op, key string
	b       *backoff.Attempts
}

func (r *retrier) attempts(op, key string) *attempts {
	return &attempts{r: r, op: op, key: key, b: r.policy().Start()}
}

// progress starts the count again.
func (a *attempts) progress() { a.b.Reset() }

// wait is called after an attempt failed with the transient error err. It
// waits and returns nil if another attempt may be made, otherwise the error
// to return: err with how often it was tried, or the context's error.
func (a *attempts) wait(ctx context.Context, err error) error {
	d, xerr := a.b.Next(err, 0)
	if xerr != nil {
		return xerr
	}
	a.notify(ctx, err, d)
	return a.b.Sleep(ctx, d, err)
}

// notify tells WithNotify and WithLogger of a retry.
func (a *attempts) notify(ctx context.Context, err error, d time.Duration) {
	n := a.b.Failures()
	if a.r.notify != nil {
		a.r.notify(Failure{Op: a.op, Key: a.key, Attempt: n, Err: err, Wait: d})
	}
	if a.r.log != nil {
		a.r.log.LogAttrs(ctx, slog.LevelWarn, "store: retrying", slog.String("op", a.op), slog.String("key", a.key),
			slog.Int("attempt", n), slog.Duration("wait", d), slog.String("error", err.Error()))
	}
}

// do runs an operation that can be repeated as it is (Stat, Delete, Touch,
// DeleteIfOlder) until it succeeds, fails permanently or runs out of
// attempts.
func (r *retrier) do(ctx context.Context, op, key string, try func() error) error {
	a := r.attempts(op, key)
	return a.b.Do(ctx, try, verdictOn(ctx), func(err error, d time.Duration) { a.notify(ctx, err, d) })
}

// Stat implements store.Store.
func (r *retrier) Stat(ctx context.Context, key string) (info store.Info, err error) {
	err = r.do(ctx, "stat", key, func() (err error) {
		info, err = r.inner.Stat(ctx, key)
		return err
	})
	if err != nil {
		return store.Info{}, err
	}
	return info, nil
}

// Delete implements store.Store.
func (r *retrier) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func() error { return r.inner.Delete(ctx, key) })
}

// Touch implements store.Toucher.
func (r *retrier) Touch(ctx context.Context, key string) (info store.Info, err error) {
	t, ok := r.inner.(store.Toucher)
	if !ok {
		return store.Info{}, fmt.Errorf("touch %q: %T: %w", key, r.inner, errors.ErrUnsupported)
	}
	err = r.do(ctx, "touch", key, func() (err error) {
		info, err = t.Touch(ctx, key)
		return err
	})
	if err != nil {
		return store.Info{}, err
	}
	return info, nil
}

// DeleteIfOlder implements store.Toucher.
func (r *retrier) DeleteIfOlder(ctx context.Context, key string, before time.Time) error {
	t, ok := r.inner.(store.Toucher)
	if !ok {
		return fmt.Errorf("delete %q: %T: %w", key, r.inner, errors.ErrUnsupported)
	}
	return r.do(ctx, "delete", key, func() error { return t.DeleteIfOlder(ctx, key, before) })
}

// Put implements store.Store.
func (r *retrier) Put(ctx context.Context, key string, rd io.Reader) (store.Info, error) {
	b := newBody(rd, r.bufferSize)
	return r.write(ctx, "put", key, b, false, func() (store.Info, error) {
		return r.inner.Put(ctx, key, b)
	})
}

// PutIf implements store.Store.
func (r *retrier) PutIf(ctx context.Context, key string, rd io.Reader, generation int64) (store.Info, error) {
	b := newBody(rd, r.bufferSize)
	return r.write(ctx, "putif", key, b, true, func() (store.Info, error) {
		return r.inner.PutIf(ctx, key, b, generation)
	})
}

// write runs the write try until it succeeds, fails permanently, cannot be
// repeated or runs out of attempts. b is its content (nil if it has none
// to send again). A conditional write (cond) whose precondition fails after
// an attempt of unknown outcome gives ErrUnknownOutcome.
func (r *retrier) write(ctx context.Context, op, key string, b *body, cond bool, try func() (store.Info, error)) (store.Info, error) {
	a := r.attempts(op, key)
	var uncertain error // the first failed attempt that may have written
	for {
		info, err := try()
		if err == nil {
			return info, nil
		}
		if cond && uncertain != nil && errors.Is(err, store.ErrPrecondition) {
			return store.Info{}, fmt.Errorf("%w: %v; but an earlier attempt failed (%v) and may have written the object itself: read it to find out",
				ErrUnknownOutcome, err, uncertain)
		}
		if b != nil && b.srcErr != nil {
			return store.Info{}, err // the caller's reader failed
		}
		if ferr := final(ctx, err); ferr != nil {
			return store.Info{}, ferr
		}
		if b != nil && !b.canRewind() {
			return store.Info{}, fmt.Errorf("%w (not retried: more than %d bytes of the content were read, and its reader cannot seek)", err, r.bufferSize)
		}
		if uncertain == nil {
			uncertain = err
		}
		if werr := a.wait(ctx, err); werr != nil {
			return store.Info{}, werr
		}
		if b != nil {
			if err := b.rewind(); err != nil {
				return store.Info{}, fmt.Errorf("%s %q: rewind the content to retry: %w", op, key, err)
			}
		}
	}
}

// body is the content of a write, which can be sent again: by seeking back
// to where it began, or by replaying what was kept of it in memory.
type body struct {
	r      io.Reader
	seeker io.Seeker // r, if it can seek
	start  int64     // r's offset when the write began
	limit  int       // the most bytes kept in memory
	buf    []byte    // without seeker: all that was read from r, while it fits in limit
	over   bool      // more than limit bytes were read: it cannot be replayed
	eof    bool      // r is at its end
	pos    int       // read position in buf
	srcErr error     // the error of r, if it failed
}

func newBody(r io.Reader, limit int) *body {
	b := &body{r: r, limit: limit}
	if s, ok := r.(io.Seeker); ok {
		if off, err := s.Seek(0, io.SeekCurrent); err == nil { // a pipe's *os.File cannot
			b.seeker, b.start = s, off
		}
	}
	return b
}

func (b *body) Read(p []byte) (int, error) {
	if b.seeker == nil && b.pos < len(b.buf) {
		n := copy(p, b.buf[b.pos:])
		b.pos += n
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if b.seeker == nil && n > 0 && !b.over {
		if len(b.buf)+n <= b.limit {
			b.buf = append(b.buf, p[:n]...)
			b.pos = len(b.buf)
		} else {
			b.over, b.buf = true, nil
		}
	}
	switch {
	case err == io.EOF:
		b.eof = b.seeker == nil
	case err != nil:
		b.srcErr = err
	}
	return n, err
}

func (b *body) canRewind() bool { return b.seeker != nil || !b.over }

func (b *body) rewind() error {
	if b.seeker != nil {
		_, err := b.seeker.Seek(b.start, io.SeekStart)
		return err
	}
	b.pos = 0
	return nil
}

// Open implements store.Store.
func (r *retrier) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	var rc io.ReadCloser
	var info store.Info
	err := r.do(ctx, "open", key, func() (err error) {
		rc, info, err = r.inner.Open(ctx, key)
		return err
	})
	if err != nil {
		return nil, store.Info{}, err
	}
	return &reader{r: r, ctx: ctx, key: key, rc: rc, info: info, a: r.attempts("read", key)}, info, nil
}

// reader reads an object and, when a read fails with a transient error,
// reopens it and goes on from where it broke.
type reader struct {
	r     *retrier
	ctx   context.Context
	key   string
	info  store.Info    // of the version first opened
	rc    io.ReadCloser // nil after a failure, until reopened
	off   int64         // bytes read so far
	cause error         // why rc is nil
	a     *attempts
	err   error // sticky
}

func (rd *reader) Read(p []byte) (int, error) {
	if rd.err != nil {
		return 0, rd.err
	}
	for {
		if rd.rc == nil {
			if err := rd.reopen(); err != nil {
				rd.err = err
				return 0, err
			}
		}
		n, err := rd.rc.Read(p)
		rd.off += int64(n)
		if n > 0 {
			rd.a.progress()
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if err := final(rd.ctx, err); err != nil {
			rd.err = err
			return n, err
		}
		_ = rd.rc.Close()
		rd.rc, rd.cause = nil, err
		if n > 0 {
			return n, nil // reopen on the next Read
		}
	}
}

// reopen waits, opens the object again, checks that it is the version
// first opened, and skips what was read.
func (rd *reader) reopen() error {
	for {
		if err := rd.a.wait(rd.ctx, rd.cause); err != nil {
			return err
		}
		rc, info, err := rd.r.inner.Open(rd.ctx, rd.key)
		if err != nil {
			if ferr := final(rd.ctx, err); ferr != nil {
				return fmt.Errorf("%w (reopening to resume at byte %d: %w)", rd.cause, rd.off, ferr)
			}
			rd.cause = err
			continue
		}
		if info.Generation != rd.info.Generation {
			rc.Close()
			return fmt.Errorf("%w (cannot resume at byte %d: the object was replaced, generation %d is now %d)",
				rd.cause, rd.off, rd.info.Generation, info.Generation)
		}
		if _, err := io.CopyN(io.Discard, rc, rd.off); err != nil {
			rc.Close()
			if err == io.EOF {
				return fmt.Errorf("%w (reopening to resume at byte %d: the object is shorter)", rd.cause, rd.off)
			}
			if ferr := final(rd.ctx, err); ferr != nil {
				return fmt.Errorf("%w (reopening to resume at byte %d: %w)", rd.cause, rd.off, ferr)
			}
			rd.cause = err
			continue
		}
		rd.rc = rc
		return nil
	}
}

func (rd *reader) Close() error {
	if rd.err == nil {
		rd.err = fmt.Errorf("read %q: reader closed", rd.key)
	}
	if rd.rc == nil {
		return nil
	}
	rc := rd.rc
	rd.rc = nil
	return rc.Close()
}

// List implements store.Store.
func (r *retrier) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		a := r.attempts("list", prefix)
		var last string // the last key yielded
		yielded := false
		for {
			var failed error
			for info, err := range r.inner.List(ctx, prefix) {
				if err != nil {
					failed = err
					break
				}
				if yielded && info.Key <= last {
					continue // yielded by an earlier attempt
				}
				if !yield(info, nil) {
					return
				}
				last, yielded = info.Key, true
				a.progress()
			}
			if failed == nil {
				return
			}
			if err := final(ctx, failed); err != nil {
				yield(store.Info{}, err)
				return
			}
			if err := a.wait(ctx, failed); err != nil {
				yield(store.Info{}, err)
				return
			}
		}
	}
}

// Stage implements store.Stager: it is retried as Put.
func (r *stagingRetrier) Stage(ctx context.Context, rd io.Reader) (store.Staged, error) {
	b := newBody(rd, r.bufferSize)
	var sd store.Staged
	_, err := r.write(ctx, "stage", "", b, false, func() (store.Info, error) {
		var err error
		sd, err = r.stager.Stage(ctx, b)
		return store.Info{}, err
	})
	if err != nil {
		return nil, err
	}
	return &staged{r: r.retrier, s: sd}, nil
}

// staged retries Publish as PutIf.
type staged struct {
	r *retrier
	s store.Staged
}

func (s *staged) Size() int64    { return s.s.Size() }
func (s *staged) Discard() error { return s.s.Discard() }

func (s *staged) Publish(ctx context.Context, key string, generation int64) (store.Info, error) {
	return s.r.write(ctx, "publish", key, nil, true, func() (store.Info, error) {
		return s.s.Publish(ctx, key, generation)
	})
}
