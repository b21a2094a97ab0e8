package gcs_test

// These tests run against github.com/fsouza/fake-gcs-server, a stand-in for
// Google Cloud Storage, not against GCS itself. The real client library
// (cloud.google.com/go/storage) talks HTTP to it on 127.0.0.1, found through
// STORAGE_EMULATOR_HOST exactly as a user's emulator would be.
//
// The fake server runs in a child process: this test binary started again
// with fakeServerEnv set (see TestMain), which calls
// fakestorage.NewServerWithOptions and serves until its stdin closes. It
// needs nothing outside the module, so the tests never skip, with CI=true or
// not. It is a process rather than a goroutine for one reason: the
// conformance suite's Large test measures the bytes the store allocates
// while it moves 64 MiB (runtime.MemStats counts the whole process), and the
// fake server, which holds objects in memory and appends each upload chunk
// to a growing slice, would be counted too.
//
// Where the fake differs from GCS, and how these tests account for it:
//   - It does not check credentials or permissions. The tests of 401 and 403
//     use a plain HTTP server that answers every request with that status.
//   - Its generations are the time in microseconds; GCS's are opaque
//     numbers that also increase with every write of a name. The suite
//     checks only that they increase, which both do.
//   - It serves the XML download API (GET /BUCKET/OBJECT, which the client
//     uses for reads) only for its "public host"; the child sets that to
//     127.0.0.1, the address it listens on.
// None of these changes an assertion of the conformance suite.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
	"github.com/sluice-ci/sluice/store/storetest"
)

// fakeServerEnv, when set, makes the test binary serve fake-gcs-server
// instead of running tests.
const fakeServerEnv = "SLUICE_TEST_FAKE_GCS_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeServerEnv) != "" {
		os.Exit(serveFake())
	}
	code := m.Run()
	stopFake()
	os.Exit(code)
}

// serveFake runs fake-gcs-server on a free port of 127.0.0.1, prints its
// URL on a line of stdout, and serves until stdin is closed (by the parent,
// or by its death).
func serveFake() int {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		PublicHost: "127.0.0.1", // the host of XML API downloads
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-gcs-server:", err)
		return 1
	}
	defer srv.Stop()
	fmt.Println(srv.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

var fake struct {
	once  sync.Once
	cmd   *exec.Cmd
	stdin io.Closer
	host  string // host:port
	err   error
}

// emulator starts the fake server once for the test binary, points
// STORAGE_EMULATOR_HOST at it and returns its host:port. Every test that
// makes a client calls it first, so that no client looks for real
// credentials.
func emulator(t *testing.T) string {
	t.Helper()
	fake.once.Do(startFake)
	if fake.err != nil {
		t.Fatalf("start fake-gcs-server: %v", fake.err)
	}
	return fake.host
}

func startFake() {
	exe, err := os.Executable()
	if err != nil {
		fake.err = err
		return
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fake.err = err
		return
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fake.err = err
		return
	}
	if err := cmd.Start(); err != nil {
		fake.err = err
		return
	}
	fake.cmd, fake.stdin = cmd, stdin
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			fake.err = fmt.Errorf("read its address: %w", r.err)
			return
		}
		host, ok := strings.CutPrefix(strings.TrimSpace(r.line), "http://")
		if !ok || !strings.HasPrefix(host, "127.0.0.1:") {
			fake.err = fmt.Errorf("unexpected address %q", r.line)
			return
		}
		fake.host = host
	case <-time.After(30 * time.Second):
		fake.err = errors.New("it printed no address within 30s")
		return
	}
	fake.err = os.Setenv("STORAGE_EMULATOR_HOST", fake.host)
}

func stopFake() {
	if fake.cmd == nil {
		return
	}
	_ = fake.stdin.Close()
	done := make(chan struct{})
	go func() { _ = fake.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = fake.cmd.Process.Kill()
		<-done
	}
}

// newClient returns a storage client for the fake server, with extra
// options.
func newClient(t *testing.T, opts ...option.ClientOption) *storage.Client {
	t.Helper()
	emulator(t)
	c, err := storage.NewClient(context.Background(), append([]option.ClientOption{storage.WithDisabledClientMetrics()}, opts...)...)
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var buckets atomic.Int64

// createBucket creates a new bucket named base-N, unique in the fake
// server (which lives as long as the test binary, also with -count), and
// returns its name.
func createBucket(t *testing.T, c *storage.Client, base string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", base, buckets.Add(1))
	if err := c.Bucket(name).Create(context.Background(), "sluice-test", nil); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// open opens the store at url and registers its cleanup: the objects under
// its prefix are deleted (the fake server keeps them in memory) and the
// store is closed.
func open(t *testing.T, url string, opts ...gcs.Option) *gcs.Store {
	t.Helper()
	c := newClient(t)
	s, err := gcs.New(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		it := c.Bucket(s.Bucket()).Objects(ctx, &storage.Query{Prefix: s.Prefix()})
		for {
			a, err := it.Next()
			if err != nil {
				break
			}
			_ = c.Bucket(s.Bucket()).Object(a.Name).Delete(ctx)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the store conformance suite against the GCS backend
// on the fake server: once with each store under a prefix of a shared
// bucket (opened by URL through STORAGE_EMULATOR_HOST), once with each
// store at the root of its own bucket (with an injected client).
func TestConformance(t *testing.T) {
	client := newClient(t)
	shared := createBucket(t, client, "sluice-conformance")
	n := 0
	t.Run("Prefix", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			n++
			return open(t, fmt.Sprintf("gs://%s/ci/store-%d", shared, n))
		})
	})
	t.Run("BucketRoot", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return open(t, "gs://"+createBucket(t, client, "sluice-root"), gcs.WithClient(client))
		})
	})
}

// TestLayout checks that key k is the object PREFIX/k, which a person finds
// with gcloud storage ls, and that objects a store did not write are not
// listed: objects beside the prefix, a console "folder" placeholder, and
// names with a reserved segment.
func TestLayout(t *testing.T) {
	client := newClient(t)
	bucket := createBucket(t, client, "sluice-layout")
	s := open(t, "gs://"+bucket+"/team/sluice/")
	ctx := t.Context()
	if got := s.String(); got != "gs://"+bucket+"/team/sluice" {
		t.Errorf("String() = %q", got)
	}
	if got, want := open(t, "gs://"+bucket+"/").String(), "gs://"+bucket; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	const key = "runs/r1/train/outputs/model.pkl"
	info, err := s.Put(ctx, key, strings.NewReader("weights"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.Bucket(bucket).Object("team/sluice/" + key).Attrs(ctx)
	if err != nil {
		t.Fatalf("object team/sluice/%s: %v", key, err)
	}
	if a.Generation != info.Generation || a.Size != info.Size {
		t.Errorf("object attrs %d/%d, Put info %+v", a.Generation, a.Size, info)
	}
	for _, name := range []string{"team/sluice", "team/sluice-other/x", "team/slu", "team/sluice/runs/", "team/sluice/.sluice-tmp-1", "team/sluice/runs/.sluice-gen.x"} {
		w := client.Bucket(bucket).Object(name).NewWriter(ctx)
		if _, err := w.Write([]byte("foreign")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		t.Cleanup(func() { _ = client.Bucket(bucket).Object(name).Delete(context.Background()) })
	}
	var got []string
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	if !slices.Equal(got, []string{key}) {
		t.Errorf("List = %q, want [%s]", got, key)
	}
}

// TestOpenWhileReplaced checks that an open reader goes on reading the
// generation it reported while the object is replaced.
func TestOpenWhileReplaced(t *testing.T) {
	client := newClient(t)
	s := open(t, "gs://"+createBucket(t, client, "sluice-replace"))
	ctx := t.Context()
	first, err := s.Put(ctx, "refs/x", bytes.NewReader(bytes.Repeat([]byte("a"), 4<<20)))
	if err != nil {
		t.Fatal(err)
	}
	rc, info, err := s.Open(ctx, "refs/x")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	second, err := s.Put(ctx, "refs/x", bytes.NewReader(bytes.Repeat([]byte("b"), 4<<20)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if info.Generation != first.Generation || !bytes.Equal(got, bytes.Repeat([]byte("a"), 4<<20)) {
		t.Errorf("Open before the replace: generation %d (first %d, second %d), content of the first: %v",
			info.Generation, first.Generation, second.Generation, bytes.Equal(got, bytes.Repeat([]byte("a"), 4<<20)))
	}
}

// TestLargeConditional checks preconditions on resumable uploads (content
// larger than one request), which fake-gcs-server enforces only from
// v1.55.0. A small chunk size makes 1 MiB a four-chunk upload.
func TestLargeConditional(t *testing.T) {
	client := newClient(t)
	s := open(t, "gs://"+createBucket(t, client, "sluice-large-cond")+"/p", gcs.WithChunkSize(256<<10))
	ctx := t.Context()
	content := func(c byte) io.Reader { return bytes.NewReader(bytes.Repeat([]byte{c}, 1<<20)) }
	g1, err := s.PutIf(ctx, "big", content('1'), store.Absent)
	if err != nil {
		t.Fatalf("PutIf(absent): %v", err)
	}
	if _, err := s.PutIf(ctx, "big", content('2'), store.Absent); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("PutIf(absent) over an object: %v, want store.ErrPrecondition", err)
	}
	g2, err := s.PutIf(ctx, "big", content('3'), g1.Generation)
	if err != nil {
		t.Fatalf("PutIf(current generation): %v", err)
	}
	if _, err := s.PutIf(ctx, "big", content('4'), g1.Generation); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("PutIf(stale generation): %v, want store.ErrPrecondition", err)
	}
	rc, info, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || info.Generation != g2.Generation || !bytes.Equal(got, bytes.Repeat([]byte{'3'}, 1<<20)) {
		t.Errorf("after the conditional writes: generation %d (want %d), %d bytes, %v", info.Generation, g2.Generation, len(got), err)
	}
}

// loseResponses passes requests to the server but, for the next n uploads,
// throws the server's answer away and answers 503 instead: the write
// happened, the client does not know it, and retries.
type loseResponses struct {
	n    atomic.Int32
	lost atomic.Int32
}

func (l *loseResponses) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/upload/") || resp.StatusCode != http.StatusOK || l.n.Add(-1) < 0 {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.lost.Add(1)
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable,
		Status:     "503 Service Unavailable",
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"error":{"code":503,"message":"response lost by the test"}}`)),
		Request:    req,
	}, nil
}

// TestWriteResponseLost checks writes whose first attempt succeeded but
// whose answer was lost: the client library retries them, and a retried
// conditional write is refused with 412 since the object has changed (by
// the write itself). PutIf must recognise its own write by its write id.
func TestWriteResponseLost(t *testing.T) {
	lose := &loseResponses{}
	client := newClient(t, option.WithHTTPClient(&http.Client{Transport: lose}))
	client.SetRetry(storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	s := open(t, "gs://"+createBucket(t, client, "sluice-lost")+"/p", gcs.WithClient(client))
	ctx := t.Context()
	check := func(what string, info store.Info, err error, content string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if lose.lost.Swap(0) != 1 {
			t.Fatalf("%s: no response was lost; the test is broken", what)
		}
		rc, got, err := s.Open(ctx, "ref")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != content || got.Generation != info.Generation {
			t.Fatalf("%s: ref holds %q at generation %d, %v; want %q at %d", what, b, got.Generation, err, content, info.Generation)
		}
	}
	lose.n.Store(1)
	g1, err := s.PutIf(ctx, "ref", strings.NewReader("v1"), store.Absent)
	check("PutIf(absent)", g1, err, "v1")
	lose.n.Store(1)
	g2, err := s.PutIf(ctx, "ref", strings.NewReader("v2"), g1.Generation)
	check("PutIf(generation)", g2, err, "v2")
	lose.n.Store(1)
	g3, err := s.Put(ctx, "ref", strings.NewReader("v3"))
	check("Put", g3, err, "v3")

	// A true conflict is still one, and says what the object has.
	_, err = s.PutIf(ctx, "ref", strings.NewReader("v4"), g2.Generation)
	if !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("PutIf(stale generation): %v, want store.ErrPrecondition", err)
	}
	if want := fmt.Sprintf("have generation %d", g3.Generation); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}

	// Update with a lost response increments once.
	lose.n.Store(1)
	if _, err := store.Update(ctx, s, "counter", func(old []byte, exists bool) ([]byte, error) {
		return append(old, '+'), nil
	}); err != nil {
		t.Fatal(err)
	}
	lose.n.Store(0)
	rc, _, err := s.Open(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "+" {
		t.Errorf("counter = %q after one Update, want %q", b, "+")
	}
}

func TestParseURL(t *testing.T) {
	good := []struct{ url, bucket, prefix string }{
		{"gs://my-bucket", "my-bucket", ""},
		{"gs://my-bucket/", "my-bucket", ""},
		{"gs://my_bucket.example.com/ci/sluice", "my_bucket.example.com", "ci/sluice/"},
		{"gs://abc/ci/sluice/", "abc", "ci/sluice/"},
		{"gs://0-9/..a/b..", "0-9", "..a/b../"},
	}
	for _, tt := range good {
		b, p, err := gcs.ParseURL(tt.url)
		if err != nil || b != tt.bucket || p != tt.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v, want %q, %q", tt.url, b, p, err, tt.bucket, tt.prefix)
		}
	}
	bad := []struct{ url, want string }{
		{"gs://", "no bucket name"},
		{"gs:///prefix", "no bucket name"},
		{"", "want gs://BUCKET[/PREFIX]"},
		{"s3://bucket/x", "want gs://BUCKET[/PREFIX]"},
		{"GS://bucket", "want gs://BUCKET[/PREFIX]"},
		{"bucket/prefix", "want gs://BUCKET[/PREFIX]"},
		{"gs://ab", "shorter than 3"},
		{"gs://" + strings.Repeat("b", 64), "longer than 63"},
		{"gs://My-Bucket", "uppercase"},
		{"gs://bu cket", `contains ' '`},
		{"gs://-bucket", "begin and end with a letter or a digit"},
		{"gs://bucket.", "begin and end with a letter or a digit"},
		{"gs://a..b", "empty dot-separated part"},
		{"gs://192.168.1.1", "IP address"},
		{"gs://goog-ci", `begins with "goog"`},
		{"gs://my-google-ci", `contains "google"`},
		{"gs://bucket/a/../b", `prefix "a/../b" has a ".." segment`},
		{"gs://bucket/..", `prefix ".." has a ".." segment`},
		{"gs://bucket/a/./b", `has a "." segment`},
		{"gs://bucket/a//b", "empty segment"},
		{"gs://bucket//a", "begins with /"},
		{"gs://bucket/a\nb", "control character"},
		{`gs://bucket/a\b`, "backslash"},
		{"gs://bucket/.sluice-x", "reserved"},
		{"gs://bucket/" + strings.Repeat("p/", 512), "no room for keys"},
	}
	for _, tt := range bad {
		_, _, err := gcs.ParseURL(tt.url)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded, want an error", tt.url)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.url)) {
			t.Errorf("ParseURL(%q) error %q, want it to name the URL and say %q", tt.url, err, tt.want)
		}
	}
}

// TestNewBadURL checks that New rejects bad URLs before it makes a client.
func TestNewBadURL(t *testing.T) {
	for _, url := range []string{"gs://", "gs://bucket/a/../b", "gs://bucket/x\ny"} {
		if _, err := gcs.New(t.Context(), url); err == nil || !strings.Contains(err.Error(), "store URL") {
			t.Errorf("New(%q) error = %v, want a store URL error", url, err)
		}
	}
}

func TestMissingBucket(t *testing.T) {
	emulator(t)
	_, err := gcs.New(t.Context(), "gs://no-such-bucket/ci")
	if err == nil {
		t.Fatal("New on a missing bucket succeeded")
	}
	for _, want := range []string{"gs://no-such-bucket/ci", `bucket "no-such-bucket" does not exist`, "gcloud storage buckets create gs://no-such-bucket"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, storage.ErrBucketNotExist) {
		t.Errorf("error %v does not wrap storage.ErrBucketNotExist", err)
	}
}

// countRequests counts the requests that reach the server.
type countRequests struct{ n atomic.Int64 }

func (c *countRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(req)
}

// TestInvalidKeyNoRequest checks that invalid keys are refused before any
// request: a newline in a key, and keys that only GCS would refuse.
func TestInvalidKeyNoRequest(t *testing.T) {
	count := &countRequests{}
	client := newClient(t, option.WithHTTPClient(&http.Client{Transport: count}))
	bucket := createBucket(t, client, "sluice-keys")
	long := open(t, "gs://"+bucket+"/"+strings.Repeat("p", 200)+"/"+strings.Repeat("q", 200), gcs.WithClient(client))
	root := open(t, "gs://"+bucket, gcs.WithClient(client))
	ctx := t.Context()
	before := count.n.Load()
	for _, tt := range []struct {
		s    *gcs.Store
		key  string
		want string
	}{
		{root, "runs/r1/train\noutputs/x", "control character U+000A"},
		{long, "runs/r1/train\noutputs/x", "control character U+000A"},
		{long, strings.Repeat("k/", 320) + "k", "longer than GCS's 1024 bytes"},
		{root, ".well-known/acme-challenge/x", "GCS refuses"},
		{root, "a/../b", `".." segment`},
	} {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, store.ErrInvalidKey) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.key)) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s(%q) error = %v, want store.ErrInvalidKey naming the key and saying %q", op, tt.key, err, tt.want)
			}
		}
		_, err := tt.s.Put(ctx, tt.key, strings.NewReader("x"))
		check("Put", err)
		_, err = tt.s.PutIf(ctx, tt.key, strings.NewReader("x"), store.Absent)
		check("PutIf", err)
		_, _, err = tt.s.Open(ctx, tt.key)
		check("Open", err)
		_, err = tt.s.Stat(ctx, tt.key)
		check("Stat", err)
		check("Delete", tt.s.Delete(ctx, tt.key))
	}
	for _, err := range root.List(ctx, "a\nb") {
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("List(%q) error = %v, want store.ErrInvalidKey", "a\nb", err)
		}
	}
	if n := count.n.Load() - before; n != 0 {
		t.Errorf("invalid keys sent %d requests, want none", n)
	}
}

// TestPermanentErrors checks the errors for refused credentials and
// missing permissions, from a server that answers every request with that
// status (the fake server checks neither).
func TestPermanentErrors(t *testing.T) {
	for _, tt := range []struct {
		code int
		want []string
	}{
		{http.StatusForbidden, []string{`permission denied on bucket "ci-bucket"`, "roles/storage.objectUser", "does not have storage.objects.list access"}},
		{http.StatusUnauthorized, []string{"credentials were refused", "GOOGLE_APPLICATION_CREDENTIALS", "google-github-actions/auth"}},
	} {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.code)
				fmt.Fprintf(w, `{"error":{"code":%d,"message":"ci@p.iam.gserviceaccount.com does not have storage.objects.list access to the Google Cloud Storage bucket."}}`, tt.code)
			}))
			defer srv.Close()
			t.Setenv("STORAGE_EMULATOR_HOST", srv.Listener.Addr().String())
			_, err := gcs.New(t.Context(), "gs://ci-bucket/p")
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1: a permanent error is not retried", n)
			}
		})
	}
}

// TestNoCredentials checks the error when Application Default Credentials
// name a file that does not exist. (With no credentials at all, the client
// would ask the GCE metadata server, which a test may not reach.) Reading
// the file fails before any request; GCE_METADATA_HOST points at a closed
// port of 127.0.0.1 in case anything looks further.
func TestNoCredentials(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gha-creds-missing.json")
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", missing)
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	_, err := gcs.New(t.Context(), "gs://ci-bucket/p")
	if err == nil {
		t.Fatal("New succeeded without credentials")
	}
	for _, want := range []string{"gs://ci-bucket/p", "no usable Google Cloud credentials", "GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login", missing} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestNotFoundNamesObject checks that not-found errors name the object.
func TestNotFoundNamesObject(t *testing.T) {
	client := newClient(t)
	bucket := createBucket(t, client, "sluice-notfound")
	s := open(t, "gs://"+bucket+"/ci")
	want := "gs://" + bucket + "/ci/runs/x/run.json"
	_, err := s.Stat(t.Context(), "runs/x/run.json")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), want) {
		t.Errorf("Stat(missing) error = %v, want fs.ErrNotExist naming %s", err, want)
	}
}

// recordRequests records the method and URL of each request, and answers
// the DELETEs of objects with 412 while refuse is set, as GCS does when the
// delete's generation or metageneration condition fails.
type recordRequests struct {
	mu     sync.Mutex
	reqs   []string
	refuse bool
}

func (r *recordRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.String())
	refuse := r.refuse && req.Method == http.MethodDelete
	r.mu.Unlock()
	if refuse {
		body := `{"error":{"code":412,"message":"conditionNotMet"}}`
		return &http.Response{StatusCode: http.StatusPreconditionFailed, Status: "412 Precondition Failed",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recordRequests) take(method string) []*url.URL {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*url.URL
	for _, s := range r.reqs {
		if m, u, _ := strings.Cut(s, " "); m == method {
			pu, _ := url.Parse(u)
			out = append(out, pu)
		}
	}
	r.reqs = nil
	return out
}

// TestDeleteIfOlderConditions checks the requests behind store.Toucher:
// Touch patches the custom time on the condition of the metageneration it
// read, and DeleteIfOlder deletes on the condition of the generation and
// metageneration it read, so that GCS refuses a delete after a write or a
// Touch (the fake server does not enforce conditions on deletes; a refusal
// is simulated).
func TestDeleteIfOlderConditions(t *testing.T) {
	rec := &recordRequests{}
	client := newClient(t, option.WithHTTPClient(&http.Client{Transport: rec}))
	s := open(t, "gs://"+createBucket(t, client, "sluice-touch"), gcs.WithClient(client))
	ctx := t.Context()
	info, err := s.Put(ctx, "blobs/x", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	rec.take("")
	touched, err := s.Touch(ctx, "blobs/x")
	if err != nil {
		t.Fatal(err)
	}
	if touched.Generation != info.Generation || touched.ModTime.Before(info.ModTime) {
		t.Errorf("Touch = %+v, want generation %d and a ModTime not before %s", touched, info.Generation, info.ModTime)
	}
	patches := rec.take(http.MethodPatch)
	if len(patches) != 1 || patches[0].Query().Get("ifMetagenerationMatch") == "" {
		t.Errorf("Touch sent PATCH %v, want one with ifMetagenerationMatch", patches)
	}

	later := touched.ModTime.Add(time.Second)
	rec.refuse = true
	if err := s.DeleteIfOlder(ctx, "blobs/x", later); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("DeleteIfOlder refused with 412: %v, want store.ErrPrecondition", err)
	}
	rec.refuse = false
	deletes := rec.take(http.MethodDelete)
	if len(deletes) != 1 {
		t.Fatalf("DeleteIfOlder sent DELETE %v, want one", deletes)
	}
	q := deletes[0].Query()
	if q.Get("ifGenerationMatch") != strconv.FormatInt(info.Generation, 10) || q.Get("ifMetagenerationMatch") == "" {
		t.Errorf("DELETE %s: want ifGenerationMatch=%d and ifMetagenerationMatch", deletes[0], info.Generation)
	}
	if _, err := s.Stat(ctx, "blobs/x"); err != nil {
		t.Errorf("after a refused DeleteIfOlder: %v", err)
	}
	if err := s.DeleteIfOlder(ctx, "blobs/x", later); err != nil {
		t.Errorf("DeleteIfOlder: %v", err)
	}
}
