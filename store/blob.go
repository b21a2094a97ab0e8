package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
)

// ErrDigestMismatch is wrapped by the error a blob reader from OpenBlob
// returns, at the end of the content, when the content does not have the
// digest it is stored under.
var ErrDigestMismatch = errors.New("digest mismatch")

// BlobKey returns the key of the blob with digest d:
// "blobs/sha256/<first two hex digits>/<all 64 hex digits>". It returns "",
// which no store accepts, for the zero Digest.
func BlobKey(d Digest) string {
	if d.IsZero() {
		return ""
	}
	h := d.Hex()
	return "blobs/sha256/" + h[:2] + "/" + h
}

// PutBlob stores the content of r as a content-addressed blob and returns
// its digest and size. It reads r to EOF once, hashing as it goes, with
// memory bounded whatever the size: through s's Stager if s has one,
// otherwise through a temporary file in os.TempDir. A blob is written once:
// if s already holds it, PutBlob writes nothing (the object's generation is
// unchanged). PutBlob is safe to call concurrently, also with the same
// content.
func PutBlob(ctx context.Context, s Store, r io.Reader) (Digest, int64, error) {
	h := sha256.New()
	tr := io.TeeReader(r, h)
	if st, ok := s.(Stager); ok {
		return putStaged(ctx, s, st, tr, h)
	}
	return putSpooled(ctx, s, tr, h)
}

func putStaged(ctx context.Context, s Store, st Stager, r io.Reader, h hash.Hash) (d Digest, n int64, err error) {
	staged, err := st.Stage(ctx, r)
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: %w", err)
	}
	d, n = digestOfHash(h), staged.Size()
	defer func() {
		if derr := staged.Discard(); derr != nil && err == nil {
			err = fmt.Errorf("put blob %s: discard staged copy: %w", d, derr)
		}
	}()
	_, err = staged.Publish(ctx, BlobKey(d), Absent)
	if err != nil && !errors.Is(err, ErrPrecondition) && !blobStored(ctx, s, d) { // ErrPrecondition: already stored.
		return Digest{}, 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	return d, n, nil
}

func putSpooled(ctx context.Context, s Store, r io.Reader, h hash.Hash) (d Digest, n int64, err error) {
	f, err := os.CreateTemp("", "sluice-blob-*")
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: spool: %w", err)
	}
	defer func() {
		cerr := f.Close()
		rerr := os.Remove(f.Name())
		if err == nil && cerr != nil {
			err = fmt.Errorf("put blob: spool: %w", cerr)
		}
		if err == nil && rerr != nil {
			err = fmt.Errorf("put blob: spool: %w", rerr)
		}
	}()
	n, err = io.Copy(f, &ctxReader{ctx: ctx, r: r})
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: spool to %s: %w", f.Name(), err)
	}
	d = digestOfHash(h)
	key := BlobKey(d)
	if _, err := s.Stat(ctx, key); err == nil {
		return d, n, nil // already stored
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Digest{}, 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Digest{}, 0, fmt.Errorf("put blob %s: spool %s: %w", d, f.Name(), err)
	}
	if _, err := s.PutIf(ctx, key, f, Absent); err != nil && !errors.Is(err, ErrPrecondition) && !blobStored(ctx, s, d) {
		return Digest{}, 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	return d, n, nil
}

// blobStored reports whether a blob exists after a write whose outcome is
// unclear (a lost response, a racing writer of the same content): a blob's
// name is its content, so whoever wrote it, it is the content we meant.
func blobStored(ctx context.Context, s Store, d Digest) bool {
	_, err := s.Stat(context.WithoutCancel(ctx), BlobKey(d))
	return err == nil
}

// OpenBlob opens the blob with digest d. The reader verifies the content as
// it is read: when the content ends, instead of io.EOF it returns an error
// wrapping ErrDigestMismatch if the content's digest is not d. (A caller
// that stops reading early gets no verification.) A missing blob gives an
// error wrapping fs.ErrNotExist.
func OpenBlob(ctx context.Context, s Store, d Digest) (io.ReadCloser, Info, error) {
	if d.IsZero() {
		return nil, Info{}, errors.New("open blob: zero digest")
	}
	rc, info, err := s.Open(ctx, BlobKey(d))
	if err != nil {
		return nil, Info{}, fmt.Errorf("open blob %s: %w", d, err)
	}
	return &verifyReader{rc: rc, want: d, h: sha256.New()}, info, nil
}

// verifyReader hashes what it reads and compares at EOF.
type verifyReader struct {
	rc   io.ReadCloser
	want Digest
	h    hash.Hash
	err  error // sticky final error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digestOfHash(v.h); got != v.want {
			err = fmt.Errorf("blob %s: %w: content has digest %s", v.want, ErrDigestMismatch, got)
		}
		v.err = err
	} else if err != nil {
		err = fmt.Errorf("blob %s: %w", v.want, err)
		v.err = err
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// ctxReader makes reads fail once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
