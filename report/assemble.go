package report

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/report/baseline"
	"github.com/sluice-ci/sluice/spec"
	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/gcs"
)

// Input is what a report is assembled from: the same for `sluice run`,
// `sluice report` and `sluice ci`.
type Input struct {
	Store store.Store
	// StoreURL is the store as the user named it (gs://BUCKET/PREFIX, or a
	// directory), for the artifact links.
	StoreURL string
	Run      *store.Run
	// Sluice is sluice.yaml (nil: none); Pipeline the pipeline's definition
	// (nil: the pipeline file is not at hand, and every gate applies).
	Sluice   *spec.SluiceConfig
	Pipeline *spec.Pipeline
	// Want is the baseline asked for: a run id or a branch; "" for none.
	// RepoDir is the git repository, for the merge base with that branch.
	Want    string
	RepoDir string
	// Resolved says that Base and BaseNote are the baseline already, found
	// before the run (after it, a branch's latest run may be this run).
	Resolved bool
	Base     *store.Run
	BaseNote string
	// FullReport says where the full report is, for a shortened one.
	FullReport string
	// Warn receives what the user should know that does not stop the
	// report (signed links that fell back to console links).
	Warn io.Writer
}

// Assemble finds the baseline (see package baseline), evaluates the gates
// that apply to the run's pipeline and gathers what the Markdown shows: the
// failed nodes' log tails, the series sluice.yaml asks for, the artifact
// links. Its error is the store's, when it could not be read.
func Assemble(ctx context.Context, in Input) (Report, error) {
	base, note := in.Base, in.BaseNote
	if !in.Resolved {
		var err error
		if base, note, err = baseline.Find(ctx, in.Store, in.Run, in.Want, baseline.MergeBase(in.RepoDir, in.Want)); err != nil {
			return Report{}, err
		}
	}
	r := Report{
		Run: in.Run, Baseline: base, BaselineNote: note, Pipeline: in.Pipeline,
		Verdict:    Evaluate(in.Run, base, PipelineGates(in.Sluice, in.Pipeline)),
		Logs:       FailedLogs(ctx, in.Store, in.Run),
		FullReport: in.FullReport,
	}
	if in.Sluice != nil {
		for _, s := range in.Sluice.Report.Series {
			node, _, _ := strings.Cut(s, ".")
			if in.Pipeline == nil || in.Pipeline.Node(node) != nil {
				r.Series = append(r.Series, s)
			}
		}
	}
	r.Links = ArtifactLinks(in.Store, in.StoreURL, in.Sluice, in.Warn)
	return r, nil
}

// PipelineGates keeps the gates whose node is in the pipeline: sluice.yaml
// serves every pipeline of valohai.yaml, and a gate on another pipeline's
// node does not apply to this one (a node no pipeline has is an error when
// sluice.yaml is read). With no pipeline at hand, every gate applies.
func PipelineGates(sc *spec.SluiceConfig, p *spec.Pipeline) []spec.Gate {
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

// FailedLogs reads the last LogTailLines lines of each failed node's (and
// failed execution's, as NODE[VARIANT]) log. A log that cannot be read is
// left out.
func FailedLogs(ctx context.Context, st store.Store, rec *store.Run) map[string][]string {
	logs := map[string][]string{}
	add := func(name string, n *store.NodeRun) {
		if n.Status != store.StatusFailed || n.Log.IsZero() {
			return
		}
		rc, _, err := store.OpenBlob(ctx, st, n.Log)
		if err != nil {
			return
		}
		defer rc.Close()
		var tail []string
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			tail = append(tail, sc.Text())
			if len(tail) > LogTailLines {
				tail = tail[1:]
			}
		}
		logs[name] = tail
	}
	for _, n := range rec.Nodes {
		add(n.Name, n)
		for _, e := range n.Executions {
			add(n.Name+"["+e.Variant+"]", e)
		}
	}
	return logs
}

// ArtifactLinks gives the report's links to outputs: Cloud console pages or
// signed URLs for a gs:// store, as sluice.yaml's `report.links` says; none
// for a local store, whose paths mean nothing on a pull request. URLs are
// signed by st (found under its decorators with store.As); signed links that
// cannot be made fall back to console links, said once on warn.
func ArtifactLinks(st store.Store, storeURL string, sc *spec.SluiceConfig, warn io.Writer) func(string, store.File) string {
	if !strings.HasPrefix(storeURL, "gs://") {
		return nil
	}
	if warn == nil {
		warn = io.Discard
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
		signer, ok := store.As[urlSigner](st)
		if !ok {
			fmt.Fprintf(warn, "sluice: artifact links are console links: the store %s cannot sign URLs\n", storeURL)
			return console
		}
		var mu sync.Mutex
		failed := false
		expiry := time.Duration(hours * float64(time.Hour))
		return func(node string, f store.File) string {
			mu.Lock()
			defer mu.Unlock()
			if failed {
				return console(node, f)
			}
			u, err := signer.SignedURL(store.BlobKey(f.Digest), filepath.Base(f.Path), expiry, nil)
			if err != nil {
				fmt.Fprintf(warn, "sluice: artifact links are console links: %v\n", err)
				failed = true
				return console(node, f)
			}
			return u
		}
	}
	return console
}

// urlSigner is what a store that signs URLs to its objects can do (store/gcs).
type urlSigner interface {
	SignedURL(key, filename string, expiry time.Duration, signer *gcs.Signer) (string, error)
}
