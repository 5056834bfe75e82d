package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/atomicfile"
	"github.com/agentgw/agentgw/subjects/reason"
)

func credsExchange(args []string) int {
	c := newCmd("creds exchange", "--agent-seed SEEDFILE --curve-seed FILE --gateway-xkey X… --audience A (--idp-token-file FILE | --idp-token-env VAR) [--tenant T] [--scopes a,b] --out FILE", `
Exchange a token from your organisation's identity provider (a JWT access
or ID token, e.g. from a client-credentials grant) for a short-lived
agentgw credential, through the gateway's token exchange service (NATS
subject agentgw.exchange), with client.Exchange. The request is signed by
the agent's seed and carries a proof, sealed by the agent's curve seed
--curve-seed to the gateway's curve key --gateway-xkey, that the agent
holds the curve key the credential names as its xkey (the key sealed
payloads must come from); the gateway maps the token's
claims to a tenant and scopes by its configured rules and refuses scopes
beyond them. Writes a NATS-style .creds file (JWT and the agent's seed)
to --out, mode 0600, or the JWT alone with --jwt-only. Prints the jti,
tenant, scopes and expiry, never a token.

The IdP token is read from a file (- for stdin) or an environment
variable, never from a flag, so it stays out of shell history and ps.
A refusal prints its reason code (exchange_*) and exits 3, except
exchange_idp_unavailable (the gateway could not fetch the IdP's signing
keys, or had too many exchanges for that IdP in flight; the token was
not judged), which exits 1 like any outage: retry later with the same
token.`)
	var cf connFlags
	cf.register(c.fs)
	agentSeed := c.fs.String("agent-seed", "", "agent seed `file` (SU…); the credential's subject, signs the request")
	curveSeed := c.fs.String("curve-seed", "", "the agent's curve seed `file` (SX…); its public key is the credential's xkey, and it seals the xkey proof")
	gwX := c.fs.String("gateway-xkey", "", "the gateway's public curve `key` (X…), which the xkey proof is sealed to")
	audience := c.fs.String("audience", "", "the gateway's audience")
	tokenFile := c.fs.String("idp-token-file", "", "`file` holding the IdP token (- for stdin)")
	tokenEnv := c.fs.String("idp-token-env", "", "environment `variable` holding the IdP token")
	tokenType := c.fs.String("token-type", "jwt", "subject token type: jwt, access_token or id_token")
	tenant := c.fs.String("tenant", "", "tenant the token must map to (default: the one it maps to)")
	var scopes listFlag
	c.fs.Var(&scopes, "scopes", "scopes to ask for, comma separated (default: all the mapping grants)")
	subject := c.fs.String("subject", protocol.DefaultSubject, "NATS `subject` of the exchange service")
	out := c.fs.String("out", "", "`file` to write (mode 0600; replaced atomically if it holds a credential)")
	force := c.fs.Bool("force", false, "replace --out even if it holds something other than a credential")
	jwtOnly := c.fs.Bool("jwt-only", false, "write the JWT alone, not a .creds file")
	timeout := c.fs.Duration("timeout", 10*time.Second, "give up after this long")
	asJSON := c.fs.Bool("json", false, "print the summary as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("agent-seed", "curve-seed", "gateway-xkey", "audience", "out"); !ok {
		return code
	}
	if err := credsOut(*out, *force); err != nil {
		return c.usageErr("%v", err)
	}
	if (*tokenFile == "") == (*tokenEnv == "") {
		return c.usageErr("give exactly one of --idp-token-file and --idp-token-env")
	}
	types := map[string]string{"jwt": protocol.TokenTypeJWT, "access_token": protocol.TokenTypeAccess, "id_token": protocol.TokenTypeID}
	tt, ok := types[*tokenType]
	if !ok {
		return c.usageErr("--token-type %q: want jwt, access_token or id_token", *tokenType)
	}
	if *timeout <= 0 {
		return c.usageErr("--timeout must be positive")
	}
	tok, err := readIdPToken(*tokenFile, *tokenEnv)
	if err != nil {
		return c.fail(err, "")
	}
	kp, err := c.seedFile(*agentSeed, "SU")
	if err != nil {
		return c.fail(err, "--agent-seed must be an agent seed file, e.g. from 'agentgw keys new --type agent --out agent.nk'.")
	}
	defer kp.Wipe()
	ck, err := c.seedFile(*curveSeed, "SX")
	if err != nil {
		return c.fail(err, "--curve-seed must be the agent's curve seed file, e.g. from 'agentgw keys new --type curve --out agent.xk'.")
	}
	defer ck.Wipe()
	nc, _, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	got, err := client.Exchange(ctx, nc, client.ExchangeConfig{
		Subject: *subject, Audience: *audience, Tenant: *tenant, Scopes: scopes,
		Key: kp, Curve: ck, GatewayXKey: *gwX, TokenType: tt, Timeout: *timeout,
		Token: func(context.Context) (string, error) { return tok, nil },
	})
	switch {
	case errors.Is(err, client.ErrConfig):
		return c.usageErr("%v", err)
	case errors.Is(err, reason.ExchangeIdPUnavailable):
		return c.fail(err, "The gateway could not fetch the IdP's signing keys; the token was not judged. Retry later with the same token.")
	case err != nil && reason.Of(err) != reason.Internal:
		fmt.Fprintf(c.err, "agentgw %s: refused: %s\n", c.name, reason.Of(err))
		if info, ok := reason.Lookup(reason.Of(err)); ok {
			fmt.Fprintf(c.err, "  %s\n", info.Description)
		}
		return exitRejected
	case err != nil:
		return c.fail(err, "Is the gateway serving the exchange (an exchange: section in its config)? Check --nats and --subject.")
	}
	if *jwtOnly {
		err = atomicfile.Write(*out, []byte(got.Token.Reveal()+"\n"), 0o600)
	} else {
		raw, serr := kp.Seed()
		if serr != nil {
			return c.fail(serr, "")
		}
		err = identity.WriteCreds(*out, got.Token, identity.Seed(raw))
	}
	if err != nil {
		return c.fail(err, "")
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(map[string]any{
			"jti": got.ID, "tenant": got.Tenant, "scopes": got.Scopes, "expires": got.Expires,
			"file": *out, "jwt_only": *jwtOnly,
		})
		return exitOK
	}
	fmt.Fprintf(c.out, "jti      %s\ntenant   %s\nscopes   %s\nexpires  %s\nwritten  %s (mode 0600)\n",
		got.ID, got.Tenant, strings.Join(got.Scopes, ","), stamp(got.Expires), *out)
	return exitOK
}

// envName is an environment variable's name as a shell writes it.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readIdPToken reads the token from path ("-": stdin) or the variable
// env, trimmed. Errors never quote the token.
func readIdPToken(path, env string) (string, error) {
	var raw []byte
	if env != "" {
		if !envName.MatchString(env) {
			return "", fmt.Errorf("--idp-token-env takes an environment variable's name; the %d characters given are not one", len(env))
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", identity.SafeText(env))
		}
		raw = []byte(v)
	} else {
		var err error
		if path == "-" {
			raw, err = io.ReadAll(io.LimitReader(os.Stdin, protocol.MaxSubjectToken+1))
		} else {
			raw, err = os.ReadFile(path)
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = &fs.PathError{Op: pe.Op, Path: identity.SafeText(pe.Path), Err: pe.Err}
			}
			return "", fmt.Errorf("IdP token: %w", err)
		}
	}
	tok := string(bytes.TrimSpace(raw))
	if tok == "" || len(tok) > protocol.MaxSubjectToken || strings.ContainsAny(tok, " \t\r\n") {
		return "", errors.New("IdP token: empty, too long or not one compact JWT")
	}
	return tok, nil
}
