package runner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// snapshotRepository copies the repository's files into dst, the directory
// that becomes /valohai/repository: in a git work tree, the files git knows
// of (tracked, and untracked ones that are not ignored); elsewhere, every
// file except .git and .sluice. Files are hard-linked where possible.
func snapshotRepository(ctx context.Context, repo, dst string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("make the repository snapshot: %w", err)
	}
	if repo == "" {
		return dst, nil
	}
	files, err := gitFiles(ctx, repo)
	if err != nil {
		files, err = walkFiles(repo)
		if err != nil {
			return "", fmt.Errorf("list the repository's files: %w", err)
		}
	}
	for _, rel := range files {
		if err := linkOrCopy(filepath.Join(repo, rel), filepath.Join(dst, rel)); err != nil {
			return "", fmt.Errorf("snapshot %s: %w", rel, err)
		}
	}
	return dst, nil
}

func gitFiles(ctx context.Context, repo string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git ls-files: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var files []string
	for _, f := range strings.Split(out.String(), "\x00") {
		if f == "" || strings.HasPrefix(f, ".sluice/") || neverCopied(f) {
			continue
		}
		if st, err := os.Lstat(filepath.Join(repo, f)); err == nil && (st.Mode().IsRegular() || st.Mode()&os.ModeSymlink != 0) {
			files = append(files, f)
		}
	}
	return files, nil
}

// walkFiles lists the work tree's files without git: everything but .git,
// .sluice and what its .gitignore files ignore.
func walkFiles(repo string) ([]string, error) {
	var files []string
	var ign gitignore
	err := filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		slash := filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				ign.load(p, "")
				return nil
			}
			if d.Name() == ".git" || d.Name() == ".sluice" || ign.ignored(slash, true) {
				return filepath.SkipDir
			}
			ign.load(p, slash)
			return nil
		}
		if (d.Type().IsRegular() || d.Type()&os.ModeSymlink != 0) && !ign.ignored(slash, false) && !neverCopied(rel) {
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
