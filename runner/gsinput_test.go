package runner

import (
	"context"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store/file"
	"github.com/sluice-ci/sluice/store/gcs"
)

// gs:// input defaults, against fake-gcs-server (a real HTTP server speaking
// the GCS JSON API) on 127.0.0.1 through STORAGE_EMULATOR_HOST.
func TestGSInputs(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1",
		InitialObjects: []fakestorage.Object{
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "data", Name: "mnist/train.csv"}, Content: []byte("1,2\n")},
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "data", Name: "mnist/test.csv"}, Content: []byte("3,4\n")},
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "data", Name: "mnist/README"}, Content: []byte("no")},
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "data", Name: "model.pkl"}, Content: []byte("weights")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))

	objs := gcs.NewObjects(nil) // a client of its own, for STORAGE_EMULATOR_HOST
	defer objs.Close()
	var runs atomic.Int32
	got := map[string]string{}
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		runs.Add(1)
		for _, in := range job.Inputs {
			for _, file := range in.Files {
				rc, err := file.Open()
				if err != nil {
					return Result{}, err
				}
				data, _ := io.ReadAll(rc)
				rc.Close()
				got[in.Name+"/"+file.Name] = string(data)
			}
		}
		return succeed(ctx, job, 0, "", nil)
	}}
	yaml := `
- step:
    name: train
    image: x
    command: train
    inputs:
      - {name: data, default: "gs://data/mnist/*.csv"}
      - {name: model, default: gs://data/model.pkl}
- pipeline:
    name: p
    nodes: [{name: train, type: execution, step: train}]
    edges: []
`
	rec0Store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, yaml)
	rec, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: rec0Store, GS: objs, TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, " ") != "data/test.csv data/train.csv model/model.pkl" || got["data/train.csv"] != "1,2\n" || got["model/model.pkl"] != "weights" {
		t.Errorf("inputs %v", got)
	}
	in := rec.Node("train").Inputs
	if len(in) != 3 || !strings.HasPrefix(in[0].URI, "gs://data/mnist/test.csv#") || in[0].Digest.IsZero() {
		t.Errorf("input records %+v", in)
	}

	// A new generation of an object is fetched again; the others come from the store.
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "data", Name: "mnist/train.csv"}, Content: []byte("5,6\n")})
	if _, err := Run(context.Background(), Options{Config: cfg, Pipeline: cfg.Pipelines[0], Executor: f, Store: rec0Store, GS: objs, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if got["data/train.csv"] != "5,6\n" || got["model/model.pkl"] != "weights" {
		t.Errorf("after a new generation: %v", got)
	}

	cfg2 := mustParse(t, strings.Replace(yaml, "gs://data/mnist/*.csv", "gs://data/nothing/*.csv", 1))
	if rec, _ := Run(context.Background(), Options{Config: cfg2, Pipeline: cfg2.Pipelines[0], Executor: f, Store: rec0Store, GS: objs,
		TempDir: t.TempDir()}); rec == nil || !strings.Contains(rec.Node("train").Reason, "gs://data/nothing/*.csv: no such object") {
		t.Errorf("a glob matching nothing: %+v", rec)
	}
	// Without a Cloud Storage client, a gs:// input fails and says why.
	if rec, _ := runPipeline(t, yaml, f, nil, 1); rec == nil || !strings.Contains(rec.Node("train").Reason, "no Cloud Storage client for gs:// inputs") {
		t.Errorf("no client: %+v", rec)
	}
}

// mustParse parses a valohai.yaml and picks its first pipeline.
func mustParse(t *testing.T, yaml string) *spec.Config {
	t.Helper()
	cfg, diags := spec.Parse("valohai.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	return cfg
}
