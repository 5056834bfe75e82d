//go:build unix

package atomicfile

import (
	"os"
	"syscall"
)

// owner returns the uid and gid of fi.
func owner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1, false
	}
	return int(st.Uid), int(st.Gid), true
}
