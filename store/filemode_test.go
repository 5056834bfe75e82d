//go:build unix

package store

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// withUmask runs the test under umask 022, the usual default, under
// which Pebble's 0666 files would be readable by everyone.
func withUmask(t *testing.T) {
	t.Helper()
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

// modes returns the permission bits of data and everything under it.
func modes(t *testing.T, data string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, path)
		out[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkPrivate fails the test unless every directory under data (data
// included) is 0700 and every file 0600.
func checkPrivate(t *testing.T, data string) {
	t.Helper()
	files := 0
	for name, m := range modes(t, data) {
		switch {
		case m.IsDir() && m.Perm() != 0o700:
			t.Errorf("directory %s is %04o; want 0700", name, m.Perm())
		case m.IsRegular():
			files++
			if m.Perm() != 0o600 {
				t.Errorf("file %s is %04o; want 0600", name, m.Perm())
			}
		}
	}
	if files < 3 {
		t.Fatalf("only %d files in the ledger: %v", files, modes(t, data))
	}
}

// fill commits entries, closes the ledger and opens it again (Pebble
// replays its log, writes a table, a new manifest and options file),
// then closes it.
func fill(t *testing.T, dir string) {
	t.Helper()
	for round := range 2 {
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		var puts []put
		for i := range 50 {
			id := string(rune('a'+round)) + string(rune('a'+i%26)) + string(rune('a'+i/26))
			puts = append(puts, put{rkey(id), rentry(uint64(round*100+i+1), t0.Add(time.Hour))})
		}
		commitPuts(t, l, puts...)
		if err := l.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
	}
}

// TestLedgerFilesArePrivate: a ledger holds held requests' bodies in
// clear. Under umask 022 its directories (data_dir and data_dir/ledger,
// created by Open) are 0700 and every file Pebble creates is 0600.
func TestLedgerFilesArePrivate(t *testing.T) {
	withUmask(t)
	data := filepath.Join(t.TempDir(), "data")
	fill(t, filepath.Join(data, "ledger"))
	checkPrivate(t, data)
}

// TestOpenTightensLooseLedger: a ledger left 0755 with
// files 0644 is made 0700 and 0600 when it is opened.
func TestOpenTightensLooseLedger(t *testing.T) {
	withUmask(t)
	data := filepath.Join(t.TempDir(), "data")
	dir := filepath.Join(data, "ledger")
	fill(t, dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, m := range modes(t, dir) {
		mode := fs.FileMode(0o644)
		if m.IsDir() {
			mode = 0o755
		}
		must(os.Chmod(filepath.Join(dir, name), mode))
	}
	must(os.Chmod(data, 0o700)) // data_dir is the operator's
	var logs bytes.Buffer
	l, err := Open(dir, Options{Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	must(l.Close())
	checkPrivate(t, data)
	for _, want := range []string{`"mode":"0755"`, "made 0700", "made 0600"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the tightening is not logged (%q):\n%s", want, logs.String())
		}
	}
}
