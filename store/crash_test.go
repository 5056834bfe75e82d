package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashKeepsCommittedBatches commits batches on a crashable in-memory
// filesystem, takes crash clones that keep none, some or all of the
// unsynced data, and reopens each: every committed entry is there, a
// staged but uncommitted one is not.
func TestCrashKeepsCommittedBatches(t *testing.T) {
	for _, pct := range []int{0, 30, 70, 100} {
		for _, flush := range []bool{false, true} {
			t.Run(fmt.Sprintf("unsynced=%d%%/flushed=%v", pct, flush), func(t *testing.T) {
				mem := vfs.NewCrashableMem()
				l, err := Open("ledger", Options{FS: mem})
				if err != nil {
					t.Fatal(err)
				}
				const batches, per = 4, 64
				for i := range batches {
					var puts []put
					for j := range per {
						seq := uint64(i*per + j + 1)
						puts = append(puts, put{rkey(fmt.Sprintf("m%04d", seq)), rentry(seq, t0.Add(time.Minute))})
					}
					commitPuts(t, l, puts...)
					if flush && i == 1 {
						if err := l.db.Flush(); err != nil {
							t.Fatal(err)
						}
					}
				}
				b := l.NewBatch()
				if err := b.PutReplay(rkey("uncommitted"), rentry(9999, t0.Add(time.Minute))); err != nil {
					t.Fatal(err)
				}
				if ok, err := b.SetOnce("approval", "uncommitted", t0.Add(time.Hour)); !ok || err != nil {
					t.Fatal(ok, err)
				}

				crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(1, uint64(pct)))})
				b.Close()
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}

				l, err = Open("ledger", Options{FS: crashed})
				if err != nil {
					t.Fatalf("Open after crash = %v", err)
				}
				defer l.Close()
				for seq := uint64(1); seq <= batches*per; seq++ {
					e, ok, err := l.Replay(rkey(fmt.Sprintf("m%04d", seq)), t0)
					if err != nil || !ok || e.Seq != seq {
						t.Fatalf("Replay(m%04d) after crash = %d, %v, %v; want committed seq %d", seq, e.Seq, ok, err, seq)
					}
				}
				if _, ok, err := l.Replay(rkey("uncommitted"), t0); ok || err != nil {
					t.Fatalf("Replay(uncommitted) after crash = %v, %v; want not found", ok, err)
				}
				b = l.NewBatch()
				defer b.Close()
				if ok, err := b.SetOnce("approval", "uncommitted", t0.Add(time.Hour)); !ok || err != nil {
					t.Fatalf("SetOnce of an uncommitted marker after crash = %v, %v; want true", ok, err)
				}
				if st := l.Stats(); st.Generations != 1 || st.ApproxEntries != batches*per {
					t.Fatalf("Stats after crash = %+v; want 1 generation, %d entries", st, batches*per)
				}
			})
		}
	}
}

// TestCrashDropsUnsyncedAckMark shows where the fsync boundary is:
// MarkAcked is not synced, so a crash that keeps no unsynced data loses
// the mark (harmless: a redelivery re-emits a deduplicated output), while
// the synced entry survives.
func TestCrashDropsUnsyncedAckMark(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l, err := Open("ledger", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	commitPuts(t, l, put{rkey("m1"), rentry(1, t0.Add(time.Minute))})
	if err := l.MarkAcked([]ReplayKey{rkey("m1")}, t0); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	l.Close()
	l, err = Open("ledger", Options{FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, ok, err := l.Replay(rkey("m1"), t0)
	if err != nil || !ok || e.Acked {
		t.Fatalf("Replay after crash = acked %v, %v, %v; want the entry, unacked", e.Acked, ok, err)
	}
}

// damage names a way to damage the files of a closed ledger in dir.
type damage struct {
	name string
	do   func(t *testing.T, dir string)
}

func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in %s: %v", pattern, dir, err)
	}
	return m
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestOpenRefusesDamagedStore(t *testing.T) {
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 64))
	damages := []damage{
		{"manifest/overwritten", func(t *testing.T, dir string) {
			for _, m := range files(t, dir, "MANIFEST-*") {
				overwrite(t, m, 0, garbage)
			}
		}},
		{"manifest/truncated to its header", func(t *testing.T, dir string) {
			for _, m := range files(t, dir, "MANIFEST-*") {
				if err := os.Truncate(m, 16); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"manifest/removed", func(t *testing.T, dir string) {
			for _, m := range files(t, dir, "MANIFEST-*") {
				if err := os.Remove(m); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"manifest marker/removed", func(t *testing.T, dir string) {
			for _, m := range files(t, dir, "marker.manifest.*") {
				if err := os.Remove(m); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"sstable/truncated", func(t *testing.T, dir string) {
			for _, s := range files(t, dir, "*.sst") {
				if err := os.Truncate(s, fileSize(t, s)-100); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"sstable/removed", func(t *testing.T, dir string) {
			if err := os.Remove(files(t, dir, "*.sst")[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{"sstable/data block overwritten", func(t *testing.T, dir string) {
			for _, s := range files(t, dir, "*.sst") {
				overwrite(t, s, fileSize(t, s)/3, garbage[:16])
			}
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ledger")
			l, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var puts []put
			for i := range 2000 {
				puts = append(puts, put{rkey(fmt.Sprintf("m%05d", i)), rentry(uint64(i+1), t0.Add(time.Minute))})
			}
			commitPuts(t, l, puts...)
			if err := l.db.Flush(); err != nil { // move the entries into an sstable
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			d.do(t, dir)
			l, err = Open(dir, Options{})
			if err == nil {
				_, ok, rerr := l.Replay(rkey("m00001"), t0)
				l.Close()
				t.Fatalf("Open of a damaged store succeeded (Replay found=%v err=%v); want ErrCorrupt", ok, rerr)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v; want ErrCorrupt", err)
			}
		})
	}
}

func TestOpenRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(non-empty foreign dir) = %v; want ErrCorrupt", err)
	}
}

// TestCorruptValueFailsClosed: a value that does not decode is reported
// as ErrCorrupt by the lookup, never as "not found".
func TestCorruptValueFailsClosed(t *testing.T) {
	l := openTest(t, Options{})
	commitPuts(t, l, put{rkey("m1"), rentry(1, t0.Add(time.Minute))})
	key := appendEntryKey(nil, kindReplay, l.genOf(t0.Add(time.Minute)), "acme", "UAGENT", "m1")
	if err := l.db.Set(key, []byte{valueV1, 0, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Replay(rkey("m1"), t0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Replay over a damaged value = %v; want ErrCorrupt", err)
	}
}

// TestManifestTruncatedAnywhere cuts the current MANIFEST of a ledger with
// some history at many points. Pebble reads a cut tail as a torn write
// (what a crash mid-write leaves), so it cannot tell every cut from a
// crash; the property that matters holds at every point: Open either
// fails with ErrCorrupt or yields a ledger with every committed entry.
func TestManifestTruncatedAnywhere(t *testing.T) {
	base := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const rounds, per = 4, 500
	key := func(r, i int) ReplayKey { return rkey(fmt.Sprintf("r%d-m%05d", r, i)) }
	for r := range rounds {
		var puts []put
		for i := range per {
			puts = append(puts, put{key(r, i), rentry(uint64(r*per+i+1), t0.Add(time.Minute))})
		}
		commitPuts(t, l, puts...)
		if err := l.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if r%2 == 1 { // a reopen starts a new MANIFEST
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if l, err = Open(base, Options{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ms := files(t, base, "MANIFEST-*")
	manifest := filepath.Base(ms[len(ms)-1]) // the current one has the highest number
	refused, opened := 0, 0
	for cut := int64(0); cut < fileSize(t, filepath.Join(base, manifest)); cut += 11 {
		dir := filepath.Join(t.TempDir(), "cut")
		if err := os.CopyFS(dir, os.DirFS(base)); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, manifest), cut); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, Options{})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("cut at %d: Open = %v; want ErrCorrupt or success", cut, err)
			}
			refused++
			continue
		}
		opened++
		for r := range rounds {
			for i := range per {
				if _, ok, err := l.Replay(key(r, i), t0); !ok || err != nil {
					l.Close()
					t.Fatalf("cut at %d: Open succeeded but Replay(%v) = %v, %v; want every committed entry", cut, key(r, i), ok, err)
				}
			}
		}
		l.Close()
	}
	t.Logf("MANIFEST %s: %d cuts refused with ErrCorrupt, %d opened with all entries", manifest, refused, opened)
}

// TestCorruptBlockFailsReadsClosed: with SkipVerify, damage inside a table
// surfaces on the reads that hit it as ErrCorrupt (Pebble's default would
// exit the process), never as "not found".
func TestCorruptBlockFailsReadsClosed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var puts []put
	for i := range 2000 {
		puts = append(puts, put{rkey(fmt.Sprintf("m%05d", i)), rentry(uint64(i+1), t0.Add(time.Minute))})
	}
	commitPuts(t, l, puts...)
	if err := l.db.Flush(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, s := range files(t, dir, "*.sst") {
		overwrite(t, s, fileSize(t, s)/3, []byte(strings.Repeat("\xff", 16)))
	}
	l, err = Open(dir, Options{SkipVerify: true})
	if err != nil {
		t.Fatalf("Open(SkipVerify) = %v", err)
	}
	defer l.Close()
	corrupt := 0
	for i := range 2000 {
		_, ok, err := l.Replay(rkey(fmt.Sprintf("m%05d", i)), t0)
		switch {
		case errors.Is(err, ErrCorrupt):
			corrupt++
		case err != nil || !ok:
			t.Fatalf("Replay(m%05d) = %v, %v; want the entry or ErrCorrupt", i, ok, err)
		}
	}
	if corrupt == 0 || l.Stats().Corruptions == 0 {
		t.Fatalf("%d lookups failed with ErrCorrupt, Stats.Corruptions = %d; want both > 0", corrupt, l.Stats().Corruptions)
	}
}
