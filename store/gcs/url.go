package gcs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluice-ci/sluice/store"
)

// Scheme begins every store URL of this backend.
const Scheme = "gs://"

// ParseURL splits a store URL "gs://BUCKET[/PREFIX]" into the bucket name
// and the object name prefix. The prefix is "" or ends with "/": the store's
// key k is the object PREFIX/k. A trailing "/" in the URL changes nothing.
//
// The bucket name must follow the GCS naming rules (3 to 63 characters,
// or up to 222 with dots; lowercase letters, digits, "-", "_" and "."; a
// letter or digit at each end; not an IP address; no "goog" prefix and no
// "google"). The prefix follows the rules of store keys (store.ValidateKey):
// no "." or ".." segment, no empty segment, no control characters. Errors
// name the URL and say what is wrong and what was expected.
func ParseURL(raw string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, Scheme)
	if !ok {
		return "", "", fmt.Errorf("store URL %q: want %sBUCKET[/PREFIX]", raw, Scheme)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("store URL %q: no bucket name: want %sBUCKET[/PREFIX]", raw, Scheme)
	}
	if reason := checkBucket(bucket); reason != "" {
		return "", "", fmt.Errorf("store URL %q: bucket name %q %s", raw, bucket, reason)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return bucket, "", nil
	}
	if err := store.ValidateKey(prefix); err != nil {
		var ke *store.KeyError
		reason := err.Error()
		if errors.As(err, &ke) {
			reason = ke.Reason
		}
		return "", "", fmt.Errorf("store URL %q: prefix %q %s", raw, prefix, reason)
	}
	if len(prefix)+1 >= store.MaxKeyLen {
		return "", "", fmt.Errorf("store URL %q: prefix is %d bytes long, which leaves no room for keys in GCS's %d-byte object names", raw, len(prefix), store.MaxKeyLen)
	}
	return bucket, prefix + "/", nil
}

// checkBucket returns why name is not a valid GCS bucket name, or "".
// https://cloud.google.com/storage/docs/buckets#naming
func checkBucket(name string) string {
	maxLen := 63
	if strings.Contains(name, ".") {
		maxLen = 222
	}
	switch {
	case len(name) < 3:
		return "is shorter than 3 characters"
	case len(name) > maxLen:
		return fmt.Sprintf("is longer than %d characters", maxLen)
	}
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
		case 'A' <= r && r <= 'Z':
			return "has an uppercase letter; bucket names are lowercase"
		default:
			return fmt.Sprintf("contains %q; bucket names have only lowercase letters, digits, '-', '_' and '.'", r)
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return "must begin and end with a letter or a digit"
	}
	for part := range strings.SplitSeq(name, ".") {
		switch {
		case part == "":
			return "has an empty dot-separated part"
		case len(part) > 63:
			return "has a dot-separated part longer than 63 characters"
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "is an IP address"
	}
	if strings.HasPrefix(name, "goog") {
		return `begins with "goog", which GCS reserves`
	}
	if strings.Contains(name, "google") || strings.Contains(name, "g00gle") {
		return `contains "google", which GCS reserves`
	}
	return ""
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
