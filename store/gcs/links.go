package gcs

import (
	"context"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"

	"cloud.google.com/go/storage"
)

// MaxSignedURLExpiry is the longest a V4 signed URL may stay valid.
const MaxSignedURLExpiry = 7 * 24 * time.Hour

// ConsoleURL is the Google Cloud console page of the object under key in the
// store named by rawURL (gs://BUCKET/PREFIX): it shows the object and lets a
// person with read access download it. It needs no client.
func ConsoleURL(rawURL, key string) (string, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return "", err
	}
	segs := strings.Split(prefix+key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "https://console.cloud.google.com/storage/browser/_details/" + url.PathEscape(bucket) + "/" + strings.Join(segs, "/"), nil
}

// Signer signs URLs explicitly: a service account's email and its PEM
// private key. Without one, SignedURL uses the client's credentials: a
// service-account key signs locally, other credentials (the metadata server,
// Workload Identity Federation) sign through the IAM Credentials API, which
// needs roles/iam.serviceAccountTokenCreator on the account.
type Signer struct {
	GoogleAccessID string
	PrivateKey     []byte
}

// SignedURL returns a V4 signed URL that downloads the object under key
// until expiry has passed (at most MaxSignedURLExpiry), under the file name
// filename when it is not empty.
func (s *Store) SignedURL(key, filename string, expiry time.Duration, signer *Signer) (string, error) {
	if expiry <= 0 || expiry > MaxSignedURLExpiry {
		return "", fmt.Errorf("signed URL of %s: expiry %s: want more than 0 and at most %s", key, expiry, MaxSignedURLExpiry)
	}
	name, err := s.object(context.Background(), key)
	if err != nil {
		return "", err
	}
	opts := &storage.SignedURLOptions{
		Scheme:  storage.SigningSchemeV4,
		Method:  "GET",
		Expires: time.Now().Add(expiry),
	}
	if signer != nil {
		opts.GoogleAccessID, opts.PrivateKey = signer.GoogleAccessID, signer.PrivateKey
	}
	if filename != "" {
		opts.QueryParameters = url.Values{"response-content-disposition": {
			mime.FormatMediaType("attachment", map[string]string{"filename": filename})}}
	}
	u, err := s.bucket.SignedURL(name, opts)
	if err != nil {
		return "", fmt.Errorf("sign a URL for %s: %w (signing needs a service-account key, or the IAM Credentials API with roles/iam.serviceAccountTokenCreator)", s.ObjectName(key), err)
	}
	return u, nil
}
