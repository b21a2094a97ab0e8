package report

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The browser test renders golden reports as a pull request comment shows
// them: GFM (marked) and Mermaid 11 in headless Chromium, Debian's. The npm
// packages are pinned in testdata/browser; .ci/run installs them and
// Chromium. Without them the test fails, saying what to install.

// browserReport is what testdata/browser/render.mjs says of one file.
type browserReport struct {
	File   string `json:"file"`
	PNG    string `json:"png"`
	Blocks []struct {
		Kind    string   `json:"kind"`
		Error   string   `json:"error"`
		Strokes []string `json:"strokes"`
	} `json:"blocks"`
}

// renderInBrowser renders Markdown files with render.mjs into dir.
func renderInBrowser(t *testing.T, dir string, files ...string) map[string]browserReport {
	t.Helper()
	chromium := os.Getenv("SLUICE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("no Chromium at %s (apt-get install chromium, or set SLUICE_CHROMIUM): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("no node to run the renderer (apt-get install nodejs): %v", err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "browser", "render.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "mermaid")); err != nil {
		t.Fatalf("the renderer's packages are not installed: run npm ci --prefix report/testdata/browser (%v)", err)
	}
	args := append([]string{script, "--chromium", chromium, "--out", dir}, files...)
	cmd := exec.Command(node, args...)
	cmd.WaitDelay = time.Minute
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("render.mjs: %v\n%s", err, stderr.String())
	}
	var out struct {
		Reports []browserReport `json:"reports"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("render.mjs printed %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	byName := map[string]browserReport{}
	for _, r := range out.Reports {
		byName[strings.TrimSuffix(filepath.Base(r.File), ".md")] = r
	}
	return byName
}

func TestReportsRenderInBrowser(t *testing.T) {
	dir := t.TempDir()
	// Three golden reports (passed, failed gate, failed node), and one with
	// a Mermaid block that does not parse: the test must see that one fail.
	var files []string
	for _, name := range []string{"improvement", "regression", "failed-validation"} {
		files = append(files, filepath.Join("testdata", name+".md"))
	}
	broken := filepath.Join(dir, "broken.md")
	if err := os.WriteFile(broken, []byte("## broken\n\n```mermaid\nxychart-beta\n  line [1, 2\n```\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files = append(files, broken)
	got := renderInBrowser(t, dir, files...)

	for _, name := range []string{"improvement", "regression", "failed-validation"} {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no rendering of %s", name)
		}
		var flowcharts int
		for _, b := range r.Blocks {
			if b.Error != "" {
				t.Errorf("%s: a %s block does not render: %s", name, b.Kind, b.Error)
			}
			if b.Kind == "flowchart" {
				flowcharts++
			}
		}
		if flowcharts != 1 {
			t.Errorf("%s: %d flowcharts, want 1", name, flowcharts)
		}
		checkScreenshot(t, r.PNG)
	}
	// The chart draws this run in blue and the baseline in grey, as its
	// caption says.
	var charts int
	for _, b := range got["regression"].Blocks {
		if b.Kind != "xychart" {
			continue
		}
		charts++
		if want := []string{seriesRunColour, seriesBaseColour}; strings.Join(b.Strokes, " ") != strings.Join(want, " ") {
			t.Errorf("the chart's lines are %q, want %q (this run, then the baseline)", b.Strokes, want)
		}
	}
	if charts != 1 {
		t.Errorf("regression: %d charts, want 1", charts)
	}
	if bs := got["broken"].Blocks; len(bs) != 1 || bs[0].Error == "" {
		t.Errorf("a Mermaid block that does not parse was not caught: %+v", bs)
	}

	if *update {
		// The README shows the failed-gate report as a reader sees it.
		data, err := os.ReadFile(got["regression"].PNG)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "report-failed-gate.png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkScreenshot checks that a PNG is there, decodes, and is a page tall.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("screenshot %s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot %s is %dx%d: too small for a report", path, b.Dx(), b.Dy())
	}
}
