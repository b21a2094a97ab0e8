// Command gcsbench measures moving data through sluice's GCS store against
// the plain cloud.google.com/go/storage client, both talking to
// fake-gcs-server on loopback. bench/gcs.sh drives it; see bench/README.md.
//
//	gcsbench serve -root DIR
//	    runs fake-gcs-server on 127.0.0.1 with its filesystem backend in DIR,
//	    prints its host:port on a line, and serves until stdin is closed.
//	gcsbench transfer -client sluice|plain -files N -total BYTES [-workers W] [-chunk BYTES]
//	                  [-source file|stream] [-sink discard|file] [-bucket B [-keep] [-reuse]]
//	    (STORAGE_EMULATOR_HOST names the server) uploads N files that make
//	    BYTES in all, then downloads them, and prints one line:
//	    "<client> files=N bytes=B up=<seconds> down=<seconds>".
//
// sluice's side goes through what a run uses: store.PutBlob (which, given a
// file, hashes it in place, asks whether the blob exists and uploads it from
// the file with a does-not-exist condition; given a stream, hashes it into a
// temporary file first) and store.OpenBlob (which verifies the digest while
// reading) on store/gcs. The plain side is an ObjectHandle's Writer and
// Reader with the client's defaults. Both read the same content: with
// -source file (the default, what a run's outputs are), files written to a
// temporary directory before the clock starts; with -source stream,
// generated as it is read. Both discard what they download (-sink discard),
// or both write it to a file each (-sink file). Each run uses a bucket of
// its own, so nothing is already stored, unless -bucket names one: -keep
// leaves the objects there, and a later run with -reuse only downloads them.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gcsbench serve|transfer [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "transfer":
		err = transfer(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: use serve or transfer", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcsbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	root := fs.String("root", "", "directory of the filesystem backend (empty: keep objects in memory)")
	_ = fs.Parse(args)
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:      "http",
		Host:        "127.0.0.1",
		PublicHost:  "127.0.0.1", // the host of XML API downloads
		StorageRoot: *root,
	})
	if err != nil {
		return fmt.Errorf("fake-gcs-server: %w", err)
	}
	defer srv.Stop()
	fmt.Println(srv.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func transfer(args []string) error {
	fs := flag.NewFlagSet("transfer", flag.ExitOnError)
	client := fs.String("client", "sluice", "sluice (store.PutBlob/OpenBlob on store/gcs) or plain (the storage client)")
	files := fs.Int("files", 100, "number of files")
	total := fs.Int64("total", 1<<30, "bytes in all")
	workers := fs.Int("workers", 1, "files moved at once")
	bucket := fs.String("bucket", "", "bucket to create and use (default: a new one per run)")
	keep := fs.Bool("keep", false, "leave the objects in the bucket (default: delete them)")
	reuse := fs.Bool("reuse", false, "only download: the objects are in -bucket, left there by a run with -keep")
	chunk := fs.Int("chunk", gcs.DefaultChunkSize, "upload chunk size in bytes, for both clients")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the downloads to this file")
	source := fs.String("source", "file", "file (files on disk, written before the clock starts) or stream (generated while read)")
	sink := fs.String("sink", "discard", "discard (what is downloaded) or file (write each download to a file)")
	_ = fs.Parse(args)
	if *source != "file" && *source != "stream" {
		return fmt.Errorf("-source %q: use file or stream", *source)
	}
	if *sink != "discard" && *sink != "file" {
		return fmt.Errorf("-sink %q: use discard or file", *sink)
	}
	if os.Getenv("STORAGE_EMULATOR_HOST") == "" {
		return fmt.Errorf("set STORAGE_EMULATOR_HOST to the fake server's host:port")
	}
	if *files < 1 || *total < int64(*files) || *workers < 1 {
		return fmt.Errorf("want files >= 1, total >= files, workers >= 1")
	}
	ctx := context.Background()
	c, err := storage.NewClient(ctx, storage.WithDisabledClientMetrics())
	if err != nil {
		return err
	}
	defer c.Close()
	if *reuse && *bucket == "" {
		return fmt.Errorf("-reuse needs -bucket")
	}
	if *bucket == "" {
		*bucket = fmt.Sprintf("bench-%s-%d", *client, time.Now().UnixNano())
	}
	if !*reuse {
		if err := c.Bucket(*bucket).Create(ctx, "bench", nil); err != nil {
			return fmt.Errorf("create bucket %s: %w", *bucket, err)
		}
	}
	size := *total / int64(*files)
	tmp, err := os.MkdirTemp("", "gcsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// open returns the content of file i, and a function that closes it.
	open := func(i int) (io.Reader, func(), error) {
		return newContent(i, size), func() {}, nil
	}
	if *source == "file" && !*reuse {
		for i := range *files {
			if err := writeFile(filepath.Join(tmp, fmt.Sprintf("in-%04d", i)), newContent(i, size)); err != nil {
				return err
			}
		}
		open = func(i int) (io.Reader, func(), error) {
			f, err := os.Open(filepath.Join(tmp, fmt.Sprintf("in-%04d", i)))
			if err != nil {
				return nil, nil, err
			}
			return f, func() { f.Close() }, nil
		}
	}
	// copyOut copies a download to the sink.
	var outs atomic.Int64
	copyOut := func(r io.Reader) (int64, error) {
		if *sink == "discard" {
			return io.Copy(io.Discard, r)
		}
		f, err := os.Create(filepath.Join(tmp, fmt.Sprintf("out-%04d", outs.Add(1))))
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
		return n, err
	}

	var up func(i int) (string, error)
	var down func(name string) (int64, error)
	switch *client {
	case "sluice":
		st, err := gcs.New(ctx, "gs://"+*bucket+"/sluice", gcs.WithClient(c), gcs.WithChunkSize(*chunk))
		if err != nil {
			return err
		}
		defer st.Close()
		up = func(i int) (string, error) {
			r, done, err := open(i)
			if err != nil {
				return "", err
			}
			defer done()
			d, _, err := store.PutBlob(ctx, st, r)
			return d.String(), err
		}
		down = func(name string) (int64, error) {
			d, err := store.ParseDigest(name)
			if err != nil {
				return 0, err
			}
			rc, _, err := store.OpenBlob(ctx, st, d)
			if err != nil {
				return 0, err
			}
			defer rc.Close()
			return copyOut(rc)
		}
	case "plain":
		b := c.Bucket(*bucket)
		up = func(i int) (string, error) {
			name := fmt.Sprintf("plain/%04d", i)
			r, done, err := open(i)
			if err != nil {
				return "", err
			}
			defer done()
			w := b.Object(name).NewWriter(ctx)
			w.ChunkSize = *chunk
			if _, err := io.Copy(w, r); err != nil {
				w.Close()
				return "", err
			}
			return name, w.Close()
		}
		down = func(name string) (int64, error) {
			rd, err := b.Object(name).NewReader(ctx)
			if err != nil {
				return 0, err
			}
			defer rd.Close()
			return copyOut(rd)
		}
	default:
		return fmt.Errorf("-client %q: use sluice or plain", *client)
	}

	names := make([]string, *files)
	t0 := time.Now()
	if *reuse {
		for i := range names {
			names[i] = fmt.Sprintf("plain/%04d", i)
			if *client == "sluice" {
				h := sha256.New()
				_, _ = io.Copy(h, newContent(i, size))
				names[i] = store.NewDigest([sha256.Size]byte(h.Sum(nil))).String()
			}
		}
	} else if err := parallel(*files, *workers, func(i int) error {
		var err error
		names[i], err = up(i)
		return err
	}); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	upTime := time.Since(t0)
	var moved int64
	var mu sync.Mutex
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	t0 = time.Now()
	if err := parallel(*files, *workers, func(i int) error {
		n, err := down(names[i])
		mu.Lock()
		moved += n
		mu.Unlock()
		return err
	}); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	downTime := time.Since(t0)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if moved != size*int64(*files) {
		return fmt.Errorf("downloaded %d bytes, want %d", moved, size*int64(*files))
	}
	fmt.Printf("%s files=%d bytes=%d up=%.3f down=%.3f\n", *client, *files, moved, upTime.Seconds(), downTime.Seconds())
	if !*keep {
		it := c.Bucket(*bucket).Objects(ctx, nil)
		for {
			a, err := it.Next()
			if err != nil {
				break
			}
			_ = c.Bucket(*bucket).Object(a.Name).Delete(ctx)
		}
		_ = c.Bucket(*bucket).Delete(ctx)
	}
	return nil
}

// parallel calls fn(0..n-1) with at most workers calls at once and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
feed:
	for i := range n {
		select {
		case next <- i:
		case first = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if first == nil {
		first = <-errs
	}
	return first
}

func writeFile(name string, r io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pattern is random content that every file cycles through; each file
// starts at its own offset and with its index, so no two files are equal.
var pattern = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{'s', 'l', 'u', 'i', 'c', 'e'})
	_, _ = r.Read(b)
	return b
}()

type content struct {
	head [8]byte
	off  int64 // bytes produced
	size int64
	base int
}

func newContent(i int, size int64) io.Reader {
	c := &content{size: size, base: (i * 7919) % len(pattern)}
	binary.LittleEndian.PutUint64(c.head[:], uint64(i)+1)
	return c
}

func (c *content) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	if rest := c.size - c.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n := 0
	for n < len(p) {
		var m int
		if c.off < int64(len(c.head)) {
			m = copy(p[n:], c.head[c.off:])
		} else {
			pos := (c.base + int(c.off)) % len(pattern)
			m = copy(p[n:], pattern[pos:])
		}
		n += m
		c.off += int64(m)
	}
	return n, nil
}
