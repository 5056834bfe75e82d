package identity

import (
	"io/fs"
	"os"
	"runtime"
)

// LooseMode returns the permission bits of the file at path and whether
// they grant its group or others any access: a secret key or credential
// file should be its owner's alone (0600). It reports false when path
// cannot be stat'ed (reading it reports that), and on Windows, whose
// permissions are not mode bits. Callers warn rather than refuse: a
// secret mounted by an orchestrator is often 0644 inside a directory
// only its pod can read.
func LooseMode(path string) (fs.FileMode, bool) {
	if runtime.GOOS == "windows" {
		return 0, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	m := fi.Mode().Perm()
	return m, m&0o077 != 0
}
