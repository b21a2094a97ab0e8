package gcs_test

// Fault injection: a proxy on 127.0.0.1 between the real storage client and
// fake-gcs-server answers a seeded, deterministic fraction of the requests
// with a fault instead of the server's answer:
//
//   - unavailable: 503, without passing the request on;
//   - resetUpload: passes on the first bytes of an upload's body (a random
//     number of them, fewer than the whole), then resets both connections,
//     so the server sees a truncated request and the client a reset;
//   - resetRequest: resets the connection of a request without a body;
//   - stall: reads the request and answers nothing until the client's
//     timeout (the HTTP transport's ResponseHeaderTimeout) gives up;
//   - cutDownload: passes on a download but closes the connection after
//     half of the content;
//   - lostResponse: passes on a one-request upload, throws the answer away
//     and answers 503: the write happened, the client does not know it;
//   - forbidden: 403 for every request, as a bucket without permission.
//
// The store under test is retry.New(gcs store whose client goes through the
// proxy). It runs in two configurations: with the client library's own
// retries (as in production; the decorator sees what the library gives up
// on), and with the library's retries off, so that every fault reaches the
// decorator. Lost responses are injected only in the first: without the
// library's retries, a lost conditional write is ErrUnknownOutcome by
// design (checked in TestFaultLostPutIf).
//
// Requests are decided in the order they arrive, from one seeded generator;
// the operations run one after another, so a run is repeatable.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
	"github.com/sluice-ci/sluice/store/retry"
)

type fault int

const (
	noFault fault = iota
	unavailable
	resetUpload
	resetRequest
	stall
	cutDownload
	lostResponse
	forbidden
)

func (f fault) String() string {
	return [...]string{"none", "unavailable", "resetUpload", "resetRequest", "stall", "cutDownload", "lostResponse", "forbidden"}[f]
}

// stallTimeout is the client's ResponseHeaderTimeout: how long a stalled
// request holds up the test.
const stallTimeout = 400 * time.Millisecond

// faultConfig says how often each fault is injected.
type faultConfig struct {
	seed      uint64
	rates     map[fault]float64 // of the requests a fault applies to
	maxStalls int               // each costs stallTimeout
}

// faultProxy is the proxy. Faults are off until on is called.
type faultProxy struct {
	t        *testing.T
	srv      *httptest.Server
	upstream string // host:port of the fake server
	tr       *http.Transport

	mu       sync.Mutex
	cfg      faultConfig
	rng      *rand.Rand
	active   bool
	forced   []fault       // injected into the next requests they apply to, before the drawn ones
	requests int           // requests while active
	counts   map[fault]int // faults injected
}

func newFaultProxy(t *testing.T, cfg faultConfig) *faultProxy {
	t.Helper()
	p := &faultProxy{
		t:        t,
		upstream: emulator(t),
		tr:       &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.seed, 0x5eed)),
		counts:   map[fault]int{},
	}
	p.srv = httptest.NewServer(p)
	t.Cleanup(func() {
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *faultProxy) host() string { return p.srv.Listener.Addr().String() }

// on turns faults on and resets the request count.
func (p *faultProxy) on() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active, p.requests = true, 0
}

func (p *faultProxy) off() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active = false
}

// force injects f into the next request it applies to.
func (p *faultProxy) force(f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forced = append(p.forced, f)
}

func (p *faultProxy) stats() (requests int, counts map[fault]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests, copyCounts(p.counts)
}

func copyCounts(m map[fault]int) map[fault]int {
	c := make(map[fault]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// applies reports whether fault f can be injected into r.
func applies(f fault, r *http.Request) bool {
	upload := strings.HasPrefix(r.URL.Path, "/upload/")
	download := r.Method == http.MethodGet && !upload &&
		(!strings.HasPrefix(r.URL.Path, "/storage/v1/") || r.URL.Query().Get("alt") == "media")
	switch f {
	case unavailable, stall, forbidden:
		return true
	case resetUpload:
		return upload && r.ContentLength != 0
	case resetRequest:
		return !upload
	case cutDownload:
		return download
	case lostResponse:
		return upload && r.URL.Query().Get("uploadType") == "multipart"
	}
	return false
}

// decide picks the fault for r, and for resetUpload how many bytes of the
// body to pass on.
func (p *faultProxy) decide(r *http.Request) (fault, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active {
		return noFault, 0
	}
	p.requests++
	f := noFault
	for i, ff := range p.forced {
		if applies(ff, r) {
			f = ff
			p.forced = slices.Delete(p.forced, i, i+1)
			break
		}
	}
	x := p.rng.Float64()
	if f == noFault {
		for _, ff := range []fault{unavailable, resetUpload, resetRequest, stall, cutDownload, lostResponse, forbidden} {
			rate := p.cfg.rates[ff]
			if !applies(ff, r) || rate == 0 {
				continue
			}
			if x < rate {
				f = ff
				break
			}
			x -= rate
		}
	}
	if f == stall && p.counts[stall] >= p.cfg.maxStalls && p.cfg.rates[stall] < 1 {
		f = noFault
	}
	var n int64
	if f == resetUpload {
		limit := r.ContentLength
		if limit < 0 {
			limit = 64 << 10
		}
		n = p.rng.Int64N(limit)
	}
	if f != noFault {
		p.counts[f]++
		p.t.Logf("proxy: %s on %s %s", f, r.Method, r.URL)
	}
	return f, n
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, n := p.decide(r)
	switch f {
	case noFault:
		resp, err := p.forward(r, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		p.copyHeader(w, resp)
		_, _ = io.Copy(w, resp.Body)
	case unavailable, forbidden:
		_, _ = io.Copy(io.Discard, r.Body)
		code := http.StatusServiceUnavailable
		if f == forbidden {
			code = http.StatusForbidden
		}
		writeError(w, code, fmt.Sprintf("injected by the test proxy: %s", f))
	case resetRequest:
		resetConn(w, true)
	case resetUpload:
		// Pass on n bytes, then fail the body: the transport aborts the
		// upstream request, so the server sees it truncated.
		head, err := io.ReadAll(io.LimitReader(r.Body, n))
		if err != nil || int64(len(head)) < n {
			resetConn(w, true) // the body was shorter: nothing passed on
			return
		}
		body := io.MultiReader(bytes.NewReader(head), errReader{errors.New("cut by the test proxy")})
		if resp, err := p.forward(r, body); err == nil {
			resp.Body.Close()
			p.t.Errorf("proxy: a truncated upload (%d of %d bytes) to %s succeeded", n, r.ContentLength, r.URL)
		}
		resetConn(w, true)
	case stall:
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done(): // the client gave up
		case <-time.After(10 * stallTimeout):
			p.t.Errorf("proxy: the client waited more than %s for a stalled request", 10*stallTimeout)
		}
		resetConn(w, false)
	case cutDownload:
		resp, err := p.forward(r, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		p.copyHeader(w, resp)
		if resp.StatusCode == http.StatusOK && resp.ContentLength > 1 {
			_, _ = io.CopyN(w, resp.Body, resp.ContentLength/2)
			w.(http.Flusher).Flush()
			resetConn(w, false) // the client reads a short body
			return
		}
		_, _ = io.Copy(w, resp.Body)
	case lostResponse:
		resp, err := p.forward(r, r.Body)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		writeError(w, http.StatusServiceUnavailable, "response lost by the test proxy")
	}
}

// forward sends r to the fake server with body. The Host header stays the
// proxy's, so the URLs the server returns (resumable upload sessions) lead
// back through the proxy.
func (p *faultProxy) forward(r *http.Request, body io.Reader) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", p.upstream
	out.Body = io.NopCloser(body)
	if r.ContentLength == 0 {
		out.Body = nil
	}
	return p.tr.RoundTrip(out)
}

func (p *faultProxy) copyHeader(w http.ResponseWriter, resp *http.Response) {
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":%q}}`, code, msg)
}

// resetConn closes the client's connection: with a reset (RST) if hard,
// else with a plain close after what was written.
func resetConn(w http.ResponseWriter, hard bool) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && hard {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// proxyClient returns a storage client that goes through the proxy, with
// its own retries (fast) or none.
func proxyClient(t *testing.T, p *faultProxy, libraryRetries bool) *storage.Client {
	t.Helper()
	emulator(t)
	t.Setenv("STORAGE_EMULATOR_HOST", p.host()) // restored after the test
	tr := &http.Transport{ResponseHeaderTimeout: stallTimeout, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := storage.NewClient(context.Background(), storage.WithDisabledClientMetrics(),
		option.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	opts := []storage.RetryOption{storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond})}
	if !libraryRetries {
		opts = append(opts, storage.WithErrorFunc(func(error) bool { return false }))
	}
	c.SetRetry(opts...)
	return c
}

// faultStore is a retry.New(gcs store) through a fault proxy.
type faultStore struct {
	store.Store
	gcs     *gcs.Store
	proxy   *faultProxy
	direct  *storage.Client // to the fake server, without faults
	bucket  string
	retries atomic.Int64
	onRetry func(retry.Failure) // if set, called on each retry of the decorator
}

func newFaultStore(t *testing.T, cfg faultConfig, libraryRetries bool) *faultStore {
	t.Helper()
	direct := newClient(t)
	fs := &faultStore{direct: direct, bucket: createBucket(t, direct, "sluice-fault")}
	fs.proxy = newFaultProxy(t, cfg)
	g, err := gcs.New(t.Context(), "gs://"+fs.bucket+"/ci", gcs.WithClient(proxyClient(t, fs.proxy, libraryRetries)), gcs.WithChunkSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	fs.gcs = g
	fs.Store = retry.New(g, retry.WithBackoff(time.Millisecond, 20*time.Millisecond), retry.WithMaxAttempts(12),
		retry.WithNotify(func(f retry.Failure) {
			fs.retries.Add(1)
			if fs.onRetry != nil {
				fs.onRetry(f)
			}
			t.Logf("retry %s %q after attempt %d: %v", f.Op, f.Key, f.Attempt, f.Err)
		}))
	return fs
}

// TestFaults runs the operations of a pipeline run through faults: small
// and large (resumable) writes, seekable or not, blobs, reads, listings,
// compare-and-swap increments and a delete. Every operation must succeed,
// every blob verify, and a watcher that lists the bucket all along must
// never see an object that is not whole.
func TestFaults(t *testing.T) {
	for _, tt := range []struct {
		name           string
		libraryRetries bool
		cfg            faultConfig
	}{
		{"ClientRetries", true, faultConfig{seed: 1, maxStalls: 3, rates: map[fault]float64{
			unavailable: 0.08, resetUpload: 0.08, resetRequest: 0.05, stall: 0.02, cutDownload: 0.15, lostResponse: 0.08}}},
		{"DecoratorOnly", false, faultConfig{seed: 2, maxStalls: 3, rates: map[fault]float64{
			unavailable: 0.06, resetUpload: 0.05, resetRequest: 0.05, stall: 0.02, cutDownload: 0.15}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s := newFaultStore(t, tt.cfg, tt.libraryRetries)
			runFaults(t, s)
			requests, counts := s.proxy.stats()
			t.Logf("%d requests, faults %v, %d retries by the decorator, %s", requests, counts, s.retries.Load(), time.Since(start).Round(time.Millisecond))
			for f := range tt.cfg.rates {
				if counts[f] == 0 {
					t.Errorf("no %s fault was injected; the test does not test it (change the seed)", f)
				}
			}
			if !tt.libraryRetries && s.retries.Load() == 0 {
				t.Error("the decorator retried nothing; the test is broken")
			}
		})
	}
}

func runFaults(t *testing.T, s *faultStore) {
	ctx := t.Context()
	rnd := rand.NewChaCha8([32]byte{7})
	content := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rnd.Read(b)
		return b
	}

	// What each object may hold: the watcher and the final check compare
	// every object in the bucket with it.
	var mu sync.Mutex
	want := map[string][][32]byte{} // object name -> acceptable sha256
	expect := func(key string, contents ...[]byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range contents {
			want[s.gcs.ObjectName(key)] = append(want[s.gcs.ObjectName(key)], sha256.Sum256(c))
		}
	}
	wantSize := map[string][]int64{}
	expectSize := func(key string, n int64) {
		mu.Lock()
		defer mu.Unlock()
		wantSize[s.gcs.ObjectName(key)] = append(wantSize[s.gcs.ObjectName(key)], n)
	}

	// The watcher lists the bucket directly, without faults, until the end.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watched sync.WaitGroup
	var views atomic.Int64
	watched.Go(func() {
		for watchCtx.Err() == nil {
			it := s.direct.Bucket(s.bucket).Objects(watchCtx, &storage.Query{Prefix: "ci/"})
			for {
				a, err := it.Next()
				if err != nil {
					break
				}
				views.Add(1)
				mu.Lock()
				ok := slices.Contains(wantSize[a.Name], a.Size)
				mu.Unlock()
				if !ok {
					t.Errorf("watcher: object %s has %d bytes, want one of %v: a partial or unexpected object is visible", a.Name, a.Size, wantSize[a.Name])
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() {
		stopWatch()
		watched.Wait()
		if views.Load() == 0 {
			t.Error("the watcher saw no object")
		}
	}()

	s.proxy.on()

	// Small objects: run records, logs; every other one from a reader that
	// cannot seek (the decorator keeps it in memory to send it again).
	// (Slices, not maps, so that the order of requests is the same in every
	// run.)
	type object struct {
		key     string
		content []byte
	}
	var small []object
	for i := range 16 {
		key := fmt.Sprintf("runs/r1/node-%02d/run.json", i)
		b := content(1<<10 + i*700)
		expect(key, b)
		expectSize(key, int64(len(b)))
		var r io.Reader = bytes.NewReader(b)
		if i%2 == 1 {
			r = struct{ io.Reader }{r}
		}
		info, err := s.Put(ctx, key, r)
		if err != nil {
			t.Fatalf("Put(%s): %v", key, err)
		}
		if info.Size != int64(len(b)) {
			t.Fatalf("Put(%s) size %d, want %d", key, info.Size, len(b))
		}
		small = append(small, object{key, b})
	}

	// Large objects, resumable uploads in 1 MiB chunks: through Put with a
	// seekable reader, and blobs through PutBlob (which spools to a file and
	// writes with PutIf(absent)).
	large := content(6<<20 + 12345)
	expect("runs/r1/train/outputs/model.bin", large)
	expectSize("runs/r1/train/outputs/model.bin", int64(len(large)))
	if _, err := s.Put(ctx, "runs/r1/train/outputs/model.bin", bytes.NewReader(large)); err != nil {
		t.Fatalf("Put(large): %v", err)
	}
	type blob struct {
		d       store.Digest
		content []byte
	}
	var blobs []blob
	for _, n := range []int{3 << 20, 5 << 20, 300 << 10, 4 << 10, 1} {
		b := content(n)
		d := store.NewDigest(sha256.Sum256(b))
		expect(store.BlobKey(d), b)
		expectSize(store.BlobKey(d), int64(n))
		got, size, err := store.PutBlob(ctx, s, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("PutBlob(%d bytes): %v", n, err)
		}
		if got != d || size != int64(n) {
			t.Fatalf("PutBlob = %s, %d, want %s, %d", got, size, d, n)
		}
		blobs = append(blobs, blob{d, b})
	}
	// The same content again: already stored, nothing written.
	if _, _, err := store.PutBlob(ctx, s, bytes.NewReader(blobs[0].content)); err != nil {
		t.Fatalf("PutBlob(%s) again: %v", blobs[0].d, err)
	}

	// Reads: every object whole, every blob verified.
	read := func(key string) []byte {
		t.Helper()
		rc, info, err := s.Open(ctx, key)
		if err != nil {
			t.Fatalf("Open(%s): %v", key, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		if info.Size != int64(len(b)) {
			t.Fatalf("Open(%s) size %d, read %d bytes", key, info.Size, len(b))
		}
		return b
	}
	for _, o := range small {
		if !bytes.Equal(read(o.key), o.content) {
			t.Errorf("%s: content differs", o.key)
		}
	}
	if !bytes.Equal(read("runs/r1/train/outputs/model.bin"), large) {
		t.Error("large object: content differs")
	}
	for _, b := range blobs {
		rc, info, err := store.OpenBlob(ctx, s, b.d)
		if err != nil {
			t.Fatalf("OpenBlob(%s): %v", b.d, err)
		}
		n, err := io.Copy(io.Discard, rc) // the digest is verified at the end
		rc.Close()
		if err != nil || n != int64(len(b.content)) || info.Size != n {
			t.Errorf("blob %s: read %d of %d bytes: %v", b.d, n, len(b.content), err)
		}
	}

	// Compare-and-swap increments.
	const increments = 12
	for i := 1; i <= increments; i++ {
		v := []byte(strconv.Itoa(i))
		expect("refs/counter", v)
		expectSize("refs/counter", int64(len(v)))
	}
	for range increments {
		if _, err := store.Update(ctx, s, "refs/counter", func(old []byte, exists bool) ([]byte, error) {
			n := 0
			if exists {
				var err error
				if n, err = strconv.Atoi(string(old)); err != nil {
					return nil, err
				}
			}
			return []byte(strconv.Itoa(n + 1)), nil
		}); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	if got := string(read("refs/counter")); got != strconv.Itoa(increments) {
		t.Errorf("counter = %s after %d increments", got, increments)
	}

	// A delete.
	if err := s.Delete(ctx, "runs/r1/node-00/run.json"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	small = small[1:] // node-00

	// The listing has every object once, in order, each whole.
	var keys []string
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		keys = append(keys, info.Key)
		mu.Lock()
		ok := slices.Contains(wantSize[s.gcs.ObjectName(info.Key)], info.Size)
		mu.Unlock()
		if !ok {
			t.Errorf("List: %s has %d bytes", info.Key, info.Size)
		}
	}
	wantKeys := []string{"refs/counter", "runs/r1/train/outputs/model.bin"}
	for _, o := range small {
		wantKeys = append(wantKeys, o.key)
	}
	for _, b := range blobs {
		wantKeys = append(wantKeys, store.BlobKey(b.d))
	}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("List = %q\nwant %q", keys, wantKeys)
	}
	s.proxy.off()

	// Finally, read every object directly: each holds one of the contents
	// written under its name.
	it := s.direct.Bucket(s.bucket).Objects(ctx, &storage.Query{Prefix: "ci/"})
	for {
		a, err := it.Next()
		if err != nil {
			break
		}
		rc, err := s.direct.Bucket(s.bucket).Object(a.Name).NewReader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ok := slices.Contains(want[a.Name], [32]byte(h.Sum(nil)))
		mu.Unlock()
		if !ok {
			t.Errorf("object %s (%d bytes) holds content that was never written under its name", a.Name, a.Size)
		}
	}
}

// TestFaultLostPutIf checks a conditional write whose response is lost
// (it was applied, the client heard 503). With the client library's
// retries, the gcs backend recognises its own write by its write id and
// reports success. Without them, the decorator retries, the retry's
// precondition fails on the caller's own write, and it reports
// ErrUnknownOutcome rather than ErrPrecondition (which would make Update
// apply its change twice).
func TestFaultLostPutIf(t *testing.T) {
	t.Run("ClientRetries", func(t *testing.T) {
		s := newFaultStore(t, faultConfig{seed: 3}, true)
		s.proxy.on()
		s.proxy.force(lostResponse)
		info, err := s.PutIf(t.Context(), "refs/main", strings.NewReader("run-1"), store.Absent)
		if err != nil {
			t.Fatalf("PutIf with a lost response: %v", err)
		}
		if _, counts := s.proxy.stats(); counts[lostResponse] != 1 {
			t.Fatalf("faults %v, want one lost response", counts)
		}
		if got, err := s.Stat(t.Context(), "refs/main"); err != nil || got.Generation != info.Generation {
			t.Errorf("Stat = %+v, %v; PutIf returned %+v", got, err, info)
		}
	})
	t.Run("DecoratorOnly", func(t *testing.T) {
		s := newFaultStore(t, faultConfig{seed: 3}, false)
		s.proxy.on()
		s.proxy.force(lostResponse)
		_, err := s.PutIf(t.Context(), "refs/main", strings.NewReader("run-1"), store.Absent)
		if !errors.Is(err, retry.ErrUnknownOutcome) || errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("PutIf with a lost response: %v; want ErrUnknownOutcome and not ErrPrecondition", err)
		}
		t.Logf("error: %v", err)
		rc, _, err := s.Open(t.Context(), "refs/main")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, _ := io.ReadAll(rc); string(b) != "run-1" {
			t.Errorf("refs/main = %q, want the write's content", b)
		}
	})
}

// TestFaultReadResumes checks a download that breaks halfway when the
// client library's own attempt to resume it fails too: the decorator opens
// the object again, at the same generation, and the reader goes on.
func TestFaultReadResumes(t *testing.T) {
	s := newFaultStore(t, faultConfig{seed: 5}, false)
	ctx := t.Context()
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
	if _, err := s.Put(ctx, "runs/r1/outputs/data.bin", bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	s.onRetry = func(f retry.Failure) {
		if f.Op == "read" {
			reads.Add(1)
		}
	}
	s.proxy.on()
	s.proxy.force(cutDownload) // the download breaks halfway,
	s.proxy.force(unavailable) // and the library's ranged reopen gets a 503
	rc, _, err := s.Open(ctx, "runs/r1/outputs/data.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, %v; want the %d bytes written", len(got), err, len(content))
	}
	if _, counts := s.proxy.stats(); counts[cutDownload] != 1 || counts[unavailable] != 1 {
		t.Fatalf("faults %v, want one cut download and one 503", counts)
	}
	if reads.Load() != 1 {
		t.Errorf("the decorator resumed the read %d times, want once", reads.Load())
	}
}

// TestFaultPermanent checks that a permanent fault (403 on every request)
// fails each operation at once, with a message that says what to fix, and
// with one request: neither the client library nor the decorator retries.
func TestFaultPermanent(t *testing.T) {
	s := newFaultStore(t, faultConfig{seed: 4, rates: map[fault]float64{forbidden: 1}}, true)
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 3<<20)
	ops := []struct {
		name string
		do   func() error
	}{
		{"Stat", func() error { _, err := s.Stat(ctx, "runs/r1/run.json"); return err }},
		{"Open", func() error { _, _, err := s.Open(ctx, "runs/r1/run.json"); return err }},
		{"Put", func() error { _, err := s.Put(ctx, "runs/r1/run.json", strings.NewReader("{}")); return err }},
		{"PutLarge", func() error { _, err := s.Put(ctx, "runs/r1/model.bin", bytes.NewReader(big)); return err }},
		{"PutIf", func() error { _, err := s.PutIf(ctx, "refs/main", strings.NewReader("r1"), store.Absent); return err }},
		{"Delete", func() error { return s.Delete(ctx, "runs/r1/run.json") }},
		{"List", func() error {
			for _, err := range s.List(ctx, "runs/") {
				if err != nil {
					return err
				}
			}
			return errors.New("List yielded no error")
		}},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			s.proxy.on()
			before := s.retries.Load()
			start := time.Now()
			err := op.do()
			elapsed := time.Since(start)
			requests, _ := s.proxy.stats()
			if err == nil {
				t.Fatal("succeeded through a 403")
			}
			var ge *googleapi.Error
			if !errors.As(err, &ge) || ge.Code != http.StatusForbidden {
				t.Errorf("error %v does not wrap the 403", err)
			}
			for _, want := range []string{fmt.Sprintf("permission denied on bucket %q", s.bucket), "roles/storage.objectUser"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if requests != 1 {
				t.Errorf("%d requests, want 1: a permanent error is not retried", requests)
			}
			if n := s.retries.Load() - before; n != 0 {
				t.Errorf("the decorator retried %d times", n)
			}
			if elapsed > 2*time.Second {
				t.Errorf("took %s", elapsed)
			}
		})
	}
}
