package docker

import "syscall"

// noexecFS reports whether the file system holding dir is mounted noexec. A
// bind mount of it is noexec too, so a step could not run its repository's
// scripts (./train.sh) as it can with the copy transfer.
func noexecFS(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Flags&syscall.MS_NOEXEC != 0 // ST_NOEXEC, the same bit
}
