package main

import (
	"net/http"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// inputSources are what a run reads the gs:// and https:// defaults of its
// steps' inputs with: the store's Cloud Storage client when the store is in
// Cloud Storage (under its retry decorator), else a client made when a
// gs:// input first needs one; and an HTTP client that gives up on a server
// that sends no response headers for a minute (a download itself may take
// as long as it takes). The caller closes the Objects.
func inputSources(st store.Store) (*gcs.Objects, *http.Client) {
	g, _ := store.As[*gcs.Store](st)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return gcs.NewObjects(g), &http.Client{Transport: tr}
}
