//go:build unix

package atomicfile

import (
	"fmt"
	"os"
	"syscall"
)

// OpenDir says why the directory fi is open to other users: writable by
// its group or others, or owned by a user other than the running one;
// "" when it is not.
func OpenDir(fi os.FileInfo) string {
	mode := fi.Mode()
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return ""
	case int(st.Uid) != os.Geteuid():
		return fmt.Sprintf("mode %04o, owned by uid %d, not by this user (uid %d)", mode.Perm(), st.Uid, os.Geteuid())
	case mode.Perm()&0o022 != 0:
		return fmt.Sprintf("mode %04o, writable by its group or others", mode.Perm())
	}
	return ""
}
