package gcs_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
	"github.com/sluice-ci/sluice/store/retry"
)

func TestConsoleURL(t *testing.T) {
	got, err := gcs.ConsoleURL("gs://ml-runs/team a/ci", "blobs/sha256/ab/abcd")
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://console.cloud.google.com/storage/browser/_details/ml-runs/team%20a/ci/blobs/sha256/ab/abcd"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := gcs.ConsoleURL("gs://b/../x", "k"); err == nil {
		t.Error("a prefix with .. gave a link")
	}
}

// testSigner is a service account with a new key, to sign URLs with.
func testSigner(t *testing.T) *gcs.Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return &gcs.Signer{GoogleAccessID: "sluice@project.iam.gserviceaccount.com", PrivateKey: pemKey}
}

func TestSignedURL(t *testing.T) {
	c := newClient(t)
	bucket := createBucket(t, c, "signed")
	s := open(t, "gs://"+bucket+"/ci")
	signer := testSigner(t)

	raw, err := s.SignedURL("blobs/sha256/ab/abcd", "model.pkl", time.Hour, signer)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Path != "/"+bucket+"/ci/blobs/sha256/ab/abcd" || q.Get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" || (q.Get("X-Goog-Expires") != "3600" && q.Get("X-Goog-Expires") != "3599") ||
		!strings.HasPrefix(q.Get("X-Goog-Credential"), "sluice@project.iam.gserviceaccount.com/") ||
		len(q.Get("X-Goog-Signature")) != 512 || q.Get("response-content-disposition") != `attachment; filename=model.pkl` {
		t.Errorf("signed URL %s", raw)
	}
	if _, err := s.SignedURL("k", "", 8*24*time.Hour, signer); err == nil || !strings.Contains(err.Error(), "at most 168h") {
		t.Errorf("8 days: %v", err)
	}
	// The emulator's client has no credentials to sign with: the error says
	// what signing needs.
	if _, err := s.SignedURL("k", "", time.Hour, nil); err == nil || !strings.Contains(err.Error(), "serviceAccountTokenCreator") {
		t.Errorf("no signer: %v", err)
	}
}

// urlSigner is the capability of a gs:// store that the report's signed
// links use.
type urlSigner interface {
	SignedURL(key, filename string, expiry time.Duration, signer *gcs.Signer) (string, error)
}

// The retry decorator passes signing through: store.As reaches the gcs
// store under it, which signs the same URL as without the decorator.
func TestSignedURLThroughRetry(t *testing.T) {
	c := newClient(t)
	bucket := createBucket(t, c, "signed-retry")
	g := open(t, "gs://"+bucket+"/ci")
	var st store.Store = retry.New(g)
	if _, ok := st.(urlSigner); ok {
		t.Fatal("the decorator signs itself; the test would not show the pass-through")
	}
	sg, ok := store.As[urlSigner](st)
	if !ok {
		t.Fatal("store.As found no URL signer under the retry decorator")
	}
	raw, err := sg.SignedURL("blobs/sha256/ab/abcd", "model.pkl", time.Hour, testSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); u.Path != "/"+bucket+"/ci/blobs/sha256/ab/abcd" || len(q.Get("X-Goog-Signature")) != 512 ||
		q.Get("response-content-disposition") != `attachment; filename=model.pkl` {
		t.Errorf("signed URL through the decorator %s", raw)
	}
	// The other methods of the gcs store come through too.
	if b, ok := store.As[interface{ Bucket() string }](st); !ok || b.Bucket() != bucket {
		t.Errorf("As[Bucket] = %v, %v", b, ok)
	}
}
