// Package storetest is the conformance suite for store backends. Every
// backend's test hands Run a constructor:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := file.New(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
)

// Run runs the conformance suite. newStore must return a new, empty store
// for each call and register its cleanup with t.Cleanup. The suite skips
// nothing a backend must support; the only skipped subtest is Stager, for
// backends that do not implement store.Stager.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutOpen", testPutOpen},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"UnusualKeys", testUnusualKeys},
		{"Conditional", testConditional},
		{"ConditionalRace", testConditionalRace},
		{"UpdateRace", testUpdateRace},
		{"Blobs", testBlobs},
		{"BlobSources", testBlobSources},
		{"BlobChanged", testBlobChanged},
		{"BlobDigestMismatch", testBlobDigestMismatch},
		{"BlobRead", testBlobRead},
		{"Toucher", testToucher},
		{"Stager", testStager},
		{"FailedWrite", testFailedWrite},
		{"Cancel", testCancel},
		{"Large", testLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// put writes content to key and checks the returned Info.
func put(t *testing.T, s store.Store, key, content string) store.Info {
	t.Helper()
	info, err := s.Put(t.Context(), key, strings.NewReader(content))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(content)) || info.Generation <= 0 {
		t.Fatalf("Put(%q) = %+v, want key %q, size %d, generation > 0", key, info, key, len(content))
	}
	return info
}

// read returns the content and Info of key.
func read(t *testing.T, s store.Store, key string) (string, store.Info) {
	t.Helper()
	rc, info, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(b)) || info.Generation <= 0 || info.ModTime.IsZero() {
		t.Fatalf("Open(%q) info = %+v, want key %q, size %d, generation > 0, a mod time", key, info, key, len(b))
	}
	return string(b), info
}

// wantContent checks that key holds content with generation gen.
func wantContent(t *testing.T, s store.Store, key, content string, gen int64) {
	t.Helper()
	got, info := read(t, s, key)
	if got != content {
		t.Fatalf("%q holds %q, want %q", key, clip(got), clip(content))
	}
	if info.Generation != gen {
		t.Fatalf("%q has generation %d, want %d", key, info.Generation, gen)
	}
}

// keys lists the keys under prefix.
func keys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	ks := []string{}
	for info, err := range s.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		ks = append(ks, info.Key)
	}
	return ks
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func testPutOpen(t *testing.T, s store.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, content := range []string{"hello\n", "", string(all)} {
		key := "a/b/c" + strconv.Itoa(len(content))
		info := put(t, s, key, content)
		wantContent(t, s, key, content, info.Generation)
		st, err := s.Stat(t.Context(), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if st.Key != key || st.Size != info.Size || st.Generation != info.Generation || st.ModTime.IsZero() {
			t.Errorf("Stat(%q) = %+v, want %+v", key, st, info)
		}
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	first := put(t, s, "x/obj", strings.Repeat("long content ", 100))
	second := put(t, s, "x/obj", "short")
	if second.Generation <= first.Generation {
		t.Errorf("generation after overwrite = %d, want > %d", second.Generation, first.Generation)
	}
	wantContent(t, s, "x/obj", "short", second.Generation)
	third := put(t, s, "x/obj", "short")
	if third.Generation <= second.Generation {
		t.Errorf("generation after rewrite of the same content = %d, want > %d", third.Generation, second.Generation)
	}
	if got := keys(t, s, ""); !slices.Equal(got, []string{"x/obj"}) {
		t.Errorf("List = %q, want [x/obj]", got)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	put(t, s, "dir/obj", "x")
	// "dir" is a prefix of an object, not an object; "dir/obj/sub" is below
	// an object.
	for _, key := range []string{"missing", "dir", "dir/missing", "dir/obj/sub", "nodir/obj"} {
		ctx := t.Context()
		_, _, err := s.Open(ctx, key)
		wantNotExist(t, "Open", key, err)
		_, err = s.Stat(ctx, key)
		wantNotExist(t, "Stat", key, err)
		err = s.Delete(ctx, key)
		wantNotExist(t, "Delete", key, err)
	}
	wantContent(t, s, "dir/obj", "x", mustStat(t, s, "dir/obj").Generation)
}

func wantNotExist(t *testing.T, op, key string, err error) {
	t.Helper()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s(%q) error = %v, want fs.ErrNotExist", op, key, err)
	} else if !strings.Contains(err.Error(), key) {
		t.Errorf("%s(%q) error %q does not name the key", op, key, err)
	}
}

func mustStat(t *testing.T, s store.Store, key string) store.Info {
	t.Helper()
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	return info
}

func testDelete(t *testing.T, s store.Store) {
	put(t, s, "d/a", "a")
	put(t, s, "d/sub/b", "b")
	if err := s.Delete(t.Context(), "d/sub/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Stat(t.Context(), "d/sub/b")
	wantNotExist(t, "Stat after Delete", "d/sub/b", err)
	wantNotExist(t, "second Delete", "d/sub/b", s.Delete(t.Context(), "d/sub/b"))
	if got := keys(t, s, ""); !slices.Equal(got, []string{"d/a"}) {
		t.Errorf("List after Delete = %q, want [d/a]", got)
	}
	// The key can be written again, and a key below a deleted one too.
	put(t, s, "d/sub/b", "again")
	wantContent(t, s, "d/sub/b", "again", mustStat(t, s, "d/sub/b").Generation)
	if err := s.Delete(t.Context(), "d/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	put(t, s, "d/a/below", "c")
	if got := keys(t, s, ""); !slices.Equal(got, []string{"d/a/below", "d/sub/b"}) {
		t.Errorf("List = %q, want [d/a/below d/sub/b]", got)
	}
}

func testList(t *testing.T, s store.Store) {
	// '-' and '.' sort before '/', '0' and 'b' after it: a store that walks
	// directories naively lists "a/b" before "a.b".
	all := []string{"a-", "a.b", "a/b", "a/c/d", "a/c/e", "a0", "ab/x", "b", "blobs/sha256/00/x"}
	for _, k := range slices.Backward(all) {
		put(t, s, k, "content of "+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", all[:7]},
		{"a/", []string{"a/b", "a/c/d", "a/c/e"}},
		{"a/c", []string{"a/c/d", "a/c/e"}},
		{"a/c/", []string{"a/c/d", "a/c/e"}},
		{"a/c/d", []string{"a/c/d"}},
		{"a.", []string{"a.b"}},
		{"ab", []string{"ab/x"}},
		{"b", []string{"b", "blobs/sha256/00/x"}},
		{"z", []string{}},
		{"a/z/", []string{}},
		{"a/b/", []string{}}, // below an object
	}
	for _, tt := range tests {
		if got := keys(t, s, tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
	// Infos match Stat.
	for info, err := range s.List(t.Context(), "a/c/") {
		if err != nil {
			t.Fatal(err)
		}
		st := mustStat(t, s, info.Key)
		if info.Size != int64(len("content of "+info.Key)) || info.Generation != st.Generation || info.ModTime.IsZero() {
			t.Errorf("List info %+v, Stat %+v", info, st)
		}
	}
	// Stopping early is allowed (a range-over-func iterator that yields
	// after break makes the loop panic).
	n := 0
	for _, err := range s.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("iterated %d times, want 2", n)
	}
}

// invalidKeys break one rule each.
var invalidKeys = []string{
	"",
	"/abs",
	"trailing/",
	"a//b",
	"..",
	"a/../b",
	".",
	"a/./b",
	`a\b`,
	"a\x00b",
	"a\nb",
	"a\rb",
	"a\tb",
	"a\x7fb",
	"bad\xffutf8",
	strings.Repeat("k", store.MaxKeyLen+1),
	"seg/" + strings.Repeat("s", store.MaxSegmentLen+1),
	store.ReservedPrefix + "tmp-1",
	"a/" + store.ReservedPrefix + "gen.b",
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, key := range invalidKeys {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("%s(%q) error = %v, want store.ErrInvalidKey", op, clip(key), err)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) {
				t.Errorf("%s(%q) error %q does not name the key", op, clip(key), clip(err.Error()))
			}
		}
		_, err := s.Put(ctx, key, strings.NewReader("x"))
		check("Put", err)
		_, err = s.PutIf(ctx, key, strings.NewReader("x"), store.Absent)
		check("PutIf", err)
		_, _, err = s.Open(ctx, key)
		check("Open", err)
		_, err = s.Stat(ctx, key)
		check("Stat", err)
		check("Delete", s.Delete(ctx, key))
	}
	for _, prefix := range []string{"/", "/a", "a//", "a\nb", `a\`, "x/" + store.ReservedPrefix} {
		var errs []error
		for _, err := range s.List(ctx, prefix) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], store.ErrInvalidKey) {
			t.Errorf("List(%q) yielded errors %v, want one store.ErrInvalidKey", prefix, errs)
		}
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Errorf("invalid writes left %q", got)
	}
}

func testUnusualKeys(t *testing.T, s store.Store) {
	ks := []string{
		"..a/a..", ".hidden/.x", "sp ace/ü ß 日本", "q'u\"o`te", "#[]*?:;@&=+$,",
		".sluice/x", // only ".sluice-" is reserved
		strings.Repeat("s", store.MaxSegmentLen) + "/x",
	}
	for _, k := range ks {
		info := put(t, s, k, k)
		wantContent(t, s, k, k, info.Generation)
	}
	slices.Sort(ks)
	if got := keys(t, s, ""); !slices.Equal(got, ks) {
		t.Errorf("List = %q, want %q", got, ks)
	}
	if got := keys(t, s, "..a/"); !slices.Equal(got, []string{"..a/a.."}) {
		t.Errorf(`List("..a/") = %q, want ["..a/a.."]`, got)
	}
}

func testConditional(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "refs/branch/main"
	putIf := func(content string, gen int64) (store.Info, error) {
		return s.PutIf(ctx, key, strings.NewReader(content), gen)
	}
	wantPrecondition := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("%s: error = %v, want store.ErrPrecondition", what, err)
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %q does not name the key", what, err)
		}
	}

	_, err := putIf("v0", 12345)
	wantPrecondition("PutIf(missing, generation 12345)", err)
	if _, err := s.Stat(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed PutIf created the object: Stat error = %v", err)
	}

	g1, err := putIf("v1", store.Absent)
	if err != nil {
		t.Fatalf("PutIf(absent) on a missing object: %v", err)
	}
	wantContent(t, s, key, "v1", g1.Generation)
	_, err = putIf("v1b", store.Absent)
	wantPrecondition("PutIf(absent) on an existing object", err)
	wantContent(t, s, key, "v1", g1.Generation)

	g2, err := putIf("v2", g1.Generation)
	if err != nil {
		t.Fatalf("PutIf(current generation): %v", err)
	}
	if g2.Generation <= g1.Generation {
		t.Errorf("generation %d after %d, want greater", g2.Generation, g1.Generation)
	}
	wantContent(t, s, key, "v2", g2.Generation)
	_, err = putIf("v3", g1.Generation)
	wantPrecondition("PutIf(stale generation)", err)
	wantContent(t, s, key, "v2", g2.Generation)

	// An unconditional Put changes the generation too.
	g3 := put(t, s, key, "v3")
	if g3.Generation <= g2.Generation {
		t.Errorf("generation %d after %d, want greater", g3.Generation, g2.Generation)
	}
	_, err = putIf("v4", g2.Generation)
	wantPrecondition("PutIf(generation before a Put)", err)

	// After a delete, old generations do not match, and a new object has a
	// greater generation than any before.
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	_, err = putIf("v5", g3.Generation)
	wantPrecondition("PutIf(generation before a Delete)", err)
	g5, err := putIf("v5", store.Absent)
	if err != nil {
		t.Fatalf("PutIf(absent) after Delete: %v", err)
	}
	if g5.Generation <= g3.Generation {
		t.Errorf("generation %d after delete and %d, want greater", g5.Generation, g3.Generation)
	}
	wantContent(t, s, key, "v5", g5.Generation)
	if got := keys(t, s, ""); !slices.Equal(got, []string{key}) {
		t.Errorf("List = %q, want only %q", got, key)
	}
}

// testConditionalRace starts writers conditioned on the same generation at
// once: exactly one may win.
func testConditionalRace(t *testing.T, s store.Store) {
	const n = 8
	const key = "refs/race"
	for round, gen := 0, store.Absent; round < 3; round++ {
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, n)
		infos := make([]store.Info, n)
		for i := range n {
			wg.Go(func() {
				<-start
				infos[i], errs[i] = s.PutIf(t.Context(), key, strings.NewReader(fmt.Sprintf("round %d writer %d", round, i)), gen)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won PutIf(generation %d)", round, winner, i, gen)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrPrecondition):
				t.Fatalf("round %d: writer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won PutIf(generation %d)", round, gen)
		}
		wantContent(t, s, key, fmt.Sprintf("round %d writer %d", round, winner), infos[winner].Generation)
		gen = infos[winner].Generation
	}
}

// testUpdateRace runs concurrent compare-and-swap increments of a counter:
// none may be lost, and generations increase with the counter.
func testUpdateRace(t *testing.T, s store.Store) {
	const workers, increments = 8, 10
	const key = "refs/counter"
	type write struct {
		value int
		gen   int64
	}
	var (
		mu     sync.Mutex
		writes []write
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for w := range workers {
		wg.Go(func() {
			<-start
			for range increments {
				var value int
				info, err := store.Update(t.Context(), s, key, func(old []byte, exists bool) ([]byte, error) {
					value = 0
					if exists {
						v, err := strconv.Atoi(string(old))
						if err != nil {
							return nil, fmt.Errorf("counter %q: %w", old, err)
						}
						value = v
					}
					value++
					return []byte(strconv.Itoa(value)), nil
				})
				if err != nil {
					t.Errorf("worker %d: Update: %v", w, err)
					return
				}
				mu.Lock()
				writes = append(writes, write{value, info.Generation})
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	wantContent(t, s, key, strconv.Itoa(workers*increments), mustStat(t, s, key).Generation)
	slices.SortFunc(writes, func(a, b write) int { return a.value - b.value })
	for i, w := range writes {
		if w.value != i+1 {
			t.Fatalf("counter values written %v, want each of 1..%d once", writes, workers*increments)
		}
		if i > 0 && w.gen <= writes[i-1].gen {
			t.Fatalf("value %d has generation %d, value %d has %d: want increasing", w.value, w.gen, i, writes[i-1].gen)
		}
	}
}

// noStager hides a backend's Stager, so that PutBlob hashes first and then
// uploads (from the reader if it can seek, else from a spooled copy). It
// keeps the backend's Toucher.
type noStager struct{ store.Store }

func (n noStager) Touch(ctx context.Context, key string) (store.Info, error) {
	if t, ok := n.Store.(store.Toucher); ok {
		return t.Touch(ctx, key)
	}
	return store.Info{}, errors.ErrUnsupported
}

func (n noStager) DeleteIfOlder(ctx context.Context, key string, before time.Time) error {
	if t, ok := n.Store.(store.Toucher); ok {
		return t.DeleteIfOlder(ctx, key, before)
	}
	return errors.ErrUnsupported
}

// streamOnly hides everything of a reader but Read, so that PutBlob spools.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

// readerAt is a ReaderAt with a size, and no Seek.
type readerAt struct{ r *strings.Reader }

func (r readerAt) Read(p []byte) (int, error)              { return r.r.Read(p) }
func (r readerAt) ReadAt(p []byte, off int64) (int, error) { return r.r.ReadAt(p, off) }
func (r readerAt) Size() int64                             { return r.r.Size() }

func testBlobs(t *testing.T, s store.Store) {
	for _, v := range []struct {
		name string
		s    store.Store
	}{{"Backend", s}, {"Spooled", noStager{s}}} {
		t.Run(v.name, func(t *testing.T) {
			ctx := t.Context()
			content := "blob content for " + v.name
			d, n, err := store.PutBlob(ctx, v.s, streamOnly{strings.NewReader(content)})
			if err != nil {
				t.Fatalf("PutBlob: %v", err)
			}
			if want := store.DigestOf([]byte(content)); d != want || n != int64(len(content)) {
				t.Fatalf("PutBlob = %s, %d, want %s, %d", d, n, want, len(content))
			}
			key := store.BlobKey(d)
			first := mustStat(t, v.s, key)

			// Written once: the second write changes nothing.
			d2, n2, err := store.PutBlob(ctx, v.s, strings.NewReader(content))
			if err != nil || d2 != d || n2 != n {
				t.Fatalf("second PutBlob = %s, %d, %v, want %s, %d", d2, n2, err, d, n)
			}
			if again := mustStat(t, v.s, key); again.Generation != first.Generation {
				t.Errorf("second PutBlob rewrote the blob: generation %d, was %d", again.Generation, first.Generation)
			}

			rc, info, err := store.OpenBlob(ctx, v.s, d)
			if err != nil {
				t.Fatalf("OpenBlob: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != content || info.Size != n {
				t.Fatalf("OpenBlob read %q, %v (size %d), want %q", got, err, info.Size, content)
			}

			// The empty blob.
			de, ne, err := store.PutBlob(ctx, v.s, strings.NewReader(""))
			if err != nil || ne != 0 || de != store.DigestOf(nil) {
				t.Fatalf("PutBlob(empty) = %s, %d, %v", de, ne, err)
			}

			// Missing blob.
			_, _, err = store.OpenBlob(ctx, v.s, store.DigestOf([]byte("never stored")))
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("OpenBlob(missing) error = %v, want fs.ErrNotExist", err)
			}
		})
	}

	// Concurrent writers of the same content all succeed, with one object.
	content := strings.Repeat("same ", 1000)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 8)
	for i := range errs {
		bs := s
		if i%2 == 1 {
			bs = noStager{s}
		}
		var r io.Reader = strings.NewReader(content)
		if i%4 >= 2 {
			r = streamOnly{r}
		}
		wg.Go(func() {
			<-start
			d, _, err := store.PutBlob(t.Context(), bs, r)
			if err == nil && d != store.DigestOf([]byte(content)) {
				err = fmt.Errorf("digest %s", d)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent PutBlob %d: %v", i, err)
		}
	}
	want := []string{
		store.BlobKey(store.DigestOf(nil)),
		store.BlobKey(store.DigestOf([]byte("blob content for Backend"))),
		store.BlobKey(store.DigestOf([]byte("blob content for Spooled"))),
		store.BlobKey(store.DigestOf([]byte(content))),
	}
	slices.Sort(want)
	if got := keys(t, s, "blobs/"); !slices.Equal(got, want) {
		t.Errorf("List(blobs/) = %q, want %q", got, want)
	}
}

// testBlobSources stores blobs from each kind of source PutBlob tells
// apart, on the backend and with its Stager hidden: a reader that can seek
// (from where it is, not from its start), a ReaderAt with a size, a stream.
func testBlobSources(t *testing.T, s store.Store) {
	const content = "skipped: the blob content"
	const skip = len("skipped: ")
	want := store.DigestOf([]byte(content[skip:]))
	for _, v := range []struct {
		name string
		s    store.Store
	}{{"Backend", s}, {"NoStager", noStager{s}}} {
		for _, src := range []struct {
			name string
			r    func() io.Reader
		}{
			{"Seeker", func() io.Reader {
				r := strings.NewReader(content)
				_, _ = r.Seek(int64(skip), io.SeekStart)
				return r
			}},
			{"ReaderAt", func() io.Reader { return readerAt{strings.NewReader(content[skip:])} }},
			{"Stream", func() io.Reader { return streamOnly{strings.NewReader(content[skip:])} }},
		} {
			t.Run(v.name+"/"+src.name, func(t *testing.T) {
				r := src.r()
				d, n, err := store.PutBlob(t.Context(), v.s, r)
				if err != nil || d != want || n != int64(len(content)-skip) {
					t.Fatalf("PutBlob = %s, %d, %v, want %s, %d", d, n, err, want, len(content)-skip)
				}
				if _, ok := r.(io.Seeker); ok || src.name == "Stream" {
					if rest, _ := io.ReadAll(r); len(rest) != 0 {
						t.Errorf("PutBlob left %q unread", rest)
					}
				}
				rc, _, err := store.OpenBlob(t.Context(), s, d)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || string(got) != content[skip:] {
					t.Errorf("OpenBlob read %q, %v, want %q", got, err, content[skip:])
				}
			})
		}
	}
}

// changingReader is a seekable source whose content is different each time
// it is read from the start: what PutBlob sees when a file is written while
// it is being stored.
type changingReader struct {
	content []byte
	shrink  bool // the second read is one byte short instead of different
	off     int64
	reads   int // reads from the start
}

func (c *changingReader) Read(p []byte) (int, error) {
	if c.off == 0 {
		c.reads++
	}
	b := c.content
	if c.reads > 1 {
		b = slices.Clone(b)
		if c.shrink {
			b = b[:len(b)-1]
		} else {
			b[len(b)/2]++
		}
	}
	if c.off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[c.off:])
	c.off += int64(n)
	return n, nil
}

func (c *changingReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += int64(len(c.content))
	}
	c.off = offset
	return offset, nil
}

// testBlobChanged stores a source that changes between PutBlob's hashing
// pass and its upload (with the Stager hidden: a Stager reads once): PutBlob
// fails with ErrContentChanged and stores nothing.
func testBlobChanged(t *testing.T, s store.Store) {
	content := []byte(strings.Repeat("the content as hashed ", 50000)) // 1 MiB: more than one chunk
	for _, shrink := range []bool{false, true} {
		_, _, err := store.PutBlob(t.Context(), noStager{s}, &changingReader{content: content, shrink: shrink})
		if !errors.Is(err, store.ErrContentChanged) {
			t.Errorf("PutBlob of content that changes (shrink %v): %v, want store.ErrContentChanged", shrink, err)
		}
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Errorf("List = %q, want nothing stored", got)
	}
}

// testBlobRead reads a blob large enough for OpenBlob's read-ahead in every
// way a caller may: small reads, io.Copy (WriteTo), closing early, and with
// its content corrupted.
func testBlobRead(t *testing.T, s store.Store) {
	ctx := t.Context()
	content := make([]byte, 5<<20+123)
	rand.NewChaCha8([32]byte{7}).Read(content)
	d, _, err := store.PutBlob(ctx, s, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	open := func() io.ReadCloser {
		t.Helper()
		rc, info, err := store.OpenBlob(ctx, s, d)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(content)) {
			t.Fatalf("OpenBlob size %d, want %d", info.Size, len(content))
		}
		return rc
	}

	rc := open()
	var got []byte
	buf := make([]byte, 1000)
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(got), err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Errorf("small reads: got %d bytes, not the content", len(got))
	}
	if n, err := rc.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read after the end = %d, %v, want 0, io.EOF", n, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	rc = open()
	var w bytes.Buffer
	if n, err := io.Copy(&w, rc); err != nil || n != int64(len(content)) || !bytes.Equal(w.Bytes(), content) {
		t.Errorf("io.Copy = %d, %v, want %d bytes of the content", n, err, len(content))
	}
	rc.Close()

	// Closing before the end, or before reading at all, stops the reader.
	for _, before := range []int{0, 1, 3 << 20} {
		rc = open()
		if _, err := io.ReadFull(rc, make([]byte, before)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close after %d bytes: %v", before, err)
		}
		if n, err := rc.Read(buf); n != 0 || err == nil || err == io.EOF {
			t.Errorf("Read after Close = %d, %v, want an error", n, err)
		}
	}

	// Corrupt (through the store: a blob key is an ordinary key).
	bad := slices.Clone(content)
	bad[len(bad)-1] ^= 1
	if _, err := s.Put(ctx, store.BlobKey(d), bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	rc = open()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, store.ErrDigestMismatch) {
		t.Errorf("io.Copy of a corrupt blob: %v, want store.ErrDigestMismatch", err)
	}
	rc.Close()
	rc = open()
	if _, err := io.ReadAll(streamOnly{rc}); !errors.Is(err, store.ErrDigestMismatch) {
		t.Errorf("reading a corrupt blob: %v, want store.ErrDigestMismatch", err)
	}
	rc.Close()
}

// testToucher checks Touch and DeleteIfOlder, for backends that have them.
func testToucher(t *testing.T, s store.Store) {
	tc, ok := s.(store.Toucher)
	ctx := t.Context()
	if ok {
		// A decorator may be a Toucher around a backend that is not.
		_, err := tc.Touch(ctx, "t/missing")
		ok = !errors.Is(err, errors.ErrUnsupported)
	}
	if !ok {
		t.Skip("backend does not implement store.Toucher")
	}
	info := put(t, s, "t/k", "content")
	touched, err := tc.Touch(ctx, "t/k")
	if err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if touched.Key != "t/k" || touched.Size != info.Size || touched.Generation != info.Generation || touched.ModTime.Before(info.ModTime) {
		t.Errorf("Touch = %+v, want the object %+v with a ModTime not before its own", touched, info)
	}
	wantContent(t, s, "t/k", "content", info.Generation)
	if st := mustStat(t, s, "t/k"); !st.ModTime.Equal(touched.ModTime) {
		t.Errorf("Stat after Touch: ModTime %s, want %s", st.ModTime, touched.ModTime)
	}
	if _, err := tc.Touch(ctx, "t/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Touch(missing): %v, want fs.ErrNotExist", err)
	}

	// Not older than its own ModTime: kept.
	if err := tc.DeleteIfOlder(ctx, "t/k", touched.ModTime); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("DeleteIfOlder(its ModTime): %v, want store.ErrPrecondition", err)
	}
	wantContent(t, s, "t/k", "content", info.Generation)
	if err := tc.DeleteIfOlder(ctx, "t/k", touched.ModTime.Add(time.Second)); err != nil {
		t.Errorf("DeleteIfOlder(later): %v", err)
	}
	if _, err := s.Stat(ctx, "t/k"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after DeleteIfOlder: %v, want fs.ErrNotExist", err)
	}
	if err := tc.DeleteIfOlder(ctx, "t/k", touched.ModTime.Add(time.Second)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteIfOlder(missing): %v, want fs.ErrNotExist", err)
	}
	if _, err := tc.Touch(ctx, "bad//key"); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("Touch(invalid key): %v, want store.ErrInvalidKey", err)
	}
}

// testBlobDigestMismatch corrupts blobs through the store itself (a blob key
// is an ordinary key), so it needs no backend hook.
func testBlobDigestMismatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	content := "the true content"
	d, _, err := store.PutBlob(ctx, s, strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"same size": "the True content",
		"truncated": "the true",
		"extended":  content + "!",
		"empty":     "",
	} {
		put(t, s, store.BlobKey(d), bad)
		rc, _, err := store.OpenBlob(ctx, s, d)
		if err != nil {
			t.Fatalf("%s: OpenBlob: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, store.ErrDigestMismatch) {
			t.Errorf("%s: reading a corrupt blob: %q, %v, want store.ErrDigestMismatch", name, got, err)
		} else if !strings.Contains(err.Error(), d.String()) {
			t.Errorf("%s: error %q does not name the digest", name, err)
		}
	}
}

func testStager(t *testing.T, s store.Store) {
	st, ok := s.(store.Stager)
	if !ok {
		t.Skip("backend does not implement store.Stager; PutBlob spools (tested in Blobs/Spooled)")
	}
	ctx := t.Context()
	stage := func(content string) store.Staged {
		t.Helper()
		sd, err := st.Stage(ctx, strings.NewReader(content))
		if err != nil {
			t.Fatalf("Stage: %v", err)
		}
		if sd.Size() != int64(len(content)) {
			t.Fatalf("Size = %d, want %d", sd.Size(), len(content))
		}
		return sd
	}
	a := stage("a")
	if got := keys(t, s, ""); len(got) != 0 {
		t.Fatalf("staged content is visible: %q", got)
	}
	ia, err := a.Publish(ctx, "staged/k", store.Absent)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	wantContent(t, s, "staged/k", "a", ia.Generation)
	if err := a.Discard(); err != nil {
		t.Errorf("Discard after Publish: %v", err)
	}
	wantContent(t, s, "staged/k", "a", ia.Generation)

	b := stage("b")
	if _, err := b.Publish(ctx, "staged/k", store.Absent); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("Publish(absent) over an object: %v, want store.ErrPrecondition", err)
	}
	ib, err := b.Publish(ctx, "staged/k", ia.Generation) // still staged after a failure
	if err != nil {
		t.Fatalf("Publish after a failed Publish: %v", err)
	}
	wantContent(t, s, "staged/k", "b", ib.Generation)

	c := stage("c")
	if err := c.Discard(); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if err := c.Discard(); err != nil {
		t.Fatalf("second Discard: %v", err)
	}
	if got := keys(t, s, ""); !slices.Equal(got, []string{"staged/k"}) {
		t.Errorf("List = %q, want [staged/k]", got)
	}
}

var errReader = errors.New("reader failed")

// failingReader yields n bytes, calls then (if set), and fails with err
// after another n bytes, or ends there if err is nil.
type failingReader struct {
	n, read int
	then    func()
	err     error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.read >= 2*r.n {
		if r.err == nil {
			return 0, io.EOF
		}
		return 0, r.err
	}
	if r.read >= r.n && r.then != nil {
		r.then()
		r.then = nil
	}
	end := r.n
	if r.read >= r.n {
		end = 2 * r.n
	}
	m := min(len(p), end-r.read)
	clear(p[:m])
	r.read += m
	return m, nil
}

// testFailedWrite checks that a write whose reader fails leaves the store as
// it was: no partial object, under the final name or any other.
func testFailedWrite(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := put(t, s, "f/existing", "old")
	for _, key := range []string{"f/existing", "f/new"} {
		_, err := s.Put(ctx, key, &failingReader{n: 1 << 20, err: errReader})
		if !errors.Is(err, errReader) {
			t.Errorf("Put(%q) with a failing reader: %v, want the reader's error", key, err)
		}
		_, err = s.PutIf(ctx, key, &failingReader{n: 1 << 20, err: errReader}, old.Generation)
		if !errors.Is(err, errReader) {
			t.Errorf("PutIf(%q) with a failing reader: %v, want the reader's error", key, err)
		}
	}
	if _, _, err := store.PutBlob(ctx, s, &failingReader{n: 1 << 20, err: errReader}); !errors.Is(err, errReader) {
		t.Errorf("PutBlob with a failing reader: %v, want the reader's error", err)
	}
	if _, _, err := store.PutBlob(ctx, noStager{s}, &failingReader{n: 1 << 20, err: errReader}); !errors.Is(err, errReader) {
		t.Errorf("PutBlob (spooled) with a failing reader: %v, want the reader's error", err)
	}
	wantContent(t, s, "f/existing", "old", old.Generation)
	if got := keys(t, s, ""); !slices.Equal(got, []string{"f/existing"}) {
		t.Errorf("List = %q, want [f/existing]", got)
	}
}

func testCancel(t *testing.T, s store.Store) {
	old := put(t, s, "c/existing", "old")
	wantCanceled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error = %v, want context.Canceled", what, err)
		}
	}

	t.Run("Before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := s.Put(ctx, "c/new", strings.NewReader("x"))
		wantCanceled("Put", err)
		_, err = s.Put(ctx, "c/existing", strings.NewReader("x"))
		wantCanceled("Put over an object", err)
		_, err = s.PutIf(ctx, "c/existing", strings.NewReader("x"), old.Generation)
		wantCanceled("PutIf", err)
		_, _, err = s.Open(ctx, "c/existing")
		wantCanceled("Open", err)
		_, err = s.Stat(ctx, "c/existing")
		wantCanceled("Stat", err)
		wantCanceled("Delete", s.Delete(ctx, "c/existing"))
		var errs []error
		for _, err := range s.List(ctx, "") {
			errs = append(errs, err)
		}
		if len(errs) != 1 {
			t.Errorf("List yielded %d results, want one error", len(errs))
		} else {
			wantCanceled("List", errs[0])
		}
		_, _, err = store.PutBlob(ctx, s, strings.NewReader("x"))
		wantCanceled("PutBlob", err)
		_, _, err = store.PutBlob(ctx, noStager{s}, strings.NewReader("x"))
		wantCanceled("PutBlob (spooled)", err)
	})

	t.Run("DuringWrite", func(t *testing.T) {
		for _, key := range []string{"c/existing", "c/new"} {
			ctx, cancel := context.WithCancel(t.Context())
			// The reader cancels after 1 MiB and then goes on for 1 MiB.
			_, err := s.Put(ctx, key, &failingReader{n: 1 << 20, then: cancel})
			wantCanceled("Put cancelled while writing "+key, err)
			cancel()
		}
		ctx, cancel := context.WithCancel(t.Context())
		_, _, err := store.PutBlob(ctx, s, &failingReader{n: 1 << 20, then: cancel})
		wantCanceled("PutBlob cancelled while writing", err)
		cancel()
	})

	t.Run("DuringRead", func(t *testing.T) {
		put(t, s, "c/big", strings.Repeat("0123456789abcdef", 1<<18)) // 4 MiB
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rc, _, err := s.Open(ctx, "c/big")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, err = io.Copy(io.Discard, rc)
		wantCanceled("reading to the end after cancel", err)
	})

	wantContent(t, s, "c/existing", "old", old.Generation)
	if got := keys(t, s, ""); !slices.Equal(got, []string{"c/big", "c/existing"}) {
		t.Errorf("List = %q, want [c/big c/existing]", got)
	}
}

// testLarge streams a 64 MiB object in and out and checks that memory use
// stays well below the object's size.
func testLarge(t *testing.T, s store.Store) {
	const size = 64 << 20
	// Half the object: a backend that buffers whole objects fails, one with
	// an upload buffer (the GCS writer's 16 MiB chunk) passes.
	const maxAlloc = size / 2
	ctx := t.Context()
	newContent := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size) }
	want, _, err := digestOf(newContent())
	if err != nil {
		t.Fatal(err)
	}

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var info store.Info
	if a := allocated(func() { info, err = s.Put(ctx, "large/object", newContent()) }); a > maxAlloc {
		t.Errorf("Put of %d bytes allocated %d bytes, want at most %d", size, a, maxAlloc)
	}
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if info.Size != size {
		t.Errorf("Put size = %d, want %d", info.Size, size)
	}
	var got store.Digest
	var n int64
	if a := allocated(func() {
		var rc io.ReadCloser
		rc, _, err = s.Open(ctx, "large/object")
		if err != nil {
			return
		}
		defer rc.Close()
		got, n, err = digestOf(rc)
	}); a > maxAlloc {
		t.Errorf("reading %d bytes allocated %d bytes, want at most %d", size, a, maxAlloc)
	}
	if err != nil || got != want || n != size {
		t.Fatalf("read back %d bytes with digest %s, %v, want %d bytes with %s", n, got, err, size, want)
	}

	var d store.Digest
	if a := allocated(func() { d, n, err = store.PutBlob(ctx, s, newContent()) }); a > maxAlloc {
		t.Errorf("PutBlob of %d bytes allocated %d bytes, want at most %d", size, a, maxAlloc)
	}
	if err != nil || d != want || n != size {
		t.Fatalf("PutBlob = %s, %d, %v, want %s, %d", d, n, err, want, size)
	}
	rc, _, err := store.OpenBlob(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Errorf("reading the large blob: %v", err)
	}
}

func digestOf(r io.Reader) (store.Digest, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return store.Digest{}, n, err
	}
	var sum [sha256.Size]byte
	return store.NewDigest([sha256.Size]byte(h.Sum(sum[:0]))), n, nil
}
