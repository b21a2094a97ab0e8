package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDigestMismatch is wrapped by the error a blob reader from OpenBlob
// returns, at the end of the content, when the content does not have the
// digest it is stored under.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrContentChanged is wrapped by the error of PutBlob when a seekable
// source (a file) changed between the pass that hashed it and the upload:
// nothing was stored under the digest.
var ErrContentChanged = errors.New("content changed while it was stored")

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

// blobRefreshAge is the age from which PutBlob touches a blob that is
// already stored (see Toucher), so that GC counts its age from now: a run
// that has just stored a blob has BlobGrace, less at most this, to record
// it. Younger blobs are not touched, which spares GCS metadata writes (one
// per second per object at most) when many writers store the same content.
const blobRefreshAge = time.Minute

// maxPutAttempts bounds PutBlob's rounds of "is it stored? write it": a
// round repeats only when the blob vanished (GC removed it) between the
// check and the write, or appeared between them.
const maxPutAttempts = 3

// hashBufSize is the read buffer of PutBlob's hashing pass over a seekable
// source.
const hashBufSize = 256 << 10

var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// PutBlob stores the content of r as a content-addressed blob and returns
// its digest and size. It reads r to EOF, with memory bounded whatever the
// size, in one of three ways:
//
//   - through s's Stager, if s has one (the file backend): r is read once,
//     hashed as it is written to staging, and published under its digest;
//   - if r can seek and its size is known (an *os.File, or any io.Seeker;
//     or an io.ReaderAt with a Size method, such as *bytes.Reader), it is
//     hashed in place first and then, unless the blob is stored already,
//     read again from where it began and uploaded. If the content is not the
//     same the second time (a file being written to), nothing is stored and
//     the error wraps ErrContentChanged. A Seeker is left at its end; a
//     ReaderAt is read only with ReadAt;
//   - otherwise it is hashed while it is copied to a temporary file in
//     os.TempDir, which is then uploaded unless the blob is stored already.
//
// A blob is written once: if s already holds it, PutBlob writes nothing (the
// object's generation is unchanged), but if s is a Toucher and the blob was
// written more than a minute ago, PutBlob touches it, so that GC counts the
// blob's age from now and a run that is about to record it does not lose it
// (see GC). PutBlob is safe to call concurrently, also with the same
// content.
func PutBlob(ctx context.Context, s Store, r io.Reader) (Digest, int64, error) {
	if st, ok := s.(Stager); ok {
		h := sha256.New()
		return putStaged(ctx, s, st, io.TeeReader(r, h), h)
	}
	if src, ok := seekable(r); ok {
		return putSeekable(ctx, s, src)
	}
	return putSpooled(ctx, s, r)
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
	for range maxPutAttempts {
		_, err := staged.Publish(ctx, BlobKey(d), Absent)
		if err == nil {
			return d, n, nil
		}
		if !errors.Is(err, ErrPrecondition) {
			if blobStored(ctx, s, d) {
				return d, n, nil
			}
			return Digest{}, 0, fmt.Errorf("put blob %s: %w", d, err)
		}
		// Stored already: keep it from GC, or publish again if GC took it
		// in the meantime.
		stored, err := refreshBlob(ctx, s, d)
		if err != nil {
			return Digest{}, 0, err
		}
		if stored {
			return d, n, nil
		}
	}
	return Digest{}, 0, fmt.Errorf("put blob %s: %w: the blob kept appearing and vanishing", d, ErrPrecondition)
}

// putKnown stores the content that body returns (from its start, each time
// it is called) under digest d, unless it is stored already.
func putKnown(ctx context.Context, s Store, d Digest, body func() (io.Reader, error)) error {
	key := BlobKey(d)
	for range maxPutAttempts {
		stored, err := refreshBlob(ctx, s, d)
		if err != nil {
			return err
		}
		if stored {
			return nil
		}
		r, err := body()
		if err != nil {
			return fmt.Errorf("put blob %s: %w", d, err)
		}
		_, err = s.PutIf(ctx, key, r, Absent)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrContentChanged):
			return fmt.Errorf("put blob %s: %w", d, err)
		case errors.Is(err, ErrPrecondition):
			continue // written by someone else meanwhile: refresh it
		case blobStored(ctx, s, d):
			return nil // the response was lost, or another writer won
		default:
			return fmt.Errorf("put blob %s: %w", d, err)
		}
	}
	return fmt.Errorf("put blob %s: %w: the blob kept appearing and vanishing", d, ErrPrecondition)
}

// refreshBlob reports whether the blob with digest d is stored; if it is
// and s is a Toucher, it makes sure the blob's ModTime is recent (touching
// it if it is older than blobRefreshAge). A blob that vanishes before it is
// touched is reported as not stored.
func refreshBlob(ctx context.Context, s Store, d Digest) (bool, error) {
	key := BlobKey(d)
	info, err := s.Stat(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("put blob %s: %w", d, err)
	}
	t, ok := s.(Toucher)
	if !ok || time.Since(info.ModTime) < blobRefreshAge {
		return true, nil
	}
	_, err = t.Touch(ctx, key)
	switch {
	case err == nil || errors.Is(err, errors.ErrUnsupported):
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // GC removed it just now: write it again
	default:
		return false, fmt.Errorf("put blob %s: refresh the stored blob: %w", d, err)
	}
}

func putSpooled(ctx context.Context, s Store, r io.Reader) (d Digest, n int64, err error) {
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
	h := sha256.New()
	n, err = io.Copy(f, &ctxReader{ctx: ctx, r: io.TeeReader(r, h)})
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: spool to %s: %w", f.Name(), err)
	}
	d = digestOfHash(h)
	err = putKnown(ctx, s, d, func() (io.Reader, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("spool %s: %w", f.Name(), err)
		}
		return f, nil
	})
	if err != nil {
		return Digest{}, 0, err
	}
	return d, n, nil
}

// seekSource is content that can be read more than once: size bytes from
// start of a Seeker, or of a ReaderAt.
type seekSource struct {
	r     io.Reader
	sk    io.Seeker   // nil for a ReaderAt
	ra    io.ReaderAt // used if sk is nil
	start int64
	size  int64
}

// seekable returns r as a seekSource if it can seek (and its current
// position and size can be found) or is a ReaderAt with a Size method.
func seekable(r io.Reader) (*seekSource, bool) {
	if sk, ok := r.(io.Seeker); ok {
		start, err := sk.Seek(0, io.SeekCurrent)
		if err != nil { // a pipe
			return nil, false
		}
		end, err := sk.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, false
		}
		if _, err := sk.Seek(start, io.SeekStart); err != nil {
			return nil, false
		}
		if f, ok := r.(*os.File); ok {
			// Only a regular file has a meaningful end.
			if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
				return nil, false
			}
		}
		return &seekSource{r: r, sk: sk, start: start, size: max(end-start, 0)}, true
	}
	if ra, ok := r.(interface {
		io.ReaderAt
		Size() int64
	}); ok {
		return &seekSource{r: r, ra: ra, size: ra.Size()}, true
	}
	return nil, false
}

// open returns a reader of the content from its start.
func (src *seekSource) open() (io.Reader, error) {
	if src.sk == nil {
		return io.NewSectionReader(src.ra, src.start, src.size), nil
	}
	if _, err := src.sk.Seek(src.start, io.SeekStart); err != nil {
		return nil, err
	}
	return io.LimitReader(src.r, src.size), nil
}

// toEnd leaves a Seeker at the end of the content, as a read to EOF would.
func (src *seekSource) toEnd() {
	if src.sk != nil {
		_, _ = src.sk.Seek(src.start+src.size, io.SeekStart)
	}
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// sumWriter computes the SHA-256 and the CRC32C of what is written to it.
type sumWriter struct {
	sha hash.Hash
	crc uint32
}

func (w *sumWriter) Write(p []byte) (int, error) {
	w.sha.Write(p)
	w.crc = crc32.Update(w.crc, crc32c, p)
	return len(p), nil
}

func putSeekable(ctx context.Context, s Store, src *seekSource) (Digest, int64, error) {
	defer src.toEnd()
	r, err := src.open()
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: %w", err)
	}
	bp := hashBufs.Get().(*[]byte)
	sum := &sumWriter{sha: sha256.New()}
	n, err := io.CopyBuffer(sum, &ctxReader{ctx: ctx, r: r}, *bp)
	hashBufs.Put(bp)
	if err != nil {
		return Digest{}, 0, fmt.Errorf("put blob: %w", err)
	}
	if n != src.size {
		return Digest{}, 0, fmt.Errorf("put blob: %w: read %d bytes of %d", ErrContentChanged, n, src.size)
	}
	d := digestOfHash(sum.sha)
	err = putKnown(ctx, s, d, func() (io.Reader, error) {
		r, err := src.open()
		if err != nil {
			return nil, err
		}
		// A CRC32C (cheap next to the upload) proves the content is what
		// was hashed; if not, the reader fails before its end, and the
		// upload is abandoned.
		return &checkedReader{src: src, r: r, left: src.size, want: sum.crc}, nil
	})
	if err != nil {
		return Digest{}, 0, err
	}
	return d, n, nil
}

// checkedReader reads exactly left bytes whose CRC32C is want, and fails
// instead of returning io.EOF if they are not. It can seek back to its start
// (and tell its position), so that a retried upload can send it again.
type checkedReader struct {
	src  *seekSource
	r    io.Reader
	pos  int64
	left int64
	crc  uint32
	want uint32
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, crc32c, p[:n])
	c.pos += int64(n)
	c.left -= int64(n)
	if err == io.EOF {
		switch {
		case c.left > 0:
			return n, fmt.Errorf("%w: %d bytes shorter than when it was hashed", ErrContentChanged, c.left)
		case c.crc != c.want:
			return n, fmt.Errorf("%w: not the bytes that were hashed", ErrContentChanged)
		}
	}
	return n, err
}

// Seek supports only telling the position and going back to the start.
func (c *checkedReader) Seek(offset int64, whence int) (int64, error) {
	switch {
	case offset == 0 && whence == io.SeekCurrent:
		return c.pos, nil
	case offset == 0 && whence == io.SeekStart:
		r, err := c.src.open()
		if err != nil {
			return 0, err
		}
		c.r, c.pos, c.left, c.crc = r, 0, c.src.size, 0
		return 0, nil
	}
	return 0, fmt.Errorf("seek to %d from %d: %w", offset, whence, errors.ErrUnsupported)
}

// blobStored reports whether a blob exists after a write whose outcome is
// unclear (a lost response, a racing writer of the same content): a blob's
// name is its content, so whoever wrote it, it is the content we meant.
func blobStored(ctx context.Context, s Store, d Digest) bool {
	_, err := s.Stat(context.WithoutCancel(ctx), BlobKey(d))
	return err == nil
}

// Read-ahead of OpenBlob: blobs of at least pipelineMin bytes are read in
// chunks of blobChunk bytes, up to blobChunks at a time, by a goroutine
// of their own, and hashed by another, while the caller consumes them.
const (
	pipelineMin = 1 << 20
	blobChunk   = 512 << 10
	blobChunks  = 4
)

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, blobChunk); return &b }}

// OpenBlob opens the blob with digest d. The reader verifies the content as
// it is read: when the content ends, instead of io.EOF it returns an error
// wrapping ErrDigestMismatch if the content's digest is not d. (A caller
// that stops reading early gets no verification.) A missing blob gives an
// error wrapping fs.ErrNotExist.
//
// A blob of a megabyte or more is read ahead in the background, in chunks
// of 512 KiB, at most four at a time, and hashed by another goroutine,
// so that hashing overlaps with the transfer; the reader's WriteTo hands
// the chunks to the writer without copying them. The reader's methods are
// not safe for concurrent use; Close stops the background reads.
func OpenBlob(ctx context.Context, s Store, d Digest) (io.ReadCloser, Info, error) {
	if d.IsZero() {
		return nil, Info{}, errors.New("open blob: zero digest")
	}
	parent := ctx
	ctx, cancel := context.WithCancel(parent)
	rc, info, err := s.Open(ctx, BlobKey(d))
	if err != nil {
		cancel()
		return nil, Info{}, fmt.Errorf("open blob %s: %w", d, err)
	}
	if info.Size < pipelineMin {
		return &verifyReader{rc: rc, cancel: cancel, want: d, h: sha256.New()}, info, nil
	}
	return newPipeReader(parent, rc, cancel, d), info, nil
}

// verifyReader hashes what it reads and compares at EOF.
type verifyReader struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	want   Digest
	h      hash.Hash
	err    error // sticky final error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		err = checkDigest(v.want, digestOfHash(v.h))
		v.err = err
	} else if err != nil {
		err = fmt.Errorf("blob %s: %w", v.want, err)
		v.err = err
	}
	return n, err
}

func (v *verifyReader) Close() error {
	err := v.rc.Close()
	v.cancel()
	return err
}

// checkDigest returns io.EOF if got is want, else the mismatch error.
func checkDigest(want, got Digest) error {
	if got != want {
		return fmt.Errorf("blob %s: %w: content has digest %s", want, ErrDigestMismatch, got)
	}
	return io.EOF
}

// chunk is a piece of a blob read ahead. Two holders release it, the hasher
// and the consumer; the last one returns it to the free list.
type chunk struct {
	buf  *[]byte
	n    int
	refs atomic.Int32
}

func (c *chunk) data() []byte { return (*c.buf)[:c.n] }

// pipeReader reads a blob ahead in a goroutine (fill), hashes it in
// another (hash), and hands the chunks to its caller in order.
type pipeReader struct {
	parent context.Context // the caller's context (Close cancels a child of it)
	rc     io.ReadCloser
	cancel context.CancelFunc
	want   Digest

	start    sync.Once
	free     chan *chunk // chunks not in use; never blocks (capacity blobChunks)
	out      chan *chunk // chunks for the caller, in order; closed after the last
	toHash   chan *chunk // chunks for the hasher, in order; closed after the last
	quit     chan struct{}
	fillDone chan struct{} // closed when fill has returned
	hashDone chan struct{} // closed when hash has returned
	closing  atomic.Bool

	readErr error  // fill's error (not io.EOF); read after fillDone
	sum     Digest // the content's digest; read after hashDone

	cur *chunk // the chunk being consumed
	off int    // bytes of cur consumed
	err error  // sticky: the final error, or after Close
}

func newPipeReader(parent context.Context, rc io.ReadCloser, cancel context.CancelFunc, want Digest) *pipeReader {
	return &pipeReader{
		parent: parent, rc: rc, cancel: cancel, want: want,
		free:     make(chan *chunk, blobChunks),
		out:      make(chan *chunk, blobChunks),
		toHash:   make(chan *chunk, blobChunks),
		quit:     make(chan struct{}),
		fillDone: make(chan struct{}),
		hashDone: make(chan struct{}),
	}
}

func (p *pipeReader) run() {
	p.start.Do(func() {
		for range blobChunks {
			p.free <- &chunk{buf: chunkBufs.Get().(*[]byte)}
		}
		go p.fill()
		go p.hash()
	})
}

func (p *pipeReader) fill() {
	defer close(p.fillDone)
	defer close(p.out)
	defer close(p.toHash)
	for {
		var c *chunk
		select {
		case c = <-p.free:
		case <-p.quit:
			return
		}
		n, err := io.ReadFull(p.rc, *c.buf)
		if n > 0 {
			c.n = n
			c.refs.Store(2)
			p.toHash <- c
			p.out <- c
		} else {
			p.free <- c
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return
		}
		if err != nil {
			p.readErr = err
			return
		}
	}
}

func (p *pipeReader) hash() {
	defer close(p.hashDone)
	h := sha256.New()
	for c := range p.toHash {
		if !p.closing.Load() {
			h.Write(c.data())
		}
		p.release(c)
	}
	p.sum = digestOfHash(h)
}

func (p *pipeReader) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c
	}
}

// next makes p.cur a chunk with unconsumed bytes, or sets p.err.
func (p *pipeReader) next() {
	for p.cur == nil && p.err == nil {
		c, ok := <-p.out
		if !ok {
			p.err = p.finish()
			return
		}
		p.cur, p.off = c, 0
	}
}

// finish returns the final error once every chunk has been consumed.
func (p *pipeReader) finish() error {
	<-p.fillDone
	if p.readErr != nil {
		return fmt.Errorf("blob %s: %w", p.want, p.readErr)
	}
	<-p.hashDone
	return checkDigest(p.want, p.sum)
}

// consumed marks n more bytes of p.cur consumed.
func (p *pipeReader) consumed(n int) {
	p.off += n
	if p.off == p.cur.n {
		p.release(p.cur)
		p.cur = nil
	}
}

func (p *pipeReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, p.err
	}
	p.run()
	p.next()
	if p.cur == nil {
		return 0, p.err
	}
	n := copy(b, p.cur.data()[p.off:])
	p.consumed(n)
	return n, nil
}

// WriteTo writes the rest of the blob to w and returns the verification
// error, if any, as Read would at the end; it does not return io.EOF.
func (p *pipeReader) WriteTo(w io.Writer) (int64, error) {
	p.run()
	var total int64
	for {
		p.next()
		if p.cur == nil {
			if p.err == io.EOF {
				return total, nil
			}
			return total, p.err
		}
		b := p.cur.data()[p.off:]
		n, err := w.Write(b)
		if n < len(b) && err == nil {
			err = io.ErrShortWrite
		}
		total += int64(n)
		p.consumed(n)
		if err != nil {
			return total, err
		}
	}
}

// Close stops the background reads and closes the underlying reader.
func (p *pipeReader) Close() error {
	if p.err == nil || p.err == io.EOF {
		p.err = fmt.Errorf("blob %s: reader closed", p.want)
	}
	started := true
	p.start.Do(func() { started = false })
	stopped := false // whether Close cancelled a read in progress
	if started && !p.closing.Swap(true) {
		select {
		case <-p.fillDone:
		default:
			stopped = true
			p.cancel() // ends a read in progress
		}
		close(p.quit)
		<-p.fillDone
		<-p.hashDone
		if p.cur != nil {
			p.release(p.cur)
			p.cur = nil
		}
		for c := range p.out {
			chunkBufs.Put(c.buf)
		}
		for range len(p.free) {
			chunkBufs.Put((<-p.free).buf)
		}
	}
	err := p.rc.Close()
	p.cancel()
	if stopped && p.parent.Err() == nil && errors.Is(err, context.Canceled) {
		err = nil // the cancellation was Close's own
	}
	return err
}

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
