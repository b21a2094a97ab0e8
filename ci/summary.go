package ci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// SummaryMaxBytes is GitHub's limit on one step's job summary; a larger
// summary is not shown at all.
const SummaryMaxBytes = 1 << 20

// WriteSummary appends markdown to the GitHub job summary, the file at
// $GITHUB_STEP_SUMMARY, ending it with a newline. When the file would grow
// past SummaryMaxBytes the markdown is cut at the last line that fits (on a
// character boundary when a single line is too long), an open code fence is
// closed, and a note says that the summary was cut. It is an error when the
// file is already too full for that note. Outside GitHub Actions, or with
// GITHUB_STEP_SUMMARY unset, WriteSummary does nothing.
func WriteSummary(getenv func(string) string, markdown string) error {
	if getenv("GITHUB_ACTIONS") != "true" {
		return nil
	}
	path := getenv("GITHUB_STEP_SUMMARY")
	if path == "" || markdown == "" {
		return nil
	}
	var existing int64
	switch fi, err := os.Stat(path); {
	case err == nil:
		existing = fi.Size()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("write job summary: %w", err)
	}
	if !strings.HasSuffix(markdown, "\n") {
		markdown += "\n"
	}
	if existing+int64(len(markdown)) > SummaryMaxBytes {
		cut, err := cutSummary(markdown, SummaryMaxBytes-existing)
		if err != nil {
			return fmt.Errorf("write job summary %s: %w", path, err)
		}
		markdown = cut
	}
	if err := appendFile(path, []byte(markdown)); err != nil {
		return fmt.Errorf("write job summary: %w", err)
	}
	return nil
}

// cutSummary cuts markdown so that it, with a note saying so, fits in room
// bytes.
func cutSummary(markdown string, room int64) (string, error) {
	note := fmt.Sprintf("\n> **Note:** this summary is cut here: it was %d bytes, over GitHub's limit of 1 MiB for a step's summary.\n", len(markdown))
	// Room is kept for a newline that ends a cut line and a fence that
	// closes an open code block.
	const margin = 1 + maxFence + 1
	budget := room - int64(len(note)) - margin
	if budget < 0 {
		return "", fmt.Errorf("the summary file is already near GitHub's limit of %d bytes", SummaryMaxBytes)
	}
	n := int(min(budget, int64(len(markdown))))
	for n > 0 && n < len(markdown) && !utf8.RuneStart(markdown[n]) {
		n--
	}
	cut := markdown[:n]
	if i := strings.LastIndexByte(cut, '\n'); i >= 0 {
		cut = cut[:i+1]
	} else if cut != "" {
		cut += "\n"
	}
	if f := openFence(cut); f != "" {
		cut += f + "\n"
	}
	return cut + note, nil
}

// maxFence is the longest code fence openFence reports.
const maxFence = 32

// openFence returns the fence that closes the fenced code block markdown ends
// in, or "" when it ends outside one.
func openFence(markdown string) string {
	var open string
	for line := range strings.SplitSeq(markdown, "\n") {
		t := strings.TrimLeft(line, " ")
		if len(line)-len(t) > 3 || len(t) < 3 || (t[0] != '`' && t[0] != '~') {
			continue
		}
		run := len(t) - len(strings.TrimLeft(t, t[:1]))
		switch {
		case open == "" && run >= 3:
			open = t[:min(run, maxFence)]
		case open != "" && t[0] == open[0] && run >= len(open) && strings.TrimSpace(t[run:]) == "":
			open = ""
		}
	}
	return open
}
