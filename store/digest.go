package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// DigestPrefix begins the string form of every Digest.
const DigestPrefix = "sha256:"

// Digest is the SHA-256 of a blob's content. Its string form is
// "sha256:" followed by 64 lowercase hex digits. The zero Digest is not valid
// and is used for "no digest".
type Digest struct {
	sum   [sha256.Size]byte
	valid bool
}

// ParseDigest parses the string form of a digest, "sha256:<64 lowercase hex
// digits>", and returns an error naming s if it is not one.
func ParseDigest(s string) (Digest, error) {
	h, ok := strings.CutPrefix(s, DigestPrefix)
	if !ok {
		return Digest{}, fmt.Errorf("invalid digest %q: want %s<hex>", s, DigestPrefix)
	}
	if len(h) != 2*sha256.Size {
		return Digest{}, fmt.Errorf("invalid digest %q: want %d hex digits, got %d", s, 2*sha256.Size, len(h))
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return Digest{}, fmt.Errorf("invalid digest %q: want lowercase hex digits, got %q", s, c)
		}
	}
	var d Digest
	if _, err := hex.Decode(d.sum[:], []byte(h)); err != nil {
		return Digest{}, fmt.Errorf("invalid digest %q: %w", s, err)
	}
	d.valid = true
	return d, nil
}

// NewDigest returns the Digest of a finished SHA-256 hash, as returned by
// sha256.Sum256 or a sha256 hash.Hash's Sum.
func NewDigest(sum [sha256.Size]byte) Digest { return Digest{sum: sum, valid: true} }

// DigestOf returns the Digest of b.
func DigestOf(b []byte) Digest { return NewDigest(sha256.Sum256(b)) }

func digestOfHash(h hash.Hash) Digest {
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return NewDigest(sum)
}

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return !d.valid }

// Hex returns the 64 lowercase hex digits of d, or "" for the zero Digest.
func (d Digest) Hex() string {
	if !d.valid {
		return ""
	}
	return hex.EncodeToString(d.sum[:])
}

// String returns "sha256:<hex>", or "" for the zero Digest.
func (d Digest) String() string {
	if !d.valid {
		return ""
	}
	return DigestPrefix + d.Hex()
}

// MarshalText returns the string form of d, for JSON run records. The zero
// Digest marshals as an empty string.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the string form of a digest; the empty string gives
// the zero Digest.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Digest{}
		return nil
	}
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
