// Package gcs is the Google Cloud Storage store backend. The store named by
// the URL gs://BUCKET/PREFIX keeps the object under key k as the GCS object
// PREFIX/k of BUCKET, so a person finds a run's files with plain tools:
//
//	gcloud storage ls gs://BUCKET/PREFIX/runs/<run id>/
//
// # How the store contract maps to GCS
//
//   - A generation is the GCS object generation. GCS assigns a new one on
//     every write of a name, greater than any earlier generation of that
//     name, also after a delete, as the store contract requires.
//   - Put is an upload. GCS objects appear only when their upload is
//     finalized, so a write is atomic; when the caller's reader fails or ctx
//     is done, Put cancels the upload before it is finalized, and nothing
//     is written.
//   - PutIf(k, r, g) is an upload with ifGenerationMatch=g, where
//     store.Absent is ifGenerationMatch=0 ("does not exist"); GCS checks and
//     writes in one step. HTTP 412 becomes store.ErrPrecondition.
//   - Open reads one generation: the Info it returns carries the generation
//     of the response being read (X-Goog-Generation), and if the client has
//     to reopen the download it asks for that same generation, so the content
//     and the generation always match, even while the object is replaced.
//   - An object's ModTime is its custom time (customTime) if it has one,
//     else the time its metadata was last updated. Touch (store.Toucher)
//     sets the custom time to now, with a metageneration condition, and
//     DeleteIfOlder deletes with generation and metageneration conditions,
//     so a Touch or a write between GC's check and its delete makes GCS
//     refuse the delete. (The Info that Open returns carries the time of
//     the last update, which the download headers give, not the custom
//     time.)
//   - List is objects.list with the prefix, which GCS returns in
//     lexicographic (byte) order of names. Objects under the prefix whose
//     names are not valid keys (a "folder/" placeholder made in the console,
//     anything with a ".sluice-" segment) are not listed.
//   - Not found (storage.ErrObjectNotExist, HTTP 404) wraps fs.ErrNotExist.
//   - New lists one object to check that the bucket exists and the
//     credentials may use it, and says what to fix if not. A bucket deleted
//     after that makes Open and Stat report missing objects (GCS answers
//     both with 404), while writes and List report the missing bucket.
//
// # Retries and PutIf
//
// The client library retries idempotent requests (reads, listing, and
// uploads with a generation condition) on 408, 429, 5xx and connection
// errors, with backoff. Put and Delete are retried as well: the store
// contract allows repeating them. A retried PutIf whose first attempt
// succeeded without the client hearing of it is answered 412; to tell that
// apart from a lost race, each conditional write carries a random write id
// in its custom metadata (sluice-write-id), and on a 412 PutIf reads the
// object's metadata: if it holds its own write id, the write succeeded.
//
// # Why this backend does not implement store.Stager
//
// A Stager would upload content to a temporary object before its digest is
// known, then copy it to its blob key with a does-not-exist condition and
// delete the temporary object. Without it, store.PutBlob hashes the content
// (in place if it is a file, as a run's outputs are; a stream into a local
// temporary file), asks whether the blob exists (one metadata request), and
// uploads only if it does not, from the file. That is better on GCS for three
// reasons: content that is already stored is never uploaded again; there is
// no copy request per blob; and no temporary objects are deleted, which in a
// bucket with soft delete (the default, 7 days) would be kept and billed for
// the retention period, and, after a crash, left behind for a collector.
//
// # Credentials
//
// By default New uses Application Default Credentials: the file named by
// GOOGLE_APPLICATION_CREDENTIALS (a service-account key or a workload
// identity federation configuration, as google-github-actions/auth writes),
// the gcloud user credentials, or the service account of a GCE VM or GKE
// pod. If STORAGE_EMULATOR_HOST is set, the client talks to that emulator
// without credentials. Credentials are never printed. Options inject a
// client or client options instead.
package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/sluice-ci/sluice/store"
)

const (
	// DefaultChunkSize is the upload buffer of a write larger than
	// smallObject: objects larger than it are sent as resumable uploads in
	// chunks of this size: half the client library's default, which keeps
	// the memory an upload holds (one chunk) small.
	DefaultChunkSize = 8 << 20

	// smallObject is the size below which a write is sent in one request
	// with a buffer of that size instead of DefaultChunkSize (refs and run
	// records are far smaller). It is the smallest chunk GCS accepts.
	smallObject = googleapi.MinUploadChunkSize

	// writeIDKey is the custom metadata key under which conditional writes
	// record their write id.
	writeIDKey = "sluice-write-id"

	// acmePrefix begins object names that GCS refuses.
	acmePrefix = ".well-known/acme-challenge/"
)

// credentialsHelp says how to provide credentials.
const credentialsHelp = "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key or workload identity " +
	"federation file, run `gcloud auth application-default login`, or in GitHub Actions run " +
	"google-github-actions/auth before sluice; on GCE and GKE the attached service account is used"

// Store is a store.Store in a GCS bucket, under a prefix. It is safe for
// concurrent use by multiple goroutines and processes.
type Store struct {
	client    *storage.Client
	ownClient bool
	bucket    *storage.BucketHandle
	name      string // bucket name
	prefix    string // "" or ends with "/"
	chunkSize int
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Toucher = (*Store)(nil)
)

// Option configures New.
type Option func(*options)

type options struct {
	client     *storage.Client
	clientOpts []option.ClientOption
	chunkSize  int
}

// WithClient makes the store use client instead of creating its own (tests
// hand it a client pointed at a fake server). The caller keeps ownership:
// Store.Close does not close it.
func WithClient(client *storage.Client) Option {
	return func(o *options) { o.client = client }
}

// WithClientOptions adds options to the client New creates, such as
// option.WithCredentialsFile or option.WithEndpoint. It has no effect with
// WithClient.
func WithClientOptions(opts ...option.ClientOption) Option {
	return func(o *options) { o.clientOpts = append(o.clientOpts, opts...) }
}

// WithChunkSize sets the upload buffer of large writes (DefaultChunkSize if
// unset). Each write in progress holds one buffer of this size, so many
// parallel uploads call for a smaller one; GCS rounds it up to a multiple of
// 256 KiB.
func WithChunkSize(n int) Option {
	return func(o *options) { o.chunkSize = n }
}

// New opens the store named by rawURL, "gs://BUCKET[/PREFIX]" (see
// ParseURL). It checks at once that the bucket exists and that the
// credentials may list it, and returns an error that says what to fix if
// not. The caller must Close the store.
func New(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	o := options{chunkSize: DefaultChunkSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.chunkSize <= 0 {
		return nil, fmt.Errorf("store %s: chunk size %d: want a positive number of bytes", rawURL, o.chunkSize)
	}
	s := &Store{name: bucket, prefix: prefix, chunkSize: o.chunkSize, client: o.client}
	if s.client == nil {
		// Client metrics would be exported to Cloud Monitoring: off.
		copts := append([]option.ClientOption{storage.WithDisabledClientMetrics()}, o.clientOpts...)
		c, err := storage.NewClient(ctx, copts...)
		if err != nil {
			if os.Getenv("STORAGE_EMULATOR_HOST") == "" {
				return nil, fmt.Errorf("store %s: no usable Google Cloud credentials: %s: %w", s, credentialsHelp, err)
			}
			return nil, fmt.Errorf("store %s: client for STORAGE_EMULATOR_HOST: %w", s, err)
		}
		s.client, s.ownClient = c, true
	}
	s.bucket = s.client.Bucket(bucket)
	if err := s.probe(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store %s: %w", s, err)
	}
	return s, nil
}

// probe lists at most one object, which fails if the bucket does not exist
// or the credentials are missing or may not list it: the permission every
// use of a store needs.
func (s *Store) probe(ctx context.Context) error {
	it := s.bucket.Objects(ctx, &storage.Query{Prefix: s.prefix})
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		return s.explain(ctx, err)
	}
	return nil
}

// Close releases the client if New created it.
func (s *Store) Close() error {
	if s.ownClient {
		return s.client.Close()
	}
	return nil
}

// String returns the store's URL, gs://BUCKET or gs://BUCKET/PREFIX.
func (s *Store) String() string {
	if s.prefix == "" {
		return Scheme + s.name
	}
	return Scheme + s.name + "/" + strings.TrimSuffix(s.prefix, "/")
}

// Bucket returns the name of the store's bucket.
func (s *Store) Bucket() string { return s.name }

// Prefix returns the object name prefix of the store's keys: "" or a string
// ending with "/".
func (s *Store) Prefix() string { return s.prefix }

// ObjectName returns the name of the GCS object that holds key.
func (s *Store) ObjectName(key string) string { return s.prefix + key }

// object validates key and ctx and returns the key's object name.
func (s *Store) object(ctx context.Context, key string) (string, error) {
	if err := store.ValidateKey(key); err != nil {
		return "", err
	}
	name := s.prefix + key
	if len(name) > store.MaxKeyLen {
		return "", &store.KeyError{Key: key, Reason: fmt.Sprintf("with the store's prefix %q, longer than GCS's %d bytes", s.prefix, store.MaxKeyLen)}
	}
	if strings.HasPrefix(name, acmePrefix) {
		return "", &store.KeyError{Key: key, Reason: fmt.Sprintf("GCS refuses object names beginning with %q", acmePrefix)}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return name, nil
}

// heads are the buffers of the first smallObject bytes of uploads.
var heads = sync.Pool{New: func() any { b := make([]byte, smallObject); return &b }}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (store.Info, error) {
	name, err := s.object(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	info, err := s.upload(ctx, key, name, r, nil)
	if err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	return info, nil
}

// PutIf implements store.Store.
func (s *Store) PutIf(ctx context.Context, key string, r io.Reader, generation int64) (store.Info, error) {
	name, err := s.object(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	if generation < 0 {
		return store.Info{}, fmt.Errorf("put %q: %w: want generation %d, which no object has", key, store.ErrPrecondition, generation)
	}
	cond := storage.Conditions{GenerationMatch: generation}
	if generation == store.Absent {
		cond = storage.Conditions{DoesNotExist: true}
	}
	info, err := s.upload(ctx, key, name, r, &cond)
	if err != nil {
		return store.Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	return info, nil
}

// upload writes r to object name, with the condition cond if it is not
// nil. A write whose content fits in smallObject is sent in one request;
// a larger one is a resumable upload in chunks of s.chunkSize.
func (s *Store) upload(ctx context.Context, key, name string, r io.Reader, cond *storage.Conditions) (store.Info, error) {
	src := &srcReader{ctx: ctx, r: r}
	hp := heads.Get().(*[]byte)
	defer heads.Put(hp)
	n, err := io.ReadFull(src, *hp)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return store.Info{}, err
	}
	head := (*hp)[:n]
	chunk := s.chunkSize
	var body io.Reader = bytes.NewReader(head)
	if len(head) < smallObject {
		chunk = smallObject // all of it: one request
	} else {
		body = io.MultiReader(body, src)
	}

	// Cancelling wctx before Close abandons the upload unfinalized.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := s.bucket.Object(name)
	var writeID string
	if cond != nil {
		o = o.If(*cond) // the client retries conditional uploads itself
		writeID = rand.Text()
	} else {
		o = o.Retryer(storage.WithPolicy(storage.RetryAlways)) // Put may be repeated
	}
	w := o.NewWriter(wctx)
	w.ChunkSize = chunk
	if writeID != "" {
		w.Metadata = map[string]string{writeIDKey: writeID}
	}
	_, err = io.Copy(w, body)
	if src.err != nil {
		// The caller's reader failed or ctx is done: abandon the upload.
		cancel()
		_ = w.Close()
		return store.Info{}, src.err
	}
	if cerr := w.Close(); cerr != nil || err == nil {
		err = cerr // Close has the upload's own error, if any
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return store.Info{}, cerr
		}
		if cond != nil && hasCode(err, http.StatusPreconditionFailed) {
			return s.preconditionFailed(ctx, key, name, cond.GenerationMatch, writeID)
		}
		return store.Info{}, s.explain(ctx, err)
	}
	return infoOf(key, w.Attrs()), nil
}

// preconditionFailed handles a 412 on a conditional write with writeID: if
// the object holds that write id, the write succeeded (a retry of it was
// refused) and it returns the object's Info; otherwise an error wrapping
// store.ErrPrecondition that says which generation the object has.
func (s *Store) preconditionFailed(ctx context.Context, key, name string, want int64, writeID string) (store.Info, error) {
	wantS := "no object"
	if want != store.Absent {
		wantS = "generation " + strconv.FormatInt(want, 10)
	}
	have := "unknown"
	a, err := s.bucket.Object(name).Attrs(ctx)
	switch {
	case err == nil && a.Metadata[writeIDKey] == writeID:
		return infoOf(key, a), nil
	case err == nil:
		have = "generation " + strconv.FormatInt(a.Generation, 10)
	case errors.Is(err, storage.ErrObjectNotExist):
		have = "none"
	}
	return store.Info{}, fmt.Errorf("%w: want %s, have %s", store.ErrPrecondition, wantS, have)
}

// Open implements store.Store.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	name, err := s.object(ctx, key)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("open %q: %w", key, err)
	}
	rd, err := s.bucket.Object(name).NewReader(ctx)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("open %q: %w", key, s.objectErr(ctx, name, err))
	}
	info := store.Info{Key: key, Size: rd.Attrs.Size, ModTime: rd.Attrs.LastModified, Generation: rd.Attrs.Generation}
	return &reader{ctx: ctx, key: key, r: rd}, info, nil
}

// reader is an object being read, bound to a context.
type reader struct {
	ctx context.Context
	key string
	r   *storage.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %q: %w", r.key, err)
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		if cerr := r.ctx.Err(); cerr != nil {
			err = cerr
		}
		err = fmt.Errorf("read %q: %w", r.key, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	name, err := s.object(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	a, err := s.bucket.Object(name).Attrs(ctx)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %q: %w", key, s.objectErr(ctx, name, err))
	}
	return infoOf(key, a), nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	// Retried like Put: a retry whose first attempt succeeded reports
	// fs.ErrNotExist, as the store contract allows.
	err = s.bucket.Object(name).Retryer(storage.WithPolicy(storage.RetryAlways)).Delete(ctx)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, s.objectErr(ctx, name, err))
	}
	return nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		if err := store.ValidatePrefix(prefix); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		if err := ctx.Err(); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		if len(s.prefix)+len(prefix) > store.MaxKeyLen {
			return // longer than any object name
		}
		q := &storage.Query{Prefix: s.prefix + prefix}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "CustomTime", "Generation"}); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		it := s.bucket.Objects(ctx, q)
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return
			}
			if err != nil {
				yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, s.explain(ctx, err)))
				return
			}
			key, ok := strings.CutPrefix(a.Name, s.prefix)
			if !ok || store.ValidateKey(key) != nil {
				continue // not something a store writes
			}
			if !yield(infoOf(key, a), nil) {
				return
			}
		}
	}
}

func infoOf(key string, a *storage.ObjectAttrs) store.Info {
	return store.Info{Key: key, Size: a.Size, ModTime: modTime(a), Generation: a.Generation}
}

// modTime is an object's ModTime: its custom time if it has one (Touch
// sets it), else the time its metadata was last updated.
func modTime(a *storage.ObjectAttrs) time.Time {
	if !a.CustomTime.IsZero() {
		return a.CustomTime
	}
	return a.Updated
}

// Touch implements store.Toucher: it sets the object's custom time
// (customTime, which GCS's lifecycle rules also know) to the current time of
// this host, with a metageneration condition, so that it neither rewrites the
// content nor changes the generation. GCS refuses to move a custom time
// back, so an object whose custom time is already as late (set by a host
// whose clock is ahead, or in the same second) is left as it is. If another Touch changes the metadata
// first, this one is refused with 412 and reports the object as it is then.
func (s *Store) Touch(ctx context.Context, key string) (store.Info, error) {
	name, err := s.object(ctx, key)
	if err != nil {
		return store.Info{}, fmt.Errorf("touch %q: %w", key, err)
	}
	o := s.bucket.Object(name)
	a, err := o.Attrs(ctx)
	if err != nil {
		return store.Info{}, fmt.Errorf("touch %q: %w", key, s.objectErr(ctx, name, err))
	}
	// The client sends the custom time in whole seconds: round up, so that
	// the object is not made older than it was.
	now := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	if !a.CustomTime.Before(now) {
		return infoOf(key, a), nil
	}
	na, err := o.If(storage.Conditions{MetagenerationMatch: a.Metageneration}).
		Update(ctx, storage.ObjectAttrsToUpdate{CustomTime: now})
	if err == nil {
		return infoOf(key, na), nil
	}
	if hasCode(err, http.StatusPreconditionFailed) && ctx.Err() == nil {
		// Touched (or its metadata changed) by someone else meanwhile.
		a, err = o.Attrs(ctx)
		if err == nil {
			return infoOf(key, a), nil
		}
	}
	return store.Info{}, fmt.Errorf("touch %q: %w", key, s.objectErr(ctx, name, err))
}

// DeleteIfOlder implements store.Toucher: it reads the object's metadata,
// and if its ModTime is before t, deletes it on the condition that its
// generation and metageneration are still the ones read. A write changes
// the generation and a Touch the metageneration, so either makes GCS refuse
// the delete (412), which becomes store.ErrPrecondition.
func (s *Store) DeleteIfOlder(ctx context.Context, key string, t time.Time) error {
	name, err := s.object(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	o := s.bucket.Object(name)
	a, err := o.Attrs(ctx)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, s.objectErr(ctx, name, err))
	}
	if mt := modTime(a); !mt.Before(t) {
		return fmt.Errorf("delete %q: %w: modified at %s, not before %s", key, store.ErrPrecondition,
			mt.UTC().Format(time.RFC3339Nano), t.UTC().Format(time.RFC3339Nano))
	}
	err = o.If(storage.Conditions{GenerationMatch: a.Generation, MetagenerationMatch: a.Metageneration}).Delete(ctx)
	if hasCode(err, http.StatusPreconditionFailed) && ctx.Err() == nil {
		return fmt.Errorf("delete %q: %w: written or touched since generation %d, metageneration %d",
			key, store.ErrPrecondition, a.Generation, a.Metageneration)
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, s.objectErr(ctx, name, err))
	}
	return nil
}

// objectErr turns the error of a request about object name into the
// store's: not found wraps fs.ErrNotExist, the rest as explain says.
func (s *Store) objectErr(ctx context.Context, name string, err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) && ctx.Err() == nil {
		return fmt.Errorf("no object %s%s/%s: %w", Scheme, s.name, name, fs.ErrNotExist)
	}
	return s.explain(ctx, err)
}

// explain adds to err what to fix when it is permanent: no bucket, no
// permission, refused credentials. The original error stays in the chain
// (errors.As finds its *googleapi.Error), and nothing in it is secret.
func (s *Store) explain(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	var ae *auth.Error
	switch {
	case errors.Is(err, storage.ErrBucketNotExist) || hasCode(err, http.StatusNotFound):
		return fmt.Errorf("bucket %q does not exist: create it (gcloud storage buckets create %s%s) or correct the store URL: %w",
			s.name, Scheme, s.name, err)
	case hasCode(err, http.StatusForbidden):
		return fmt.Errorf("permission denied on bucket %q: the account sluice runs as needs storage.objects.list, get, create, "+
			"update and delete on it, for example through the role roles/storage.objectUser: %w", s.name, err)
	case hasCode(err, http.StatusUnauthorized):
		return fmt.Errorf("the Google Cloud credentials were refused (expired or revoked?): %s: %w", credentialsHelp, err)
	case errors.As(err, &ae):
		return fmt.Errorf("cannot get a Google Cloud access token: %s: %w", credentialsHelp, err)
	}
	return err
}

// hasCode reports whether err is an HTTP error from GCS with this status.
func hasCode(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// srcReader reads the caller's content, failing once ctx is done, and
// remembers its error, so that an upload can tell the caller's failure from
// its own.
type srcReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
