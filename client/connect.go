package client

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
)

// TenantAPIPrefix is the JetStream API prefix of tenant users in the
// least-privilege layout (deploy/accounts.conf and the development server
// of `agentgw run`): a tenant account has no JetStream of its own and
// imports the few consumer API subjects its users may call from the
// gateway's account under this prefix. See TenantJetStream.
const TenantAPIPrefix = "agentgw.js"

// UserOptions are the connect options of a static nkey user whose seed is
// in seedFile: an nkey seed file, or an agentgw .creds file (its key is
// the user: tenant accounts name each agent, approver and consumer by its
// agentgw key), read by the rules of docs/wire.md, "Seed files", as
// UserKey reads it. They authenticate with the key (the server's nonce is
// signed with the seed read again from seedFile, which must still be the
// same key; the seed never leaves the process) and set the inbox prefix
// _INBOX.<public key>, the only inboxes such a user may subscribe to. The
// error never quotes the file.
func UserOptions(seedFile string) ([]nats.Option, error) {
	pub, err := UserKey(seedFile)
	if err != nil {
		return nil, err
	}
	sign := func(nonce []byte) ([]byte, error) {
		if !ServerNonce(nonce) {
			return nil, fmt.Errorf("%w: the server's nonce is not a nats-server nonce; the user key signs no other bytes", ErrConfig)
		}
		kp, err := identity.ReadUserSeedFile(seedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: no user seed", ErrConfig, identity.SafePath(seedFile))
		}
		defer kp.Wipe()
		if k, err := kp.PublicKey(); err != nil || k != pub {
			return nil, fmt.Errorf("%w: %s: the user seed changed", ErrConfig, identity.SafePath(seedFile))
		}
		return kp.Sign(nonce)
	}
	return []nats.Option{nats.Nkey(pub, sign), nats.CustomInboxPrefix("_INBOX." + pub)}, nil
}

// ServerNonce reports whether nonce has the shape of a nats-server
// connection nonce: 1 to 64 characters of the base64url alphabet (the
// server sends 15). The user key of an agent is the key that signs its
// envelopes, so it signs no nonce outside that alphabet: a server that
// sent an envelope's signing input (agentgw-envelope-v1, a newline, a
// body) as its nonce would otherwise get back the agent's signature of
// that envelope.
func ServerNonce(nonce []byte) bool {
	if len(nonce) == 0 || len(nonce) > 64 {
		return false
	}
	for _, c := range nonce {
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// UserKey returns the public user ('U') key of the seed in seedFile: an
// nkey seed file with exactly one seed line, a user ('SU…') seed, or an
// agentgw .creds file, read by the rules of docs/wire.md, "Seed files"
// (identity.ParseSeedFile), as the TypeScript SDK's readUserSeed reads
// it. The error never quotes the file.
func UserKey(seedFile string) (string, error) {
	kp, err := identity.ReadUserSeedFile(seedFile)
	if err != nil {
		return "", fmt.Errorf("%w: %s: no user ('SU…') seed by the seed file rules", ErrConfig, identity.SafePath(seedFile))
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("%w: %s: not a user ('SU…') seed", ErrConfig, identity.SafePath(seedFile))
	}
	return pub, nil
}

// TenantJetStream returns a JetStream context for a tenant user: API
// requests go to TenantAPIPrefix, where the tenant account imports them.
// Use it with ConsumerConfig.Bind and ApproverConfig.Bind.
func TenantJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.NewWithAPIPrefix(nc, TenantAPIPrefix)
}
