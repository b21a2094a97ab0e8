//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || illumos

package file

import (
	"io/fs"
	"os"
	"syscall"
)

const lockSupported = true

// flock takes an exclusive flock(2) on f, waiting for it. Closing f
// releases it.
func flock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), syscall.LOCK_EX)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// inode returns the inode number of fi.
func inode(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Ino), true
}
