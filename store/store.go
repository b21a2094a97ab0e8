// Package store defines sluice's object store: the interface every backend
// implements, the rules for keys, and the content-addressed blobs and
// compare-and-swap updates built on top of it.
//
// A store holds objects: byte strings under slash-separated keys, much like
// the objects of a Google Cloud Storage bucket. Backends live in
// subpackages (store/file, the default, and store/gcs); every backend passes
// the conformance suite in store/storetest.
//
// # Keys
//
// A key is a slash-separated relative path such as
// "runs/2024-05-01T10-00-00Z-1a2b/train/outputs/model.pkl"; ValidateKey lists
// the rules. A key names an object, never a directory: the file backend
// cannot hold both "a" and "a/b", so callers must not use a key as a prefix
// of another key followed by "/". Segments beginning with ".sluice-" are
// reserved for the backends' own bookkeeping.
//
// # Generations
//
// Every stored object has a generation: a positive number that the backend
// assigns on each successful write. A later write of a key has a greater
// generation than an earlier one, also when the key was deleted in between,
// so a generation never names two different contents of one key. The
// generation of an object that does not exist is Absent (zero). PutIf uses
// generations as the condition of a compare-and-swap; Update wraps the loop.
//
// # Errors
//
// Every backend wraps fs.ErrNotExist in the error it returns for a key that
// has no object, so callers test with errors.Is(err, fs.ErrNotExist) whatever
// the backend. ErrPrecondition, ErrInvalidKey and ErrDigestMismatch are the
// other errors callers branch on.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"time"
)

// Absent is the generation of an object that does not exist. As the
// condition of PutIf it means "create only": the write succeeds only if no
// object exists under the key. (It is GCS's ifGenerationMatch=0.)
const Absent int64 = 0

// ErrPrecondition is returned, wrapped, by PutIf and Staged.Publish when the
// object's current generation is not the one the caller named. Callers test
// for it with errors.Is and, in a compare-and-swap loop, read again.
var ErrPrecondition = errors.New("precondition failed")

// Info describes one stored object.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// ModTime is when the object was last written, or touched (see
	// Toucher).
	ModTime time.Time
	// Generation identifies this content of the object; it is never Absent
	// for an object that exists. See the package documentation.
	Generation int64
}

// Store is an object store. Implementations are safe for concurrent use by
// multiple goroutines; a backend whose storage is shared (a directory, a
// bucket) is also safe for concurrent use by multiple processes, and the
// conditional writes hold across them.
//
// Every method validates its key (or prefix) first and returns an error
// wrapping ErrInvalidKey that names it. Every method checks ctx: once ctx is
// done, calls return an error wrapping ctx.Err() and leave the store as it
// was.
//
// Writes are atomic: a reader sees either the previous object or the whole
// new one, never a partially written object under its final name, also when
// the writer fails, is cancelled or crashes.
//
// Idempotency: Open, Stat and List change nothing and can be retried freely.
// Put of the same content can be repeated (the generation changes each time).
// Delete of a missing key returns ErrNotExist, so a retried Delete whose first
// attempt succeeded reports ErrNotExist; callers that only want the object
// gone ignore that error. PutIf is not idempotent: if its outcome is unknown
// (a network error in a remote backend), a retry may report ErrPrecondition
// for the caller's own write, so retry layers must not retry it blindly;
// callers re-read and decide, as Update does.
type Store interface {
	// Put writes the content of r to key, replacing any object there. It
	// reads r to EOF and does not close it. If reading r fails or ctx is
	// done, Put returns the error and the object under key is unchanged.
	// It returns the new object's Info.
	Put(ctx context.Context, key string, r io.Reader) (Info, error)

	// PutIf is Put with a condition: it writes only if the object's current
	// generation is generation, where Absent means that no object may exist.
	// Otherwise it returns an error wrapping ErrPrecondition (also when the
	// object is missing and generation is not Absent) and the object is
	// unchanged. The check and the write are one atomic step, so of several
	// writers conditioned on the same generation exactly one succeeds.
	PutIf(ctx context.Context, key string, r io.Reader, generation int64) (Info, error)

	// Open opens the object under key for reading, together with its Info.
	// The content read and the Info (in particular the generation) describe
	// the same version of the object, even while it is being replaced, so
	// Info.Generation is the right condition for a PutIf based on what was
	// read. The reader is bound to ctx: once ctx is done, Read returns an
	// error wrapping ctx.Err(). The caller must close the reader. A missing
	// key gives an error wrapping fs.ErrNotExist.
	Open(ctx context.Context, key string) (io.ReadCloser, Info, error)

	// Stat returns the Info of the object under key, or an error wrapping
	// fs.ErrNotExist if there is none.
	Stat(ctx context.Context, key string) (Info, error)

	// List yields the Info of every object whose key begins with prefix (a
	// plain string prefix: "runs/ab" matches "runs/abc/x"), in increasing
	// byte order of keys. The empty prefix lists everything. On failure it
	// yields one error with a zero Info and stops. Objects written or
	// deleted while the listing runs may or may not appear.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]

	// Delete removes the object under key, or returns an error wrapping
	// fs.ErrNotExist if there is none.
	Delete(ctx context.Context, key string) error
}

// Stager is implemented by backends that can write content before the key
// it will be stored under is known, and publish it later without copying it
// again: the file backend stages into a temporary file and renames it. PutBlob
// uses it to hash while writing; without it, PutBlob spools to a local
// temporary file first.
type Stager interface {
	// Stage writes the content of r to storage that is not visible under
	// any key. It reads r to EOF and does not close it. On error nothing is
	// left behind.
	Stage(ctx context.Context, r io.Reader) (Staged, error)
}

// Toucher is implemented by backends that can restart an object's age
// without rewriting it, and delete an object only if it has not been
// touched (or written) since a given time, as one atomic step. PutBlob and
// GC use it so that a blob that a run is about to record cannot be deleted
// as garbage: PutBlob touches a blob that is already stored instead of
// writing it again, and GC deletes an unreferenced blob only if it is still
// old at the moment of the delete. A decorator may implement Toucher for any
// backend and return an error wrapping errors.ErrUnsupported when the
// backend it wraps has no Toucher; callers then do without.
type Toucher interface {
	// Touch sets the ModTime of the object under key to the current time
	// (of the backend, or of this host) without changing its content or
	// generation, and returns the object's Info. A missing key gives an
	// error wrapping fs.ErrNotExist. Touch can be repeated freely; of
	// several Touches at once, at least one takes effect and all succeed.
	Touch(ctx context.Context, key string) (Info, error)

	// DeleteIfOlder deletes the object under key only if its ModTime is
	// before t. The check and the delete are atomic with respect to Touch and
	// to writes: if the object is touched or written while DeleteIfOlder
	// runs, either the delete happened before (and Touch reports
	// fs.ErrNotExist) or the object stays. If the object is not older than
	// t, it returns an error wrapping ErrPrecondition; a missing key gives
	// an error wrapping fs.ErrNotExist.
	DeleteIfOlder(ctx context.Context, key string, t time.Time) error
}

// Staged is content written by Stager.Stage, not yet visible under a key.
// Its methods are not safe for concurrent use.
type Staged interface {
	// Size is the length of the staged content in bytes.
	Size() int64

	// Publish makes the staged content the object under key, with the
	// condition of PutIf. After a successful Publish the Staged is used up;
	// after an error, the content is still staged and can be published
	// again or discarded.
	Publish(ctx context.Context, key string, generation int64) (Info, error)

	// Discard removes the staged content. It is safe to call after Publish
	// and more than once; after a successful Publish it does nothing.
	Discard() error
}

// maxUpdateSize bounds the object Update reads into memory. Update is for
// small objects such as refs.
const maxUpdateSize = 16 << 20

// Update replaces the object under key with fn's result, with a
// compare-and-swap loop so that concurrent updates (from goroutines or
// processes) are never lost. fn receives the current content and whether
// the object exists; it may be called several times, once per attempt, so it
// must not have side effects beyond computing its result. If fn returns an
// error, Update returns it and writes nothing. Update is for small objects
// such as refs: it reads the whole object into memory and refuses objects
// larger than 16 MiB.
func Update(ctx context.Context, s Store, key string, fn func(old []byte, exists bool) ([]byte, error)) (Info, error) {
	for {
		old, gen, err := readSmall(ctx, s, key)
		if err != nil {
			return Info{}, err
		}
		data, err := fn(old, gen != Absent)
		if err != nil {
			return Info{}, err
		}
		info, err := s.PutIf(ctx, key, bytes.NewReader(data), gen)
		if errors.Is(err, ErrPrecondition) {
			continue // another writer won; read again.
		}
		if err != nil {
			return Info{}, err
		}
		return info, nil
	}
}

// readSmall reads the object under key and its generation; a missing object
// is empty with generation Absent.
func readSmall(ctx context.Context, s Store, key string) ([]byte, int64, error) {
	rc, info, err := s.Open(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Absent, nil
	}
	if err != nil {
		return nil, Absent, fmt.Errorf("update: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxUpdateSize+1))
	if err != nil {
		return nil, Absent, fmt.Errorf("update: read %q: %w", key, err)
	}
	if len(data) > maxUpdateSize {
		return nil, Absent, fmt.Errorf("update %q: object is larger than %d bytes", key, maxUpdateSize)
	}
	return data, info.Generation, nil
}
