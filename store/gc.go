package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// BlobGrace is how long a blob is safe from GC after it was written,
// referenced or not. A run in progress writes an output's blob before the
// record that refers to it, so a fresh blob that nothing refers to yet is
// not garbage. It also covers the difference between the local clock and
// the backend's (GCS stamps ModTime with its own).
const BlobGrace = time.Hour

// StaleRun is how long an unfinished run's record must have gone unwritten
// before GC treats the run as abandoned (its process was killed) and may
// remove it. A live run rewrites its record whenever a node finishes.
const StaleRun = 7 * 24 * time.Hour

// maxRecord is the largest run record or cache entry GC decodes; larger
// objects are still scanned for references, and kept.
const maxRecord = 256 << 20

// GCReport says what GC removed, or with a dry run what it would remove, and
// what it kept that a reader might expect gone.
type GCReport struct {
	// DryRun is set when nothing was deleted.
	DryRun bool
	// Cutoff is the time before which a run counts as old.
	Cutoff time.Time
	// Runs are the ids of the runs removed (every object under
	// runs/<id>/), oldest first.
	Runs []string
	// CacheEntries is the number of cache/<key>.json entries removed.
	CacheEntries int
	// Blobs and BlobBytes count the blobs removed.
	Blobs     int
	BlobBytes int64
	// Objects and Bytes count every object removed: run records and the
	// rest of runs/<id>/, cache entries and blobs.
	Objects int
	Bytes   int64
	// RecentBlobs and RecentBytes count the blobs nothing refers to that
	// were kept because they were written (or touched by PutBlob) less
	// than BlobGrace before now, including those touched while GC ran.
	RecentBlobs int
	RecentBytes int64
	// Unfinished are old runs kept because they are still running or
	// pending and their record was written less than StaleRun ago.
	Unfinished []string
	// Named are old runs kept because an object under refs/ names them
	// (a branch's baseline must outlive the cut-off).
	Named []string
	// Damaged are the keys of run records and cache entries that are not
	// valid JSON (or too large to decode). They are kept, and every digest
	// that appears in their bytes is treated as referenced.
	Damaged []string
}

// GC removes the runs that started before now minus keepDays days, the
// cache entries those runs made, and then every blob that nothing left in
// the store refers to. With dryRun it deletes nothing and reports what it
// would remove. now is the current time (injected for tests).
//
// The safety rules, in order of precedence:
//
//   - A blob is kept if any object that stays in the store refers to it: every
//     object outside blobs/ that GC does not remove (run records of kept runs
//     and anything else under their runs/<id>/, cache entries, inputs/gs/
//     notes, refs, objects GC does not know) is a root. A root refers to every
//     64-hex-digit string in its bytes (digests as "sha256:<hex>" or blob keys
//     as ".../<hex>"), read as bytes rather than decoded, so no field is
//     missed: outputs, inputs, logs, task executions, fields added later, and
//     damaged records alike. A false match only keeps a blob longer.
//   - A blob written less than BlobGrace before now is kept, referenced or
//     not: a run in progress may have just written it and not yet recorded it.
//   - Before deleting anything, GC lists the roots again and reads every root
//     that is new or was rewritten since it first listed them, so a run that
//     recorded an existing blob while GC was working keeps it.
//   - A run that stores content identical to an old unreferenced blob and
//     records it after GC's second look is covered by the store: PutBlob
//     touches a blob that is already stored (store.Toucher), which makes it
//     young again, and GC deletes each blob with DeleteIfOlder, which checks
//     its age again in the same atomic step as the delete. Whichever comes
//     first, the blob is kept or PutBlob finds it gone and writes it again.
//     With a backend that is not a Toucher, GC checks the blob's age just
//     before deleting it, which leaves a window of one request.
//   - A run is old when its Started time is before the cut-off; when the
//     record has no Started time, the time its id begins with
//     ("20060102T150405.000000Z-..."), else the record's ModTime.
//   - An old run that is running or pending is kept unless its record was
//     last written more than StaleRun ago (then its process is gone).
//   - An old run that an object under refs/ names (its id appears in the
//     ref's bytes) is kept.
//   - A run record that is not valid JSON is never removed: what it is and
//     how old is unknown. It stays a root, so every digest in its bytes is
//     kept; it is listed in Damaged.
//   - A cache entry is removed when its run is removed, or when its run has
//     no record and the entry itself was written before the cut-off and more
//     than BlobGrace ago (its run was removed earlier). A cache entry that
//     is not valid JSON is kept and listed in Damaged. inputs/gs/ notes are
//     always kept (and so are their blobs).
//   - Records are deleted before blobs, and a run's run.json after the rest
//     of runs/<id>/, so a GC that is interrupted leaves no record that
//     refers to a deleted blob and is finished by the next one.
//   - Any error reading a root stops GC before it deletes anything. A delete
//     that fails stops GC; what it removed until then is in the report.
func GC(ctx context.Context, s Store, keepDays int, now time.Time, dryRun bool) (GCReport, error) {
	if keepDays < 0 {
		return GCReport{}, fmt.Errorf("gc: keep days %d: want 0 or more", keepDays)
	}
	g := &gc{s: s, now: now, dryRun: dryRun, read: map[string][][32]byte{}, refs: map[[32]byte]struct{}{}}
	g.rep.DryRun = dryRun
	g.rep.Cutoff = now.Add(-time.Duration(keepDays) * 24 * time.Hour)
	if err := g.run(ctx); err != nil {
		return g.rep, err
	}
	return g.rep, nil
}

type gc struct {
	s      Store
	now    time.Time
	dryRun bool
	rep    GCReport

	roots map[string]Info       // key -> Info of the objects first listed outside blobs/
	read  map[string][][32]byte // key -> digests in the object, for those read whole once
	refs  map[[32]byte]struct{} // digests the roots that stay refer to
}

// gcRun is a run as GC sees it.
type gcRun struct {
	id      string
	keys    []Info // every object under runs/<id>/, run.json last
	age     time.Time
	remove  bool
	damaged bool
}

func (g *gc) run(ctx context.Context) error {
	// 1. List everything outside blobs/.
	g.roots = map[string]Info{}
	for info, err := range g.s.List(ctx, "") {
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if !strings.HasPrefix(info.Key, "blobs/") {
			g.roots[info.Key] = info
		}
	}

	// 2. Decide which runs go.
	runs, err := g.runs(ctx)
	if err != nil {
		return err
	}
	named, err := g.namedRuns(ctx, runs)
	if err != nil {
		return err
	}
	removed := map[string]bool{}
	removing := map[string]bool{} // keys GC removes
	for _, r := range runs {
		if r.remove && named[r.id] {
			r.remove = false
			g.rep.Named = append(g.rep.Named, r.id)
		}
		if r.remove {
			removed[r.id] = true
			for _, k := range r.keys {
				removing[k.Key] = true
			}
		}
	}

	// 3. Decide which cache entries go.
	type cacheEntry struct {
		info Info
		run  string
	}
	var cacheGone []cacheEntry
	for _, info := range sortedInfos(g.roots, "cache/") {
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		run, ok, err := g.cacheRun(ctx, info.Key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			g.rep.Damaged = append(g.rep.Damaged, info.Key)
			continue
		}
		_, exists := g.roots[RunKey(run)]
		orphan := !exists && info.ModTime.Before(g.rep.Cutoff) && info.ModTime.Before(g.now.Add(-BlobGrace))
		if removed[run] || orphan {
			cacheGone = append(cacheGone, cacheEntry{info, run})
			removing[info.Key] = true
		}
	}

	// 4. Mark: every root that stays refers to blobs.
	for _, info := range sortedInfos(g.roots, "") {
		if removing[info.Key] {
			continue
		}
		if err := g.scan(ctx, info.Key); err != nil {
			return err
		}
	}

	// 5. Sweep candidates: blobs nothing refers to, older than the grace.
	type blob struct {
		info Info
		sum  [32]byte
	}
	var candidates []blob
	fresh := g.now.Add(-BlobGrace)
	for info, err := range g.s.List(ctx, "blobs/") {
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		sum, ok := blobSum(info.Key)
		if !ok {
			continue // not a blob PutBlob wrote: not GC's to judge
		}
		if _, ok := g.refs[sum]; ok {
			continue
		}
		if !info.ModTime.Before(fresh) {
			g.rep.RecentBlobs++
			g.rep.RecentBytes += info.Size
			continue
		}
		candidates = append(candidates, blob{info, sum})
	}

	// 6. Look again: roots written since step 1 refer to blobs too, and
	// what was rewritten since is no longer what GC decided to remove (a
	// new run may have replaced a cache entry of a removed one).
	changed, err := g.recheck(ctx, removing)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if !r.remove || !anyKey(r.keys, changed) {
			continue
		}
		r.remove = false
		for _, k := range r.keys {
			if err := g.scan(ctx, k.Key); err != nil {
				return err
			}
		}
	}

	// 7. Delete: runs (run.json last), cache entries, then blobs.
	stillRemoved := map[string]bool{}
	for _, r := range runs {
		if !r.remove {
			continue
		}
		for _, k := range r.keys {
			if err := g.delete(ctx, k); err != nil {
				return err
			}
		}
		g.rep.Runs = append(g.rep.Runs, r.id)
		stillRemoved[r.id] = true
	}
	for _, e := range cacheGone {
		if changed[e.info.Key] {
			continue // rewritten since (and scanned by recheck)
		}
		if removed[e.run] && !stillRemoved[e.run] {
			// Its run is kept after all: so is the entry, as a root.
			if err := g.scan(ctx, e.info.Key); err != nil {
				return err
			}
			continue
		}
		if err := g.delete(ctx, e.info); err != nil {
			return err
		}
		g.rep.CacheEntries++
	}
	for _, b := range candidates {
		if _, ok := g.refs[b.sum]; ok {
			continue
		}
		deleted, err := g.deleteBlob(ctx, b.info, fresh)
		if err != nil {
			return err
		}
		if !deleted {
			g.rep.RecentBlobs++
			g.rep.RecentBytes += b.info.Size
			continue
		}
		g.rep.Blobs++
		g.rep.BlobBytes += b.info.Size
	}
	return nil
}

// deleteBlob deletes the blob info describes if it is still older than
// fresh at the moment of the delete: a run may have just stored the same
// content, which touches the blob (see PutBlob), and is about to record it.
// It reports whether the blob was deleted (or is gone already).
func (g *gc) deleteBlob(ctx context.Context, info Info, fresh time.Time) (bool, error) {
	if g.dryRun {
		return true, g.delete(ctx, info)
	}
	err := errors.ErrUnsupported
	if t, ok := g.s.(Toucher); ok {
		err = t.DeleteIfOlder(ctx, info.Key, fresh)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		// Without a Toucher there is nothing to make atomic: look once more.
		cur, serr := g.s.Stat(ctx, info.Key)
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			err = nil
		case serr != nil:
			return false, fmt.Errorf("gc: %w", serr)
		case !cur.ModTime.Before(fresh):
			return false, nil
		default:
			err = g.s.Delete(ctx, info.Key)
		}
	}
	switch {
	case err == nil || errors.Is(err, fs.ErrNotExist):
		g.rep.Objects++
		g.rep.Bytes += info.Size
		return true, nil
	case errors.Is(err, ErrPrecondition):
		return false, nil
	default:
		return false, fmt.Errorf("gc: %w", err)
	}
}

// runs reads the record of every run listed and decides which are old.
func (g *gc) runs(ctx context.Context) ([]*gcRun, error) {
	byID := map[string]*gcRun{}
	for _, info := range sortedInfos(g.roots, "runs/") {
		id, _, ok := strings.Cut(strings.TrimPrefix(info.Key, "runs/"), "/")
		if !ok {
			continue
		}
		r := byID[id]
		if r == nil {
			r = &gcRun{id: id}
			byID[id] = r
		}
		r.keys = append(r.keys, info)
	}
	var out []*gcRun
	for _, r := range byID {
		rec, ok := g.roots[RunKey(r.id)]
		if !ok {
			continue // no record (yet): its objects stay, as roots
		}
		// run.json last, so that an interrupted GC leaves the record.
		sort.SliceStable(r.keys, func(i, j int) bool { return r.keys[j].Key == rec.Key && r.keys[i].Key != rec.Key })
		hdr, ok, err := g.runHeader(ctx, rec.Key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			r.damaged = true
			g.rep.Damaged = append(g.rep.Damaged, rec.Key)
			continue
		}
		r.age = hdr.Started
		if r.age.IsZero() {
			r.age = idTime(r.id)
		}
		if r.age.IsZero() {
			r.age = rec.ModTime
		}
		if !r.age.Before(g.rep.Cutoff) {
			continue
		}
		if (hdr.Status == StatusRunning || hdr.Status == StatusPending) && g.now.Sub(rec.ModTime) < StaleRun {
			g.rep.Unfinished = append(g.rep.Unfinished, r.id)
			continue
		}
		r.remove = true
		out = append(out, r)
	}
	for _, r := range byID {
		if !r.remove {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].age.Equal(out[j].age) {
			return out[i].age.Before(out[j].age)
		}
		return out[i].id < out[j].id
	})
	sort.Strings(g.rep.Unfinished)
	return out, nil
}

// runHeader is the part of a run record GC decides by.
type runHeader struct {
	Status  Status    `json:"status"`
	Started time.Time `json:"started"`
}

// runHeader reads a run record; ok is false if it is not valid JSON.
func (g *gc) runHeader(ctx context.Context, key string) (runHeader, bool, error) {
	var h runHeader
	data, err := g.readSmall(ctx, key)
	if errors.Is(err, errTooLarge) {
		return h, false, nil
	}
	if err != nil {
		return h, false, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, false, nil
	}
	return h, true, nil
}

// cacheRun reads a cache entry and returns the run it names; ok is false if
// it is not valid JSON or names no run.
func (g *gc) cacheRun(ctx context.Context, key string) (string, bool, error) {
	data, err := g.readSmall(ctx, key)
	if errors.Is(err, errTooLarge) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var e struct {
		Run string `json:"run"`
	}
	if err := json.Unmarshal(data, &e); err != nil || e.Run == "" || strings.Contains(e.Run, "/") {
		return "", false, nil
	}
	return e.Run, true, nil
}

var errTooLarge = errors.New("too large to decode")

func (g *gc) readSmall(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := g.s.Open(ctx, key)
	if err != nil {
		return nil, gcReadErr(key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxRecord+1))
	if err != nil {
		return nil, gcReadErr(key, err)
	}
	if len(data) > maxRecord {
		return nil, errTooLarge
	}
	// Remember what it refers to, so that marking need not read it again.
	var sums [][32]byte
	_ = scanDigests(bytes.NewReader(data), func(sum [32]byte) { sums = append(sums, sum) })
	g.read[key] = sums
	return data, nil
}

func gcReadErr(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("gc: read %s (nothing was deleted): %w", key, err)
}

// namedRuns returns the ids of the old runs that an object under refs/ names.
func (g *gc) namedRuns(ctx context.Context, runs []*gcRun) (map[string]bool, error) {
	old := map[string]bool{}
	for _, r := range runs {
		if r.remove {
			old[r.id] = true
		}
	}
	named := map[string]bool{}
	if len(old) == 0 {
		return named, nil
	}
	for _, info := range sortedInfos(g.roots, "refs/") {
		data, err := g.readSmall(ctx, info.Key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if errors.Is(err, errTooLarge) {
			continue // no ref is that large; it is still a root for blobs
		}
		if err != nil {
			return nil, err
		}
		for _, tok := range strings.FieldsFunc(string(data), func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_')
		}) {
			if old[tok] {
				named[tok] = true
			}
		}
	}
	return named, nil
}

// scan reads the object under key and adds every digest in it to g.refs.
func (g *gc) scan(ctx context.Context, key string) error {
	if sums, ok := g.read[key]; ok {
		for _, sum := range sums {
			g.refs[sum] = struct{}{}
		}
		return nil
	}
	rc, _, err := g.s.Open(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed meanwhile
	}
	if err != nil {
		return gcReadErr(key, err)
	}
	defer rc.Close()
	if err := scanDigests(rc, func(sum [32]byte) { g.refs[sum] = struct{}{} }); err != nil {
		return gcReadErr(key, err)
	}
	return nil
}

// recheck lists the roots again, scans those that are new or were
// rewritten since GC first listed them, and returns the keys of the objects
// GC meant to remove that were rewritten (or vanished) since. It lists each
// top-level prefix that held roots, and the ones sluice writes, rather than
// the whole store, so as not to list the blobs again.
func (g *gc) recheck(ctx context.Context, removing map[string]bool) (map[string]bool, error) {
	tops := map[string]bool{"runs/": true, "cache/": true, "inputs/": true, "refs/": true}
	for k := range g.roots {
		if top, _, ok := strings.Cut(k, "/"); ok {
			tops[top+"/"] = true
		} else {
			tops[k] = true
		}
	}
	prefixes := make([]string, 0, len(tops))
	for p := range tops {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	seen := map[string]bool{}
	changed := map[string]bool{}
	for _, p := range prefixes {
		for info, err := range g.s.List(ctx, p) {
			if err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
			if seen[info.Key] || strings.HasPrefix(info.Key, "blobs/") {
				continue
			}
			seen[info.Key] = true
			if old, ok := g.roots[info.Key]; ok && old.Generation == info.Generation {
				continue // scanned already, or to be removed as it was
			}
			if removing[info.Key] {
				changed[info.Key] = true
			}
			delete(g.read, info.Key) // what was read before may be older
			if err := g.scan(ctx, info.Key); err != nil {
				return nil, err
			}
		}
	}
	for k := range removing {
		if !seen[k] {
			changed[k] = true // gone already: nothing to delete or count
		}
	}
	return changed, nil
}

func anyKey(infos []Info, keys map[string]bool) bool {
	for _, info := range infos {
		if keys[info.Key] {
			return true
		}
	}
	return false
}

func (g *gc) delete(ctx context.Context, info Info) error {
	if !g.dryRun {
		if err := g.s.Delete(ctx, info.Key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("gc: %w", err)
		}
	}
	g.rep.Objects++
	g.rep.Bytes += info.Size
	return nil
}

// sortedInfos returns the Infos of m whose keys begin with prefix, by key.
func sortedInfos(m map[string]Info, prefix string) []Info {
	var out []Info
	for k, info := range m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// blobSum returns the digest a blob key names, if key is BlobKey of one.
func blobSum(key string) ([32]byte, bool) {
	var sum [32]byte
	rest, ok := strings.CutPrefix(key, "blobs/sha256/")
	if !ok || len(rest) != 3+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(rest[3:])); err != nil || hex.EncodeToString(sum[:]) != rest[3:] {
		return sum, false
	}
	return sum, true
}

// idTime is the time a run id begins with (runner.NewRunID's
// "20060102T150405.000000Z-<hex>"), or the zero time.
func idTime(id string) time.Time {
	const layout = "20060102T150405.000000Z"
	if len(id) < len(layout) {
		return time.Time{}
	}
	t, err := time.Parse(layout, id[:len(layout)])
	if err != nil {
		return time.Time{}
	}
	return t
}

// scanDigests calls found with every run of exactly 64 lowercase hex digits
// in r (bounded by anything else or by the ends), decoded. It reads r in
// small pieces: memory does not grow with r.
func scanDigests(r io.Reader, found func([32]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf [64]byte
	n := 0 // length of the current hex run (counted beyond 64, stored up to 64)
	flush := func() {
		if n == 64 {
			var sum [32]byte
			if _, err := hex.Decode(sum[:], buf[:]); err == nil {
				found(sum)
			}
		}
		n = 0
	}
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			flush()
			return nil
		}
		if err != nil {
			return err
		}
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'f' {
			if n < 64 {
				buf[n] = c
			}
			n++
			continue
		}
		flush()
	}
}
