package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// Objects lists and reads the objects of any bucket, for the gs:// defaults
// of a step's inputs (runner.GSObjects). Made from a store, it uses the
// store's client and credentials; made from nil, it makes a client of its
// own on first use (Application Default Credentials; STORAGE_EMULATOR_HOST
// for an emulator), which Close releases.
type Objects struct {
	once   sync.Once
	client *storage.Client
	own    bool
	err    error
}

// NewObjects returns an Objects that shares s's client, or makes its own
// when s is nil.
func NewObjects(s *Store) *Objects {
	o := &Objects{}
	if s != nil {
		o.client = s.client
		o.once.Do(func() {})
	}
	return o
}

func (o *Objects) get(ctx context.Context) (*storage.Client, error) {
	o.once.Do(func() {
		o.client, o.err = storage.NewClient(context.WithoutCancel(ctx), storage.WithDisabledClientMetrics())
		if o.err != nil {
			o.err = fmt.Errorf("Google Cloud Storage client (%s): %w", credentialsHelp, o.err)
			return
		}
		o.own = true
	})
	return o.client, o.err
}

// List calls fn for each object of bucket whose name starts with prefix, in
// name order, with its size and generation.
func (o *Objects) List(ctx context.Context, bucket, prefix string, fn func(name string, size, generation int64) error) error {
	c, err := o.get(ctx)
	if err != nil {
		return err
	}
	it := c.Bucket(bucket).Objects(ctx, &storage.Query{Prefix: prefix})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list gs://%s/%s: %w", bucket, prefix, err)
		}
		if err := fn(attrs.Name, attrs.Size, attrs.Generation); err != nil {
			return err
		}
	}
}

// Open reads one generation of an object.
func (o *Objects) Open(ctx context.Context, bucket, name string, generation int64) (io.ReadCloser, error) {
	c, err := o.get(ctx)
	if err != nil {
		return nil, err
	}
	return c.Bucket(bucket).Object(name).Generation(generation).NewReader(ctx)
}

// Close releases the client if Objects made it.
func (o *Objects) Close() error {
	if o.own && o.client != nil {
		return o.client.Close()
	}
	return nil
}
