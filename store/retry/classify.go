package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"cloud.google.com/go/auth"
	"google.golang.org/api/googleapi"

	"github.com/sluice-ci/sluice/store"
)

// Permanent marks err as permanent: the decorator returns it at once. The
// result wraps err, so errors.Is and errors.As see through it. Backends use
// it for failures that no retry can fix but that would otherwise look
// transient. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, transient: false}
}

// Transient marks err as transient: the decorator retries it. The result
// wraps err. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, transient: true}
}

// marked is an error marked by Permanent or Transient.
type marked struct {
	err       error
	transient bool
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() error   { return m.err }
func (m *marked) Transient() bool { return m.transient }

// IsTransient reports whether err is worth retrying. It looks at the errors
// in err's chain (errors.Unwrap, and each error of a joined error in turn),
// from the outermost, and the first that decides wins:
//
//   - An error with a method Transient() bool decides by it (Permanent and
//     Transient make such errors; a backend's own error types may have it
//     without importing this package).
//   - context.Canceled is permanent. context.DeadlineExceeded is transient:
//     the decorator stops anyway once the caller's context is done, so a
//     deadline that passed is one inside the backend, a request's timeout.
//   - store.ErrPrecondition, store.ErrInvalidKey, store.ErrDigestMismatch,
//     ErrUnknownOutcome, fs.ErrNotExist, fs.ErrExist and fs.ErrPermission
//     are permanent.
//   - An HTTP status from GCS (*googleapi.Error), or from the token endpoint
//     (*auth.Error with a response): 408, 410 (an expired upload session,
//     which a new attempt replaces), 429 and 5xx are transient; every other
//     status (400, 401, 403, 404, 412, ...) is permanent.
//   - io.ErrUnexpectedEOF and net.ErrClosed are transient.
//   - A syscall.Errno is transient if it is a network failure (ECONNRESET,
//     ECONNREFUSED, ECONNABORTED, EPIPE, ETIMEDOUT, EHOSTUNREACH,
//     ENETUNREACH, ENETDOWN, ENETRESET), permanent otherwise (ENOSPC,
//     EACCES, ...).
//   - A *net.DNSError is transient if it is a timeout or temporary,
//     permanent otherwise (no such host).
//   - A TLS certificate that does not verify is permanent.
//   - An error with a method Timeout() bool that returns true is transient.
//
// If nothing decides, err is transient if the chain holds a *url.Error or a
// *net.OpError (a request that failed on the way: the server closed the
// connection, an HTTP/2 stream was reset), and permanent otherwise.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var transport bool
	switch walk(err, &transport) {
	case transient:
		return true
	case permanent:
		return false
	}
	return transport
}

type verdict int

const (
	undecided verdict = iota
	permanent
	transient
)

// walk classifies err's chain, depth first.
func walk(err error, transport *bool) verdict {
	for err != nil {
		if v := classify(err, transport); v != undecided {
			return v
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if v := walk(e, transport); v != undecided {
					return v
				}
			}
			return undecided
		default:
			return undecided
		}
	}
	return undecided
}

// classify classifies one error of a chain, without looking inside it.
func classify(err error, transport *bool) verdict {
	switch e := err.(type) {
	case interface{ Transient() bool }:
		return verdictOf(e.Transient())
	case *googleapi.Error:
		return byStatus(e.Code)
	case *auth.Error:
		if e.Response != nil {
			return byStatus(e.Response.StatusCode)
		}
	case syscall.Errno:
		switch e {
		case syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT,
			syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN, syscall.ENETRESET:
			return transient
		}
		return permanent
	case *net.DNSError:
		return verdictOf(e.IsTimeout || e.IsTemporary)
	case x509.UnknownAuthorityError, *x509.UnknownAuthorityError, x509.HostnameError, *x509.HostnameError,
		x509.CertificateInvalidError, *x509.CertificateInvalidError, *tls.CertificateVerificationError:
		return permanent
	case *url.Error, *net.OpError:
		*transport = true
	}
	switch err {
	case context.Canceled:
		return permanent
	case context.DeadlineExceeded, io.ErrUnexpectedEOF, net.ErrClosed:
		return transient
	case store.ErrPrecondition, store.ErrInvalidKey, store.ErrDigestMismatch, ErrUnknownOutcome,
		fs.ErrNotExist, fs.ErrExist, fs.ErrPermission:
		return permanent
	}
	if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
		return transient
	}
	return undecided
}

func verdictOf(isTransient bool) verdict {
	if isTransient {
		return transient
	}
	return permanent
}

// byStatus classifies an HTTP status.
func byStatus(code int) verdict {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusGone, code == http.StatusTooManyRequests, code >= 500 && code <= 599:
		return transient
	}
	return permanent
}
