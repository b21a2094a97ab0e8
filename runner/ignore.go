package runner

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// neverCopied reports files that never go into a step's repository
// snapshot, git or not: the credentials file google-github-actions/auth
// writes into the workspace (gha-creds-<random>.json) would hand a step the
// job's Google credentials, and change the snapshot on every run.
func neverCopied(rel string) bool {
	base := path.Base(filepath.ToSlash(rel))
	return strings.HasPrefix(base, "gha-creds-") && strings.HasSuffix(base, ".json")
}

// ignoreRule is one line of a .gitignore file.
type ignoreRule struct {
	dir     string // the directory of the .gitignore, slash-separated, "" for the root
	re      *regexp.Regexp
	negate  bool
	dirOnly bool
}

// gitignore holds the rules of the .gitignore files read so far, for work
// trees that sluice must walk without git (its container image has none).
// It follows git's reading: blank lines and # comments skipped, ! negates, a
// trailing / matches directories only, a pattern with a slash before its end
// is relative to its .gitignore's directory, one without matches at any
// depth below it, * and ? stay within a path segment, ** spans segments;
// the last rule that matches wins.
type gitignore struct {
	rules []ignoreRule
}

// load reads dir's .gitignore, if any; dir is slash-separated and relative
// to the work tree ("" for its root), abs is where it is on disk.
func (g *gitignore) load(abs, dir string) {
	f, err := os.Open(filepath.Join(abs, ".gitignore"))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{dir: dir}
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, line[1:]
		} else if strings.HasPrefix(line, `\`) {
			line = line[1:] // \# and \! stand for themselves
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimSuffix(line, "/")
		}
		if line == "" {
			continue
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		expr := globRegexp(line)
		if anchored {
			expr = "^" + expr + "$"
		} else {
			expr = "(^|/)" + expr + "$"
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			continue // git ignores a pattern it cannot read, too
		}
		r.re = re
		g.rules = append(g.rules, r)
	}
}

// ignored reports whether rel (slash-separated, relative to the work tree)
// is ignored.
func (g *gitignore) ignored(rel string, isDir bool) bool {
	ignored := false
	for _, r := range g.rules {
		sub := rel
		if r.dir != "" {
			var ok bool
			if sub, ok = strings.CutPrefix(rel, r.dir+"/"); !ok {
				continue
			}
		}
		if r.dirOnly && !isDir {
			continue
		}
		if r.re.MatchString(sub) {
			ignored = !r.negate
		}
	}
	return ignored
}

// globRegexp turns a gitignore glob into a regular expression.
func globRegexp(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch {
		case strings.HasPrefix(glob[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(glob[i:], "/**") && i+3 == len(glob):
			b.WriteString("/.*")
			i += 2
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			end := strings.IndexByte(glob[i+1:], ']')
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := glob[i+1 : i+1+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += end + 1
		case c == '\\' && i+1 < len(glob):
			i++
			b.WriteString(regexp.QuoteMeta(string(glob[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}
