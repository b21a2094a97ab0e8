package store

// Wrapper is implemented by a decorator of a Store (the retry layer): Unwrap
// returns the store it wraps, so that As can reach the capabilities of the
// store underneath that the decorator does not have itself.
type Wrapper interface {
	Unwrap() Store
}

// As returns the first store in the chain of s that implements T: s itself,
// then the store that its Unwrap returns, and so on. A decorator that
// implements a capability itself (retry.New retries Stage and Touch) is
// found before the store it wraps; one that does not passes the capability
// through. For example, a gs:// store behind the retry decorator still
// signs URLs:
//
//	type signer interface {
//		SignedURL(key, filename string, expiry time.Duration, s *gcs.Signer) (string, error)
//	}
//	if sg, ok := store.As[signer](st); ok { ... }
//
// ok is false when no store of the chain implements T.
func As[T any](s Store) (t T, ok bool) {
	for s != nil {
		if t, ok = s.(T); ok {
			return t, true
		}
		w, isWrapper := s.(Wrapper)
		if !isWrapper {
			break
		}
		s = w.Unwrap()
	}
	return t, false
}
