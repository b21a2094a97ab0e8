package report

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/gcstest"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/gcs"
	"github.com/sluice-ci/sluice/store/retry"
)

func TestAssemble(t *testing.T) {
	ctx := context.Background()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Parse("valohai.yaml", []byte(pipelineYAML))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p := cfg.Pipeline("train")

	base := pipelineRun("20260228-090000-aaaa", "1111111", "main", store.StatusSucceeded, 0.95, 0.30)
	if err := store.PutRun(ctx, st, base); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordRun(ctx, st, base); err != nil {
		t.Fatal(err)
	}
	run := pipelineRun("20260301-120000-bbbb", "2222222", "feature/x", store.StatusFailed, 0.80, 0.30)
	var log strings.Builder
	for i := 1; i <= LogTailLines+10; i++ {
		log.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	logDigest, _, err := store.PutBlob(ctx, st, strings.NewReader(log.String()))
	if err != nil {
		t.Fatal(err)
	}
	run.Nodes[2].Status, run.Nodes[2].Log = store.StatusFailed, logDigest

	sc := &spec.SluiceConfig{
		Gates: append(append([]spec.Gate(nil), stdGates...),
			gate("deploy.latency", spec.DirectionLower, func(g *spec.Gate) { g.Max = f2(1) })), // another pipeline's node
		Report: spec.ReportConfig{Series: []string{"train.loss", "deploy.latency"}, Links: spec.LinksConsole},
	}
	r, err := Assemble(ctx, Input{Store: st, StoreURL: "gs://bucket/ci", Run: run, Sluice: sc, Pipeline: p, Want: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Baseline == nil || r.Baseline.ID != base.ID || !strings.Contains(r.BaselineNote, "the latest successful run on main") {
		t.Errorf("baseline %v (%s)", r.Baseline, r.BaselineNote)
	}
	if gs := PipelineGates(sc, p); len(gs) != 2 {
		t.Errorf("%d gates apply to the pipeline, want 2 (deploy is not in it)", len(gs))
	}
	if len(PipelineGates(sc, nil)) != 3 || PipelineGates(nil, p) != nil {
		t.Errorf("without the pipeline every gate applies; without sluice.yaml none")
	}
	if r.Verdict.Passed {
		t.Errorf("accuracy 0.80 under min 0.9 passed")
	}
	if strings.Join(r.Series, ",") != "train.loss" {
		t.Errorf("series %q, want only train.loss", r.Series)
	}
	tail := r.Logs["evaluate"]
	if len(tail) != LogTailLines || tail[0] != "line 11" || tail[len(tail)-1] != "line "+strconv.Itoa(LogTailLines+10) {
		t.Errorf("log tail: %d lines, %q .. %q", len(tail), first(tail), last(tail))
	}
	if _, ok := r.Logs["train"]; ok {
		t.Errorf("a log for a node that did not fail")
	}
	if r.Links == nil || !strings.HasPrefix(r.Links("train", store.File{Path: "m.pkl", Digest: logDigest}), "https://console.cloud.google.com/storage/browser/_details/bucket/ci/") {
		t.Errorf("console links for a gs:// store")
	}

	// A baseline resolved before the run is kept as it is; a local store
	// gets no links.
	r, err = Assemble(ctx, Input{Store: st, StoreURL: t.TempDir(), Run: run, Sluice: sc, Pipeline: p, Want: "main",
		Resolved: true, BaseNote: "found before the run"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Baseline != nil || r.BaselineNote != "found before the run" || r.Links != nil {
		t.Errorf("resolved baseline %v (%s), links %v", r.Baseline, r.BaselineNote, r.Links != nil)
	}
}

func f2(x float64) *float64 { return &x }

func first(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

func last(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[len(xs)-1]
}

// Signed links come from the run's store, found under its retry decorator.
// The stand-in (fake-gcs-server) has no credentials to sign with, so the
// links fall back to console pages and the warning says why, once; a store
// that cannot sign at all says so too.
func TestArtifactLinksSigned(t *testing.T) {
	gcstest.Start(t, "links")
	g, err := gcs.New(context.Background(), "gs://links/ci")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sc := &spec.SluiceConfig{Report: spec.ReportConfig{Links: spec.LinksSigned, SignedURLHours: 1}}
	f := store.File{Path: "out/model.pkl", Digest: store.NewDigest([32]byte{1})}
	var warn strings.Builder
	links := ArtifactLinks(retry.New(g), "gs://links/ci", sc, &warn)
	for range 2 {
		if u := links("train", f); !strings.HasPrefix(u, "https://console.cloud.google.com/storage/browser/_details/links/ci/blobs/sha256/") {
			t.Errorf("link %q, want the console page", u)
		}
	}
	if w := warn.String(); strings.Count(w, "artifact links are console links") != 1 || !strings.Contains(w, "serviceAccountTokenCreator") {
		t.Errorf("warnings: %q", w)
	}
	fileStore, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	warn.Reset()
	links = ArtifactLinks(fileStore, "gs://links/ci", sc, &warn)
	if u := links("train", f); !strings.HasPrefix(u, "https://console.cloud.google.com/") || !strings.Contains(warn.String(), "cannot sign URLs") {
		t.Errorf("a store that cannot sign: %q, %q", u, warn.String())
	}
}
