package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestUserOptions connects as the nkey user of a seed file and of an
// agentgw .creds file, with the inbox prefix _INBOX.<key>, to a server
// that knows only that user, and refuses a key that is not a user's.
func TestUserOptions(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	issuer, _ := nkeys.CreateAccount()
	curve, _ := nkeys.CreateCurveKeys()
	xkey, _ := curve.PublicKey()
	tok, err := identity.Issue(issuer, identity.IssueRequest{Subject: pub, Audience: "gw", Tenant: "tenant_a", Service: "svc", XKey: xkey, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(dir, "user.creds")
	if err := identity.WriteCreds(credsFile, tok, identity.Seed(seed)); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"x"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX." + pub + ".>"}},
		}}}
	}})
	for _, f := range []string{seedFile, credsFile} {
		if k, err := UserKey(f); err != nil || k != pub {
			t.Errorf("UserKey(%s) = %q, %v; want %s", filepath.Base(f), k, err, pub)
		}
		opts, err := UserOptions(f)
		if err != nil {
			t.Fatalf("UserOptions(%s): %v", filepath.Base(f), err)
		}
		nc, err := nats.Connect(srv.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("connect as the user of %s: %v", filepath.Base(f), err)
		}
		if inbox := nc.NewRespInbox(); !strings.HasPrefix(inbox, "_INBOX."+pub+".") {
			t.Errorf("inbox %q; want the prefix _INBOX.%s", inbox, pub)
		}
		nc.Close()
	}
	if _, err := nats.Connect(srv.ClientURL()); err == nil {
		t.Error("the test server accepted an anonymous client")
	}
	// The user key signs envelopes too: it signs no nonce but a server's.
	opts, err := UserOptions(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	var o nats.Options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	body := `{"v":1,"message_id":"m"}`
	for _, nonce := range []string{"", envelope.SigningContext + body, body, strings.Repeat("A", 65), "aaaa=", "a+b/c", "nonce with space"} {
		if sig, err := o.SignatureCB([]byte(nonce)); !errors.Is(err, ErrConfig) || sig != nil {
			t.Errorf("the user key signed the nonce %.30q (%v)", nonce, err)
		}
	}
	for _, nonce := range []string{"Qk9ZbGxXY2hl-_0", strings.Repeat("z", 64)} {
		if sig, err := o.SignatureCB([]byte(nonce)); err != nil || kp.Verify([]byte(nonce), sig) != nil {
			t.Errorf("the user key did not sign the server nonce %q: %v", nonce, err)
		}
	}
	cseed, _ := curve.Seed()
	curveFile := filepath.Join(dir, "curve.xk")
	if err := os.WriteFile(curveFile, cseed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := UserOptions(curveFile); !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), string(cseed)) {
		t.Errorf("UserOptions(curve seed) = %v; want ErrConfig without the seed", err)
	}
}

// TestSeedFileErrorsHideAPastedSeed: a seed pasted where the seed file's
// path belongs is not echoed by UserKey's or UserOptions' errors, nor by
// the nonce signer's when the file under a seed-like path changed.
func TestSeedFileErrorsHideAPastedSeed(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	for name, f := range map[string]func() error{
		"UserKey":     func() error { _, err := UserKey(string(seed)); return err },
		"UserOptions": func() error { _, err := UserOptions(string(seed)); return err },
		"sign/seed_changed": func() error {
			// A directory named like a seed holds a seed file that is
			// replaced by another user's after UserOptions read it.
			dir := filepath.Join(t.TempDir(), string(seed))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "user.nk")
			if err := os.WriteFile(f, append(seed, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			opts, err := UserOptions(f)
			if err != nil {
				t.Fatalf("UserOptions: %v", err)
			}
			other, _ := nkeys.CreateUser()
			oseed, _ := other.Seed()
			if err := os.WriteFile(f, append(oseed, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			var o nats.Options
			for _, opt := range opts {
				if err := opt(&o); err != nil {
					t.Fatal(err)
				}
			}
			_, err = o.SignatureCB([]byte("nonce"))
			return err
		},
	} {
		err := f()
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s(pasted seed) = %v; want %v", name, err, ErrConfig)
		} else if strings.Contains(err.Error(), string(seed)) {
			t.Errorf("%s(pasted seed): error quotes the seed", name)
		}
	}
}
