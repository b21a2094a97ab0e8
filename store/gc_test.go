package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

// gcFixture is a file store with runs, cache entries, a gs note, a ref and
// blobs, aged with os.Chtimes so that GC can run at the real time.
type gcFixture struct {
	t     *testing.T
	dir   string
	s     *file.Store
	now   time.Time
	blobs map[string]store.Digest // name -> digest
}

func newGCFixture(t *testing.T) *gcFixture {
	t.Helper()
	dir := t.TempDir()
	s, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &gcFixture{t: t, dir: dir, s: s, now: time.Now(), blobs: map[string]store.Digest{}}
}

// blob stores content named name, written age ago.
func (f *gcFixture) blob(name string, age time.Duration) store.Digest {
	f.t.Helper()
	d, _, err := store.PutBlob(context.Background(), f.s, strings.NewReader("content of "+name))
	if err != nil {
		f.t.Fatal(err)
	}
	f.blobs[name] = d
	f.age(store.BlobKey(d), age)
	return d
}

// age sets the ModTime of the object under key to age before now.
func (f *gcFixture) age(key string, age time.Duration) {
	f.t.Helper()
	when := f.now.Add(-age)
	if err := os.Chtimes(filepath.Join(f.dir, filepath.FromSlash(key)), when, when); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gcFixture) put(key, content string, age time.Duration) {
	f.t.Helper()
	if _, err := f.s.Put(context.Background(), key, strings.NewReader(content)); err != nil {
		f.t.Fatal(err)
	}
	f.age(key, age)
}

func (f *gcFixture) run(r *store.Run, age time.Duration) {
	f.t.Helper()
	if err := store.PutRun(context.Background(), f.s, r); err != nil {
		f.t.Fatal(err)
	}
	f.age(store.RunKey(r.ID), age)
}

func (f *gcFixture) cache(key, run string, result *store.NodeRun, age time.Duration) {
	f.t.Helper()
	data, err := json.Marshal(map[string]any{"run": run, "node": "train", "result": result})
	if err != nil {
		f.t.Fatal(err)
	}
	f.put("cache/"+key+".json", string(data), age)
}

// keys lists every key in the store.
func (f *gcFixture) keys() []string {
	f.t.Helper()
	var out []string
	for info, err := range f.s.List(context.Background(), "") {
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

func (f *gcFixture) has(name string) bool {
	_, err := f.s.Stat(context.Background(), store.BlobKey(f.blobs[name]))
	return err == nil
}

func out(name string, d store.Digest) store.File { return store.File{Path: name, Digest: d, Size: 10} }

const day = 24 * time.Hour

// build fills the store:
//
//	old run (30 days)      outputs shared, oldOnly; log oldLog; input oldInput; its cache entry
//	new run (1 day)        outputs shared, newOnly; log newLog; input newInput (from the old
//	                       run's output edge: digest only); task executions with execOut, execLog
//	unfinished run (30 d)  status running, record written now: output running
//	abandoned run (30 d)   status running, record last written 10 days ago: output abandoned
//	no-start run           no Started; the id says 2020: output noStart
//	baseline run (30 d)    named by refs/branch/main: output baseline
//	damaged record         not valid JSON, mentions damaged
//	gs note                names gsInput (also the old run's input)
//	orphan cache entries   run never existed: old one (40 d, orphanOld), new one (1 minute, orphanNew)
//	unreferenced blobs     garbage (2 days old), fresh (1 minute old)
func (f *gcFixture) build() {
	f.blob("shared", 30*day)
	f.blob("oldOnly", 30*day)
	f.blob("oldLog", 30*day)
	f.blob("oldInput", 30*day)
	f.blob("newOnly", day)
	f.blob("newLog", day)
	f.blob("newInput", 40*day) // an old blob that only the new run uses
	f.blob("execOut", 40*day)
	f.blob("execLog", 40*day)
	f.blob("running", 30*day)
	f.blob("abandoned", 30*day)
	f.blob("noStart", 30*day)
	f.blob("baseline", 30*day)
	f.blob("damaged", 30*day)
	f.blob("gsInput", 30*day)
	f.blob("orphanOld", 40*day)
	f.blob("orphanNew", 40*day)
	f.blob("garbage", 2*day)
	f.blob("fresh", time.Minute)

	oldNode := &store.NodeRun{Name: "train", Status: store.StatusSucceeded, Log: f.blobs["oldLog"], CacheKey: "k-old",
		Outputs: []store.File{out("model.pkl", f.blobs["shared"]), out("old.txt", f.blobs["oldOnly"])},
		Inputs:  []store.File{{Input: "data", Path: "data.csv", Digest: f.blobs["oldInput"]}, {Input: "gs", Path: "x", Digest: f.blobs["gsInput"]}}}
	f.run(&store.Run{ID: "20240101T000000.000000Z-aaaaaa", Status: store.StatusSucceeded, Started: f.now.Add(-30 * day),
		Nodes: []*store.NodeRun{oldNode}}, 30*day)
	f.put("runs/20240101T000000.000000Z-aaaaaa/train/outputs/manifest.json", `{"model.pkl":"`+f.blobs["shared"].String()+`"}`, 30*day)
	f.cache("k-old", "20240101T000000.000000Z-aaaaaa", oldNode, 30*day)

	newNode := &store.NodeRun{Name: "train", Status: store.StatusSucceeded, Log: f.blobs["newLog"], CacheKey: "k-new",
		Outputs: []store.File{out("model.pkl", f.blobs["shared"]), out("new.txt", f.blobs["newOnly"])},
		Inputs:  []store.File{{Input: "data", Path: "data.csv", Digest: f.blobs["newInput"]}}}
	sweep := &store.NodeRun{Name: "sweep", Status: store.StatusSucceeded, Executions: []*store.NodeRun{
		{Name: "sweep", Variant: "lr=0.1", Status: store.StatusSucceeded, Log: f.blobs["execLog"],
			Outputs: []store.File{out("m.bin", f.blobs["execOut"])}},
	}}
	f.run(&store.Run{ID: "20240129T000000.000000Z-bbbbbb", Status: store.StatusFailed, Started: f.now.Add(-day),
		Nodes: []*store.NodeRun{newNode, sweep}}, day)
	f.cache("k-new", "20240129T000000.000000Z-bbbbbb", newNode, day)

	f.run(&store.Run{ID: "r-unfinished", Status: store.StatusRunning, Started: f.now.Add(-30 * day),
		Nodes: []*store.NodeRun{{Name: "a", Outputs: []store.File{out("x", f.blobs["running"])}}}}, time.Minute)
	f.run(&store.Run{ID: "r-abandoned", Status: store.StatusRunning, Started: f.now.Add(-30 * day),
		Nodes: []*store.NodeRun{{Name: "a", Outputs: []store.File{out("x", f.blobs["abandoned"])}}}}, 10*day)
	f.run(&store.Run{ID: "20200101T000000.000000Z-cccccc", Status: store.StatusSucceeded,
		Nodes: []*store.NodeRun{{Name: "a", Outputs: []store.File{out("x", f.blobs["noStart"])}}}}, time.Minute)
	f.run(&store.Run{ID: "r-baseline", Status: store.StatusSucceeded, Started: f.now.Add(-30 * day),
		Nodes: []*store.NodeRun{{Name: "a", Outputs: []store.File{out("x", f.blobs["baseline"])}}}}, 30*day)
	f.put("refs/branch/main", `{"run":"r-baseline"}`, 30*day)
	f.put(store.RunKey("r-damaged"), `{"id":"r-damaged","started":"2020-01-01T00:00:00Z","nodes":[{"outputs":[{"digest":"`+f.blobs["damaged"].String(), 30*day)

	f.put("inputs/gs/0123.json", `{"object":"gs://b/x#1","digest":"`+f.blobs["gsInput"].String()+`"}`, 30*day)
	f.cache("k-orphan-old", "r-never", &store.NodeRun{Status: store.StatusSucceeded, Log: f.blobs["orphanOld"]}, 40*day)
	f.cache("k-orphan-new", "r-never", &store.NodeRun{Status: store.StatusSucceeded, Log: f.blobs["orphanNew"]}, time.Minute)
}

func TestGC(t *testing.T) {
	f := newGCFixture(t)
	f.build()
	ctx := context.Background()
	before := f.keys()

	wantRuns := []string{"20200101T000000.000000Z-cccccc", "20240101T000000.000000Z-aaaaaa", "r-abandoned"}
	gone := []string{"oldOnly", "oldLog", "oldInput", "abandoned", "noStart", "orphanOld", "garbage"}
	kept := []string{"shared", "newOnly", "newLog", "newInput", "execOut", "execLog", "running", "baseline",
		"damaged", "gsInput", "orphanNew", "fresh"}
	check := func(rep store.GCReport, dry bool) {
		t.Helper()
		if rep.DryRun != dry {
			t.Errorf("DryRun = %v", rep.DryRun)
		}
		if !slices.Equal(rep.Runs, wantRuns) {
			t.Errorf("Runs = %q, want %q", rep.Runs, wantRuns)
		}
		if rep.CacheEntries != 2 {
			t.Errorf("CacheEntries = %d, want 2 (the old run's and the old orphan)", rep.CacheEntries)
		}
		if rep.Blobs != len(gone) {
			t.Errorf("Blobs = %d, want %d", rep.Blobs, len(gone))
		}
		if rep.RecentBlobs != 1 {
			t.Errorf("RecentBlobs = %d, want 1 (fresh)", rep.RecentBlobs)
		}
		if want := []string{"r-unfinished"}; !slices.Equal(rep.Unfinished, want) {
			t.Errorf("Unfinished = %q, want %q", rep.Unfinished, want)
		}
		if want := []string{"r-baseline"}; !slices.Equal(rep.Named, want) {
			t.Errorf("Named = %q, want %q", rep.Named, want)
		}
		if want := []string{store.RunKey("r-damaged")}; !slices.Equal(rep.Damaged, want) {
			t.Errorf("Damaged = %q, want %q", rep.Damaged, want)
		}
		// Objects: 3 run records + the old run's manifest + 2 cache entries + blobs.
		if want := 3 + 1 + 2 + len(gone); rep.Objects != want {
			t.Errorf("Objects = %d, want %d", rep.Objects, want)
		}
		var blobBytes int64
		for _, n := range gone {
			blobBytes += int64(len("content of " + n))
		}
		if rep.BlobBytes != blobBytes || rep.Bytes <= blobBytes {
			t.Errorf("BlobBytes = %d, want %d; Bytes = %d, want more", rep.BlobBytes, blobBytes, rep.Bytes)
		}
	}

	// A dry run reports and deletes nothing.
	rep, err := store.GC(ctx, f.s, 7, f.now, true)
	if err != nil {
		t.Fatal(err)
	}
	check(rep, true)
	if after := f.keys(); !slices.Equal(after, before) {
		t.Fatalf("the dry run changed the store:\nbefore %q\nafter  %q", before, after)
	}

	rep, err = store.GC(ctx, f.s, 7, f.now, false)
	if err != nil {
		t.Fatal(err)
	}
	check(rep, false)
	for _, n := range gone {
		if f.has(n) {
			t.Errorf("blob %s is still there", n)
		}
	}
	for _, n := range kept {
		if !f.has(n) {
			t.Errorf("blob %s was removed", n)
		}
	}
	var left []string
	for _, k := range f.keys() {
		if !strings.HasPrefix(k, "blobs/") {
			left = append(left, k)
		}
	}
	wantLeft := []string{"cache/k-new.json", "cache/k-orphan-new.json", "inputs/gs/0123.json", "refs/branch/main",
		"runs/20240129T000000.000000Z-bbbbbb/run.json", "runs/r-baseline/run.json", "runs/r-damaged/run.json",
		"runs/r-unfinished/run.json"}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("left:\n%q\nwant\n%q", left, wantLeft)
	}
	// Every record left can still be read whole: no blob it names is gone.
	for _, id := range []string{"20240129T000000.000000Z-bbbbbb", "r-baseline", "r-unfinished"} {
		r, err := store.GetRun(ctx, f.s, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range r.Nodes {
			for _, e := range append([]*store.NodeRun{n}, n.Executions...) {
				for _, file := range slices.Concat(e.Outputs, e.Inputs) {
					if _, err := f.s.Stat(ctx, store.BlobKey(file.Digest)); err != nil {
						t.Errorf("run %s: %s: %v", id, file.Path, err)
					}
				}
			}
		}
	}

	// A second GC finds nothing more.
	rep, err = store.GC(ctx, f.s, 7, f.now, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 0 || rep.Blobs != 0 || rep.CacheEntries != 0 || rep.Objects != 0 {
		t.Errorf("second GC removed %+v", rep)
	}
}

// TestGCKeepZero removes every finished run, and keeps what the unfinished
// one, the damaged record, the ref's run and the gs note refer to.
func TestGCKeepZero(t *testing.T) {
	f := newGCFixture(t)
	f.build()
	rep, err := store.GC(context.Background(), f.s, 0, f.now, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 4 {
		t.Errorf("Runs = %q, want 4 (all finished runs but the baseline)", rep.Runs)
	}
	for _, n := range []string{"running", "baseline", "damaged", "gsInput", "fresh", "orphanNew"} {
		if !f.has(n) {
			t.Errorf("blob %s was removed", n)
		}
	}
	for _, n := range []string{"newOnly", "newLog", "shared", "execOut", "newInput"} {
		if f.has(n) {
			t.Errorf("blob %s is still there", n)
		}
	}
}

func TestGCNegativeKeepDays(t *testing.T) {
	f := newGCFixture(t)
	if _, err := store.GC(context.Background(), f.s, -1, f.now, true); err == nil || !strings.Contains(err.Error(), "-1") {
		t.Errorf("GC(-1) = %v, want an error naming -1", err)
	}
}

// racingStore runs hook once, when GC starts listing blobs: after GC has
// decided what the records refer to, before it deletes anything.
type racingStore struct {
	*file.Store
	once sync.Once
	hook func()
}

func (r *racingStore) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	if prefix == "blobs/" {
		r.once.Do(r.hook)
	}
	return r.Store.List(ctx, prefix)
}

// TestGCConcurrentRun: while GC works, a new run records an old blob that
// nothing referred to when GC read the records (PutBlob of content that is
// already stored writes nothing, so the blob stays old), and replaces the
// cache entry of a run GC removes. Both survive.
func TestGCConcurrentRun(t *testing.T) {
	f := newGCFixture(t)
	ctx := context.Background()
	reused := f.blob("reused", 30*day)
	oldOut := f.blob("oldOut", 30*day)
	newOut := f.blob("newOut", 30*day)
	cacheOnly := f.blob("cacheOnly", 30*day)
	oldNode := &store.NodeRun{Name: "train", Status: store.StatusSucceeded, Outputs: []store.File{out("a", oldOut)}}
	f.run(&store.Run{ID: "r-old", Status: store.StatusSucceeded, Started: f.now.Add(-30 * day), Nodes: []*store.NodeRun{oldNode}}, 30*day)
	f.cache("k", "r-old", oldNode, 30*day)
	f.blob("garbage", 30*day)

	rs := &racingStore{Store: f.s}
	rs.hook = func() {
		if _, _, err := store.PutBlob(ctx, f.s, strings.NewReader("content of reused")); err != nil {
			t.Error(err)
		}
		node := &store.NodeRun{Name: "train", Status: store.StatusSucceeded,
			Outputs: []store.File{out("a", reused), out("b", newOut)}}
		if err := store.PutRun(ctx, f.s, &store.Run{ID: "r-new", Status: store.StatusRunning, Started: f.now, Nodes: []*store.NodeRun{node}}); err != nil {
			t.Error(err)
		}
		// The replaced entry mentions a blob the record does not: GC must
		// read the entry again, not go by what it read before.
		entry := *node
		entry.Outputs = append(entry.Outputs, out("c", cacheOnly))
		data, _ := json.Marshal(map[string]any{"run": "r-new", "node": "train", "result": &entry})
		if _, err := f.s.Put(ctx, "cache/k.json", bytes.NewReader(data)); err != nil {
			t.Error(err)
		}
	}
	rep, err := store.GC(ctx, rs, 7, f.now, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Runs, []string{"r-old"}) || rep.CacheEntries != 0 {
		t.Errorf("Runs = %q, CacheEntries = %d; want [r-old], 0", rep.Runs, rep.CacheEntries)
	}
	for _, n := range []string{"reused", "newOut", "cacheOnly"} {
		if !f.has(n) {
			t.Errorf("blob %s, recorded by a run while GC worked, was removed", n)
		}
	}
	if f.has("oldOut") || f.has("garbage") {
		t.Errorf("oldOut or garbage is still there: %+v", rep)
	}
	rc, _, err := f.s.Open(ctx, "cache/k.json")
	if err != nil {
		t.Fatalf("the cache entry the new run wrote: %v", err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(data), "r-new") {
		t.Errorf("cache/k.json = %s", data)
	}
}
