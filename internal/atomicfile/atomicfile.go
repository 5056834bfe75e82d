// Package atomicfile writes files so that a reader never sees half of
// one: a temporary file in the same directory is written with its final
// mode, synced and renamed over the path, and the directory is synced so
// that the rename survives a power loss. An existing file is
// replaced, never reused with its old mode.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// ErrOwner is returned by Replace when the replacement cannot be given
// the owner and group of the file it replaces.
var ErrOwner = errors.New("atomicfile: cannot keep the file's owner")

// Write writes data to path with mode, atomically. The file is owned by
// the writing process's user and group, whatever owned the file it
// replaces.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, false)
}

// Replace is Write that keeps the owner and group of the file it
// replaces (a new file is owned by the writer): a file a service reads
// through its group (root:agentgw 0640) stays readable by it when root
// edits it. Changing the owner needs root, or the writer already owning
// it with that group; when the owner cannot be kept, Replace returns an
// error wrapping ErrOwner and leaves the file as it was, rather than
// replace it with one its reader cannot open.
func Replace(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, true)
}

func write(path string, data []byte, mode os.FileMode, keepOwner bool) (err error) {
	uid, gid := -1, -1
	if keepOwner {
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return err
		default:
			var ok bool
			if uid, gid, ok = owner(fi); !ok {
				return fmt.Errorf("%w: %s: no owner information on this system", ErrOwner, path)
			}
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if uid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return fmt.Errorf("%w: %s is owned by uid %d gid %d and this user cannot give its replacement that owner (run as root or as its owner): %w",
				ErrOwner, path, uid, gid, err)
		}
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	renamed = true
	if err = syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s is written, but its directory could not be synced: a power loss may undo the write: %w", path, err)
	}
	return nil
}

// syncDirFile syncs an open directory: (*os.File).Sync, a variable so
// that a test sees the call.
var syncDirFile = (*os.File).Sync

// syncDir syncs directory dir, making the renames and creations in it
// durable: a file synced and renamed into dir can otherwise come back
// after a power loss under its old name, or with its old content. A
// filesystem that cannot sync a directory (fsync answers EINVAL, or the
// operation is unsupported) is no error: nothing more can be done there.
// On Windows it does nothing: a directory opened there cannot be
// flushed (FlushFileBuffers needs a handle open for writing).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncDirFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}
