package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/report"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// reportInput is what a report is assembled from.
type reportInput struct {
	st       store.Store
	storeURL string // as given to --store, for artifact links
	rec      *store.Run
	sluice   *spec.SluiceConfig // nil: no sluice.yaml
	pipeline *spec.Pipeline     // nil: the pipeline file is not at hand
	baseline string             // --baseline: a run id or a branch; "" for none
	// resolved, when true, says that base and baseNote are the baseline,
	// found before the run (a branch's latest run may be this run after it).
	resolved bool
	base     *store.Run
	baseNote string
	repo     string // the repository, for the merge base
	full     string // where the full report is, for a shortened one
	stderr   io.Writer
}

// assembleReport finds the baseline, evaluates the gates and gathers what
// the Markdown shows: the same for `run`, `report` and `ci`.
func assembleReport(ctx context.Context, in reportInput) (report.Report, error) {
	base, note := in.base, in.baseNote
	if !in.resolved {
		var err error
		if base, note, err = findBaseline(ctx, in.st, in.rec, in.baseline, in.repo); err != nil {
			return report.Report{}, err
		}
	}
	gates := pipelineGates(in.sluice, in.pipeline)
	r := report.Report{
		Run: in.rec, Baseline: base, BaselineNote: note, Pipeline: in.pipeline,
		Verdict:    report.Evaluate(in.rec, base, gates),
		Logs:       failedLogs(ctx, in.st, in.rec),
		FullReport: in.full,
	}
	if in.sluice != nil {
		for _, s := range in.sluice.Report.Series {
			node, _, _ := strings.Cut(s, ".")
			if in.pipeline == nil || in.pipeline.Node(node) != nil {
				r.Series = append(r.Series, s)
			}
		}
	}
	r.Links = artifactLinks(in.storeURL, in.sluice, in.stderr)
	return r, nil
}

// pipelineGates keeps the gates whose node is in the pipeline: sluice.yaml
// serves every pipeline of valohai.yaml, and a gate on another pipeline's
// node does not apply to this one (a node no pipeline has is an error when
// sluice.yaml is read).
func pipelineGates(sc *spec.SluiceConfig, p *spec.Pipeline) []spec.Gate {
	if sc == nil {
		return nil
	}
	if p == nil {
		return sc.Gates
	}
	var out []spec.Gate
	for _, g := range sc.Gates {
		if p.Node(g.Node) != nil {
			out = append(out, g)
		}
	}
	return out
}

// artifactLinks gives the report's links to outputs: Cloud console pages or
// signed URLs for a gs:// store, as sluice.yaml's `report.links` says; none
// for a local store, whose paths mean nothing on a pull request.
func artifactLinks(storeURL string, sc *spec.SluiceConfig, stderr io.Writer) func(string, store.File) string {
	if !strings.HasPrefix(storeURL, "gs://") {
		return nil
	}
	mode, hours := spec.LinksConsole, float64(spec.DefaultSignedURLHours)
	if sc != nil {
		mode, hours = sc.Report.Links, sc.Report.SignedURLHours
	}
	console := func(_ string, f store.File) string {
		u, err := gcs.ConsoleURL(storeURL, store.BlobKey(f.Digest))
		if err != nil {
			return ""
		}
		return u
	}
	switch mode {
	case spec.LinksNone:
		return nil
	case spec.LinksSigned:
		var once sync.Once
		var signer *gcs.Store
		failed := false
		return func(node string, f store.File) string {
			once.Do(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				s, err := gcs.New(ctx, storeURL)
				if err != nil {
					fmt.Fprintf(stderr, "sluice: artifact links are console links: %v\n", err)
					failed = true
					return
				}
				signer = s
			})
			if failed {
				return console(node, f)
			}
			expiry := time.Duration(hours * float64(time.Hour))
			u, err := signer.SignedURL(store.BlobKey(f.Digest), filepath.Base(f.Path), expiry, nil)
			if err != nil {
				fmt.Fprintf(stderr, "sluice: artifact links are console links: %v\n", err)
				failed = true
				return console(node, f)
			}
			return u
		}
	}
	return console
}
