// Package gcstest starts the tests' stand-in for Google Cloud Storage:
// fake-gcs-server (github.com/fsouza/fake-gcs-server), a real HTTP server
// speaking the JSON API, on 127.0.0.1, which the real
// cloud.google.com/go/storage client reaches through STORAGE_EMULATOR_HOST.
package gcstest

import (
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// Start starts fake-gcs-server with the given buckets, stops it when the
// test ends, and sets STORAGE_EMULATOR_HOST (for the test and the processes
// and containers it starts) to its host:port.
func Start(t testing.TB, buckets ...string) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatalf("start fake-gcs-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	for _, b := range buckets {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	if ts, ok := t.(interface{ Setenv(string, string) }); ok {
		ts.Setenv("STORAGE_EMULATOR_HOST", Host(srv))
	}
	return srv
}

// Host is the server's host:port, the value of STORAGE_EMULATOR_HOST.
func Host(srv *fakestorage.Server) string { return strings.TrimPrefix(srv.URL(), "http://") }
