package store

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxKeyLen is the longest key in bytes (GCS's limit for object names).
	MaxKeyLen = 1024
	// MaxSegmentLen is the longest segment of a key in bytes, so that every
	// segment, with the file backend's prefixes, fits in a file name.
	MaxSegmentLen = 200
	// ReservedPrefix begins the names that backends use for their own
	// bookkeeping (temporary files, generations, locks); no key segment may
	// begin with it.
	ReservedPrefix = ".sluice-"
)

// ErrInvalidKey is wrapped by every error about a key or prefix that breaks
// the rules of ValidateKey.
var ErrInvalidKey = errors.New("invalid key")

// KeyError reports a key or prefix that breaks the rules, and which rule.
type KeyError struct {
	Key    string // the key or prefix as given
	Reason string // what is wrong with it
}

// Error names the key, quoted, and the reason.
func (e *KeyError) Error() string {
	return fmt.Sprintf("invalid key %q: %s", e.Key, e.Reason)
}

// Unwrap returns ErrInvalidKey.
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// ValidateKey reports whether key is a valid key, and if not, returns a
// *KeyError that says why. A valid key:
//   - is valid UTF-8, non-empty, and at most MaxKeyLen bytes long;
//   - is relative: it neither begins nor ends with "/";
//   - has no empty segments ("a//b") and no "." or ".." segments;
//   - has segments of at most MaxSegmentLen bytes, none beginning with
//     ReservedPrefix;
//   - contains no backslash and no control characters (NUL, newline, tab,
//     DEL, ...).
func ValidateKey(key string) error {
	if reason := checkKey(key); reason != "" {
		return &KeyError{Key: key, Reason: reason}
	}
	return nil
}

// ValidatePrefix reports whether prefix is valid as the prefix of List: the
// empty string, or a string that some valid key begins with, such as
// "runs/", "runs/ab" or "a/.hid". It returns a *KeyError if not.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix is valid if completing its last segment gives a valid key:
	// "a/" and "a/." are prefixes of valid keys, "a//" and "/a" are not.
	// A prefix is matched as a string, never resolved as a path, so "a/.."
	// only matches keys such as "a/..b".
	if reason := checkKey(prefix + "x"); reason != "" {
		return &KeyError{Key: prefix, Reason: reason}
	}
	return nil
}

func checkKey(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyLen:
		return fmt.Sprintf("longer than %d bytes", MaxKeyLen)
	case !utf8.ValidString(key):
		return "not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "begins with /, keys are relative"
	case strings.HasSuffix(key, "/"):
		return "ends with /"
	}
	for _, r := range key {
		switch {
		case r == '\\':
			return "contains a backslash, use / to separate segments"
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return "has an empty segment"
		case seg == "." || seg == "..":
			return fmt.Sprintf("has a %q segment", seg)
		case len(seg) > MaxSegmentLen:
			return fmt.Sprintf("has a segment longer than %d bytes", MaxSegmentLen)
		case strings.HasPrefix(seg, ReservedPrefix):
			return fmt.Sprintf("has a segment beginning with %q, which is reserved", ReservedPrefix)
		}
	}
	return ""
}
