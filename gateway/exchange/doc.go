// Package exchange owns the token exchange: an agent presents a token
// from an organisation's OAuth/OIDC identity provider (IdP) and proof
// that it holds an agent nkey, and receives a short-lived agentgw
// credential for that key, with the tenant and scopes that configured
// rules derive from the token's claims (RFC 8693 semantics; the wire
// format is package exchange/protocol). It is served as a NATS micro
// service (Start) inside the gateway process.
//
// # What is checked, in order
//
//  1. The request: strict JSON of the protocol shape, this gateway's
//     audience (exchange_request_invalid).
//  2. Proof of possession: the Agentgw-Signature header is the agent
//     key's Ed25519 signature over "agentgw-exchange-v1\n" ‖ the exact
//     body bytes (exchange_proof_invalid). The body binds everything
//     the credential will say or was derived from: the IdP token
//     itself, agent key, xkey, xkey proof, audience, tenant, scopes,
//     request id and time. Then possession of the xkey: xkey_proof is
//     "agentgw-exchange-xkey-v1\n" ‖ agent ‖ "\n" ‖ request_id sealed
//     from the xkey to the gateway's curve key, of exactly that length
//     before it is opened, opened with the gateway's curve key and
//     compared in constant time; an xkey that is the gateway's own
//     curve key is refused (exchange_proof_invalid). The xkey is the
//     key sealed payloads must come from: without this proof anyone
//     could name another agent's public xkey and have the gateway open
//     that agent's sealed payloads, copied into its own envelopes, and
//     re-seal them to a consumer of its choosing.
//  3. Freshness: issued_at within [now − proof_max_age − skew, now +
//     skew] and a request id not recorded (exchange_proof_stale). A
//     request id is recorded only once everything else has granted the
//     request (last, below), so a refused request takes no room.
//  4. The IdP, picked by the token's (unverified) iss among the
//     configured ones (exchange_untrusted_idp), verifies the token with
//     github.com/coreos/go-oidc/v3: discovery, the algorithm allowlist
//     (RS256, ES256, EdDSA: "none" and every HS* are refused before a
//     key is looked at, so an HS256 token keyed with the IdP's public
//     key never verifies), signature and issuer (exchange_token_invalid;
//     exchange_idp_unavailable when discovery or the signing keys the
//     token needs cannot be fetched, or the IdP already has
//     max_concurrent exchanges in flight, the token then not judged at
//     all);
//     then here: aud holds the IdP's configured audience
//     (exchange_token_audience); exp, nbf, iat and max_token_age with
//     the configured skew on the injected clock
//     (exchange_token_expired); sub and the required claims present,
//     sub without control characters (C0, DEL, C1), as a credential's
//     principal must be (exchange_token_invalid).
//  5. Tenant: fixed per IdP or from a claim (optionally mapped); it must
//     be one the IdP is bound to, and the requested one if any
//     (exchange_untrusted_idp).
//  6. act / may_act (below) (exchange_actor_denied).
//  7. Rules: the union of the scopes of every rule the claims match
//     (exchange_no_scope when none). The request may narrow it, never
//     widen it: each requested scope must equal a granted one or fall
//     under a granted pattern ("approve:refunds.*" under "approve:*"),
//     or the whole request is refused (exchange_scope_denied) rather
//     than silently trimmed. A credential holds at most 256 scopes: a
//     request for more is refused (exchange_request_invalid), and
//     Config.Validate refuses an IdP whose rules for one tenant grant
//     more together.
//  8. Issue: identity.Issue with the tenant's issuer key; lifetime
//     credential_ttl, capped by the IdP token's exp so a credential
//     never outlives the identity it came from. The credential's
//     principal claim (nats.principal) is "<IdP issuer>#<sub>"
//     (Principal): whichever agent key an identity exchanges for, its
//     credentials name the same principal, and the gateway refuses one
//     of them approving a request another sent (self_approval). With an
//     act chain it is still the token's sub, the party acted for; the
//     actors' principals ("<IdP issuer>#<act sub>") are the credential's
//     nats.actors, and one of them may not approve the request either.
//
// Every exchange, granted or refused, yields an audit.Event of kind
// credential_exchange (IdP issuer and subject, act chain, agent key,
// tenant, scopes granted, rule ids that granted them, credential jti,
// request id; reason and detail when refused), logged, given to the
// WithAudit callback and published to agentgw.audit.<tenant>. The IdP
// token and the credential appear in none of them. The caller is told
// the reason code only; the detail is the operator's. Refusals, which
// anyone may cause (before the request's token verified) or any
// identity of the IdP (a token that maps to nothing), are logged and
// audited up to UnverifiedEventsPerSecond a second, counted apart for
// the two (junk cannot crowd out a revoked identity's attempts); past
// that they are answered and counted in a warning (at the next such
// refusal in a later second). A granted request's id is recorded, so one identity's
// grants are bounded by its share of the replay set.
//
// # Proof of possession: signed timestamp and request id, not a nonce
//
// A server nonce would need two round trips (nonce, then exchange) and
// state shared by whichever gateway instance answers the second: the
// service runs in a queue group across instances, and NATS gives no
// affinity between two requests. A signed issued_at plus a fresh
// request id needs one request and no shared state: the signature
// proves key possession at the time the agent chose, the window
// (proof_max_age, default 60 s, ± skew) bounds how long a captured
// request is any use, and a bounded in-memory seen-set refuses a
// second use of a request id within that window. The set is per
// instance, so a request captured in flight could be replayed once to
// another instance within the window; what that yields is a second
// credential for the same key with the same claims, sent to whoever
// asked — useless without the agent's seed, since every envelope must
// be signed by it. When the set is full of unexpired ids (replay_capacity)
// new requests are refused rather than an id forgotten early. An id is
// recorded last, once everything else has granted the request, under
// the token's identity, which holds at most a 64th of the set: refused
// requests take no room (a refused request sent again is refused
// again), so identities whose tokens map to nothing cannot fill the set
// and stop every exchange. The
// set reads its clock under its lock and never lets it go back, and
// judges the request's freshness again there, so a request whose
// verification was slow cannot be recorded after its original was
// forgotten.
//
// # act and may_act (RFC 8693 §4.1, §4.4)
//
// The credential's subject is always the agent key that proved
// possession: the agent is the actor, the IdP token's sub the party it
// acts for.
//
//   - may_act present: the IdP says who may act for sub. It must be an
//     object whose "sub" is exactly the agent's public key ("U…"); an
//     "iss" member, if present, must be this gateway's audience; any
//     other member, or another value, refuses the exchange. Absent:
//     no restriction beyond the rules.
//   - act present: the token is itself a delegation (sub acting through
//     act.sub, nested act for earlier actors). Refused unless the IdP
//     is configured allow_act; then the chain (at most 8 deep, each with
//     a sub without control characters) is recorded in the audit event as idp_actors, outermost
//     first, in the credential's name, and as principals in its
//     nats.actors. Rules still match the token's
//     own claims only — an actor never adds scopes.
//
// # Keys
//
// Signing keys come from the IdP's jwks_uri through a cache (keySet)
// that replaces go-oidc's RemoteKeySet: keys older than keys_max_age
// are fetched again before use, so a key withdrawn at the IdP is
// refused within that time even if no new key is ever presented; an
// unknown kid triggers a fetch at most once per keys_min_refresh, so
// junk kids cannot turn the service into a fetch amplifier, and
// because each fetch loads the whole set a legitimate new kid is
// accepted no later than the next allowed fetch, without restart.
//
// When keys cannot be obtained (discovery or the JWKS unreachable, timed
// out, not 200, not a key set with a usable key; or the token's kid is
// not cached and the latest fetch failed) the exchange refuses
// exchange_idp_unavailable and issues nothing: it cannot tell a good
// token from a forged one, and says so instead of calling the token
// invalid. go-oidc's verifier wraps the key set's error with %v, so
// verify reads it from the key set of that verification (verifyKeys)
// rather than from the verifier's error. A kid missing from a key set
// that was fetched is exchange_token_invalid, unless the fetch started
// before the token may have been issued (its unverified iat, less the
// skew the IdP's clock may lag by) and no new fetch is allowed yet
// (keys_min_refresh): the IdP may have rotated since, so the token is
// not judged (exchange_idp_unavailable) rather than refused for good;
// once a fetch is allowed, the next attempt gets the verdict.
//
// Package exchange refuses to know about the gateway's pipeline, the
// capability catalog and policy: it only mints credentials that the
// gateway then verifies like any other.
package exchange
