package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
)

func keysCmd(args []string) int {
	return group("keys", "Create nkeys and show their public keys. A seed is written to a new 0600 file,\nor printed on stdout only when asked to ('keys new --out -').", []subcommand{
		{"new", "create a key: print its public key; its seed to a new 0600 file, or stdout (--out -)", keysNew},
		{"show", "print the role and public key of a seed file", keysShow},
	}, args)
}

// keyTypes maps --type to the identity constructor of that role.
var keyTypes = map[string]func() (nkeys.KeyPair, error){
	"issuer":  identity.NewIssuer,
	"agent":   identity.NewAgent,
	"gateway": identity.NewGatewayKey,
	"curve":   identity.NewCurve,
}

func keysNew(args []string) int {
	c := newCmd("keys new", "--type issuer|agent|gateway|curve --out FILE [--json]", `
Create an nkey. The public key is printed on stdout; the seed is written
only to --out, a new file of mode 0600 (an existing file is never
overwritten). --out - prints the seed on stdout instead, and the public
key on stderr.

  issuer   A… key: a tenant issuer that signs credentials
  agent    U… key: agents, approvers, consumers, operators
  gateway  N… key: the gateway's decision-token signing key
  curve    X… key: seals payloads (an agent's or the gateway's xkey)`)
	kind := c.fs.String("type", "", "key role: issuer, agent, gateway or curve")
	out := c.fs.String("out", "", "seed `file` to create (mode 0600), or - for stdout")
	asJSON := c.fs.Bool("json", false, "print {type, public_key, seed_file} as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("type"); !ok {
		return code
	}
	create, found := keyTypes[*kind]
	if !found {
		return c.usageErr("--type %q: want issuer, agent, gateway or curve", *kind)
	}
	if *out == "" {
		return c.usageErr("--out FILE is required: the seed is written only to a file (--out - prints it, if you must)")
	}
	kp, err := create()
	if err != nil {
		return c.fail(err, "")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return c.fail(err, "")
	}
	seed, err := kp.Seed() // the key pair's own bytes: kp.Wipe clears them
	if err != nil {
		return c.fail(err, "")
	}
	line := append(append(make([]byte, 0, len(seed)+1), seed...), '\n')
	if *out == "-" {
		_, _ = c.out.Write(line)
		clear(line)
		fmt.Fprintf(c.err, "%s public key: %s\n", *kind, pub)
		return exitOK
	}
	if err := writeNewSecret(*out, line); err != nil {
		hint := ""
		if errors.Is(err, os.ErrExist) {
			hint = "Refusing to overwrite a key: choose another --out, or remove the old file first."
		}
		return c.fail(err, hint)
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(map[string]string{"type": *kind, "public_key": pub, "seed_file": identity.SafePath(*out)})
		return exitOK
	}
	fmt.Fprintln(c.out, pub)
	fmt.Fprintf(c.err, "wrote the %s seed to %s (mode 0600)\n", *kind, identity.SafePath(*out))
	return exitOK
}

// writeNewSecret creates path with mode 0600 and writes data, failing if
// path exists. data is cleared afterwards.
func writeNewSecret(path string, data []byte) error {
	defer clear(data)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}

// roles names a key's role by its seed prefix.
var roles = map[nkeys.PrefixByte]string{
	nkeys.PrefixByteAccount: "issuer",
	nkeys.PrefixByteUser:    "agent",
	nkeys.PrefixByteServer:  "gateway",
	nkeys.PrefixByteCurve:   "curve",
}

func keysShow(args []string) int {
	c := newCmd("keys show", "SEEDFILE [--json]", `
Print the role and public key of the seed in SEEDFILE (a bare seed, an
.nk file or a .creds file). The seed itself is never printed.`)
	asJSON := c.fs.Bool("json", false, "print {type, public_key} as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) != 1 {
		return c.usageErr("want exactly one SEEDFILE")
	}
	kp, err := c.seedFile(c.args[0], "S")
	if err != nil {
		return c.fail(err, "")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return c.fail(err, "")
	}
	role, ok := roles[nkeys.Prefix(pub)]
	if !ok {
		role = "other"
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(map[string]string{"type": role, "public_key": pub})
		return exitOK
	}
	fmt.Fprintf(c.out, "%s\t%s\n", role, pub)
	return exitOK
}
