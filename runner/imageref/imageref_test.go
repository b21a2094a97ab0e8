package imageref

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// localRegistry starts a local stand-in for a container registry (the
// in-memory registry of go-containerregistry, on 127.0.0.1), wrapped by wrap
// when it is set, and returns its host:port.
func localRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push writes a random image (or, with index, a random index of three
// images) under ref and returns the digest pushed.
func push(t *testing.T, ref string, index bool, opts ...remote.Option) v1.Hash {
	t.Helper()
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if index {
		idx, err := random.Index(256, 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(tag, idx, opts...); err != nil {
			t.Fatalf("push index %s: %v", ref, err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatalf("push image %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// anonymous is a keychain with no credentials, so that a test never reads
// the Docker config of the machine it runs on.
var anonymous = authn.NewMultiKeychain()

func TestImageDigestImageAndIndex(t *testing.T) {
	host := localRegistry(t, nil)
	image := push(t, host+"/team/train:v1", false)
	index := push(t, host+"/team/multi:v1", true)
	if image == index {
		t.Fatal("the image and the index have the same digest")
	}
	r := New(Options{Keychain: anonymous})
	for _, tc := range []struct{ ref, want string }{
		{host + "/team/train:v1", host + "/team/train@" + image.String()},
		// The index's own digest, as `docker pull` records it, not a platform's.
		{host + "/team/multi:v1", host + "/team/multi@" + index.String()},
	} {
		got, err := r.ImageDigest(context.Background(), tc.ref)
		if err != nil {
			t.Fatalf("ImageDigest(%s): %v", tc.ref, err)
		}
		if got != tc.want {
			t.Errorf("ImageDigest(%s) = %s, want %s", tc.ref, got, tc.want)
		}
	}
}

func TestImageDigestLatestByDefault(t *testing.T) {
	host := localRegistry(t, nil)
	d := push(t, host+"/tool:latest", false)
	got, err := New(Options{Keychain: anonymous}).ImageDigest(context.Background(), host+"/tool")
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/tool@" + d.String(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// withoutHeadDigest drops Docker-Content-Digest from the answers to HEAD, as
// some registries do.
func withoutHeadDigest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodHead {
			next.ServeHTTP(dropHeader{w, "Docker-Content-Digest"}, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}

type dropHeader struct {
	http.ResponseWriter
	header string
}

func (d dropHeader) WriteHeader(code int) {
	d.ResponseWriter.Header().Del(d.header)
	d.ResponseWriter.WriteHeader(code)
}

func TestImageDigestFallsBackToGet(t *testing.T) {
	host := localRegistry(t, withoutHeadDigest)
	d := push(t, host+"/team/train:v1", true)
	got, err := New(Options{Keychain: anonymous}).ImageDigest(context.Background(), host+"/team/train:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/team/train@" + d.String(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestImageDigestNotFound(t *testing.T) {
	host := localRegistry(t, nil)
	push(t, host+"/team/train:v1", false)
	r := New(Options{Keychain: anonymous})
	for _, ref := range []string{host + "/team/train:v2", host + "/team/nothing:v1"} {
		_, err := r.ImageDigest(context.Background(), ref)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("ImageDigest(%s) = %v, want ErrNotFound", ref, err)
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "image "+ref+": registry "+host+": not found") {
			t.Errorf("the error does not name the image and the registry: %v", err)
		}
	}
}

func TestImageDigestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there any more
	_, err := New(Options{Keychain: anonymous}).ImageDigest(context.Background(), host+"/team/train:v1")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "registry "+host) {
		t.Errorf("the error does not name the registry: %v", err)
	}
}

// requireBasicAuth lets through only requests with user:secret, as a
// registry that needs `docker login` does.
func requireBasicAuth(user, secret string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != secret {
				w.Header().Set("WWW-Authenticate", `Basic realm="local"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			next.ServeHTTP(w, req)
		})
	}
}

// dockerConfig writes a Docker config that holds credentials for host, as
// `docker login host` leaves it, and points DOCKER_CONFIG at it.
func dockerConfig(t *testing.T, host, user, secret string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
	cfg := `{"auths": {"` + host + `": {"auth": "` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func TestImageDigestAuth(t *testing.T) {
	// The Docker config is found through the environment: no t.Parallel.
	// None of the machine's own credentials: no ~/.docker/config.json, no
	// Podman auth file.
	for _, v := range []string{"HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"} {
		t.Setenv(v, t.TempDir())
	}
	t.Setenv("REGISTRY_AUTH_FILE", "")
	host := localRegistry(t, requireBasicAuth("ci", "s3cret"))
	d := push(t, host+"/private/train:v1", false, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	ref := host + "/private/train:v1"

	t.Run("without credentials", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir()) // an empty config directory
		_, err := New(Options{}).ImageDigest(context.Background(), ref)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
		t.Log(err)
		for _, want := range []string{"registry " + host, "Docker config", "credential helpers", "docker login " + host} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		dockerConfig(t, host, "ci", "wrong")
		if _, err := New(Options{}).ImageDigest(context.Background(), ref); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
	})
	t.Run("credentials from the Docker config", func(t *testing.T) {
		dockerConfig(t, host, "ci", "s3cret")
		got, err := New(Options{}).ImageDigest(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if want := host + "/private/train@" + d.String(); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestImageDigestCancelled(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	host := localRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if strings.Contains(req.URL.Path, "/manifests/") {
				select {
				case arrived <- struct{}{}:
				default:
				}
				select { // hold the answer until the client gives up
				case <-req.Context().Done():
				case <-release:
				}
				return
			}
			next.ServeHTTP(w, req)
		})
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()
	_, err := New(Options{Keychain: anonymous}).ImageDigest(ctx, host+"/team/train:v1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	t.Log(err)
}

// refuseAll is a transport that fails every request: what needs no
// network must not use it.
type refuseAll struct{ t *testing.T }

func (r refuseAll) RoundTrip(req *http.Request) (*http.Response, error) {
	r.t.Errorf("unexpected request %s %s", req.Method, req.URL)
	return nil, errors.New("no network in this test")
}

func TestImageDigestPinned(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	r := New(Options{Keychain: anonymous, Transport: refuseAll{t}})
	for _, tc := range []struct{ ref, want string }{
		{"busybox@" + d, "busybox@" + d},
		{"docker.io/library/busybox@" + d, "busybox@" + d},
		{"index.docker.io/library/busybox:1.36@" + d, "busybox@" + d},
		{"ghcr.io/org/train:v2@" + d, "ghcr.io/org/train@" + d},
		{"localhost:5000/train@" + d, "localhost:5000/train@" + d},
	} {
		got, err := r.ImageDigest(context.Background(), tc.ref)
		if err != nil {
			t.Fatalf("ImageDigest(%s): %v", tc.ref, err)
		}
		if got != tc.want {
			t.Errorf("ImageDigest(%s) = %s, want %s", tc.ref, got, tc.want)
		}
	}
	if _, err := r.ImageDigest(context.Background(), "busybox@sha256:short"); err == nil {
		t.Error("a malformed digest was accepted")
	}
}

// recordingTransport answers every request for a manifest with a fixed
// digest and records the URLs asked for.
type recordingTransport struct {
	digest string
	urls   []string
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.urls = append(rt.urls, req.Method+" "+req.URL.String())
	h := http.Header{}
	status := http.StatusOK
	if strings.Contains(req.URL.Path, "/manifests/") {
		h.Set("Docker-Content-Digest", rt.digest)
		h.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		h.Set("Content-Length", "100")
	}
	return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, ContentLength: 100, Request: req}, nil
}

func TestImageDigestNormalises(t *testing.T) {
	const d = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	for _, tc := range []struct{ ref, url, want string }{
		{"busybox", "https://index.docker.io/v2/library/busybox/manifests/latest", "busybox@" + d},
		{"docker.io/library/busybox:1.36", "https://index.docker.io/v2/library/busybox/manifests/1.36", "busybox@" + d},
		{"python:3.12-slim", "https://index.docker.io/v2/library/python/manifests/3.12-slim", "python@" + d},
		{"someone/tool:v1", "https://index.docker.io/v2/someone/tool/manifests/v1", "someone/tool@" + d},
		{"ghcr.io/org/train:v2", "https://ghcr.io/v2/org/train/manifests/v2", "ghcr.io/org/train@" + d},
	} {
		rt := &recordingTransport{digest: d}
		got, err := New(Options{Keychain: anonymous, Transport: rt}).ImageDigest(context.Background(), tc.ref)
		if err != nil {
			t.Fatalf("ImageDigest(%s): %v", tc.ref, err)
		}
		if got != tc.want {
			t.Errorf("ImageDigest(%s) = %s, want %s", tc.ref, got, tc.want)
		}
		if want := "HEAD " + tc.url; !contains(rt.urls, want) {
			t.Errorf("ImageDigest(%s) asked %q, want %q among them", tc.ref, rt.urls, want)
		}
	}
	if _, err := New(Options{Keychain: anonymous, Transport: refuseAll{t}}).ImageDigest(context.Background(), "Not A Ref"); err == nil {
		t.Error("an invalid reference was accepted")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
