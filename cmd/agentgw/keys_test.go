package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestKeysNew(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		prefix string // public key
		seed   string // seed prefix
	}{
		{"issuer", "A", "SA"},
		{"agent", "U", "SU"},
		{"gateway", "N", "SN"},
		{"curve", "X", "SX"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			dir := t.TempDir()
			r := mustRun(t, dir, exitOK, "keys", "new", "--type", tc.typ, "--out", "k.nk")
			pub := strings.TrimSpace(r.stdout)
			if strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(pub, tc.prefix) || !nkeys.IsValidPublicKey(pub) && tc.typ != "curve" {
				t.Fatalf("keys new --type %s: stdout %q; want one %s… public key", tc.typ, r.stdout, tc.prefix)
			}
			path := filepath.Join(dir, "k.nk")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("seed file mode %v; want 0600", fi.Mode().Perm())
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			seed := strings.TrimSpace(string(data))
			if !strings.HasPrefix(seed, tc.seed) {
				t.Fatalf("seed file starts %.2q; want %s", seed, tc.seed)
			}
			kp, err := nkeys.FromSeed([]byte(seed))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := kp.PublicKey(); got != pub {
				t.Errorf("seed's public key %s; printed %s", got, pub)
			}
			if strings.Contains(r.stdout+r.stderr, seed) {
				t.Error("the seed was printed")
			}

			// keys show names the role and the public key, not the seed.
			r = mustRun(t, dir, exitOK, "keys", "show", "k.nk")
			if r.stdout != tc.typ+"\t"+pub+"\n" || strings.Contains(r.stdout+r.stderr, seed) {
				t.Errorf("keys show: %s", r)
			}

			// An existing key is never overwritten.
			r = mustRun(t, dir, exitError, "keys", "new", "--type", tc.typ, "--out", "k.nk")
			if again, _ := os.ReadFile(path); string(again) != string(data) {
				t.Error("keys new overwrote an existing seed file")
			}
			if !strings.Contains(r.stderr, "Refusing to overwrite") {
				t.Errorf("overwrite refusal does not say what to do: %s", r)
			}
		})
	}
}

func TestKeysNewUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no-out", []string{"--type", "agent"}, "--out FILE is required"},
		{"no-type", []string{"--out", "k.nk"}, "--type is required"},
		{"bad-type", []string{"--type", "operator", "--out", "k.nk"}, "want issuer, agent, gateway or curve"},
		{"extra-arg", []string{"--type", "agent", "--out", "k.nk", "oops"}, `unexpected argument "oops"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := mustRun(t, dir, exitUsage, append([]string{"keys", "new"}, tc.args...)...)
			if !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("%s\nwant %q on stderr and nothing on stdout", r, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a usage error wrote %d files", len(entries))
			}
		})
	}
}

func TestKeysNewStdoutOnlyWhenAsked(t *testing.T) {
	r := mustRun(t, t.TempDir(), exitOK, "keys", "new", "--type", "agent", "--out", "-")
	seed := strings.TrimSpace(r.stdout)
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		t.Fatalf("--out -: stdout is not a seed: %v", err)
	}
	pub, _ := kp.PublicKey()
	if !strings.Contains(r.stderr, pub) {
		t.Errorf("--out -: the public key is not on stderr: %s", r.stderr)
	}
}

// TestLooseSeedFileWarned: a seed file open to its group or others is
// read, and the command warns on stderr with its mode and the fix,
// never the seed; a file of its owner's alone gets no warning.
func TestLooseSeedFileWarned(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, exitOK, "keys", "new", "--type", "agent", "--out", "k.nk")
	if r := mustRun(t, dir, exitOK, "keys", "show", "k.nk"); r.stderr != "" {
		t.Errorf("keys show of a 0600 seed file: stderr %q; want nothing", r.stderr)
	}
	path := filepath.Join(dir, "k.nk")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, dir, exitOK, "keys", "show", "k.nk")
	if !strings.Contains(r.stderr, "k.nk is open to its group or others (mode 0644); chmod 600 it") {
		t.Errorf("keys show of a 0644 seed file: %s; want a warning", r)
	}
	if strings.Contains(r.stdout+r.stderr, strings.TrimSpace(string(data))) {
		t.Error("the seed was printed")
	}
}
