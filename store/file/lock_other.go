//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || illumos)

package file

import (
	"errors"
	"io/fs"
	"os"
)

// lockSupported is false where this package has no flock: New refuses to
// open a store rather than give up the safety of conditional writes.
const lockSupported = false

func flock(*os.File) error { return errors.New("flock not supported on this platform") }

func inode(fs.FileInfo) (uint64, bool) { return 0, false }
