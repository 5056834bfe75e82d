package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// A ledger holds the bodies of held requests in clear: its directory is
// its owner's alone (dirMode) and so is every file in it (fileMode),
// whatever the umask.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// privateFS is vfs.Default with every file it creates made 0600 and
// every directory 0700, instead of 0666 and the caller's mode less the
// umask. A new file is first created empty with mode 0600 (O_EXCL, so
// the mode is set when the inode is made, before anything is written)
// and then opened by vfs.Default, which keeps its own file type
// (sync_file_range, fadvise). Renames and hard links keep the mode of
// the file they name. Open uses it only when Options.FS is nil: a
// filesystem a test passes is used as it is.
type privateFS struct{ vfs.FS }

var defaultFS vfs.FS = privateFS{vfs.Default}

// Create creates name anew for reading and writing: an existing file is
// removed first, as vfs.Default does, so the result is a new inode.
func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	for {
		err := createPrivate(name)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return p.FS.OpenReadWrite(name, category)
}

// OpenReadWrite opens name for reading and writing, creating it 0600 when
// it is missing.
func (p privateFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if err := createPrivate(name); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return p.FS.OpenReadWrite(name, category, opts...)
}

// ReuseForWrite renames oldname to newname and opens it, as vfs.Default
// does; the file keeps its mode, or is created 0600 if oldname was
// missing after all.
func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := p.FS.Rename(oldname, newname); err != nil {
		return nil, err
	}
	return p.OpenReadWrite(newname, category)
}

// Lock creates the lock file 0600 before vfs.Default locks it (it would
// create it 0666 less the umask).
func (p privateFS) Lock(name string) (io.Closer, error) {
	if err := createPrivate(name); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return p.FS.Lock(name)
}

// MkdirAll creates dir and its missing parents 0700, whatever perm says.
func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, dirMode)
}

// Unwrap returns vfs.Default.
func (p privateFS) Unwrap() vfs.FS { return p.FS }

// createPrivate creates name, empty, with mode 0600; it fails with an
// error wrapping fs.ErrExist if name exists.
func createPrivate(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, fileMode)
	if err != nil {
		return err
	}
	return f.Close()
}

// loose reports whether mode grants the group or others any access.
// Windows permissions are not mode bits: nothing is loose there.
func loose(mode fs.FileMode) bool {
	return runtime.GOOS != "windows" && mode.Perm()&0o077 != 0
}

// tighten makes an existing ledger directory dir 0700 and the files in
// it 0600 when they grant the group or others any access (a ledger
// created by hand or copied in under umask 022), and logs a
// warning saying so. What it cannot change is logged, not refused: the
// ledger is opened all the same, as a loose key file is read.
func tighten(dir string, log zerolog.Logger) {
	fi, err := os.Stat(dir)
	if err != nil {
		return // Open reports it
	}
	if m := fi.Mode().Perm(); loose(m) {
		if err := os.Chmod(dir, dirMode); err != nil {
			log.Warn().Str("dir", dir).Str("mode", modeText(m)).Err(err).
				Msg("store: the ledger directory is open to its group or others and could not be made 0700: chmod 700 it")
		} else {
			log.Warn().Str("dir", dir).Str("mode", modeText(m)).
				Msg("store: the ledger directory was open to its group or others: made 0700")
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || !loose(info.Mode()) {
			continue
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), fileMode); err != nil {
			log.Warn().Str("file", filepath.Join(dir, e.Name())).Str("mode", modeText(info.Mode().Perm())).Err(err).
				Msg("store: a ledger file is open to its group or others and could not be made 0600: chmod 600 it")
			continue
		}
		n++
	}
	if n > 0 {
		log.Warn().Str("dir", dir).Int("files", n).Msg("store: ledger files were open to their group or others: made 0600")
	}
}

func modeText(m fs.FileMode) string { return fmt.Sprintf("%04o", m) }
